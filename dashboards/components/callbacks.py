"""The live-refresh callbacks every page shares, driven by the one `refresh` dcc.Interval.

Each uses pattern-matching ids with ALL, so one callback serves every tile / line summary /
trend on whatever page is open (none present: it does nothing). They are registered on the
app in `register(app)` rather than with `@dash.callback` at import, because a second app in
the same process (tests, gunicorn preload) must get them too. The functions are plain: tests
call them directly with the ids a page would send.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional
from zoneinfo import ZoneInfo

import dash
from dash import ALL, Input, Output, State

from gwanje.config import Config
from gwanje.model import NS_PER_S
from gwanje.rejects import Rejects

from dashboards import context
from dashboards.components.figures import trend_patch
from dashboards.components.oee import load_scope
from dashboards.components.tiles import (PlantOee, apq_children, line_oee_children, line_summary_text, oee_badge,
                                         simulation_marks, tile_children, tile_class)
from dashboards.components.views import SPARK_POINTS
from dashboards.data import WINDOWS_S, DataLayer, DataUnavailable, PlantSnapshot, numeric_signals
from dashboards.i18n import normalize_lang, t

TILE = {"type": "gw-tile", "site": ALL, "line": ALL, "machine": ALL}
LINE_SUMMARY = {"type": "gw-line-summary", "site": ALL, "line": ALL}
TREND_KEYS = ("site", "line", "machine", "signal", "window", "points")
TREND = {"type": "gw-trend", **{k: ALL for k in TREND_KEYS}}
SPARK = {"type": "gw-spark", **{k: ALL for k in TREND_KEYS}}
LINE_OEE = {"type": "gw-line-oee", "site": ALL, "line": ALL}
MACHINE_OEE = {"type": "gw-machine-oee", "site": ALL, "line": ALL, "machine": ALL}


def _lang(page_ctx: Optional[dict]) -> tuple[str, bool]:
    cfg = context.config()
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    return normalize_lang(pc.get("lang"), cfg.system.ui.default_language), bool(pc.get("kiosk"))


def plant_oee(cfg: Config, layer: DataLayer, now_ns: Optional[int] = None) -> PlantOee:
    """The current shift's OEE of the whole plant: one load_scope per site, shared through the
    data layer's TTL cache by every tile, line head and display refreshing within one TTL."""
    now = layer.clock() if now_ns is None else now_ns
    ttl_ns = max(1, int(layer.cache.ttl_s * NS_PER_S))

    def load() -> PlantOee:
        machines, lines = {}, {}
        for s in cfg.plant.sites:
            scope = load_scope(cfg, layer, s.id, None, None, now_ns=now)
            if scope is not None:
                machines.update(scope.machines)
                lines.update(scope.lines)
        return PlantOee(True, machines, lines)

    try:
        return layer.cache.get(("oee-plant", now // ttl_ns), load)
    except DataUnavailable as e:
        # counted, and logged at most once per interval however many displays ask
        layer.failures.reject("oee", str(e))
        return PlantOee(False)


def refresh_tiles(n: Any, page_ctx: Optional[dict], tile_ids: list[dict], line_ids: list[dict]) -> tuple:
    """New class + content for every tile on the page, and every line's running/total."""
    cfg = context.config()
    lang, kiosk = _lang(page_ctx)
    try:
        snap = context.data().plant_snapshot()
    except DataUnavailable:
        return dash.no_update, dash.no_update, dash.no_update
    oee = plant_oee(cfg, context.data()) if tile_ids else PlantOee(False)
    sim_tiles = simulation_marks(cfg)[1]
    classes, kids = [], []
    for i in tile_ids:
        key = (i.get("site"), i.get("line"), i.get("machine")) if isinstance(i, dict) else (None, None, None)
        # ids come from the browser: names that are not strings name no machine
        ok = all(isinstance(x, str) for x in key)
        view = snap.machine(*key) if ok else None
        spec = cfg.machine(*key) if ok else None
        if view is None or spec is None:
            classes.append(dash.no_update)
            kids.append(dash.no_update)
            continue
        classes.append(tile_class(view))
        kids.append(tile_children(view, spec, lang, oee_badge(oee.machine(*key), oee.ok, lang),
                                  sim=spec.simulated and sim_tiles, kiosk=kiosk))
    summaries = []
    for i in line_ids:
        lv = snap.line(i.get("site"), i.get("line")) if isinstance(i, dict) else None
        summaries.append(line_summary_text(lv, lang) if lv else dash.no_update)
    return classes, kids, summaries


def refresh_oee(n: Any, page_ctx: Optional[dict], line_ids: list[dict], machine_ids: list[dict]) -> tuple:
    """Every line head's OEE · A · P · Q + bottleneck, and every machine page's A · P · Q."""
    cfg = context.config()
    lang, _ = _lang(page_ctx)
    if not line_ids and not machine_ids:
        return [], []
    oee = plant_oee(cfg, context.data())
    lines = [line_oee_children(cfg, i["site"], i["line"], oee, lang)
             if isinstance(i, dict) and cfg.line(i.get("site"), i.get("line")) else dash.no_update
             for i in line_ids]
    machines = [apq_children(oee.machine(i.get("site"), i.get("line"), i.get("machine")), oee.ok, lang)
                if isinstance(i, dict) else dash.no_update for i in machine_ids]
    return lines, machines


def clock_text(snap: Optional[PlantSnapshot], now_ns: int, timezone: str, lang: str) -> tuple[str, str, str]:
    """(clock, last-update text, last-update class); the age turns to a warning when stale."""
    now = dt.datetime.fromtimestamp(now_ns / 1e9, ZoneInfo(timezone))
    clock = now.strftime("%Y-%m-%d %H:%M:%S")
    if snap is None:
        return clock, t("store_error", lang), "gw-last-update gw-warn"
    age = snap.age_s
    if age is None:
        return clock, f'{t("last_update", lang)}: {t("no_data", lang)}', "gw-last-update gw-warn"
    cls = "gw-last-update" + (" gw-warn" if age > context.config().plant.stale_after_s else "")
    return clock, f'{t("last_update", lang)}: {t("ago_s", lang, n=int(age))}', cls


def refresh_clock(n: Any, page_ctx: Optional[dict]) -> tuple[str, str, str]:
    cfg = context.config()
    lang, _ = _lang(page_ctx)
    data = context.data()
    now = data.clock()
    try:
        snap: Optional[PlantSnapshot] = data.plant_snapshot(now)
    except DataUnavailable:
        snap = None
    return clock_text(snap, now, cfg.plant.timezone, lang)


# the ids of a callback come from the browser: a crafted request could ask any window and any
# number of points; only what a page of ours can show is queried, the rest is counted
_rejects = Rejects("dashboard-callbacks")


def _valid_series_id(i: Any) -> bool:
    if not isinstance(i, dict):
        return False
    spec = context.config().machine(i.get("site"), i.get("line"), i.get("machine"))
    ui = context.config().system.ui
    windows = {ui.trend_window_s, *WINDOWS_S.values()}
    return (spec is not None and i.get("signal") in numeric_signals(spec)
            and i.get("window") in windows and isinstance(i.get("points"), int)
            and 1 <= i["points"] <= max(ui.trend_points, SPARK_POINTS))


def _refresh_series(page_ctx: Optional[dict], ids: list[dict], note: bool) -> list:
    lang, dark = _lang(page_ctx)
    data = context.data()
    out: list = []
    for i in ids:
        if not _valid_series_id(i):
            _rejects.reject("bad_trend_id", repr(i))
            out.append(dash.no_update)
            continue
        try:
            trend = data.signal_trend(i["site"], i["line"], i["machine"], i["signal"], i["window"], i["points"])
        except DataUnavailable:
            out.append(dash.no_update)
            continue
        out.append(trend_patch(trend, lang, dark, note=note))
    return out


def refresh_trends(n: Any, page_ctx: Optional[dict], ids: list[dict]) -> list:
    return _refresh_series(page_ctx, ids, note=True)


def refresh_sparks(n: Any, page_ctx: Optional[dict], ids: list[dict]) -> list:
    return _refresh_series(page_ctx, ids, note=False)


def register(app: dash.Dash) -> None:
    ctx_state = State("page-ctx", "data")
    app.callback(
        Output(TILE, "className"), Output(TILE, "children"), Output(LINE_SUMMARY, "children"),
        Input("refresh", "n_intervals"), ctx_state, State(TILE, "id"), State(LINE_SUMMARY, "id"),
        prevent_initial_call=True,
    )(refresh_tiles)
    app.callback(
        Output(LINE_OEE, "children"), Output(MACHINE_OEE, "children"),
        Input("refresh", "n_intervals"), ctx_state, State(LINE_OEE, "id"), State(MACHINE_OEE, "id"),
        prevent_initial_call=True,
    )(refresh_oee)
    app.callback(
        Output("clock", "children"), Output("last-update", "children"), Output("last-update", "className"),
        Input("refresh", "n_intervals"), ctx_state,
    )(refresh_clock)
    app.callback(Output(TREND, "figure"), Input("refresh", "n_intervals"), ctx_state, State(TREND, "id"),
                 prevent_initial_call=True)(refresh_trends)
    app.callback(Output(SPARK, "figure"), Input("refresh", "n_intervals"), ctx_state, State(SPARK, "id"),
                 prevent_initial_call=True)(refresh_sparks)
