"""Counted, rate-limited rejections: every bad input is counted by reason and logged, at most
one log line per (source, reason) per interval, so a flood of garbage cannot flood the log."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter

log = logging.getLogger("gwanje.rejects")


class Rejects:
    def __init__(self, source: str, log_interval_s: float = 10.0) -> None:
        self.source = source
        self.log_interval_s = log_interval_s
        self._counts: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def reject(self, reason: str, detail: str = "", n: int = 1) -> None:
        """Count n rejections; log them unless this reason was logged within the interval."""
        now = time.monotonic()
        with self._lock:
            self._counts[reason] += n
            last = self._last_log.get(reason)
            if last is not None and now - last < self.log_interval_s:
                self._unlogged[reason] += n
                return
            self._last_log[reason] = now
            suppressed = self._unlogged.pop(reason, 0)
        more = f" (+{suppressed} more since last report)" if suppressed else ""
        if n > 1:
            more = f" (x{n})" + more
        # detail is truncated and repr()'d: hostile input must not forge log lines
        log.warning("%s rejected input: %s %s%s", self.source, reason, repr(detail[:200]) if detail else "", more)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
