"""Real servers the notification tests deliver to: an SMTP server (aiosmtpd), an HTTP endpoint
that captures webhooks, and one that accepts a request and never answers (a hung endpoint)."""
from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fixtures.common import free_port


class SmtpSink:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict[str, Any]] = []
        self.port = free_port()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                msg = message_from_bytes(envelope.content, policy=policy.default)
                body = msg.get_body(preferencelist=("plain", "html"))
                sink.messages.append({"to": list(envelope.rcpt_tos), "subject": str(msg["subject"]),
                                      "body": body.get_content() if body is not None else ""})
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=gwanje@plant.local&to={to}&mode=insecure"

    def stop(self) -> None:
        self._controller.stop()


class WebhookSink:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body.decode("utf-8", "replace")}
                sink.posts.append({"path": self.path, **payload})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, auth: str = "") -> str:
        return f"json://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HungEndpoint:
    """Accepts connections and reads the request, then says nothing until released."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            if conn.recv(65536):
                self.requests += 1
            self.release.wait(30)

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hung"

    def stop(self) -> None:
        self.release.set()
        self.sock.close()

