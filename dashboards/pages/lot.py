"""`/lot/<LOT>` — one LOT: its route as a timeline across processes and machines (with the
steps of its ancestors, so a split or merged LOT shows where its material came from), a
table of steps (duration vs plan, good, reject, yield), per step the machine's process
signals and alarms during it, parents / children / every descendant (CSV), and its holds
with a release form for a supervisor or above (gwanje/roles.py `lot.release`, audited).

A LOT number in the URL has an id's shape (letters, digits, `_ . -`, ≤ 64): anything else
is refused with 400 before the page runs (dashboards/security.py); an unknown one says so."""
from __future__ import annotations

from typing import Any, Optional

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import audit_log, context
from dashboards.auth import NotAllowed, authorize, current_user
from dashboards.components.lots import (alarm_list, descendants_table, genealogy, hold_items, hold_mark, hold_panel,
                                        local, lot_csv_rows, machine_link, machine_name, process_name,
                                        product_name, step_signals_figure, steps_table, timeline_figure)
from dashboards.components.oee import csv_text
from dashboards.components.page import View, render, view
from dashboards.components.views import GRAPH_CONFIG
from dashboards.data import LOT_SIGNAL_IDS, DataLayer, DataUnavailable, trend_from_frame
from dashboards.i18n import normalize_lang, t
from dashboards.lots_data import (HoldRow, LotDetail, StepRow, load_alarms, load_descendants, load_lot,
                                  load_row, load_series, lot_id_problem)
from gwanje.model import Event
from gwanje.roles import role_allows

dash.register_page(__name__, path_template="/lot/<lot>", title="Gwanje", name="lot")

DEMO_USER = "demo"  # who releases a hold in demo mode (no login)
STEP_POINTS = 150  # per signal and step
MAX_POINTS = 3000


def step_signals(cfg: Any, key: tuple[str, str, str]) -> list[str]:
    """The process signals a step's trends show: the machine's analog signals (not the LOT's own)."""
    spec = cfg.machine(*key)
    if spec is None:
        return []
    return [s.id for s in spec.signals if s.kind == "analog" and s.id not in LOT_SIGNAL_IDS]


