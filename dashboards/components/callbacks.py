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

from dashboards import context
from dashboards.components.figures import trend_patch
from dashboards.components.tiles import line_summary_text, tile_children, tile_class
from dashboards.data import DataUnavailable, PlantSnapshot
from dashboards.i18n import normalize_lang, t

TILE = {"type": "gw-tile", "site": ALL, "line": ALL, "machine": ALL}
LINE_SUMMARY = {"type": "gw-line-summary", "site": ALL, "line": ALL}
TREND_KEYS = ("site", "line", "machine", "signal", "window", "points")
TREND = {"type": "gw-trend", **{k: ALL for k in TREND_KEYS}}
SPARK = {"type": "gw-spark", **{k: ALL for k in TREND_KEYS}}


def _lang(page_ctx: Optional[dict]) -> tuple[str, bool]:
    cfg = context.config()
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    return normalize_lang(pc.get("lang"), cfg.system.ui.default_language), bool(pc.get("kiosk"))


def refresh_tiles(n: Any, page_ctx: Optional[dict], tile_ids: list[dict], line_ids: list[dict]) -> tuple:
    """New class + content for every tile on the page, and every line's running/total."""
    cfg = context.config()
    lang, _ = _lang(page_ctx)
    try:
        snap = context.data().plant_snapshot()
    except DataUnavailable:
        return dash.no_update, dash.no_update, dash.no_update
    classes, kids = [], []
    for i in tile_ids:
        view = snap.machine(i["site"], i["line"], i["machine"])
        spec = cfg.machine(i["site"], i["line"], i["machine"])
        if view is None or spec is None:
            classes.append(dash.no_update)
            kids.append(dash.no_update)
            continue
        classes.append(tile_class(view))
        kids.append(tile_children(view, spec, lang))
    summaries = []
    for i in line_ids:
        lv = snap.line(i["site"], i["line"])
        summaries.append(line_summary_text(lv, lang) if lv else dash.no_update)
    return classes, kids, summaries


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


def _refresh_series(page_ctx: Optional[dict], ids: list[dict], note: bool) -> list:
    lang, dark = _lang(page_ctx)
    data = context.data()
    out: list = []
    for i in ids:
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
        Output("clock", "children"), Output("last-update", "children"), Output("last-update", "className"),
        Input("refresh", "n_intervals"), ctx_state,
    )(refresh_clock)
    app.callback(Output(TREND, "figure"), Input("refresh", "n_intervals"), ctx_state, State(TREND, "id"),
                 prevent_initial_call=True)(refresh_trends)
    app.callback(Output(SPARK, "figure"), Input("refresh", "n_intervals"), ctx_state, State(SPARK, "id"),
                 prevent_initial_call=True)(refresh_sparks)
