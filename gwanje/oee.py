"""OEE (ISO 22400-2) of a machine, a line and a site over a window, from state intervals,
per-minute part counts and the shift calendar. Pure code, no I/O.

How each moment of the window [start, end) is classified, in this order:
1. the machine reports RUNNING                      -> running (even in a break: if parts are
   made through lunch, that is production time, and leaving it out would inflate performance)
2. calendar planned stop (break, not-worked shift, outside every shift) or PLC state
   planned_stop                                      -> planned stop
3. UNKNOWN (no data / unmapped code)                 -> unknown: outside planned production
   time and shown on its own; we never know whether it was running or down
4. SETUP                                             -> setup and adjustment
5. IDLE or DOWN, the whole stop shorter than small_stop -> small stop. A stop is the run of
   touching idle and down intervals, whatever their PLC codes, measured over its whole
   length, also beyond the window: a stop cut by a shift boundary is classed the same in both
   shifts, and each shift gets its share of the time
6. DOWN otherwise                                    -> breakdown
7. IDLE otherwise                                    -> other stop (waiting: no operator, no
   material); an availability loss that is not a breakdown

Planned production time PPT = window - planned stops - unknown
Run time (ISO "actual production time") = running + small stops: stops too short to be stops
  are a speed loss (Nakajima's six big losses), so they lower performance, not availability.
availability A = run / PPT;   performance P = sum(ideal cycle x count) / run;
quality Q = good / total;     OEE = A x P x Q.
A performance above 1 is reported as computed, never clipped, and above 1.005 flagged
`performance_over_100` (the ideal cycle time in config is too long, or a counter is wrong).
Parts revealed by a counter after a data gap are counted (total, quality) but kept out of the
ideal time: the run time they were made in is unknown, and counting them would push P over 1.
They are bounded by what the machine can make in the gap (gwanje.counters); a counter jump
beyond that is refused and flagged `counter_fault`, so an impossible count is seen, not hidden.
A ratio with a zero denominator is None (shown as "—"), never 0 or 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

from gwanje.model import NS_PER_S, MachineState
from gwanje.shifts import merge_ranges
from gwanje.state import StateInterval

MINUTE_NS = 60 * NS_PER_S
# unknown time above this share of scheduled time makes the figure "low coverage"
LOW_COVERAGE_SHARE = 0.05
# performance above 1 + this is flagged: a counter read one sample before or after a
# boundary moves P by a part, which is sampling, not a configuration problem
PERFORMANCE_TOLERANCE = 0.005


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """Part counts of one machine in one UTC minute [minute_ns, minute_ns + 60 s)."""

    minute_ns: int
    total: int
    good: int
    reject: int
    ideal_s: float  # sum of ideal cycle time x parts (per product when the LOT is known)
    # parts of `total` first seen after a silence longer than the comm timeout: made, so
    # counted in total and quality, but in time we cannot see, so left out of ideal_s
    gap_total: int = 0
    # counter readings that jumped further forward than the machine can make (not counted)
    faults: int = 0


@dataclass
class OeeResult:
    start_ns: int
    end_ns: int
    running_s: float = 0.0
    small_stop_s: float = 0.0
    breakdown_s: float = 0.0
    other_stop_s: float = 0.0
    setup_s: float = 0.0
    planned_stop_s: float = 0.0
    unknown_s: float = 0.0
    total: int = 0
    good: int = 0
    reject: int = 0
    startup_reject: int = 0
    ideal_s: float = 0.0  # ideal time of the parts made in known time
    gap_total: int = 0  # parts revealed after a data gap (in total, not in performance)
    ideal_reject_s: float = 0.0  # ideal time of the rejects
    ideal_startup_reject_s: float = 0.0
    small_stops: int = 0  # number of small stops
    stops: int = 0  # number of breakdown and other stops
    counter_faults: int = 0  # counter jumps refused as implausible (see gwanje.counters)
    flags: list[str] = field(default_factory=list)

    # ------------------------------------------------------------- derived figures
    @property
    def run_s(self) -> float:
        return self.running_s + self.small_stop_s

    @property
    def planned_s(self) -> float:
        return self.run_s + self.breakdown_s + self.other_stop_s + self.setup_s

    @property
    def availability(self) -> Optional[float]:
        return self.run_s / self.planned_s if self.planned_s > 0 else None

    @property
    def performance(self) -> Optional[float]:
        return self.ideal_s / self.run_s if self.run_s > 0 else None

    @property
    def quality(self) -> Optional[float]:
        return self.good / self.total if self.total > 0 else None

    @property
    def oee(self) -> Optional[float]:
        a, p, q = self.availability, self.performance, self.quality
        return a * p * q if a is not None and p is not None and q is not None else None

    def finish(self) -> "OeeResult":
        """Set the flags a reader must see next to the numbers."""
        self.flags = []
        p = self.performance
        if p is not None and p > 1.0 + PERFORMANCE_TOLERANCE:
            self.flags.append("performance_over_100")
        scheduled = self.planned_s + self.unknown_s
        if scheduled > 0 and self.unknown_s / scheduled > LOW_COVERAGE_SHARE:
            self.flags.append("low_coverage")
        if self.total > 0 and self.run_s == 0:
            self.flags.append("counts_without_run")
        if self.good + self.reject != self.total:
            self.flags.append("counts_inconsistent")
        if self.counter_faults:
            self.flags.append("counter_fault")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(run_s=self.run_s, planned_s=self.planned_s, availability=self.availability,
                 performance=self.performance, quality=self.quality, oee=self.oee)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OeeResult":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in names})


def _subtract(a: int, b: int, ranges: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split [a, b) into the parts outside and inside the (sorted, merged) ranges."""
    outside, inside, cur = [], [], a
    for s, e in ranges:
        if e <= cur:
            continue
        if s >= b:
            break
        if s > cur:
            outside.append((cur, s))
        lo, hi = max(s, cur), min(e, b)
        if lo < hi:
            inside.append((lo, hi))
        cur = max(cur, hi)
        if cur >= b:
            break
    if cur < b:
        outside.append((cur, b))
    return outside, inside


