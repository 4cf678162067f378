"""`/site/<site>` — one site's lines and machines, with the current shift's OEE as on `/`."""
import dash

from dashboards import context
from dashboards.components.callbacks import plant_oee
from dashboards.components.page import render, snapshot, view
from dashboards.components.tiles import add_oee
from dashboards.components.views import not_found, site_body

dash.register_page(__name__, path_template="/site/<site>", title="Gwanje", name="site")


def layout(site=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    sdef = v.config.site(site) if isinstance(site, str) else None
    path = f"/site/{site}"
    if sdef is None:
        return render(v, not_found(str(site), v.lang, v.kiosk), path=path, crumbs=v.crumbs((str(site), None)))
    snap, ok = snapshot(v)
    body = add_oee(v.config, site_body(v.config, sdef, snap, v.lang, v.kiosk), plant_oee(v.config, context.data()),
                   v.lang)
    return render(v, body, path=path,
                  crumbs=v.crumbs((sdef.name.get(v.lang), None)), ok=ok)
