"""`/signal/<site>/<line>/<machine>/<signal>?window=15m|1h|8h|24h` — one trend."""
import dash

from dashboards import context
from dashboards.components.page import render, view
from dashboards.components.views import not_found, signal_body
from dashboards.data import WINDOWS_S, DataUnavailable, Trend, numeric_signals

dash.register_page(__name__, path_template="/signal/<site>/<line>/<machine>/<signal>", title="Gwanje", name="signal")


def layout(site=None, line=None, machine=None, signal=None, lang=None, kiosk=None, window=None, **query):
    v = view(lang, kiosk, window=window, **query)
    spec = v.config.machine(site, line, machine) if all(isinstance(x, str) for x in (site, line, machine)) else None
    path = f"/signal/{site}/{line}/{machine}/{signal}"
    if spec is None or signal not in numeric_signals(spec):
        return render(v, not_found(f"{site}/{line}/{machine}/{signal}", v.lang, v.kiosk), path=path,
                      crumbs=v.crumbs((f"{site}/{line}/{machine}/{signal}", None)))
    window = window if window in WINDOWS_S else "15m"
    points = v.config.system.ui.trend_points
    ok = True
    try:
        trend = context.data().signal_trend(spec.site, spec.line, spec.machine, signal, WINDOWS_S[window], points)
    except DataUnavailable:
        trend, ok = Trend(signal, [], []), False
    sdef, ldef = v.config.site(spec.site), v.config.line(spec.site, spec.line)
    sig = spec.signal(signal)
    crumbs = v.crumbs((sdef.name.get(v.lang), v.href(f"/site/{spec.site}")),
                      (ldef.name.get(v.lang), v.href(f"/line/{spec.site}/{spec.line}")),
                      (spec.definition.name.get(v.lang), v.href(f"/machine/{spec.site}/{spec.line}/{spec.machine}")),
                      (sig.name.get(v.lang), None))
    return render(v, signal_body(spec, signal, trend, window, v.lang, v.kiosk, points), path=path, crumbs=crumbs,
                  title=f"{spec.definition.name.get(v.lang)} · {sig.name.get(v.lang)}"
                        + (f" ({sig.unit})" if sig.unit else ""), ok=ok)