def step_trends(layer: DataLayer, steps: list[StepRow], now_ns: int) -> dict[int, list[tuple[str, list, list]]]:
    """Per step (its position in steps): (signal id, x, y) of each process signal during
    it. Steps of one machine close together share one downsampled query per signal, cut per step."""
    cfg = layer.config
    out: dict[int, list[tuple[str, list, list]]] = {i: [] for i in range(len(steps))}
    by_machine: dict[tuple[str, str, str], list[int]] = {}
    for i, s in enumerate(steps):
        by_machine.setdefault(s.key, []).append(i)
    for key, idx in by_machine.items():
        spec = cfg.machine(*key)
        sigs = step_signals(cfg, key)
        if spec is None or not sigs:
            continue
        spans = [(steps[i].start_ns, steps[i].end_ns if steps[i].end_ns is not None else now_ns) for i in idx]
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans) + 1
        busy = sum(b - a for a, b in spans)
        groups = [(lo, hi, idx)] if hi - lo <= 3 * max(busy, 1) else [(a, b + 1, [i]) for (a, b), i in zip(spans, idx)]
        for a, b, members in groups:
            points = min(MAX_POINTS, STEP_POINTS * len(members) * max(1, (b - a) // max(busy, 1)))
            for sig in sigs:
                frame = load_series(layer, key, sig, a, b, int(points))
                for i in members:
                    s0, s1 = steps[i].start_ns, steps[i].end_ns if steps[i].end_ns is not None else now_ns
                    part = frame.filter((frame["ts"] >= s0) & (frame["ts"] < s1)) if frame.height else frame
                    tr = trend_from_frame(sig, part, cfg.plant.timezone)
                    out[i].append((sig, tr.x, tr.y))
    return out


def step_alarms(layer: DataLayer, steps: list[StepRow], now_ns: int) -> dict[int, list[Event]]:
    """Per step: the alarm records of its machine raised or changed during it (one query per machine)."""
    out: dict[int, list[Event]] = {i: [] for i in range(len(steps))}
    by_machine: dict[tuple[str, str, str], list[int]] = {}
    for i, s in enumerate(steps):
        by_machine.setdefault(s.key, []).append(i)
    for key, idx in by_machine.items():
        lo = min(steps[i].start_ns for i in idx)
        hi = max(steps[i].end_ns if steps[i].end_ns is not None else now_ns for i in idx) + 1
        evs = load_alarms(layer, key, lo, hi)
        for i in idx:
            s0, s1 = steps[i].start_ns, steps[i].end_ns if steps[i].end_ns is not None else now_ns + 1
            out[i] = [e for e in evs if s0 <= e.ts < s1]
    return out


def may_release() -> bool:
    if context.config().system.demo:
        return True
    u = current_user() or {}
    return role_allows(u.get("role"), "lot.release")


def step_sections(v: View, layer: DataLayer, d: LotDetail) -> list[Any]:
    steps = list(d.steps)
    trends = step_trends(layer, steps, d.now_ns)
    alarms = step_alarms(layer, steps, d.now_ns)
    tz = v.config.plant.timezone
    out = []
    for i, s in enumerate(steps):
        label = [html.Strong(f"{i + 1}. {process_name(s.process, v.lang)}"), " · ",
                 machine_name(v.config, s.key, v.lang), " · ", local(s.start_ns, tz), " – ",
                 local(s.end_ns, tz) if s.end_ns is not None else t("lots:open", v.lang),
                 f" · {len(alarms[i])} ⚠" if alarms[i] else ""]
        spec = v.config.machine(*s.key)
        series = []
        for sig, x, y in trends[i]:
            sdef = spec.signal(sig) if spec else None
            if any(val is not None for val in y):  # a signal without data in the step: no empty chart
                series.append((sdef.name.get(v.lang) if sdef else sig, (sdef.unit or "") if sdef else "", x, y))
        fig = step_signals_figure(series, v.lang, v.kiosk) if series else None
        out.append(html.Details([
            html.Summary(label, className="gw-step-summary"),
            html.Div([
                html.Div([html.H4(t("lots:signals", v.lang)),
                          dcc.Graph(figure=fig, config=GRAPH_CONFIG, className="gw-step-graph",
                                    id=f"lot-step-graph-{i}", style={"height": f"{fig['layout']['height']}px"})
                          if fig else html.P(t("no_samples", v.lang), className="gw-note")],
                         className="gw-step-signals"),
                html.Div([html.H4(t("lots:alarms", v.lang)), alarm_list(v.config, alarms[i], v.lang)],
                         className="gw-step-alarm-box"),
            ], className="gw-step-detail"),
        ], className="gw-step", id=f"lot-step-{i}", open=bool(alarms[i]) or len(steps) == 1))
    return out


def _timeline(cfg: Any, d: LotDetail, lang: str, kiosk: bool) -> Any:
    fig = timeline_figure(cfg, d, lang, kiosk)
    return dcc.Graph(id="lot-timeline", figure=fig, config=GRAPH_CONFIG, style={"height": f"{fig['layout']['height']}px"})


def lot_body(v: View, layer: DataLayer, d: LotDetail) -> html.Div:
    cfg, lang = v.config, v.lang
    r = d.lot
    desc = load_descendants(layer, r, d.now_ns)
    summary = html.Div([
        html.Span([html.Span(t("lots:product", lang), className="gw-k"), " ", product_name(cfg, r.product, lang)]),
        html.Span([html.Span(t("lots:status", lang), className="gw-k"), " ", t(f"lots:status.{r.status}", lang)],
                  id="lot-status"),
        html.Span([html.Span(t("lots:process", lang), className="gw-k"), " ", process_name(r.process, lang)]),
        html.Span([html.Span(t("lots:machine", lang), className="gw-k"), " ",
                   machine_link(cfg, r.machine, lang, v.kiosk)]),
        html.Span([html.Span(t("lots:planned_qty", lang), className="gw-k"), " ",
                   f"{r.planned_qty:,}" if r.planned_qty else "–"]),
        html.Span([html.Span(t("lots:route", lang), className="gw-k"), " ",
                   " → ".join(process_name(p, lang) for p in r.route) or "–"], id="lot-route"),
        html.Span([html.Span(t("lots:first", lang), className="gw-k"), " ", local(r.first_ns, cfg.plant.timezone)]),
        *([hold_mark(lang)] if d.held else []),
    ], className="gw-lot-summary", id="lot-summary")
    return html.Div([
        summary,
        html.Section([html.H3(t("lots:hold_status", lang)),
                      hold_panel(cfg, d.holds, lang, may_release() and not v.kiosk)],
                     className="gw-panel" + (" gw-panel-hold" if d.held else "")),
        html.Section([html.H3(t("lots:timeline", lang)),
                      _timeline(cfg, d, lang, v.kiosk)],
                     className="gw-panel"),
        html.Section([html.H3(t("lots:steps", lang)),
                      html.Div(steps_table(cfg, d.route_steps(), d.now_ns, lang, v.kiosk), className="gw-table-wrap"),
                      *step_sections(v, layer, d)], className="gw-panel"),
        html.Section([html.H3(t("lots:genealogy", lang)), genealogy(d, lang, v.kiosk),
                      html.H4(t("lots:descendants", lang)), descendants_table(desc, lang, v.kiosk),
                      html.Button(t("lots:csv", lang), id="lot-desc-csv-btn", className="gw-button"),
                      dcc.Download(id="lot-desc-csv")], className="gw-panel"),
    ], className="gw-lot")


def layout(lot=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    crumbs = v.crumbs((t("lots:lots", v.lang), v.href("/lots")), (str(lot) if isinstance(lot, str) else "?", None))
    path = f"/lot/{lot}"
    if lot_id_problem(lot):  # the server refused it already; a layout called directly says not found
        return render(v, html.P(t("lots:not_found", v.lang, lot="?"), className="gw-not-found"), path="/lots",
                      crumbs=crumbs)
    layer = context.data()
    try:
        d = load_lot(layer, lot)
    except DataUnavailable:
        return render(v, html.Div(), path=path, crumbs=crumbs, title=f"LOT {lot}", ok=False)
    if d is None:
        body = html.Div([html.P(t("lots:not_found", v.lang, lot=lot), className="gw-not-found", id="lot-not-found"),
                         dcc.Link(t("lots:lots", v.lang), href=v.href("/lots"), className="gw-nav-link")])
        return render(v, body, path=path, crumbs=crumbs, title=f"LOT {lot}")
    try:
        content = lot_body(v, layer, d)
        ok = True
    except DataUnavailable:
        content, ok = html.Div(), False
    body = [content, dcc.Store(id="lot-ctx", data={"lot": lot})]
    return render(v, body, path=path, crumbs=crumbs, title=f"LOT {lot}", ok=ok)


# ----------------------------------------------------------------------------- release
def release(lot: str, comment: str, user: str, role: str, now_ns: int) -> tuple[str, int]:
    """Rewrite every held lot_hold record of the LOT as released (same identity), audit it.
    Returns (i18n key, how many)."""
    layer = context.data()
    store = layer.store
    try:
        d = load_lot(layer, lot)
        if d is None:
            return "lots:nothing_held", 0
        # fresh from the store, not the cache: what is held now
        holds = [HoldRow.of(e) for e in store.events("lot_hold", d.lot.first_ns, now_ns + 1, key=lot, limit=1000)]
    except Exception:
        return "lots:release_failed", 0
    held = [h for h in holds if h.held]
    if not held:
        return "lots:nothing_held", 0
    new = [Event(h.event.kind, h.event.ts, h.event.site, h.event.line, h.event.machine, h.event.key,
                 {**h.event.data, "status": "released", "released_by": user, "released_role": role,
                  "released_ns": now_ns, "comment": comment}) for h in held]
    first = held[0].event
    before = [{"ts": h.event.ts, "reason": h.reason, "status": h.status} for h in held]
    try:
        store.write_events(new)
    except Exception as e:
        audit_log.record("lot.release", lot, user=user, role=role, before=before, ok=False,
                         detail=f"store_error:{type(e).__name__}", site=first.site, line=first.line,
                         machine=first.machine)
        return "lots:release_failed", 0
    layer.cache.clear()
    audit_log.record("lot.release", lot, user=user, role=role, before=before,
                     after=[{"ts": h.event.ts, "reason": h.reason, "status": "released", "comment": comment}
                            for h in held], site=first.site, line=first.line, machine=first.machine)
    return "lots:released", len(new)


def _lang(page_ctx: Any) -> str:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    return normalize_lang(pc.get("lang"), context.config().system.ui.default_language)


def _lot_of(ctx: Any) -> Optional[str]:
    lot = ctx.get("lot") if isinstance(ctx, dict) else None
    return None if lot_id_problem(lot) else lot


@callback(Output("lot-release-out", "children"), Output("lot-hold-list", "children"),
          Input("lot-release-btn", "n_clicks"), State("lot-release-comment", "value"), State("lot-ctx", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def on_release(n: Any, comment: Any, lot_ctx: Any, page_ctx: Any) -> Any:
    import time

    lang = _lang(page_ctx)
    lot = _lot_of(lot_ctx)
    if not n or lot is None:
        return dash.no_update, dash.no_update
    try:
        user = authorize("lot.release") or DEMO_USER
    except NotAllowed:
        audit_log.record("lot.release", lot, ok=False, detail="not_allowed")
        return t("not_allowed", lang), dash.no_update
    text = comment.strip() if isinstance(comment, str) else ""
    if not text:
        return t("lots:release_need_reason", lang), dash.no_update
    role = str((current_user() or {}).get("role") or ("demo" if context.config().system.demo else ""))
    key, count = release(lot, text[:500], user, role, time.time_ns())
    msg = t(key, lang, n=count) if key == "lots:released" else t(key, lang)
    try:
        d = load_lot(context.data(), lot)
    except DataUnavailable:
        return msg, dash.no_update
    return msg, hold_items(context.config(), d.holds if d else (), lang)


@callback(Output("lot-desc-csv", "data"), Input("lot-desc-csv-btn", "n_clicks"), State("lot-ctx", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def export_descendants(n: Any, lot_ctx: Any, page_ctx: Any) -> Any:
    lot = _lot_of(lot_ctx)
    if not n or lot is None:
        return dash.no_update
    out = descendants_csv(lot, _lang(page_ctx))
    return out if out is not None else dash.no_update


def descendants_csv(lot: str, lang: str) -> Optional[dict[str, Any]]:
    layer = context.data()
    try:
        d = load_lot(layer, lot)
        if d is None:
            return None
        desc = load_descendants(layer, d.lot, d.now_ns)
        rows = {c: load_row(layer, c) for c, _, _ in desc}
    except DataUnavailable:
        return None
    return {"content": csv_text(lot_csv_rows(layer.config, desc, rows.get, lang)),
            "filename": f"lot_{lot}_descendants.csv", "type": "text/csv"}
