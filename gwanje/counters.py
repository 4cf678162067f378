"""Part counter deltas: how many parts a PLC counter says were made between two readings.

Pure code, no I/O. PLC counters are cumulative registers that wrap at 2**bits, are reset to
zero (often at a shift change or by an operator), and sometimes jump backwards (a PLC program
restored, a register rewritten). Production is never negative. For a reading v after p,
with `plausible` = the most parts the machine could make in the elapsed time
(elapsed / (ideal_cycle / 10) + 1, i.e. even ten times faster than ideal):

- v >= p                                     -> v - p  (also across a data gap: a monotone
                                                counter still counts what was made meanwhile)
- v < p and v + 2**bits - p <= plausible     -> wrap-around: v + 2**bits - p
- v < p and v <= plausible                   -> reset to zero and counted up again: v
- otherwise (a large backwards jump)         -> 0, and v becomes the new baseline (`jumps`)

The first reading only sets the baseline. Non-integer or negative readings are rejected
(`rejected`) and do not move the baseline.
"""
from __future__ import annotations

import math
from typing import Optional

from gwanje.model import NS_PER_S


class CounterTracker:
    def __init__(self, bits: int, ideal_cycle_s: float) -> None:
        self.bits = bits
        self.modulus = 2**bits
        self.min_cycle_ns = max(1, int(ideal_cycle_s * NS_PER_S / 10))
        self.prev: Optional[int] = None
        self.prev_ts: Optional[int] = None
        self.resets = 0
        self.wraps = 0
        self.jumps = 0
        self.rejected = 0

    def feed(self, ts: int, value: float) -> int:
        """Parts made since the previous reading (0 for the first one)."""
        if not isinstance(value, float) or not math.isfinite(value) or value < 0 or not value.is_integer() \
                or value >= self.modulus:
            self.rejected += 1
            return 0
        v = int(value)
        p, pts = self.prev, self.prev_ts
        self.prev, self.prev_ts = v, ts
        if p is None or pts is None:
            return 0
        if v >= p:
            return v - p
        plausible = max(0, ts - pts) // self.min_cycle_ns + 1
        wrapped = v + self.modulus - p
        if self.bits < 64 and wrapped <= plausible:
            self.wraps += 1
            return wrapped
        if v <= plausible:
            self.resets += 1
            return v
        self.jumps += 1
        return 0