def merge_states(intervals: Iterable[StateInterval]) -> list[StateInterval]:
    """Sorted intervals with touching pieces of the same state joined, whatever their PLC
    codes: a machine idle for 20 minutes under two idle codes had one 20-minute stop."""
    out: list[StateInterval] = []
    for iv in sorted(intervals, key=lambda x: x.start_ns):
        if out and out[-1].state == iv.state and out[-1].end_ns == iv.start_ns:
            out[-1] = StateInterval(out[-1].start_ns, iv.end_ns, iv.state, out[-1].code)
        else:
            out.append(iv)
    return out


_STOP_STATES = (MachineState.IDLE, MachineState.DOWN)


def _stop_lengths(merged: Sequence[StateInterval]) -> list[tuple[int, int]]:
    """For each interval, the length and the start of the whole stop it belongs to: the run
    of touching idle and down intervals around it ((0, -1) for other states). A stop is
    classed by its whole length, so a stop cut by a shift boundary is the same stop in both
    shifts, and it counts as one stop however many idle and down pieces it has."""
    out = [(0, -1)] * len(merged)
    i = 0
    while i < len(merged):
        if merged[i].state not in _STOP_STATES:
            i += 1
            continue
        j = i
        while (j + 1 < len(merged) and merged[j + 1].state in _STOP_STATES
               and merged[j + 1].start_ns == merged[j].end_ns):
            j += 1
        length = merged[j].end_ns - merged[i].start_ns
        for k in range(i, j + 1):
            out[k] = (length, merged[i].start_ns)
        i = j + 1
    return out


