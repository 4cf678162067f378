"""How pages reach the config, the data layer and the runtime without globals full of data.

Dash imports every module in dashboards/pages/ while `Dash(use_pages=True)` is constructed,
so a page cannot receive arguments. `create_app` therefore calls `set_context(...)` *before*
constructing Dash, and pages ask for what they need *inside* their layout functions and
callbacks — never at import time:

    # dashboards/pages/alarms.py  (how to add a page)
    import dash
    from dash import Input, Output, callback, html
    from dashboards import context
    from dashboards.components.shell import page_shell
    from dashboards.i18n import add_strings, t

    add_strings({"alarms": {"ko": "알람", "en": "Alarms"}})
    dash.register_page(__name__, path="/alarms", nav={"key": "alarms", "order": 20})

    def layout(lang=None, kiosk=None, **_):
        cfg = context.config()
        ...
        return page_shell(body, lang=lang, kiosk=kiosk, crumbs=[...])

    @callback(Output("alarm-list", "children"), Input("refresh", "n_intervals"), ...)
    def refresh(n, search): data = context.data() ...

`nav={"key": <i18n key>, "order": n}` in register_page puts the page in the header's nav area.
The context holds references only (config object, DataLayer with its shared TTL cache,
runtime); the data itself lives in the store, so gunicorn workers stay consistent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from gwanje.config import Config

from dashboards.data import DataLayer


@dataclass(frozen=True)
class Context:
    config: Config
    data: DataLayer
    runtime: Optional[Any]


_ctx: Optional[Context] = None


def set_context(config: Config, data: DataLayer, runtime: Optional[Any] = None) -> Context:
    global _ctx
    _ctx = Context(config, data, runtime)
    return _ctx


def get() -> Context:
    if _ctx is None:
        raise RuntimeError("dashboards.context is not set: build the app with dashboards.create_app(...)")
    return _ctx


def config() -> Config:
    return get().config


def data() -> DataLayer:
    return get().data


def runtime() -> Optional[Any]:
    """The object giving pipeline/collector status (`status() -> dict`), or None."""
    return get().runtime


def runtime_status() -> dict:
    """The runtime's status, {} without a runtime or when it fails (a page must still render);
    with the control bus, every collect instance's sources merged in (Runtime.status_all)."""
    rt = runtime()
    if rt is None:
        return {}
    try:
        out = rt.status_all() if hasattr(rt, "status_all") else rt.status()
    except Exception:
        return {}
    return out if isinstance(out, dict) else {}
