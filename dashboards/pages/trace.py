"""`/trace?site=..&line=..&machine=..&start=..&end=..` — every LOT that had a step on the
machine in the window (lot_step records; a step that started before the window and ran into
it counts), with a CSV export. start / end: plant-local "YYYY-MM-DD[ HH:MM[:SS]]" (a date
alone as end: the whole day); default the last 24 h."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import context
from dashboards.components.lots import (fmt_dur, fmt_n, fmt_pct, local, lot_link, machine_link, machine_name,
                                        process_name, product_name, products_by_id, step_csv_rows)
from dashboards.components.oee import csv_text
from dashboards.components.page import render, view
from dashboards.data import DataUnavailable
from dashboards.i18n import normalize_lang, t
from dashboards.lots_data import StepRow, load_trace
from gwanje.model import NS_PER_S
from gwanje.validate import PlantIds, parse_time

dash.register_page(__name__, path="/trace", title="Gwanje", name="trace")

DAY_NS = 86_400 * NS_PER_S
MAX_SPAN_NS = 92 * DAY_NS


def window(start: Any, end: Any, now_ns: int, tz: str) -> Optional[tuple[int, int]]:
    """[start, end) in ns from the URL's local times; None when one does not parse or the
    window is empty or longer than MAX_SPAN_NS."""
    zone = ZoneInfo(tz)

    def parse(v: Any, is_end: bool) -> Optional[int]:
        if not isinstance(v, str) or PlantIds.time(v):
            return None
        d = parse_time(v)
        if d is None:
            return None
        if is_end and len(v) == 10:
            d += timedelta(days=1)
        return int(d.replace(tzinfo=zone).timestamp()) * NS_PER_S + d.microsecond * 1000

    e = now_ns + 1 if end in (None, "") else parse(end, True)
    s = (e - DAY_NS if e is not None else None) if start in (None, "") else parse(start, False)
    if s is None or e is None or PlantIds.time_range(s, e, MAX_SPAN_NS):
        return None
    return s, e


def trace_table(cfg: Any, steps: list[StepRow], now_ns: int, lang: str, kiosk: bool) -> Any:
    if not steps:
        return html.P(t("lots:none", lang), className="gw-note", id="trace-rows")
    tz = cfg.plant.timezone
    products = products_by_id(cfg)
    cols = ("lots:lot", "lots:product", "lots:process", "lots:start", "lots:end", "lots:duration", "lots:good",
            "lots:reject", "lots:yield")
    head = html.Thead(html.Tr([html.Th(t(c, lang)) for c in cols]))
    body = html.Tbody([html.Tr([
        html.Td(lot_link(s.lot, lang, kiosk)), html.Td(product_name(cfg, s.product, lang, products)),
        html.Td(process_name(s.process, lang)), html.Td(local(s.start_ns, tz)),
        html.Td(local(s.end_ns, tz) if s.end_ns is not None else t("lots:open", lang)),
        html.Td(fmt_dur(s.duration_s(now_ns))), html.Td(fmt_n(s.good)), html.Td(fmt_n(s.reject)),
        html.Td(fmt_pct(s.yield_ratio)),
    ], className="gw-trace-row") for s in steps])
    return html.Div(html.Table([head, body], className="gw-table", id="trace-rows"), className="gw-table-wrap")


def layout(site=None, line=None, machine=None, start=None, end=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, site=site, line=line, machine=machine, start=start, end=end, **query)
    cfg = v.config
    crumbs = v.crumbs((t("lots:lots", v.lang), v.href("/lots")), (t("lots:trace", v.lang), None))
    title = t("lots:trace", v.lang)
    spec = cfg.machine(site, line, machine) if all(isinstance(x, str) for x in (site, line, machine)) else None
    if spec is None:
        return render(v, html.P(t("lots:pick_machine", v.lang), className="gw-note", id="trace-msg"), path="/trace",
                      crumbs=crumbs, title=title)
    layer = context.data()
    now = layer.clock()
    win = window(start, end, now, cfg.plant.timezone)
    if win is None:
        return render(v, html.P(t("lots:bad_window", v.lang), className="gw-note gw-bad", id="trace-msg"),
                      path="/trace", crumbs=crumbs, title=title)
    key = spec.key
    try:
        steps = load_trace(layer, *key, *win)
    except DataUnavailable:
        return render(v, html.Div(), path="/trace", crumbs=crumbs, title=title, ok=False)
    tz = cfg.plant.timezone
    head = html.H3([machine_link(cfg, key, v.lang, v.kiosk), " · ",
                    t("lots:trace_of", v.lang, start=local(win[0], tz), end=local(win[1], tz))],
                   id="trace-title")
    body = html.Section([
        head,
        html.P(t("lots:results", v.lang, n=len({s.lot for s in steps})), className="gw-note", id="trace-count"),
        trace_table(cfg, steps, now, v.lang, v.kiosk),
        html.Button(t("lots:csv", v.lang), id="trace-csv-btn", className="gw-button"),
        dcc.Download(id="trace-csv"),
        dcc.Store(id="trace-params", data={"site": key[0], "line": key[1], "machine": key[2],
                                           "start": win[0], "end": win[1]}),
    ], className="gw-panel")
    return render(v, body, path="/trace", crumbs=crumbs, title=f"{title} · {machine_name(cfg, key, v.lang)}")


def trace_csv(params: Any, lang: str) -> Optional[dict[str, Any]]:
    p = params if isinstance(params, dict) else {}
    cfg = context.config()
    spec = cfg.machine(p.get("site"), p.get("line"), p.get("machine"))
    s, e = p.get("start"), p.get("end")
    if spec is None or PlantIds.time_range(s, e, MAX_SPAN_NS):
        return None
    try:
        steps = load_trace(context.data(), *spec.key, s, e)
    except DataUnavailable:
        return None
    return {"content": csv_text(step_csv_rows(cfg, steps, lang)),
            "filename": f"trace_{spec.machine}_{local(s, cfg.plant.timezone, '%Y%m%d-%H%M')}.csv", "type": "text/csv"}


@callback(Output("trace-csv", "data"), Input("trace-csv-btn", "n_clicks"), State("trace-params", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def export(n: Any, params: Any, page_ctx: Any) -> Any:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    out = trace_csv(params, normalize_lang(pc.get("lang"), context.config().system.ui.default_language)) if n else None
    return out if out is not None else dash.no_update
