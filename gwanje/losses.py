"""The six big losses of an OEE result, and the downtime-reason Pareto. Pure code, no I/O.

Losses are minutes of planned production time (PPT) and their share of it:
  breakdowns          DOWN stops at least small_stop_s long
  setup               SETUP time (setup and adjustment)
  small_stops         IDLE/DOWN stops shorter than small_stop_s
  reduced_speed       running time - ideal time of all parts (negative when performance > 100 %)
  startup_rejects     ideal time of the rejects made within startup_window_s after a setup
  production_rejects  ideal time of the other rejects
plus other_stops (long IDLE: waiting for material or an operator), which is an availability
loss without a place among the six, shown rather than hidden. Together with the ideal time of
the good parts they add up to PPT exactly when good + reject = total.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from gwanje.model import NS_PER_S, Event, MachineState
from gwanje.oee import OeeResult
from gwanje.state import StateInterval

LOSS_NAMES = ("breakdowns", "setup", "small_stops", "reduced_speed", "startup_rejects",
              "production_rejects", "other_stops")

LOSS_LABELS = {
    "breakdowns": {"ko": "설비 고장", "en": "Breakdowns"},
    "setup": {"ko": "작업 준비·조정", "en": "Setup and adjustment"},
    "small_stops": {"ko": "순간 정지", "en": "Small stops"},
    "reduced_speed": {"ko": "속도 저하", "en": "Reduced speed"},
    "startup_rejects": {"ko": "초기 불량", "en": "Startup rejects"},
    "production_rejects": {"ko": "공정 불량", "en": "Production rejects"},
    "other_stops": {"ko": "기타 정지(대기)", "en": "Other stops (waiting)"},
}


@dataclass(frozen=True)
class Loss:
    name: str
    minutes: float
    share: Optional[float]  # of planned production time; None when there is none


def six_big_losses(r: OeeResult) -> list[Loss]:
    seconds = {
        "breakdowns": r.breakdown_s,
        "setup": r.setup_s,
        "small_stops": r.small_stop_s,
        "reduced_speed": r.running_s - r.ideal_s,
        "startup_rejects": r.ideal_startup_reject_s,
        "production_rejects": r.ideal_reject_s - r.ideal_startup_reject_s,
        "other_stops": r.other_stop_s,
    }
    ppt = r.planned_s
    return [Loss(n, seconds[n] / 60.0, seconds[n] / ppt if ppt > 0 else None) for n in LOSS_NAMES]


@dataclass(frozen=True)
class Stop:
    machine: str
    start_ns: int
    end_ns: int
    state: MachineState

    @property
    def minutes(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S / 60.0


STOP_STATES = (MachineState.DOWN, MachineState.IDLE, MachineState.SETUP)


def stops_of(machine: str, intervals: Iterable[StateInterval], start_ns: int, end_ns: int,
             min_s: float = 0.0) -> list[Stop]:
    """Stops (down, idle, setup) within the window, at least min_s long after clipping. A stop
    is identified by its start time: that is the key a downtime reason is stored under."""
    out = []
    for iv in intervals:
        c = iv.clip(start_ns, end_ns)
        if c and c.state in STOP_STATES and c.duration_ns >= min_s * NS_PER_S:
            out.append(Stop(machine, iv.start_ns, c.end_ns, c.state))
    return out


UNASSIGNED = "unassigned"


def reason_pareto(stops: Sequence[Stop], reasons: Sequence[Event]) -> list[tuple[str, float, int]]:
    """(reason, minutes, number of stops), largest first. The newest assignment for a stop
    wins; stops without one are 'unassigned' (a supervisor still owes a reason)."""
    by_stop: dict[tuple[str, int], tuple[int, str]] = {}
    for ev in reasons:
        try:
            start = int(ev.key)
        except ValueError:
            continue
        k = (ev.machine, start)
        assigned_at = int(ev.data.get("assigned_ns", ev.ts))
        if k not in by_stop or assigned_at >= by_stop[k][0]:
            by_stop[k] = (assigned_at, str(ev.data.get("reason", UNASSIGNED)))
    totals: dict[str, list[float]] = {}
    for s in stops:
        reason = by_stop.get((s.machine, s.start_ns), (0, UNASSIGNED))[1]
        t = totals.setdefault(reason, [0.0, 0])
        t[0] += s.minutes
        t[1] += 1
    return sorted(((k, v[0], int(v[1])) for k, v in totals.items()), key=lambda x: (-x[1], x[0]))
