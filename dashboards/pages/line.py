"""`/line/<site>/<line>` — the machines of one line with state, counts, sparklines and their
current-shift OEE; the line's OEE · A · P · Q and bottleneck on top, linking to its OEE page."""
import dash
from dash import dcc

from dashboards import context
from dashboards.components.callbacks import plant_oee
from dashboards.components.page import render, snapshot, view
from dashboards.components.tiles import add_oee
from dashboards.components.views import SPARK_POINTS, line_body, not_found, primary_signal
from dashboards.data import DataUnavailable
from dashboards.i18n import t

dash.register_page(__name__, path_template="/line/<site>/<line>", title="Gwanje", name="line")


def layout(site=None, line=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    sdef = v.config.site(site) if isinstance(site, str) else None
    ldef = v.config.line(site, line) if sdef is not None and isinstance(line, str) else None
    path = f"/line/{site}/{line}"
    if sdef is None or ldef is None:
        return render(v, not_found(f"{site}/{line}", v.lang, v.kiosk), path=path,
                      crumbs=v.crumbs((f"{site}/{line}", None)))
    snap, ok = snapshot(v)
    lv = snap.line(sdef.id, ldef.id)
    window = v.config.system.ui.trend_window_s
    sparks = {}
    for m in ldef.machines:
        spec = v.config.machine(sdef.id, ldef.id, m.id)
        sig = primary_signal(spec) if spec else None
        if sig is None:
            continue
        try:
            sparks[m.id] = context.data().signal_trend(sdef.id, ldef.id, m.id, sig, window, SPARK_POINTS)
        except DataUnavailable:
            ok = False
    crumbs = v.crumbs((sdef.name.get(v.lang), v.href(f"/site/{sdef.id}")), (ldef.name.get(v.lang), None))
    body = add_oee(v.config, line_body(v.config, sdef, ldef, lv, sparks, v.lang, v.kiosk, window),
                   plant_oee(v.config, context.data()), v.lang)
    link = dcc.Link(t("tiles:line_oee_page", v.lang), href=v.href("/oee", site=sdef.id, line=ldef.id),
                    id="line-oee-link", className="gw-oee-link")
    body.children.insert(0, link)
    return render(v, body, path=path,
                  crumbs=crumbs, title=ldef.name.get(v.lang), ok=ok)
