"""The alarm banner in every page's `alarm-banner` slot, the alarm source the alarms page
reads, and the sound of a new critical alarm on wall displays.

Where alarms come from: the runtime's live AlarmService (`runtime.alarms`) when the UI runs
in the same process as the collectors; in a UI-only `serve` process on a plant broker, the
control bus (`runtime.remote_alarms`, runtime/control.py RemoteAlarms): the collects' alarm
snapshots, and actions sent to the collect that owns the alarm; without a broker, the store
itself, read-only: the newest stored event of each alarm is its state
(alerts.lifecycle.from_event), so every UI process shows the same list.

Registration: `register_callbacks(callback)` is called by dashboards/pages/alarms.py at import.
Dash executes every page module for each app it builds, so each app gets the banner without
an edit of create_app. The builders here are pure and tested directly.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional
from urllib.parse import quote

import dash
from dash import ClientsideFunction, Input, Output, State, html

from alerts import health
from alerts.lifecycle import KIND, AlarmState, from_event
from dashboards import context
from dashboards.i18n import add_strings, normalize_lang, t

log = logging.getLogger("gwanje.ui.alarms")

add_strings({
    "alarms": {"ko": "알람", "en": "Alarms"},
    "alarm_unacked": {"ko": "미확인 알람 {n}건", "en": "{n} unacknowledged"},
    "alarm_flood": {"ko": "알람 폭주: {area} 10분간 {n}건", "en": "ALARM FLOOD: {area} {n} in 10 min"},
    "alarm_mute": {"ko": "경보음 끄기", "en": "Mute"},
    "alarm_unmute": {"ko": "경보음 켜기", "en": "Unmute"},
    "prio.critical": {"ko": "긴급", "en": "Critical"},
    "prio.high": {"ko": "높음", "en": "High"},
    "prio.medium": {"ko": "보통", "en": "Medium"},
    "prio.low": {"ko": "낮음", "en": "Low"},
})


class StoreAlarms:
    """Read-only alarm view straight from the store (a UI process without the live service)."""

    can_act = False

    def __init__(self, store: Any, config: Any, clock=time.time_ns) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    def active(self) -> list[AlarmState]:
        states = []
        for e in self.store.latest_events(KIND):
            try:
                s = from_event(e)
            except (TypeError, ValueError):
                continue
            if not s.is_normal:
                states.append(s)
        return sorted(states, key=lambda s: (s.rank, not s.unacknowledged, -(s.raised_ts or s.changed_ts)))

    def banner(self) -> tuple[Optional[AlarmState], int]:
        un = [s for s in self.active() if s.unacknowledged]
        return (un[0] if un else None), len(un)

    def history(self, start_ns: int, end_ns: int, text: str = "", site=None, line=None, limit: int = 2000):
        return health.search(self.store.events(KIND, start_ns, end_ns, site=site, line=line, limit=50_000),
                             text)[::-1][:limit]

    def health(self, now_ns: Optional[int] = None) -> dict:
        now = self.clock() if now_ns is None else now_ns
        tz = self.config.plant.timezone
        start = min(health.day_start_ns(now, tz), now - health.TEN_MIN)
        return health.day_summary(self.store.events(KIND, start, now + 1, limit=200_000), now, tz)

    def flood(self, now_ns: Optional[int] = None) -> dict:
        now = self.clock() if now_ns is None else now_ns
        return health.flood_now(self.store.events(KIND, now - health.TEN_MIN, now + 1, limit=50_000), now)

    def notifications(self, limit: int = 200) -> list[dict]:
        now = self.clock()
        # the store returns the oldest first within its limit: a short window keeps the newest in
        evs = self.store.events("notification", now - 6 * 3600 * 1_000_000_000, now + 1, limit=50_000)
        return [{"ts": e.ts, **e.data} for e in evs[::-1][:limit]]


def alarm_source() -> Any:
    """The live AlarmService when the runtime has one, else the control bus's RemoteAlarms,
    else the read-only store view."""
    rt = context.runtime()
    for name in ("alarms", "remote_alarms"):
        svc = getattr(rt, name, None) if rt is not None else None
        if svc is not None:
            return svc
    d = context.data()
    return StoreAlarms(d.store, context.config(), d.clock)


def can_act(src: Any) -> bool:
    return getattr(src, "can_act", True)


def active_alarms(src: Any) -> list[AlarmState]:
    """The live service answers from memory; the store view through the shared short-TTL
    cache, so N wall displays refreshing together cost the store one query."""
    if can_act(src):
        return src.active()
    return context.data().cache.get(("alarms", "active"), src.active)


def flood_areas(src: Any) -> dict:
    # a live service's flood view is this process's state: its own cache, never Redis
    d = context.data()
    return (d.local if can_act(src) else d.cache).get(("alarms", "flood"), src.flood)


def alarm_href(alarm_id: str, lang: str, kiosk: bool = False) -> str:
    return f"/alarms?alarm={quote(alarm_id, safe='')}&lang={lang}" + ("&kiosk=1" if kiosk else "")


def message(s: AlarmState, lang: str) -> str:
    return (s.message_ko if lang == "ko" else s.message_en) or s.message_en or s.id


def banner_children(top: Optional[AlarmState], count: int, flood: dict, lang: str, kiosk: bool,
                    critical_ids: list[str]) -> list[Any]:
    """What the banner shows: the most severe unacknowledged alarm and the count, a flood
    line when an area is flooding, and (wall displays) the mute toggle and the hidden list of
    unacknowledged critical alarms that the sound script watches."""
    kids: list[Any] = []
    for (site, line), n in sorted(flood.items()):
        kids.append(html.Div(t("alarm_flood", lang, area=f"{site}/{line}", n=n), className="gw-alarm-flood"))
    if top is not None:
        kids.append(html.A([
            html.Span(t(f"prio.{top.priority}", lang), className=f"gw-prio gw-prio-{top.priority}"),
            html.Span(message(top, lang), className="gw-alarm-banner-msg"),
            html.Span(t("alarm_unacked", lang, n=count), className="gw-alarm-banner-count"),
        ], href=alarm_href(top.id, lang, kiosk), className=f"gw-alarm-top gw-alarm-top-{top.priority}",
            id="gw-alarm-top"))
    if kiosk:
        kids.append(html.Button(t("alarm_mute", lang), id="gw-alarm-mute", className="gw-alarm-mute",
                                **{"data-mute": t("alarm_mute", lang), "data-unmute": t("alarm_unmute", lang)}))
    kids.append(html.Div(id="gw-alarm-crit", title=" ".join(critical_ids), hidden=True))
    return kids


def refresh_banner(n: Any, page_ctx: Optional[dict], shown: Optional[str] = None) -> tuple[Any, Any, Any]:
    """Callback: the banner of the page and its signature. When the signature equals what
    the page already shows (`shown`), nothing is sent: the banner is not rebuilt every refresh
    (a wall display's mute button stays under the finger). A failing source keeps the last banner."""
    out = _banner(page_ctx)
    if out is None or out[2] == shown:
        return dash.no_update, dash.no_update, dash.no_update
    return out


def _banner(page_ctx: Optional[dict]) -> Optional[tuple[Any, str, str]]:
    cfg = context.config()
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    lang = normalize_lang(pc.get("lang"), cfg.system.ui.default_language)
    kiosk = bool(pc.get("kiosk"))
    try:
        src = alarm_source()
        active = active_alarms(src)
        flood = flood_areas(src)
    except Exception:  # the banner must never break a page
        log.exception("alarm banner: source failed")
        return None
    un = [s for s in active if s.unacknowledged]
    top = un[0] if un else None
    crit = sorted(s.id for s in un if s.priority == "critical")
    cls = "gw-alarm-banner" + (f" gw-alarm-banner-{top.priority}" if top else "") + (" gw-flood" if flood else "")
    sig = repr((lang, kiosk, len(un), top and (top.id, top.changed_ts, top.priority), sorted(flood.items()), crit))
    if top is None and not flood and not kiosk:
        return [], "gw-alarm-banner", sig
    return banner_children(top, len(un), flood, lang, kiosk, crit), cls, sig


def register_callbacks(callback: Any) -> None:
    callback(Output("alarm-banner", "children"), Output("alarm-banner", "className"),
             Output("alarm-banner", "data-shown"),
             Input("alarm-refresh", "n_intervals"), State("page-ctx", "data"), State("alarm-banner", "data-shown"))(
        refresh_banner)
    # the sound: in the browser, so each wall display has its own mute (localStorage)
    dash.clientside_callback(ClientsideFunction("gwanjeAlarms", "sound"),
                             Output("gw-alarm-crit", "className"), Input("gw-alarm-crit", "title"))
    dash.clientside_callback(ClientsideFunction("gwanjeAlarms", "mute"),
                             Output("gw-alarm-mute", "children"), Input("gw-alarm-mute", "n_clicks"))
