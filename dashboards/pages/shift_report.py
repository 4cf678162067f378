"""`/shift-report?site=..&line=..&machine=..&shift=..` — the shift report for a supervisor's
tablet: big A/P/Q/OEE, each line (output machine, bottleneck), each machine, the losses as a table,
the stops of the shift with a reason picker (saved as downtime_reason events, feeding the
Pareto), and a CSV export of the machine figures."""
from __future__ import annotations

import logging
from typing import Any, Optional

import dash
from dash import MATCH, Input, Output, State, callback, ctx, dcc, html

from dashboards import audit_log, context
from dashboards.auth import NotAllowed, authorize
from dashboards.components.oee import (ScopeData, csv_text, engine_for, fmt_pct, kpi_tiles, lines_table,
                                       local_time, machine_name, machine_rows, machine_table, scope_from_params,
                                       shift_title, tr)
from dashboards.components.page import View, render, view
from dashboards.i18n import t
from dashboards.components.views import not_found
from gwanje.losses import LOSS_LABELS, STOP_STATES, six_big_losses
from gwanje.model import now_ns
from gwanje.reasons import ReasonTree

dash.register_page(__name__, path="/shift-report", title="Gwanje", name="shift_report",
                   nav={"key": "oee:shift_report", "order": 31})

log = logging.getLogger("gwanje.ui.shift_report")
REASON_TYPE = "gw-reason"
STOP_STATE_NAMES = {st.value for st in STOP_STATES}
SAVED_TYPE = "gw-reason-saved"
DEMO_USER = "demo"  # who records a reason or a recompute in demo mode (no login)


def reason_id(site: str, line: str, machine: str, start_ns: int, typ: str = REASON_TYPE) -> dict[str, str]:
    return {"type": typ, "site": site, "line": line, "machine": machine, "start": str(start_ns)}


def losses_table(scope: ScopeData, lang: str) -> html.Table:
    rows = [html.Tr([html.Td(LOSS_LABELS[x.name][lang]), html.Td(f"{x.minutes:.1f}"), html.Td(fmt_pct(x.share))])
            for x in (six_big_losses(scope.scope_result) if scope.scope_result else [])]
    return html.Table([html.Thead(html.Tr([html.Th(tr("losses", lang)), html.Th(tr("duration_min", lang)),
                                           html.Th(tr("share_planned", lang))])), html.Tbody(rows)],
                      className="gw-table gw-loss-table")


def stops_table(cfg: Any, scope: ScopeData, tree: ReasonTree, lang: str) -> html.Table:
    """Every stop at least small_stop_s long, newest first, each with its reason picker."""
    current: dict[tuple[str, int], str] = {}
    for e in sorted(scope.reasons, key=lambda e: e.data.get("assigned_ns", e.ts)):
        try:
            current[(e.machine, int(e.key))] = str(e.data.get("reason", ""))
        except ValueError:
            continue
    options = tree.options(lang)
    rows = []
    for s in sorted(scope.stops, key=lambda s: -s.start_ns):
        key = next((k for k in scope.machines if k[2] == s.machine), (scope.site.id, "", s.machine))
        rows.append(html.Tr([
            html.Td(machine_name(cfg, key, lang)),
            html.Td(local_time(s.start_ns, cfg.plant.timezone, "%H:%M:%S")),
            html.Td(f"{s.minutes:.1f}"),
            html.Td(t("state." + s.state.value, lang), className=f"gw-state-{s.state.value}"),
            html.Td([dcc.Dropdown(id=reason_id(key[0], key[1], s.machine, s.start_ns), options=options,
                                  value=current.get((s.machine, s.start_ns)), clearable=False,
                                  placeholder=tr("unassigned", lang), className="gw-reason-pick"),
                     html.Span(id=reason_id(key[0], key[1], s.machine, s.start_ns, SAVED_TYPE),
                               className="gw-reason-saved")]),
        ]))
    head = [tr("machine", lang), tr("start", lang), tr("duration_min", lang), tr("state", lang), tr("reason", lang)]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      className="gw-table gw-stops-table")


