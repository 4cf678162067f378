"""`/machine/<site>/<line>/<machine>?window=15m|1h|8h|24h` — one machine: state, counts, LOT,
live trends of every numeric signal (default window: ui.trend_window_s), the machine's
current-shift OEE · A · P · Q, a link to assign its downtime reasons on the shift report and
one to its quality (/quality: SPC, anomaly score, reject risk)."""
import dash
from dash import dcc, html

from dashboards import context
from dashboards.components.callbacks import plant_oee
from dashboards.components.page import render, snapshot, view
from dashboards.components.tiles import add_oee, machine_oee
from dashboards.components.views import machine_body, not_found
from dashboards.data import WINDOWS_S, DataUnavailable, Trend, numeric_signals
from dashboards.i18n import t

dash.register_page(__name__, path_template="/machine/<site>/<line>/<machine>", title="Gwanje", name="machine")


def layout(site=None, line=None, machine=None, lang=None, kiosk=None, window=None, **query):
    v = view(lang, kiosk, window=window, **query)
    spec = v.config.machine(site, line, machine) if all(isinstance(x, str) for x in (site, line, machine)) else None
    path = f"/machine/{site}/{line}/{machine}"
    if spec is None:
        return render(v, not_found(f"{site}/{line}/{machine}", v.lang, v.kiosk), path=path,
                      crumbs=v.crumbs((f"{site}/{line}/{machine}", None)))
    snap, ok = snapshot(v)
    ui = v.config.system.ui
    window_s = WINDOWS_S.get(window, ui.trend_window_s) if isinstance(window, str) else ui.trend_window_s
    try:
        trends = context.data().machine_trends(spec.site, spec.line, spec.machine, window_s)
    except DataUnavailable:
        trends, ok = {s: Trend(s, [], []) for s in numeric_signals(spec)}, False
    sdef, ldef = v.config.site(spec.site), v.config.line(spec.site, spec.line)
    crumbs = v.crumbs((sdef.name.get(v.lang), v.href(f"/site/{spec.site}")),
                      (ldef.name.get(v.lang), v.href(f"/line/{spec.site}/{spec.line}")),
                      (spec.definition.name.get(v.lang), None))
    oee = plant_oee(v.config, context.data())
    body = add_oee(v.config, machine_body(v.config, spec, snap, trends, v.lang, v.kiosk, window_s, ui.trend_points),
                   oee, v.lang)
    body.children.insert(1, html.Div([
        machine_oee(spec.site, spec.line, spec.machine, oee, v.lang),
        dcc.Link(t("tiles:assign_reasons", v.lang), id="assign-reasons-link", className="gw-oee-link",
                 href=v.href("/shift-report", site=spec.site, line=spec.line, machine=spec.machine)),
        dcc.Link(t("quality:quality", v.lang), id="quality-link", className="gw-oee-link",
                 href=v.href("/quality", site=spec.site, line=spec.line, machine=spec.machine)),
    ], className="gw-machine-oee-bar"))
    return render(v, body, path=path, crumbs=crumbs, title=f"{ldef.name.get(v.lang)} · {spec.definition.name.get(v.lang)}", ok=ok)
