"""`/` — the plant overview: every site, line and machine as a state-coloured tile."""
import dash

from dashboards.components.page import render, snapshot, view
from dashboards.components.views import plant_body

dash.register_page(__name__, path="/", title="Gwanje", name="overview")


def layout(lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    snap, ok = snapshot(v)
    return render(v, plant_body(v.config, snap, v.lang, v.kiosk), path="/", crumbs=v.crumbs(), ok=ok)