def report_body(v: View, scope: ScopeData) -> html.Div:
    cfg, lang = v.config, v.lang
    tree = ReasonTree(engine_for(cfg).calendar.spec.reasons)
    scope_name = scope.line.name.get(lang) if scope.line else scope.site.name.get(lang)

    def link(row: dict[str, Any]) -> str:
        return v.href("/shift-report", site=row["site"], line=row["line"], machine=row["machine"], shift=scope.shift.key)

    return html.Div([
        html.H2([scope_name, " · ", shift_title(scope.shift, cfg.plant.timezone, lang, scope.live)],
                id="shift-report-title"),
        html.Button(tr("export_csv", lang), id="shift-csv-btn", className="gw-button"),
        dcc.Download(id="shift-csv"),
        None if scope.live else html.Button(tr("recompute", lang), id="shift-recompute-btn", className="gw-button"),
        html.Span(id="shift-recompute-out", className="gw-note"),
        kpi_tiles(scope.scope_result, lang),
        lines_table(cfg, scope, lang, lambda ln: v.href("/shift-report", site=scope.site.id, line=ln,
                                                        shift=scope.shift.key)),
        html.Section([html.H3(tr("machine", lang)), machine_table(cfg, scope, lang, link)], className="gw-panel"),
        html.Section([html.H3(tr("losses", lang)), losses_table(scope, lang)], className="gw-panel"),
        html.Section([html.H3(tr("stops", lang)), stops_table(cfg, scope, tree, lang)], className="gw-panel"),
    ], className="gw-shift-report")


