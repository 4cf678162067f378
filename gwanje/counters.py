"""Part counter deltas: how many parts a PLC counter says were made between two readings.

Pure code, no I/O. PLC counters are cumulative registers that wrap at 2**bits, are reset to
zero (often at a shift change, by an operator or by a PLC restart), and sometimes jump (a PLC
program restored, a register rewritten, a bit error). Production is never negative, and never
more than the machine could have made. For a reading v after p, `dt` apart:

  cap = floor(dt / ideal_cycle x margin) + 1   the most parts the machine could have made in
                                               dt, even `margin` times faster than its ideal
                                               cycle (shifts.yaml counter_margin, default 2)

- v >= p and v - p <= cap           -> v - p (also across a data gap: a monotone counter
                                       still counts what was made meanwhile)
- v >= p and v - p >  cap           -> 0, a counter fault (`faults`): more parts than the
                                       machine can make is a counter problem, not production;
                                       v becomes the new baseline
- v < p and v + 2**bits - p <= cap  -> wrap-around: v + 2**bits - p (only when the previous
                                       value was that close to the wrap limit)
- v < p and v <= cap                -> reset to zero and counted up again: v (`resets`)
- otherwise (a large backwards jump)-> 0, and v becomes the new baseline (`jumps`)

So a 16-bit press counter read at 4,990 and, after an 8 h gap, at 0 is a reset (adds 0), not
a wrap of 60,546 parts; a jump of 4,000,000 in one second adds nothing and is counted.
The first reading only sets the baseline. Non-integer or negative readings, and readings at
or above 2**bits, are rejected (`rejected`) and do not move the baseline.
"""
from __future__ import annotations

import math
from typing import Optional

from gwanje.model import NS_PER_S

DEFAULT_MARGIN = 2.0


class CounterTracker:
    __slots__ = ("bits", "modulus", "min_cycle_ns", "prev", "prev_ts", "resets", "wraps", "jumps",
                 "faults", "rejected")

    def __init__(self, bits: int, ideal_cycle_s: float, margin: float = DEFAULT_MARGIN) -> None:
        self.bits = bits
        self.modulus = 2**bits
        # the shortest time one part can take: the ideal cycle, `margin` times faster
        self.min_cycle_ns = max(1, int(ideal_cycle_s * NS_PER_S / margin))
        self.prev: Optional[int] = None
        self.prev_ts: Optional[int] = None
        self.resets = 0
        self.wraps = 0
        self.jumps = 0
        self.faults = 0  # forward jumps larger than the machine can make
        self.rejected = 0

    def cap(self, dt_ns: int) -> int:
        """The most parts the machine can make in dt_ns."""
        return max(0, dt_ns) // self.min_cycle_ns + 1

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
        if v == p:
            return 0
        cap = self.cap(ts - pts)
        if v > p:
            if v - p <= cap:
                return v - p
            self.faults += 1
            return 0
        wrapped = v + self.modulus - p
        if self.bits < 64 and wrapped <= cap:
            self.wraps += 1
            return wrapped
        if v <= cap:
            self.resets += 1
            return v
        self.jumps += 1
        return 0
