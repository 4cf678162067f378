"""`/oee?site=..&line=..&machine=..&shift=..` — OEE of a site, line or machine for one shift
(or the last 8 h / 24 h): A/P/Q, the line's output machine and bottleneck, every machine's
figures, the six big losses, the downtime reason Pareto and a state timeline. The running
shift refreshes itself every 30 s."""
from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import context
from dashboards.components.oee import (ROLLING, ScopeData, engine_for, graph, kpi_tiles, lines_table,
                                       loss_figure, machine_name, machine_table, neighbour_shift, pareto_data,
                                       pareto_figure, scope_from_params, shift_title, timeline_figure, tr)
from dashboards.components.page import View, render, view
from dashboards.components.views import not_found
from dashboards.i18n import normalize_lang
from gwanje.reasons import ReasonTree

dash.register_page(__name__, path="/oee", title="Gwanje", name="oee", nav={"key": "oee:oee", "order": 30})

LIVE_REFRESH_MS = 30_000


def scope_links(v: View, scope: ScopeData, path: str) -> html.Div:
    """Site / line choice and previous / next shift, as links (URLs reproduce the view)."""
    cfg = v.config
    eng = engine_for(cfg)
    sh = scope.shift
    sites = [dcc.Link(s.name.get(v.lang), href=v.href(path, site=s.id, shift=sh.key),
                      className="gw-chip" + (" gw-chip-on" if s.id == scope.site.id else "")) for s in cfg.plant.sites]
    lines = [dcc.Link(tr("whole_site", v.lang), href=v.href(path, site=scope.site.id, shift=sh.key),
                      className="gw-chip" + ("" if scope.line else " gw-chip-on"))]
    lines += [dcc.Link(ln.name.get(v.lang), href=v.href(path, site=scope.site.id, line=ln.id, shift=sh.key),
                       className="gw-chip" + (" gw-chip-on" if scope.line and ln.id == scope.line.id else ""))
              for ln in scope.site.lines]
    line_id = scope.line.id if scope.line else None
    machines = []
    if scope.line is not None:
        machines = [dcc.Link(tr("whole_line", v.lang), href=v.href(path, site=scope.site.id, line=line_id, shift=sh.key),
                             className="gw-chip" + ("" if scope.focus else " gw-chip-on"))]
        machines += [dcc.Link(m.name.get(v.lang), href=v.href(path, site=scope.site.id, line=line_id, machine=m.id,
                                                              shift=sh.key),
                              className="gw-chip" + (" gw-chip-on" if scope.focus == m.id else ""))
                     for m in scope.line.machines]
    nav = []
    for step, label in ((-1, "prev_shift"), (1, "next_shift")):
        other = neighbour_shift(eng, sh, step) if sh.shift_id not in ROLLING else None
        if other is not None and other.start_ns <= scope.now_ns:
            nav.append(dcc.Link(tr(label, v.lang), href=v.href(path, site=scope.site.id, line=line_id, shift=other.key),
                                className="gw-chip", id=f"oee-{label}"))
    nav.append(dcc.Link(tr("current_shift", v.lang), href=v.href(path, site=scope.site.id, line=line_id),
                        className="gw-chip"))
    nav += [dcc.Link(name.get(v.lang), href=v.href(path, site=scope.site.id, line=line_id, shift=key),
                     className="gw-chip" + (" gw-chip-on" if sh.shift_id == key else ""), id=f"oee-{key}")
            for key, (_, name) in ROLLING.items()]
    return html.Div([html.Div(sites, className="gw-chips"), html.Div(lines, className="gw-chips"),
                     html.Div(machines, className="gw-chips") if machines else None,
                     html.Div(nav, className="gw-chips")], className="gw-oee-scope")


