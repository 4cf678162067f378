"""Two recent production days of the small test plant (tests/engine/conftest.py), as the real
engine and the real alarm lifecycle record them: the events a user queries in the typed
measurements (docs/schema.md). The days are the two latest whose shift (06:00-14:00 Asia/Seoul)
has closed, so `time > now() - 7d` in the docs' examples covers them.

What is known by construction, for the tests to check the answers against:
  DOWN_MIN[(machine, day)]     breakdown minutes (one interval each)
  CRITICAL_RAISED[day]         critical alarms raised
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from alerts.lifecycle import Action, apply, new_alarm
from gwanje.engine import Engine
from gwanje.lots import LotTracker
from gwanje.model import NS_PER_S, Event, Sample
from gwanje.audit import audit_event
from gwanje.signal_meta import signal_meta_events
from tests.engine.conftest import PLANT, SEOUL, SHIFTS_8H, make_config

STEP_S = 10  # one sample of each signal every 10 s
RUN, IDLE, DOWN = 3.0, 1.0, 4.0
MACHINES = (("s1", "l1", "m1"), ("s1", "l1", "m2"), ("s1", "p1", "press"))
# per machine: (minutes, code, parts) from 06:00 to 14:00, the breakdown lasting down_min
PLANS = {
    "m1": lambda down: [(60, RUN, 110), (down, DOWN, 0), (420 - down, RUN, 800)],
    "m2": lambda down: [(100, RUN, 190), (down, DOWN, 0), (380 - down, RUN, 700)],
    "press": lambda down: [(200, RUN, 3500), (10, IDLE, 0), (270, RUN, 5000)],
}
DOWN_BY_DAY = ({"m1": 45, "m2": 20, "press": 0}, {"m1": 30, "m2": 20, "press": 0})
SHIFTS = {**SHIFTS_8H, "products": [{"id": "bracket", "lot_prefix": "BR-", "ideal_cycle_s": {"m1": 30, "m2": 30}}]}


@dataclass
class PlantData:
    days: tuple[date, date]
    events: list[Event]
    engine_events: list[Event]
    down_min: dict[tuple[str, date], float]
    critical_raised: dict[date, int]


def kst_ns(d: date, h: int, mi: int = 0) -> int:
    return int(datetime(d.year, d.month, d.day, h, mi, tzinfo=SEOUL).timestamp()) * NS_PER_S


def latest_closed_days(now_ns: int) -> tuple[date, date]:
    now = datetime.fromtimestamp(now_ns / NS_PER_S, SEOUL)
    last = now.date() if now.hour * 60 + now.minute >= 14 * 60 + 15 else now.date() - timedelta(days=1)
    return last - timedelta(days=1), last


def day_samples(machine: tuple[str, str, str], d: date, down: int, totals: list[int], lot: str,
                parents: str = "") -> list[Sample]:
    site, line, mach = machine
    t = kst_ns(d, 6)
    out = [Sample(site, line, mach, "lot", lot, t)]
    if parents:  # the MES names the LOT it continues (docs/lots.md)
        out.append(Sample(site, line, mach, "lot_parents", parents, t))
    for minutes, code, parts in PLANS[mach](down):
        steps = minutes * 60 // STEP_S
        for i in range(steps):
            totals[0] += parts * (i + 1) // steps - parts * i // steps
            total = totals[0]
            reject = total // 50
            out += [Sample(site, line, mach, "state", code, t), Sample(site, line, mach, "part_count_total", float(total), t),
                    Sample(site, line, mach, "part_count_good", float(total - reject), t),
                    Sample(site, line, mach, "part_count_reject", float(reject), t)]
            t += STEP_S * NS_PER_S
    return out


def alarm_events(days: tuple[date, date]) -> tuple[list[Event], dict[date, int]]:
    """Critical and high alarms through the real ISA-18.2 lifecycle."""
    d1, d2 = days
    script = [  # (alarm id, machine, priority, raised at, acknowledged by)
        ("vibration_high:s1/l1/m1", "m1", "critical", kst_ns(d1, 7, 10), "kim"),
        ("spindle_overload:s1/l1/m2", "m2", "critical", kst_ns(d1, 9), "lee"),
        ("oil_low:s1/p1/press", "press", "high", kst_ns(d2, 8), "park"),
        ("vibration_high:s1/l1/m1", "m1", "critical", kst_ns(d2, 11), "kim"),
    ]
    events, states, raised = [], {}, {d1: 0, d2: 0}
    for alarm_id, mach, prio, t, user in script:
        line = "p1" if mach == "press" else "l1"
        s = states.get(alarm_id) or new_alarm(alarm_id, alarm_id.split(":")[0], "s1", line, mach, "vibration", prio)
        for action, at, kw in ((Action.ACTIVATE, t, {"value": 12.5, "priority": prio, "message_en": f"{alarm_id} high",
                                                     "message_ko": "경보"}),
                               (Action.ACKNOWLEDGE, t + 5 * 60 * NS_PER_S, {"user": user}),
                               (Action.CLEAR, t + 10 * 60 * NS_PER_S, {})):
            s, e = apply(s, action, at, **kw)
            events.append(e)
        states[alarm_id] = s
        if prio == "critical":
            raised[datetime.fromtimestamp(t / NS_PER_S, SEOUL).date()] += 1
    return events, raised


def build(tmp: Path, now_ns: int) -> PlantData:
    config = make_config(tmp, shifts=SHIFTS, plant=PLANT)
    days = latest_closed_days(now_ns)
    engine = Engine(config, clock=None)
    lots = LotTracker(config)
    lots.restored = True
    engine_events: list[Event] = []
    totals = {m: [0] for m in MACHINES}
    for n, (d, downs) in enumerate(zip(days, DOWN_BY_DAY)):
        parents = f"BR-{days[0]:%m%d}" if n else ""
        batch = sorted((s for m in MACHINES
                        for s in day_samples(m, d, downs[m[2]], totals[m], f"BR-{d:%m%d}", parents)),
                       key=lambda s: s.ts)
        for i in range(0, len(batch), 2000):
            engine_events += engine.on_samples(batch[i:i + 2000])
            engine_events += lots.on_samples(batch[i:i + 2000])
        # the plant is silent after 14:00: the wall clock closes the shift and the last minutes
        engine_events += engine.tick(kst_ns(d, 14, 10))
    alarms, critical = alarm_events(days)
    engine_events += lots.on_alarm_events(alarms) + lots.tick(kst_ns(days[1], 15))
    meta = signal_meta_events(config, kst_ns(days[0], 5))
    down = {(m[2], d): float(downs[m[2]]) for d, downs in zip(days, DOWN_BY_DAY) for m in MACHINES if downs[m[2]]}
    audit = [audit_event("login", "kim", "operator", ts_ns=kst_ns(days[0], 6, 1), detail="password", client="10.0.0.7"),
             audit_event("shift.downtime_reason", "kim", "operator", "s1/l1/m1 stop 1", before=None,
                         after="material", ts_ns=kst_ns(days[0], 9), site="s1", line="l1", machine="m1"),
             audit_event("login_failed", "mallory", ts_ns=kst_ns(days[1], 3), ok=False, detail="bad_credentials")]
    return PlantData(days, engine_events + alarms + meta + audit, engine_events, down, critical)
