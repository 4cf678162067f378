"""The audit log: who did what to which target, when, and what it was before and after.

An audit entry is an Event of kind "audit" (stored like every event, by the pipeline or
store.write_events). Its key is a fresh unique id, so no later write can replace it: the log
is append-only by identity. Readers use store.events("audit", start, end).

    data = {"action": one of AUDIT_ACTIONS, "user": str, "role": str, "target": str,
            "before": JSON or None, "after": JSON or None, "ok": bool, "detail": str,
            "client": str (address or process), "request_id": str}

Pure: no I/O; never put a secret (password, token, hash) into an entry."""
from __future__ import annotations

import time
import uuid
from typing import Any, Optional

from gwanje.model import Event

KIND = "audit"

AUDIT_ACTIONS = (
    "login", "logout", "login_failed",
    "alarm.acknowledge", "alarm.shelve", "alarm.unshelve", "alarm.comment",
    "alarm.out_of_service", "alarm.return_to_service",
    "shift.downtime_reason", "shift.recompute", "lot.release",
    "config.reload", "command.refused",
)

MAX_TEXT = 500


def _short(v: Any) -> Any:
    if isinstance(v, str) and len(v) > MAX_TEXT:
        return v[:MAX_TEXT] + "…"
    return v


def audit_event(action: str, user: str, role: str = "", target: str = "", *,
                before: Any = None, after: Any = None, ok: bool = True, detail: str = "",
                client: str = "", request_id: str = "", site: str = "", line: str = "",
                machine: str = "", ts_ns: Optional[int] = None) -> Event:
    if action not in AUDIT_ACTIONS:
        raise KeyError(f"unknown audit action {action!r} (gwanje.audit.AUDIT_ACTIONS)")
    return Event(kind=KIND, ts=int(ts_ns if ts_ns is not None else time.time_ns()),
                 site=site or "_plant", line=line, machine=machine, key=uuid.uuid4().hex,
                 data={"action": action, "user": _short(str(user or "")), "role": str(role or ""),
                       "target": _short(str(target or "")), "before": before, "after": after,
                       "ok": bool(ok), "detail": _short(str(detail or "")),
                       "client": _short(str(client or "")), "request_id": str(request_id or "")})
