"""The serve process's side of the audit log: entries (gwanje.audit.audit_event) written to the
store at once; when the store refuses, kept in a small in-memory queue and retried in the
background a bounded number of times. Never lost silently: every failure is logged, a full
queue or an entry given up is logged as an error and counted (Rejects "audit", in /metrics).

`record(action, ...)` fills user, role, client address and request id from the Flask
request and session; pages call it after what they audit happened (or was refused)."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

import flask

from gwanje.audit import audit_event
from gwanje.model import Event
from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.ui.audit")
EXT = "gwanje_audit"


class AuditWriter:
    def __init__(self, store: Any, *, max_pending: int = 1000, max_attempts: int = 5, retry_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.max_pending, self.max_attempts, self.retry_s = max_pending, max_attempts, retry_s
        self.rejects = Rejects("audit")
        self._sleep = sleep
        self._pending: deque[list[Any]] = deque()  # [event, attempts]
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._inflight = 0  # taken from the queue by a retry round, not yet written
        self.written = 0

    def write(self, event: Event) -> bool:
        """Write one entry now; True when the store took it (else it waits for a retry)."""
        try:
            self.store.write_events([event])
        except Exception as e:
            log.warning("audit entry %s (%s) not written, will retry: %s", event.key, event.data.get("action"),
                        type(e).__name__)
            self._enqueue(event, 1)
            return False
        self.written += 1
        return True

    def pending(self) -> int:
        """Entries not yet in the store (queued or being retried)."""
        with self._lock:
            return len(self._pending) + self._inflight

    def _enqueue(self, event: Event, attempts: int) -> None:
        with self._lock:
            if len(self._pending) >= self.max_pending:
                lost, _ = self._pending.popleft()
                log.error("audit queue full (%d): entry %s (%s by %s) lost", self.max_pending, lost.key,
                          lost.data.get("action"), lost.data.get("user"))
                self.rejects.reject("audit_lost_queue_full", lost.key)
            self._pending.append([event, attempts])
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._retry_loop, name="audit-retry", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """One retry round over the queue; returns how many are still pending."""
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._inflight = len(batch)
        if batch:
            try:
                self.store.write_events([e for e, _ in batch])
                self.written += len(batch)
                log.warning("audit: %d delayed entries written", len(batch))
            except Exception as e:
                keep = []
                for ev, attempts in batch:
                    if attempts + 1 >= self.max_attempts:
                        log.error("audit entry %s (%s by %s) lost after %d attempts: %s", ev.key,
                                  ev.data.get("action"), ev.data.get("user"), attempts + 1, type(e).__name__)
                        self.rejects.reject("audit_lost_store_down", ev.key)
                    else:
                        keep.append([ev, attempts + 1])
                with self._lock:
                    self._pending.extendleft(reversed(keep))
        with self._lock:
            self._inflight = 0
        return self.pending()

    def _retry_loop(self) -> None:
        while True:
            self._sleep(self.retry_s)
            if self.flush() == 0:
                with self._lock:
                    if not self._pending and not self._inflight:
                        self._thread = None
                        return


def client_address() -> str:
    return (flask.request.remote_addr or "") if flask.has_request_context() else ""


def record(action: str, target: str = "", *, user: Optional[str] = None, role: Optional[str] = None,
           before: Any = None, after: Any = None, ok: bool = True, detail: str = "", site: str = "",
           line: str = "", machine: str = "") -> Optional[Event]:
    """Audit one action of the current request (user and role from the session unless given).
    No-op outside an app that installed a writer."""
    if not flask.has_app_context():
        return None
    writer: Optional[AuditWriter] = flask.current_app.extensions.get(EXT)
    if writer is None:
        return None
    u = flask.session.get("user") if flask.has_request_context() else None
    u = u if isinstance(u, dict) else {}
    rid = flask.request.headers.get("X-Request-Id", "")[:64] if flask.has_request_context() else ""
    ev = audit_event(action, user if user is not None else str(u.get("name") or ""),
                     role if role is not None else str(u.get("role") or ""), target, before=before, after=after,
                     ok=ok, detail=detail, client=client_address(), request_id=rid, site=site, line=line,
                     machine=machine)
    writer.write(ev)
    return ev
