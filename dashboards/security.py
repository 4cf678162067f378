"""What every response of the control room's server carries and what every request must pass,
in every mode (demo or not):

- security headers (Content-Security-Policy for Dash, nosniff, frame denial, referrer and
  permissions policy; Strict-Transport-Security outside demo mode);
- no stack trace ever reaches the browser: an exception in a page or a callback answers 500
  with a generic text and an error id, and the same id is in the log with the traceback;
- input validation before any query: a page GET whose path or query names an id the plant
  does not have, or carries an injection attempt, answers 400; a Dash callback request
  (/_dash-update-component) carrying such a value is refused with 400 and runs nothing.
  Refusals are counted (Rejects "dashboard-input", in /metrics) and logged without the value.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

import dash
import flask
from werkzeug.exceptions import HTTPException

from gwanje.audit import AUDIT_ACTIONS
from gwanje.config import Config
from gwanje.rejects import Rejects
from gwanje.validate import PlantIds, hostile, id_shape

log = logging.getLogger("gwanje.ui.security")

# Paths that are no page: served by Flask routes of their own, or Dash's internals
NOT_PAGES = ("/_dash-", "/_reload", "/assets/", "/_favicon", "/favicon", "/login", "/logout", "/display",
             "/healthz", "/readyz", "/metrics")
MAX_CALLBACK_BYTES = 2 * 1024 * 1024
MAX_TEXT = 10_000  # any text inside a callback's values (comments, searches)
LOCATIONS = ("_pages_location", "url")
SCOPE_STORES = ("shift-params", "oee-params")


def plant_ids(config: Config) -> PlantIds:
    from dashboards.components.oee import ROLLING, engine_for
    from dashboards.data import WINDOWS_S

    shifts = [s.id for s in engine_for(config).calendar.spec.shifts]
    return PlantIds(config, shifts, ROLLING, WINDOWS_S)


def page_templates() -> list[tuple[str, Optional[str]]]:
    """(path, path_template) of every registered page."""
    return [(p.get("path", ""), p.get("path_template")) for p in dash.page_registry.values()]


def check_page(ids: PlantIds, path: str, query: dict[str, Any]) -> Optional[str]:
    """Why a page request is refused (None: it may go on). Paths of no page pass (Dash shows
    its 404 page), but not with hostile characters."""
    from dash._pages import _parse_path_variables

    for plain, template in page_templates():
        if template:
            variables = _parse_path_variables(path, template)
            if variables is not None:
                bad = ids.path(variables)
                return f"path:{bad}" if bad else ids.query(query)
        elif path == plain:
            return ids.query(query)
    bad = hostile(path)
    return f"path:{bad}" if bad else ids.query(query)


def _query_of(search: Any) -> dict[str, Any]:
    if not isinstance(search, str):
        return {}
    q = parse_qs(search.lstrip("?"), keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else ",".join(v) for k, v in q.items()}


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _texts(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _texts(v)


def check_item(ids: PlantIds, ident: Any, prop: Any, value: Any) -> Optional[str]:
    """One input or state of a callback request: the ids and times it carries."""
    for text in _texts(value):
        if "\x00" in text:
            return "nul"
        if len(text) > MAX_TEXT:
            return "overlong"
    if isinstance(ident, dict):  # a pattern-matching id: its fields name machines and stops
        bad = ids.scope(ident.get("site"), ident.get("line"), ident.get("machine"))
        if bad:
            return f"id:{bad}"
        start = ident.get("start")
        if start is not None and not (isinstance(start, str) and start.isdigit() and len(start) <= 20):
            return "id:bad_start"
        for k, v in ident.items():
            if k not in ("site", "line", "machine", "start") and (hostile(k, 64) or
                                                                 (isinstance(v, str) and hostile(v))):
                return "id:bad_field"
        return None
    if not isinstance(ident, str):
        return "bad_id"
    if ident in LOCATIONS and prop == "pathname" and isinstance(value, str):
        return check_page(ids, value, {})
    if ident in LOCATIONS and prop == "search":
        return ids.query(_query_of(value))
    if ident in LOCATIONS and prop == "href" and isinstance(value, str):
        parts = urlsplit(value)
        return check_page(ids, parts.path or "/", _query_of(parts.query))
    if ident in SCOPE_STORES and value is not None:
        if not isinstance(value, dict):
            return "bad_scope"
        bad = ids.scope(value.get("site"), value.get("line"), value.get("machine"))
        shift = value.get("shift")
        return bad or (ids.shift(shift) if shift not in (None, "") else None)
    if ident == "alarms-grid" and prop == "selectedRows" and value is not None:
        rows = value if isinstance(value, list) else [value]
        for r in rows:
            if not isinstance(r, dict):
                return "bad_alarm_row"
            bad = (ids.alarm(r.get("id")) or
                   (ids.scope(r.get("site_id"), r.get("line_id")) if r.get("site_id") else None))
            if bad:
                return f"alarm:{bad}"
        return None
    if ident == "page-ctx" and isinstance(value, dict):
        return next((f"page:{b}" for v in value.values() if isinstance(v, str) for b in [hostile(v)] if b), None)
    if ident in ("audit-from", "audit-to") and value not in (None, ""):
        return ids.time(value)
    if ident == "audit-action" and value not in (None, "", []):
        vals = value if isinstance(value, list) else [value]
        return None if all(v in AUDIT_ACTIONS for v in vals) else "unknown_action"
    if ident == "audit-user" and value not in (None, ""):
        return hostile(value, 128)
    if ident == "lot-ctx" and value is not None:
        return ids.lot(value.get("lot")) if isinstance(value, dict) else "bad_lot_ctx"
    if ident == "lots-search" and value not in (None, ""):
        return hostile(value, 64)
    if ident == "lots-product" and value not in (None, ""):
        return hostile(value, 64) or id_shape(value)
    if ident == "trace-params" and value is not None:
        if not isinstance(value, dict):
            return "bad_trace"
        return (ids.machine(value.get("site"), value.get("line"), value.get("machine"))
                or PlantIds.time_range(value.get("start"), value.get("end"), 366 * 86_400 * 10**9))
    return None


def check_callback(ids: PlantIds, body: Any) -> Optional[str]:
    if not isinstance(body, dict):
        return "not_json"
    for group in ("inputs", "state"):
        items = body.get(group) or []
        if not isinstance(items, list):
            return "bad_request"
        for it in items:
            for one in (it if isinstance(it, list) else [it]):  # ALL / ALLSMALLER: a list of items
                if not isinstance(one, dict):
                    return "bad_request"
                bad = check_item(ids, one.get("id"), one.get("property"), one.get("value"))
                if bad:
                    return bad
    return None


def csp(hashes: Iterable[str]) -> str:
    """Dash needs: its own scripts and component chunks ('self'), the one inline script that
    starts the renderer (its hash, from app.csp_hashes()), inline style attributes (React sets
    style= on elements), data: images and fonts (AG Grid icons, plotly)."""
    script = " ".join(["'self'", *(h if h.startswith("'") else f"'{h}'" for h in hashes)])
    return ("default-src 'self'; "
            f"script-src {script}; "
            "style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
            "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")


def install(app: dash.Dash, config: Config) -> Rejects:
    """Headers, error pages and input validation on the app's Flask server. Returns the
    counter of refused inputs (for /metrics)."""
    server = app.server
    rejects = Rejects("dashboard-input")
    ids = plant_ids(config)
    demo = config.system.demo
    headers: dict[str, str] = {}

    def header_set() -> dict[str, str]:
        if not headers:  # after every callback is defined: the inline scripts' hashes
            headers.update({
                "Content-Security-Policy": csp(app.csp_hashes()),
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin",
                "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
                "Cross-Origin-Opener-Policy": "same-origin",
            })
            if not demo:
                headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return headers

    @server.before_request
    def _validate():  # type: ignore[no-untyped-def]
        req = flask.request
        path = req.path
        if path == "/_dash-update-component" and req.method == "POST":
            if (req.content_length or 0) > MAX_CALLBACK_BYTES:
                bad = "too_large"
            else:
                bad = check_callback(ids, req.get_json(silent=True))
            if bad:
                rejects.reject(f"callback_{bad.split(':')[-1]}", f"{bad} from {req.remote_addr}")
                return flask.jsonify({"error": "bad input", "reason": bad}), 400
            return None
        if req.method != "GET" or path.startswith(NOT_PAGES):
            return None
        bad = check_page(ids, path, {k: v for k, v in req.args.items()})
        if bad:
            rejects.reject(f"page_{bad.split(':')[-1]}", f"{bad} from {req.remote_addr}")
            return flask.Response("bad request", status=400, mimetype="text/plain")
        return None

    @server.after_request
    def _headers(resp):  # type: ignore[no-untyped-def]
        for k, v in header_set().items():
            resp.headers.setdefault(k, v)
        return resp

    def _error(e: Exception):  # type: ignore[no-untyped-def]
        if isinstance(e, HTTPException) and (e.code or 500) < 500:
            return e
        err = uuid.uuid4().hex[:12]
        log.error("error %s on %s %s", err, flask.request.method, flask.request.path, exc_info=e)
        if flask.request.path.startswith("/_dash-"):
            return flask.Response(json.dumps({"error": "internal error", "error_id": err}), status=500,
                                  mimetype="application/json")
        return flask.Response(f"Internal error. Error id: {err}", status=500, mimetype="text/plain")

    server.register_error_handler(Exception, _error)
    return rejects

