"""`/site/<site>` — one site's lines and machines."""
import dash

from dashboards.components.page import render, snapshot, view
from dashboards.components.views import not_found, site_body

dash.register_page(__name__, path_template="/site/<site>", title="Gwanje", name="site")


def layout(site=None, lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    sdef = v.config.site(site) if isinstance(site, str) else None
    path = f"/site/{site}"
    if sdef is None:
        return render(v, not_found(str(site), v.lang, v.kiosk), path=path, crumbs=v.crumbs((str(site), None)))
    snap, ok = snapshot(v)
    return render(v, site_body(v.config, sdef, snap, v.lang, v.kiosk), path=path,
                  crumbs=v.crumbs((sdef.name.get(v.lang), None)), ok=ok)