def layout(site=None, line=None, machine=None, shift=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    # machine: one machine, for a supervisor standing at it
    scope, ok = scope_from_params(v.config, context.data(), site, line, shift, machine)
    crumbs = v.crumbs((tr("oee", v.lang), v.href("/oee", site=site, line=line, shift=shift)),
                      (tr("shift_report", v.lang), None))
    if scope is None:
        body = not_found(f"{site or ''}/{line or ''} {shift or ''}".strip(), v.lang, v.kiosk) if ok else html.Div()
        return render(v, body, path="/shift-report", crumbs=crumbs, title=tr("shift_report", v.lang), ok=ok)
    params = {"site": scope.site.id, "line": scope.line.id if scope.line else None, "machine": scope.focus,
              "shift": scope.shift.key}
    return render(v, [report_body(v, scope), dcc.Store(id="shift-params", data=params)], path="/shift-report",
                  crumbs=crumbs, title=tr("shift_report", v.lang))


def export_csv(params: Any, lang: str) -> Optional[dict[str, Any]]:
    """The dcc.Download payload: one row per machine of the scope, every figure and loss."""
    p = params if isinstance(params, dict) else {}
    cfg = context.config()
    v = View(cfg, lang, False, {})
    scope, ok = scope_from_params(v.config, context.data(), p.get("site"), p.get("line"), p.get("shift"),
                                  p.get("machine"))
    if scope is None:
        return None
    name = "_".join(x for x in (scope.site.id, scope.line.id if scope.line else "", scope.focus or "",
                                scope.shift.key.replace("/", "_")) if x)
    return {"content": csv_text(machine_rows(cfg, scope, lang)), "filename": f"shift-report_{name}.csv",
            "type": "text/csv"}


@callback(Output("shift-csv", "data"), Input("shift-csv-btn", "n_clicks"), State("shift-params", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def on_export(n: Any, params: Any, page_ctx: Any) -> Any:
    lang = (page_ctx or {}).get("lang", "ko") if isinstance(page_ctx, dict) else "ko"
    out = export_csv(params, lang if lang in ("ko", "en") else "ko")
    return out if out is not None else dash.no_update


def recompute(params: Any, user: Optional[str]) -> tuple[str, int]:
    """Recompute a closed shift of the scope from raw samples and store the oee_shift records
    (replacing what the live path wrote). Returns (i18n key, number of records written)."""
    p = params if isinstance(params, dict) else {}
    cfg, layer = context.config(), context.data()
    scope, ok = scope_from_params(cfg, layer, p.get("site"), p.get("line"), p.get("shift"), p.get("machine"))
    if user is None or scope is None or scope.live or scope.shift.shift_id not in {s.id for s in
                                                                                  engine_for(cfg).calendar.spec.shifts}:
        return "save_failed", 0
    site, line = scope.site.id, scope.line.id if scope.line else None
    target = "/".join(x for x in (site, line or "", scope.focus or "") if x) + f" {scope.shift.key}"
    try:
        before = shift_summary(layer.store.events("oee_shift", scope.shift.start_ns, scope.shift.start_ns + 1, site,
                                                  line, key=scope.shift.key), site, line, scope.focus)
        events = engine_for(cfg).recompute(layer.store, site, line, scope.focus, scope.shift.start_ns,
                                           scope.shift.end_ns)
        layer.store.write_events(events)
    except Exception:  # store down: say so on the tablet
        log.exception("recompute of %s failed", scope.shift.key)
        audit_log.record("shift.recompute", target, user=user, ok=False, detail="store_error", site=site,
                         line=line or "")
        return "save_failed", 0
    layer.cache.clear()
    audit_log.record("shift.recompute", target, user=user, before=before,
                     after=shift_summary(events, site, line, scope.focus), site=site, line=line or "",
                     machine=scope.focus or "")
    return "recomputed", len(events)


def shift_summary(events: list, site: str, line: Optional[str], machine: Optional[str]) -> Optional[dict[str, Any]]:
    """What the audit keeps of a shift's OEE records: how many, and the figures of the scope's own record."""
    recs = [e for e in events if e.kind == "oee_shift"]
    if not recs:
        return None
    own = next((e for e in recs if e.site == site and e.line == (line or "") and e.machine == (machine or "")), None)
    d = own.data if own is not None else {}
    return {"records": len(recs), **{k: d.get(k) for k in ("oee", "availability", "performance", "quality",
                                                            "total", "good") if k in d}}


@callback(Output("shift-recompute-out", "children"), Input("shift-recompute-btn", "n_clicks"),
          State("shift-params", "data"), State("page-ctx", "data"), prevent_initial_call=True)
def on_recompute(n: Any, params: Any, page_ctx: Any) -> str:
    lang = (page_ctx or {}).get("lang", "ko") if isinstance(page_ctx, dict) else "ko"
    try:
        user = authorize("shift.recompute") or DEMO_USER
    except NotAllowed:
        audit_log.record("shift.recompute", _params_target(params), ok=False, detail="not_allowed")
        return t("not_allowed", lang)
    key, count = recompute(params, user)
    return f"{tr(key, lang)} ({count})" if count else tr(key, lang)


def save_reason(ident: Any, reason: Any, user: Optional[str], now: int) -> str:
    """Store the supervisor's reason for a stop; returns the i18n key of what to show."""
    cfg = context.config()
    if not isinstance(ident, dict) or not isinstance(reason, str):
        return "save_failed"
    site, line, machine = ident.get("site"), ident.get("line"), ident.get("machine")
    if cfg.machine(site, line, machine) is None:  # type: ignore[arg-type]
        return "save_failed"
    try:
        start = int(ident.get("start", ""))
        tree = ReasonTree(engine_for(cfg).calendar.spec.reasons)
        event = tree.assign(site, line, machine, start, reason, user or "", now_ns=now)  # type: ignore[arg-type]
        store = context.data().store
        # only a stop the engine recorded can get a reason: a forged id stores nothing
        rec = store.events("state", start, start + 1, site, line, machine)
        if not any(e.data.get("state") in STOP_STATE_NAMES for e in rec):
            return "save_failed"
        old = store.events("downtime_reason", start, start + 1, site, line, machine, key=str(start))
        before = old[-1].data.get("reason") if old else None
        store.write_events([event])
    except Exception:  # bad input or store down: the tablet says "not saved", nothing crashes
        return "save_failed"
    context.data().cache.clear()  # the Pareto must show the new reason at once
    audit_log.record("shift.downtime_reason", f"{site}/{line}/{machine} stop {start}", user=user or "",
                     before=before, after=reason,
                     site=site, line=line, machine=machine)  # type: ignore[arg-type]
    return "saved"


def _params_target(params: Any) -> str:
    p = params if isinstance(params, dict) else {}
    return "/".join(str(p.get(k)) for k in ("site", "line", "machine") if p.get(k)) + f" {p.get('shift') or ''}"


@callback(Output({"type": SAVED_TYPE, "site": MATCH, "line": MATCH, "machine": MATCH, "start": MATCH}, "children"),
          Input({"type": REASON_TYPE, "site": MATCH, "line": MATCH, "machine": MATCH, "start": MATCH}, "value"),
          State("page-ctx", "data"), prevent_initial_call=True)
def on_reason(value: Any, page_ctx: Any) -> str:
    lang = (page_ctx or {}).get("lang", "ko") if isinstance(page_ctx, dict) else "ko"
    try:
        user = authorize("shift.downtime_reason") or DEMO_USER
    except NotAllowed:
        ident = ctx.triggered_id if isinstance(ctx.triggered_id, dict) else {}
        audit_log.record("shift.downtime_reason", "/".join(str(ident.get(k, "")) for k in ("site", "line", "machine")),
                         ok=False, detail="not_allowed")
        return t("not_allowed", lang)
    return tr(save_reason(ctx.triggered_id, value, user, now_ns()), lang)


