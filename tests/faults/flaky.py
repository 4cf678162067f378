"""A fault-injection seam around a real store: the same EmbeddedStore (DuckDB) underneath,
with a switch that makes writes fail as an unreachable store does, or hang as a slow one does.
Records the order of successful sample writes so tests can check replay order."""
from __future__ import annotations

import threading
from typing import Sequence

from gwanje.model import Event, Sample
from storage.base import StoreUnavailable
from storage.embedded import EmbeddedStore


class FlakyStore(EmbeddedStore):
    def __init__(self) -> None:
        super().__init__(":memory:")
        self.down = False
        self.gate = threading.Event()  # cleared: writes wait here (a slow store)
        self.gate.set()
        self.written_ts: list[int] = []  # ts of every written sample, in write order

    def write_samples(self, samples: Sequence[Sample]) -> None:
        self.gate.wait()
        if self.down:
            raise StoreUnavailable("injected: connection refused")
        super().write_samples(samples)
        self.written_ts.extend(s.ts for s in samples)

    def write_events(self, events: Sequence[Event]) -> None:
        if self.down:
            raise StoreUnavailable("injected: connection refused")
        super().write_events(events)

    def ping(self) -> bool:
        return not self.down and super().ping()
