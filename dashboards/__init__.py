"""The control room UI (Dash): `create_app(config, store, runtime)` builds it.

Layout of this package (how to find the room for a change):
  context.py      how pages reach config / data / runtime (and how to add a page)
  data.py         the one data-access layer: view models + shared short-TTL cache over the Store
  cache.py        that cache: in-process (TTLCache) or shared by every worker through Redis (RedisCache)
  i18n.py         every label in Korean and English
  auth.py         login outside demo mode (passwords, display tokens); authorize(action) against
                  gwanje/roles.py ACTIONS
  security.py     security headers, generic error pages, input validation before any query
  audit_log.py    the serve side of the audit log (write, retry); /admin/audit shows it
  components/     shell (header, alarm-banner slot, breadcrumbs, kiosk), tiles, figures,
                  page bodies (views), shared live-refresh callbacks
  pages/          one module per URL: overview `/`, `/site/..`, `/line/..`, `/machine/..`, `/signal/..`,
                  LOTs `/lots`, `/lot/<LOT>`, `/trace?site=..&line=..&machine=..`
  assets/         CSS: light desktop, tablet (1024x768), dark wall display (`?kiosk=1`)

URL parameters every page understands: `lang=ko|en`, `kiosk=1`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

import dash
from dash import dcc, html

from gwanje.config import Config
from storage.base import Store

from dashboards import context
from dashboards.data import DataLayer

HERE = Path(__file__).resolve().parent
# the alarm views refresh at least this often (an action shows on every display within 2 s)
ALARM_REFRESH_MS = 1000


def create_app(config: Config, store: Store, runtime: Optional[Any] = None, *,
               env: Optional[Mapping[str, str]] = None, cache_ttl_s: Optional[float] = None,
               data: Optional[DataLayer] = None) -> dash.Dash:
    """The Dash app over the store. runtime: optional object with `status() -> dict`.
    Outside demo mode (config.system.demo False) every page needs a login (dashboards.auth;
    users and secret key from env, default os.environ). `data` lets a test pin the clock.
    The query cache (dashboards/cache.py) is system.yaml ui.cache: shared through Redis when
    a URL is configured (or GWANJE_REDIS_URL), in-process otherwise; cache_ttl_s overrides
    its ui.cache.ttl_s."""
    from dashboards.cache import make_cache
    from dashboards.components import callbacks

    environ = os.environ if env is None else env
    layer = data or DataLayer(config, store, cache=make_cache(config, environ, cache_ttl_s))
    # before Dash(): constructing it imports the pages, which read the context lazily
    context.set_context(config, layer, runtime)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        suppress_callback_exceptions=True,
        title=f"{config.plant.name.get(config.system.ui.default_language)} · Gwanje",
        update_title=None,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    _drop_stale_page_callbacks()
    app.layout = html.Div([
        dcc.Location(id="url"),
        # the clock of the UI: every live callback listens to it
        dcc.Interval(id="refresh", interval=config.system.ui.refresh_ms),
        # the alarm views' own (banner, active alarms): an action on one display shows on every
        # other within 2 s whatever ui.refresh_ms is; they read memory (the alarm service, the
        # control bus's snapshots) or the store through the cache, so ticking faster costs no query
        dcc.Interval(id="alarm-refresh", interval=min(config.system.ui.refresh_ms, ALARM_REFRESH_MS)),
        dash.page_container,
    ])
    callbacks.register(app)
    from dashboards import audit_log, security

    # validation first: before the login gate and before any page or callback runs a query
    rejects = [security.install(app, config)]
    writer = audit_log.AuditWriter(store)
    app.server.extensions[audit_log.EXT] = writer
    # what this server refuses, counted: runtime.health.add_routes puts them in its /metrics
    rejects += [layer.failures, writer.rejects]
    if getattr(layer.cache, "rejects", None) is not None:  # the shared cache: forged entries, Redis outages
        rejects.append(layer.cache.rejects)
    if not config.system.demo:
        from dashboards import auth

        rejects += auth.install(app.server, environ, config.system.ui.default_language,
                                config.system.ui.session_hours, config.system.ui.oidc)
    app.server.extensions["gwanje_rejects"] = rejects
    return app


def _drop_stale_page_callbacks() -> None:
    """Pages register `@dash.callback`s into Dash's global list each time an app imports them;
    an app that was built but never served (tests, a failed start) leaves its copies there,
    and the next app would send the browser every callback twice. Keep the newest per output."""
    from dash import _callback

    newest: dict[str, dict] = {}
    for cb in _callback.GLOBAL_CALLBACK_LIST:
        newest[cb["output"]] = cb
    _callback.GLOBAL_CALLBACK_LIST[:] = list(newest.values())
