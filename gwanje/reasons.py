"""Downtime reasons: the configured reason tree and the events that assign a reason to a stop.

Pure code, no I/O. The tree lives in config/shifts.yaml (`reasons:`, validated by ShiftsDef).
A reason is named by its path of ids, e.g. "mechanical/spindle"; a branch ("mechanical") is a
valid answer too when the supervisor knows no more. An assignment is an Event
kind="downtime_reason" whose ts and key are the stop's start (ns), so assigning again
overwrites the previous answer (event identity) instead of piling up duplicates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from gwanje.model import Event
from gwanje.shifts import ReasonDef

KIND = "downtime_reason"
MAX_COMMENT = 500
_USER = re.compile(r"^[\w.@+-]{1,64}$")


@dataclass(frozen=True)
class Reason:
    path: str  # "mechanical/spindle"
    ko: str  # "기계 고장 › 주축"
    en: str
    depth: int

    def label(self, lang: str) -> str:
        return self.ko if lang == "ko" else self.en


class ReasonTree:
    def __init__(self, roots: list[ReasonDef]) -> None:
        self.reasons: dict[str, Reason] = {}

        def walk(node: ReasonDef, prefix: str, ko: str, en: str, depth: int) -> None:
            path = f"{prefix}/{node.id}" if prefix else node.id
            k = f"{ko} › {node.name.ko}" if ko else node.name.ko
            e = f"{en} › {node.name.en}" if en else node.name.en
            if path in self.reasons:
                raise ValueError(f"reason {path!r} defined twice")
            self.reasons[path] = Reason(path, k, e, depth)
            for ch in node.children:
                walk(ch, path, k, e, depth + 1)

        for r in roots:
            walk(r, "", "", "", 0)

    def options(self, lang: str) -> list[dict[str, str]]:
        """For a dropdown: [{label, value}] in tree order."""
        return [{"label": r.label(lang), "value": r.path} for r in self.reasons.values()]

    def label(self, path: str, lang: str) -> str:
        r = self.reasons.get(path)
        return r.label(lang) if r else path

    def assign(self, site: str, line: str, machine: str, stop_start_ns: int, reason: str, user: str,
               comment: str = "", now_ns: Optional[int] = None) -> Event:
        """The event recording a supervisor's reason for a stop; ValueError on bad input."""
        if reason not in self.reasons:
            raise ValueError("unknown_reason")
        if not isinstance(user, str) or not _USER.match(user):
            raise ValueError("bad_user")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT or "\x00" in comment:
            raise ValueError("bad_comment")
        if not isinstance(stop_start_ns, int) or stop_start_ns <= 0:
            raise ValueError("bad_stop")
        data = {"reason": reason, "user": user, "comment": comment}
        if now_ns is not None:
            data["assigned_ns"] = now_ns
        return Event(KIND, stop_start_ns, site, line, machine, str(stop_start_ns), data)
