"""`/` — the plant overview: every site, line and machine as a state-coloured tile, each line
with its current-shift OEE · A · P · Q and bottleneck, each tile with its machine's OEE."""
import dash

from dashboards import context
from dashboards.components.callbacks import plant_oee
from dashboards.components.page import render, snapshot, view
from dashboards.components.tiles import add_oee
from dashboards.components.views import plant_body

dash.register_page(__name__, path="/", title="Gwanje", name="overview")


def layout(lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    snap, ok = snapshot(v)
    body = add_oee(v.config, plant_body(v.config, snap, v.lang, v.kiosk), plant_oee(v.config, context.data()), v.lang)
    return render(v, body, path="/", crumbs=v.crumbs(), ok=ok)