def compute(start_ns: int, end_ns: int, intervals: Iterable[StateInterval], counts: Iterable[MinuteCounts],
            planned_stops: Sequence[tuple[int, int]], small_stop_s: float, startup_window_s: float) -> OeeResult:
    """OEE of one machine over [start_ns, end_ns). `intervals` may reach beyond the window
    (setups that ended before it start its startup-reject window); time the intervals do not
    cover is unknown."""
    r = OeeResult(start_ns, end_ns)
    stops = merge_ranges(list(planned_stops))
    small_ns = small_stop_s * NS_PER_S
    startup_ns = int(startup_window_s * NS_PER_S)
    acc: dict[str, int] = dict.fromkeys(("running", "small", "breakdown", "other", "setup", "planned", "unknown"), 0)
    setup_ends: list[int] = []
    covered = []
    merged = merge_states(intervals)
    for iv in merged:
        if iv.state == MachineState.SETUP:
            setup_ends.append(iv.end_ns)
    counted: set[int] = set()  # stops already counted in this window (by their start)
    for iv, (stop_ns, stop_id) in zip(merged, _stop_lengths(merged)):
        c = iv.clip(start_ns, end_ns)
        if c is None:
            continue
        covered.append((c.start_ns, c.end_ns))
        if c.state == MachineState.RUNNING:
            acc["running"] += c.duration_ns
            continue
        outside, inside = _subtract(c.start_ns, c.end_ns, stops)
        acc["planned"] += sum(e - s for s, e in inside)
        t = sum(e - s for s, e in outside)
        if t == 0:
            continue
        if c.state == MachineState.PLANNED_STOP:
            acc["planned"] += t
        elif c.state == MachineState.UNKNOWN:
            acc["unknown"] += t
        elif c.state == MachineState.SETUP:
            acc["setup"] += t
        elif stop_ns < small_ns:
            # the whole stop (idle and down pieces together, also beyond the window) was short
            acc["small"] += t
            if stop_id not in counted:
                counted.add(stop_id)
                r.small_stops += 1
        else:
            acc["breakdown" if c.state == MachineState.DOWN else "other"] += t
            if stop_id not in counted:
                counted.add(stop_id)
                r.stops += 1
    # time no interval covers: planned if the calendar says so, otherwise unknown
    for s, e in _subtract(start_ns, end_ns, merge_ranges(covered))[0]:
        outside, inside = _subtract(s, e, stops)
        acc["planned"] += sum(b - a for a, b in inside)
        acc["unknown"] += sum(b - a for a, b in outside)
    r.running_s = acc["running"] / NS_PER_S
    r.small_stop_s = acc["small"] / NS_PER_S
    r.breakdown_s = acc["breakdown"] / NS_PER_S
    r.other_stop_s = acc["other"] / NS_PER_S
    r.setup_s = acc["setup"] / NS_PER_S
    r.planned_stop_s = acc["planned"] / NS_PER_S
    r.unknown_s = acc["unknown"] / NS_PER_S

    setup_ends.sort()
    for m in counts:
        if not start_ns <= m.minute_ns < end_ns:
            continue
        r.total += m.total
        r.good += m.good
        r.reject += m.reject
        r.ideal_s += m.ideal_s
        r.gap_total += m.gap_total
        r.counter_faults += m.faults
        seen = m.total - m.gap_total
        per_part = m.ideal_s / seen if seen > 0 else 0.0
        r.ideal_reject_s += m.reject * per_part
        # the minute overlaps [setup end, setup end + startup window)
        if m.reject and any(se < m.minute_ns + MINUTE_NS and m.minute_ns < se + startup_ns for se in setup_ends):
            r.startup_reject += m.reject
            r.ideal_startup_reject_s += m.reject * per_part
    return r.finish()


def combine(results: Sequence[OeeResult]) -> Optional[OeeResult]:
    """Pool several machines' results: times and counts are summed, then the ratios are
    recomputed (time-weighted availability, ideal-time-weighted performance, count-weighted
    quality). Used for a site, pooling the output machines of its lines."""
    if not results:
        return None
    out = OeeResult(min(r.start_ns for r in results), max(r.end_ns for r in results))
    for name in ("running_s", "small_stop_s", "breakdown_s", "other_stop_s", "setup_s", "planned_stop_s",
                 "unknown_s", "total", "good", "reject", "startup_reject", "ideal_s", "gap_total", "ideal_reject_s",
                 "ideal_startup_reject_s", "small_stops", "stops", "counter_faults"):
        setattr(out, name, sum(getattr(r, name) for r in results))
    return out.finish()


def bottleneck(results: dict[str, OeeResult]) -> Optional[str]:
    """The machine of a line that limits it: the lowest OEE (ties: the first in line order);
    a machine without an OEE (no planned time or no parts) is not a candidate."""
    best, worst = None, None
    for mid, r in results.items():
        o = r.oee
        if o is not None and (worst is None or o < worst):
            best, worst = mid, o
    return best