def line_extra(cfg: Any, scope: ScopeData, lang: str) -> list[Any]:
    """For a line: which machine is its output and which one holds it back."""
    if scope.line is None or scope.focus:
        return []
    lo = scope.lines.get((scope.site.id, scope.line.id))
    if lo is None:
        return []
    out = machine_name(cfg, (scope.site.id, scope.line.id, lo.output), lang)
    neck = machine_name(cfg, (scope.site.id, scope.line.id, lo.bottleneck), lang) if lo.bottleneck else "—"
    return [html.Div([html.Span(f"{tr('output_machine', lang)}: {out}", className="gw-oee-output"),
                      html.Span(f"{tr('bottleneck', lang)}: {neck}", className="gw-oee-bottleneck")],
                     className="gw-oee-line-info")]


def oee_body(v: View, scope: ScopeData) -> html.Div:
    """The page content for one scope and shift (pure: data in, layout out)."""
    cfg, lang = v.config, v.lang
    tree = ReasonTree(engine_for(cfg).calendar.spec.reasons)
    line_id = scope.line.id if scope.line else None

    def link(row: dict[str, Any]) -> str:
        return v.href("/oee", site=row["site"], line=row["line"], machine=row["machine"], shift=scope.shift.key)

    return html.Div([
        scope_links(v, scope, "/oee"),
        html.H2(shift_title(scope.shift, cfg.plant.timezone, lang, scope.live), id="oee-shift-title"),
        html.Div(tr(f"source_{scope.source}", lang), className="gw-note", id="oee-source"),
        kpi_tiles(scope.scope_result, lang, line_extra(cfg, scope, lang)),
        dcc.Link(tr("shift_report", lang), href=v.href("/shift-report", site=scope.site.id, line=line_id,
                                                       shift=scope.shift.key), className="gw-chip"),
        lines_table(cfg, scope, lang, lambda ln: v.href("/oee", site=scope.site.id, line=ln, shift=scope.shift.key)),
        html.Section([html.H3(tr("machine", lang)), machine_table(cfg, scope, lang, link)], className="gw-panel"),
        html.Div([
            html.Section([html.H3(tr("losses", lang)), graph(loss_figure(scope.scope_result, lang), "oee-losses")],
                         className="gw-panel"),
            html.Section([html.H3(tr("pareto", lang)), graph(pareto_figure(pareto_data(cfg, scope), tree, lang),
                                                            "oee-pareto")], className="gw-panel"),
        ], className="gw-oee-grid"),
        html.Section([html.H3(tr("timeline", lang)), graph(timeline_figure(cfg, scope, lang), "oee-timeline")],
                     className="gw-panel"),
    ], className="gw-oee")


def _scope(v: View, site: Any, line: Any, machine: Any, shift: Any) -> tuple[Any, bool]:
    return scope_from_params(v.config, context.data(), site, line, shift, machine)


def layout(site=None, line=None, machine=None, shift=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    scope, ok = _scope(v, site, line, machine, shift)
    crumbs = v.crumbs((tr("oee", v.lang), None))
    if scope is None:
        body = not_found(f"{site or ''}/{line or ''} {shift or ''}".strip(), v.lang, v.kiosk) if ok else html.Div()
        return render(v, body, path="/oee", crumbs=crumbs, title=tr("oee", v.lang), ok=ok)
    params = {"site": scope.site.id, "line": scope.line.id if scope.line else None, "machine": scope.focus,
              "shift": scope.shift.key}
    body = [html.Div(oee_body(v, scope), id="oee-body"),
            dcc.Store(id="oee-params", data=params),
            dcc.Interval(id="oee-tick", interval=LIVE_REFRESH_MS, disabled=not scope.live)]
    return render(v, body, path="/oee", crumbs=crumbs, title=tr("oee", v.lang), ok=ok)


@callback(Output("oee-body", "children"), Input("oee-tick", "n_intervals"), State("oee-params", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def refresh(n: Any, params: Any, page_ctx: Any) -> Any:
    """The running shift, recomputed from the newest records (cache-shared across displays)."""
    p = params if isinstance(params, dict) else {}
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    cfg = context.config()
    v = View(cfg, normalize_lang(pc.get("lang"), cfg.system.ui.default_language), bool(pc.get("kiosk")), {})
    scope, ok = _scope(v, p.get("site"), p.get("line"), p.get("machine"), p.get("shift"))
    if scope is None:
        return dash.no_update
    return oee_body(v, scope)
