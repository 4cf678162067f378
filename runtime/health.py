"""Operations endpoints of every process: /healthz (the process is alive), /readyz (the store
answers and every collector is connected and subscribed; JSON details, 503 when not ready) and /metrics
(Prometheus text through prometheus_client, runtime.metrics).

`collect` and `simulate` run HealthServer, a tiny http.server in a daemon thread; the Dash
`serve` process mounts the same routes on its Flask server with add_routes(). Both take a
status provider: a no-argument callable returning runtime.Runtime.status()'s dict.
A provider that raises makes /readyz answer 503 with the error (and /metrics 500, as does a
status /metrics cannot render), never kills the server.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Optional

from runtime import metrics

log = logging.getLogger("gwanje.health")

StatusProvider = Callable[[], Mapping[str, Any]]
JSON = "application/json; charset=utf-8"


def readiness(status: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(ready, details). Ready: the store (if this process has one) answers, its last write
    did not fail (a store can answer its ping and still refuse every write: a missing
    retention policy, a read-only user), and every source is connected. A down store is
    not-ready even though samples are safe in the spool: an operator must see it. Every source
    connected means subscribed too: an MQTT connection whose topic filters the broker has not
    granted (yet, or refused) delivers nothing."""
    problems: list[str] = []
    store = status.get("store") or {}
    p = status.get("pipeline") or {}
    has_store = bool(store) and store.get("name", "none") != "none"
    if has_store and not store.get("ok"):
        problems.append(f"store {store.get('name')} unreachable")
    elif has_store and p.get("store_up") is False:
        problems.append(f"store {store.get('name')}: writes failing ({p.get('last_write_error') or 'unknown error'})")
    sources = []
    for s in status.get("sources") or []:
        # a status without the field (an older process) counts as subscribed when connected
        subscribed = bool(s.get("subscribed", s.get("connected")))
        sources.append({"name": s.get("name"), "kind": s.get("kind"), "connected": bool(s.get("connected")),
                        "subscribed": subscribed, "detail": s.get("detail", "")})
        if not s.get("connected"):
            problems.append(f"{s.get('kind')} source {s.get('name')} not connected")
        elif not subscribed:
            problems.append(f"{s.get('kind')} source {s.get('name')} connected but not subscribed")
    # a full spool leaves the process ready (data still flows) but belongs in the details
    warnings = [f"spool full: policy {p.get('spool_policy')} is dropping data"] if p.get("spool_alarm") else []
    if p.get("refused_alarm"):
        warnings.append("the store refused data for good: see the dead-letter file")
    if status.get("restore_pending"):  # runtime: engine warm start / alarm restore wait for the store
        warnings.append("restore from the store pending: " + ", ".join(status["restore_pending"]))
    details = {
        "ready": not problems,
        "problems": problems,
        "warnings": warnings,
        "store": {"name": store.get("name"), "ok": bool(store.get("ok"))} if has_store else None,
        "sources": sources,
        "queue_depth": p.get("queue_depth"),
        "spool_samples": p.get("spool_samples"),
    }
    return not problems, details


def respond(path: str, provider: StatusProvider) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) for one of the three routes; 404 otherwise."""
    path = path.split("?", 1)[0]
    if path == "/healthz":
        return 200, JSON, b'{"status": "alive"}'
    if path not in ("/readyz", "/metrics"):
        return 404, JSON, b'{"error": "not found"}'
    try:
        status = provider()
    except Exception as e:  # the endpoint must keep answering whatever the runtime does
        log.exception("status provider failed")
        if path == "/metrics":
            return 500, metrics.CONTENT_TYPE, b"# status provider failed\n"
        body = {"ready": False, "problems": [f"status unavailable: {type(e).__name__}"]}
        return 503, JSON, json.dumps(body).encode()
    if path == "/metrics":
        try:
            return 200, metrics.CONTENT_TYPE, metrics.render(status).encode()
        except Exception:  # a figure that is no number: answer, do not drop the scrape
            log.exception("rendering /metrics failed")
            return 500, metrics.CONTENT_TYPE, b"# rendering the metrics failed\n"
    ok, details = readiness(status)
    return (200 if ok else 503), JSON, json.dumps(details).encode()


class HealthServer:
    """HealthServer(runtime.status, host, port).start(); port 0 picks a free port (.port)."""

    def __init__(self, provider: StatusProvider, host: str = "127.0.0.1", port: int = 0) -> None:
        self.provider = provider
        self.host = host
        self.port = port
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "HealthServer":
        provider = self.provider

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                code, ctype, body = respond(self.path, provider)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass  # scraped every few seconds: not worth a log line each

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gwanje-health", daemon=True)
        self._thread.start()
        log.info("health endpoints on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def add_routes(flask_server: Any, status_provider: StatusProvider) -> None:
    """Mount /healthz /readyz /metrics on a Flask app (the Dash `serve` process). What the
    server itself refuses (logins, actions: the Rejects in its extensions["gwanje_rejects"])
    is counted in /metrics beside the runtime's figures."""
    from flask import Response

    def with_server_rejects() -> Mapping[str, Any]:
        status = status_provider()
        own = flask_server.extensions.get("gwanje_rejects") or []
        if not own:
            return status
        merged = dict(status.get("rejects") or {})
        for r in own:
            merged[r.source] = {**merged.get(r.source, {}), **r.counts()}
        return {**status, "rejects": merged}

    def make(path: str):
        def view() -> Response:
            code, ctype, body = respond(path, with_server_rejects)
            return Response(body, status=code, content_type=ctype, headers={"Cache-Control": "no-store"})

        view.__name__ = "gwanje_" + path.strip("/")
        return view

    for path in ("/healthz", "/readyz", "/metrics"):
        flask_server.add_url_rule(path, endpoint="gwanje_" + path.strip("/"), view_func=make(path))
