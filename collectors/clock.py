"""How far each source's clock is from the collector's: the recent offset (source time -
receive time) per origin — a machine for MQTT (its topic or Sparkplug device), the endpoint
for OPC UA.

One observation per message (MQTT) or per publish response (OPC UA): the newest source time
in it against the time it was received, rejected-as-future times included (a clock too far
ahead is exactly the one to show). The newest time of a batch has the least transit and
buffering delay in it, so it is the closest to the clock offset; the figure is the median of
the last WINDOW observations, so one odd timestamp or a burst of backlog (a broker handing
over a persistent session's queue) does not move it. A negative offset is transit delay plus
a slow clock; the two cannot be told apart from here.

Cost on the hot path: an uncontended lock, a dict lookup and a deque append per observation
(well under a microsecond; decoding the message costs tens); the median is taken when
status() asks. Thread-safe: collectors observe on their network thread, status() is read
from another.
"""
from __future__ import annotations

import threading
from collections import deque
from statistics import median
from typing import Union

from gwanje.model import NS_PER_S

WINDOW = 15

# an endpoint name, or (site, line, machine): joined with "/" only when status() asks
Origin = Union[str, tuple[str, ...]]


class ClockOffsets:
    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._recent: dict[Origin, deque[int]] = {}
        self._lock = threading.Lock()

    def observe(self, origin: Origin, source_ns: int, receive_ns: int) -> None:
        with self._lock:
            recent = self._recent.get(origin)
            if recent is None:
                recent = self._recent[origin] = deque(maxlen=self.window)
            recent.append(source_ns - receive_ns)

    def offsets(self) -> dict[str, float]:
        """origin ("site/line/machine" or endpoint) -> recent clock offset in seconds (positive:
        the source's clock is ahead)."""
        with self._lock:
            items = [("/".join(o) if isinstance(o, tuple) else o, list(recent)) for o, recent in self._recent.items()]
        return {origin: median(values) / NS_PER_S for origin, values in sorted(items) if values}
