"""Simulated machines of the demonstration sites: what their PLCs would report, second by second.

Pure code, no I/O and no wall clock: a `Plant` is stepped with explicit times (ns since the
epoch) and answers, for every configured machine, the values of its class's signals at that
time. Everything random comes from one `random.Random` per machine, seeded from the plant seed
and the machine's key, so the same seed and the same step times give the same output.

The model is event driven: between two step times it jumps from event to event (a part
finished, a failure, the end of a repair, a break starting, a shift change), so a step of one
second and a jump over a whole night cost the same per event and give the same trajectory.
Process noise is drawn from a second generator per machine at output time, so how often the
plant is stepped never changes when machines fail or how many parts they make.

What a machine does (all draws per machine, so some machines are better than others):
- running: a part every ideal_cycle_s x 1.05..1.25 (never at the ideal: performance < 100 %),
  1-3 % rejects, more right after a setup (startup rejects) and before a failure;
- failures after an exponential amount of running time (MTBF), repaired after an exponential
  MTTR; some announce themselves (CNC spindle: vibration creeps up; injection cooling: the
  mold temperature drifts up) so alarms have something to catch before the stop;
- micro-stops (< 2 min, several per hour), idle (waiting for material), setups (a changeover
  when the LOT quantity is done and the next LOT begins, with its LOT number);
- LOTs (LotFlow, docs/lots.md): lines run the products whose route names their process;
  LOTs are released at a route's first process, wait in buffers between processes, split in
  two child LOTs on the way to CNC and merge two injection LOTs into an assembly LOT; a
  machine with no LOT to take reports lot "" and waits idle. Machines of lines without a
  product make up their own LOTs (L<YYMM>-<nnnn>);
- planned stops exactly when the engine's shift calendar (config/shifts.yaml, gwanje.shifts)
  has them: breaks, days off, time outside every shift;
- part counters reset to 0 at every shift start and wrap at 2**counter_bits like PLC counters
  (some 16-bit presses start near 65,535 so the demo shows a wrap early).
The state signal carries the PLC code from the class's state_codes, never a state name.
"""
from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Optional, Union
from zoneinfo import ZoneInfo

from gwanje.config import Config, MachineSpec, SignalDef
from gwanje.model import NS_PER_S
from gwanje.shifts import ProductDef, ShiftCalendar, load_shifts

Value = Union[int, float, str]

# internal states; MICRO_STOP is reported with an idle code (a short hold, not a breakdown)
RUNNING, MICRO_STOP, IDLE, DOWN, SETUP, PLANNED = (
    "running", "micro_stop", "idle", "down", "setup", "planned_stop")
STATES = (RUNNING, MICRO_STOP, IDLE, DOWN, SETUP, PLANNED)

# means of the random process, in seconds; each machine scales them by its own factors
MTBF_S = 6 * 3600.0  # running time between failures
MTTR_S = 25 * 60.0
MTTR_MIN_S, MTTR_MAX_S = 3 * 60.0, 3 * 3600.0
MICRO_EVERY_S = 15 * 60.0  # running time between micro-stops
MICRO_MIN_S, MICRO_MAX_S = 10.0, 110.0  # a micro-stop is shorter than 2 min
IDLE_EVERY_S = 4 * 3600.0  # running time between waits for material
IDLE_MIN_S, IDLE_MAX_S = 4 * 60.0, 20 * 60.0
LOT_MIN_H, LOT_MAX_H = 4.0, 9.0  # running time a lot takes, sets the lot quantity
SETUP_MIN_S, SETUP_MAX_S = 15 * 60.0, 40 * 60.0
# the next LOT of the product already on the machine: no die or mold change, a short LOT change
LOT_CHANGE_MIN_S, LOT_CHANGE_MAX_S = 3 * 60.0, 8 * 60.0
PERF_MIN, PERF_MAX = 1.05, 1.25  # actual cycle / ideal cycle
STARTUP_PARTS = 12  # parts after a setup made in start-up mode, with extra rejects
STARTUP_REJECT_P = 0.15
PRECURSOR_REJECT_P = 0.05  # extra reject probability at the end of a failure's precursor
AMBIENT_C = 24.0
# a step further ahead than this restarts the model instead of replaying every part
MAX_CATCHUP_NS = 3 * 86_400 * NS_PER_S
NEAR_WRAP_MIN, NEAR_WRAP_MAX = 40, 400  # parts before a near-wrap counter reaches 2**bits

_INF = float("inf")


class Timetable:
    """Shift starts and planned stops of the engine's calendar, as sorted boundaries.

    Precomputed for a window of days around the asked time and shared by all machines of a
    plant (they are stepped to the same times)."""

    BEFORE_NS = 86_400 * NS_PER_S
    AFTER_NS = 3 * 86_400 * NS_PER_S

    def __init__(self, calendar: ShiftCalendar, work_days_off: bool = False) -> None:
        self.calendar = calendar
        self.work_days_off = work_days_off
        self._lo = self._hi = 0
        self._stops: list[tuple[int, int]] = []
        self._stop_starts: list[int] = []
        self._shift_starts: list[int] = []
        self._bounds: list[int] = []

    def _ensure(self, t: int) -> None:
        # trust only boundaries a day before the window's end: a stop clipped by the window
        # edge must not look like a real end
        if self._lo <= t < self._hi - 86_400 * NS_PER_S:
            return
        lo, hi = t - self.BEFORE_NS, t + self.AFTER_NS
        shifts = self.calendar.shifts_between(lo, hi)
        if self.work_days_off:
            stops = sorted(b for s in shifts for b in s.breaks)
        else:
            stops = self.calendar.planned_stops(lo, hi)
        self._lo, self._hi = lo, hi
        self._stops = stops
        self._stop_starts = [a for a, _ in stops]
        self._shift_starts = sorted(s.start_ns for s in shifts)
        self._bounds = sorted({x for ab in stops for x in ab} | set(self._shift_starts))

    def planned_end(self, t: int) -> Optional[int]:
        """End of the planned stop t lies in, or None when t is working time."""
        self._ensure(t)
        i = bisect.bisect_right(self._stop_starts, t) - 1
        if i >= 0 and self._stops[i][0] <= t < self._stops[i][1]:
            return self._stops[i][1]
        return None

    def next_boundary(self, t: int) -> int:
        """The first shift start, stop start or stop end after t (or a window edge)."""
        self._ensure(t)
        i = bisect.bisect_right(self._bounds, t)
        limit = self._hi - 86_400 * NS_PER_S
        return min(self._bounds[i], limit) if i < len(self._bounds) else limit

    def is_shift_start(self, t: int) -> bool:
        self._ensure(t)
        i = bisect.bisect_left(self._shift_starts, t)
        return i < len(self._shift_starts) and self._shift_starts[i] == t

    def shift_start(self, t: int) -> int:
        """The latest shift start at or before t (t itself when none is known)."""
        self._ensure(t)
        i = bisect.bisect_right(self._shift_starts, t) - 1
        return self._shift_starts[i] if i >= 0 else t


def _code(c: float | str) -> Value:
    # PLCs report integer codes; YAML numbers may arrive as floats
    if isinstance(c, float) and c.is_integer():
        return int(c)
    return c


def _state_codes(spec: MachineSpec) -> dict[str, list[Value]]:
    """PLC code(s) to report for each internal state, falling back to the nearest state the
    class has codes for (a class needs only running codes)."""
    sc = spec.klass.state_codes
    lists = {k: [_code(c) for c in getattr(sc, k)] for k in ("running", "idle", "down", "setup", "planned_stop")}
    any_stop = lists["idle"] or lists["down"] or lists["setup"] or lists["planned_stop"] or lists["running"]

    def first(*names: str) -> list[Value]:
        for n in names:
            if lists[n]:
                return lists[n]
        return any_stop

    idle = first("idle", "down")
    return {
        RUNNING: lists["running"],
        # a hold (CNC feed hold = 2) is the last idle code; waiting for material the first
        MICRO_STOP: [idle[-1]],
        IDLE: [idle[0]],
        DOWN: [first("down", "idle")[0]],
        SETUP: [first("setup", "down", "idle")[0]],
        PLANNED: [first("planned_stop", "idle", "down")[0]],
    }


class MachineModel:
    """One simulated machine. `advance(t)` moves it to time t; `values()` reads its signals."""

    def __init__(self, spec: MachineSpec, seed: int, timetable: Timetable, tz: ZoneInfo,
                 start_near_wrap: bool = False) -> None:
        self.spec = spec
        self.timetable = timetable
        self.tz = tz
        key = "/".join(spec.key)
        # str seeds hash through sha512: stable across processes, unlike hash()
        self.rng = random.Random(f"{seed}|{key}")
        self.noise = random.Random(f"{seed}|{key}|noise")
        self.seed_key = f"{seed}|{key}"
        # process faults and gauges (docs/quality.md): generators of their own, so the machine's
        # states and parts are the same with faults on or off
        self.frng = random.Random(f"{seed}|{key}|faults")
        self.grng = random.Random(f"{seed}|{key}|gauge")
        self.fault_every_s = 0.0
        self.fault: Optional[dict] = None
        self.fault_log: list[dict] = []  # ended faults, oldest first (Plant.faults)
        self.fault_in_ns = 0
        self.gauge: dict[str, float] = {}
        self.gauge_off = {g: self.grng.gauss(0.0, 0.25) * GAUGES[g][1] for g in GAUGES}
        d = spec.definition
        self.ideal_s = d.ideal_cycle_s
        self.wrap = 2 ** d.counter_bits
        self.start_near_wrap = start_near_wrap
        self.codes = _state_codes(spec)
        k = spec.klass
        self.state_signal, self.total_signal = k.state_signal, k.total_signal
        self.good_signal, self.reject_signal = k.good_signal, k.reject_signal
        self.signal_ids = {s.id for s in k.signals}
        r = self.rng
        # the machine's character: fixed for its life
        self.perf = r.uniform(1.08, 1.18)
        self.reject_p = r.uniform(0.01, 0.03)
        self.mtbf_s = MTBF_S * r.uniform(0.6, 1.6)
        self.mttr_s = MTTR_S * r.uniform(0.7, 1.3)
        self.micro_every_s = MICRO_EVERY_S * r.uniform(0.6, 1.5)
        self.idle_every_s = IDLE_EVERY_S * r.uniform(0.7, 1.4)
        self.ambient = AMBIENT_C + r.uniform(-2.0, 2.0)
        self.t: Optional[int] = None
        self.time_in: dict[str, int] = dict.fromkeys(STATES, 0)  # ns spent per state
        self.base_ideal_s = d.ideal_cycle_s
        self.lot_scale = 1.0
        # the plant's LOT flow, when the machine's line runs products with routes (LotFlow);
        # None: the machine makes up its own LOTs (no products in shifts.yaml for its line)
        self.flow: Optional[LotFlow] = None
        self.idx = 0  # index in the plant
        self.rr = 0  # which of its line's products it asks for first (several products per line)
        self.lot = self.lot_product = self.lot_parents = ""
        self.lot_qty = self.lot_good = self.lot_step = 0
        self.last_product = ""
        self.waiting = False  # idle, no LOT: waiting for material in the buffer before it

    # ------------------------------------------------------------------ draws
    def _cycle_s(self) -> float:
        return self.ideal_s * min(PERF_MAX, max(PERF_MIN, self.perf * self.rng.uniform(0.96, 1.05)))

    def _new_failure(self) -> None:
        r = self.rng
        self.fail_in_ns = int(r.expovariate(1.0 / self.mtbf_s) * NS_PER_S) + NS_PER_S
        # which failures announce themselves depends on what the machine can show
        kinds = ["plain"]
        if "vibration" in self.signal_ids:
            kinds += ["spindle", "spindle"]
        if "mold_temp" in self.signal_ids:
            kinds += ["cooling", "cooling"]
        self.fail_kind = r.choice(kinds)
        self.precursor_ns = int(r.uniform(20, 60) * 60 * NS_PER_S)
        self.precursor_mag = r.uniform(0.7, 1.0)

    def _new_lot(self, t: int, lot: Optional["Lot"] = None) -> None:
        r = self.rng
        if lot is None:  # no LOT flow: the machine's own LOT number and quantity
            self.lot_seq = self.lot_seq % 9999 + 1
            day = datetime.fromtimestamp(t // NS_PER_S, self.tz)
            self.lot = f"L{day.year % 100:02d}{day.month:02d}-{self.lot_seq:04d}"
            self.lot_left = max(1, int(r.uniform(LOT_MIN_H, LOT_MAX_H) * 3600 / (self.ideal_s * self.perf)
                                       * self.lot_scale))
            self.lot_qty = self.lot_left
        else:
            same = lot.product.id == self.last_product
            self.last_product = lot.product.id
            self.lot, self.lot_product, self.lot_parents = lot.number, lot.product.id, lot.parents
            self.lot_qty = self.lot_left = lot.qty
            self.lot_step = lot.step
            self.ideal_s = lot.product.ideal_cycle_s.get(self.spec.machine, self.base_ideal_s)
            self.lot_good = 0
            if same:
                return  # the product's recipe stays
        self.lot_good = 0
        # the new product's recipe: setpoints of the process signals
        self.sp = self._recipe(r)
        if lot is not None:  # a product's recipe on this machine is the same every time it runs
            self.sp = self._recipe(random.Random(f"{self.seed_key}|recipe|{lot.product.id}"))

    @staticmethod
    def _recipe(r: random.Random) -> dict[str, float]:
        return {
            "rpm": r.choice((4500.0, 6000.0, 8000.0, 9500.0)), "load": r.uniform(35, 65),
            "feed": r.uniform(800, 2200), "vib": r.uniform(1.2, 2.4),
            "force": r.uniform(8000, 18000), "billet": r.uniform(1150, 1220),
            "melt": r.uniform(220, 260), "mold": r.uniform(40, 80), "pressure": r.uniform(600, 1400),
            "torque": r.uniform(4, 12), "tonnage": r.uniform(200, 600), "die": r.uniform(55, 75),
        }

    # ------------------------------------------------------------------ process faults
    def _draw_fault_in(self) -> None:
        self.fault_in_ns = int(self.frng.expovariate(1.0 / self.fault_every_s) * NS_PER_S) + NS_PER_S \
            if self.fault_every_s > 0 else 1 << 62

    def _maybe_fault(self) -> None:
        """At a part: a fault starts when its running time has come (docs/quality.md)."""
        t = self.t
        f = self.fault
        if f is not None and t >= f["end_ns"]:
            self._end_fault(t)
        if self.fault is None and self.fault_in_ns <= 0 and self.spec.definition.klass in FAULTS:
            kind, ramp, delay, signals = FAULTS[self.spec.definition.klass]
            r = self.frng
            self.fault = {"kind": kind, "start_ns": t, "ramp_ns": int(r.uniform(*ramp) * 60 * NS_PER_S),
                          "reject_from_ns": t + int(r.uniform(*delay) * 60 * NS_PER_S),
                          "end_ns": t + int(r.uniform(30, 90) * 60 * NS_PER_S), "gain": r.uniform(0.25, 0.4),
                          "mag": r.uniform(0.8, 1.2), "signals": list(signals)}
            self._draw_fault_in()

    def _end_fault(self, t: int) -> None:
        f = self.fault
        if f is None:
            return
        self.fault = None
        self.fault_log.append({"site": self.spec.site, "line": self.spec.line, "machine": self.spec.machine,
                               "kind": f["kind"], "start_ns": f["start_ns"], "end_ns": min(t, f["end_ns"]),
                               "signals": f["signals"], "reject_from_ns": f["reject_from_ns"]})

    def severity(self) -> float:
        """0..1: how far the running process fault has grown (0 without one)."""
        f = self.fault
        if f is None or self.t is None or self.t >= f["end_ns"]:
            return 0.0
        return f["mag"] * min(1.0, (self.t - f["start_ns"]) / max(1, f["ramp_ns"]))

    def open_faults(self) -> list[dict]:
        f = self.fault
        if f is None:
            return []
        return [{"site": self.spec.site, "line": self.spec.line, "machine": self.spec.machine, "kind": f["kind"],
                 "start_ns": f["start_ns"], "end_ns": None, "signals": f["signals"],
                 "reject_from_ns": f["reject_from_ns"]}]

    def _gauges(self) -> None:
        """A part was made: the in-line gauges measure it."""
        sev = self.severity()
        for g, (nominal, sigma, shift, nd) in GAUGES.items():
            if g in self.signal_ids:
                v = nominal + self.gauge_off[g] + self.grng.gauss(0.0, sigma) + shift * sev
                self.gauge[g] = round(max(0.0, v), nd)

    # ------------------------------------------------------------------ start
    def _start(self, t: int) -> None:
        r = self.rng
        self.t = t
        self.lot_seq = r.randint(1, 80)
        self.waiting = False
        self._new_lot(t, self.flow.initial(self, t) if self.flow is not None else None)
        self.lot_left = r.randint(1, self.lot_left)  # joined in the middle of a lot
        self.lot_good = int((self.lot_qty - self.lot_left) * (1 - self.reject_p))
        self.since_setup = STARTUP_PARTS
        self._new_failure()
        self.fail_in_ns = int(r.uniform(0.2, 1.0) * self.fail_in_ns) + NS_PER_S
        self.fault = None
        self._draw_fault_in()
        for g, (nominal, sigma, _shift, nd) in GAUGES.items():
            self.gauge[g] = round(nominal + self.gauge_off[g] + self.grng.gauss(0.0, sigma), nd)
        self.cycle_s = self._cycle_s()
        self.last_cycle_s = self.cycle_s
        self.part_left_ns = int(r.uniform(0, self.cycle_s) * NS_PER_S)
        self.part_due = _INF
        if self.start_near_wrap:
            self.total = self.wrap - r.randint(NEAR_WRAP_MIN, NEAR_WRAP_MAX)
            self.reject = int(self.total * self.reject_p)
        else:
            # the shift has been producing since it started
            shift_s = (t - self.timetable.shift_start(t)) / NS_PER_S
            self.total = int(shift_s * 0.7 / (self.ideal_s * self.perf))
            self.reject = int(self.total * self.reject_p)
        self.good = self.total - self.reject
        self.state = ""
        self.until: float = _INF
        self.heat: dict[str, tuple[float, int]] = {}
        self.bound = self.timetable.next_boundary(t)
        self._resume(t)
        # warm (or cold) as if the machine had been in its state for long
        self.heat = {sid: (self._heat_target(sid), t) for sid in THERMAL if sid in self.signal_ids}

    # ------------------------------------------------------------------ transitions
    def _set(self, state: str, until: float) -> None:
        t = self.t
        for sid in self.heat:
            self.heat[sid] = (self._heat_now(sid, t), t)  # rebase: the target changes with state
        if self.state == RUNNING and state != RUNNING:
            self.part_left_ns = max(1, int(self.part_due - t))
        if state in (SETUP, DOWN) and self.fault is not None:
            self._end_fault(t)  # the changeover or the repair fixes the tool, mold, billet heater or die
        self.state, self.until = state, until
        self.waiting = False
        if state == RUNNING:
            self.part_due = t + self.part_left_ns
            r = self.rng
            stops = (
                (t + self.fail_in_ns, DOWN),
                (t + int(r.expovariate(1.0 / self.micro_every_s) * NS_PER_S) + NS_PER_S, MICRO_STOP),
                (t + int(r.expovariate(1.0 / self.idle_every_s) * NS_PER_S) + NS_PER_S, IDLE),
            )
            self.until, self.pending = min(stops)

    def _resume(self, t: int) -> None:
        """Leave a stop: a planned stop if the calendar says so, else back to running."""
        end = self.timetable.planned_end(t)
        if end is not None:
            self._set(PLANNED, end)
        elif self.flow is not None and not self.lot:
            self._next_lot()  # no LOT on the machine: take one, or wait for one
        else:
            self._set(RUNNING, _INF)

    # ------------------------------------------------------------------ LOT flow
    def _next_lot(self) -> None:
        """Take the next LOT from the flow (a changeover follows), or wait idle without one."""
        assert self.flow is not None
        lot = self.flow.take(self, self.t)
        if lot is None:
            self._set(IDLE, _INF)  # waiting for material: idle until the flow wakes it
            self.waiting = True
            self.flow.wait(self)
        else:
            self._begin(lot)

    def _begin(self, lot: "Lot") -> None:
        r, t = self.rng, self.t
        same = lot.product.id == self.last_product
        self._new_lot(t, lot)  # the operator enters the new LOT when the changeover starts
        self.since_setup = 0
        self.cycle_s = self._cycle_s()  # the new product's cycle
        self.part_due = t + int(self.cycle_s * NS_PER_S)
        if self.state != RUNNING:
            self.part_left_ns = int(self.cycle_s * NS_PER_S)
        # a changeover of another product changes dies/molds; smaller demo LOTs, shorter changes
        lo, hi = (LOT_CHANGE_MIN_S, LOT_CHANGE_MAX_S) if same else (SETUP_MIN_S, SETUP_MAX_S)
        self._set(SETUP, t + max(NS_PER_S, int(r.uniform(lo, hi) * min(1.0, self.lot_scale) * NS_PER_S)))

    def try_wake(self, t: int) -> bool:
        """Material arrived: a machine waiting for it at time t takes a LOT."""
        if self.t is None or self.t < t:
            self.advance(t)
        if not (self.waiting and self.state == IDLE) or self.flow is None:
            return False
        lot = self.flow.take(self, t)
        if lot is None:
            return False
        self._begin(lot)
        return True

    def next_event(self) -> float:
        """The time of the machine's next event (ns)."""
        return min(self.bound, self.until, self.part_due if self.state == RUNNING else _INF)

    def _on_boundary(self) -> None:
        t = self.t
        if self.timetable.is_shift_start(t):
            self.total = self.good = self.reject = 0
        end = self.timetable.planned_end(t)
        if end is not None and self.state in (RUNNING, MICRO_STOP, IDLE):
            self._set(PLANNED, end)
        elif end is not None and self.state == PLANNED:
            self.until = end  # adjacent stops (a break that runs into a day off)
        elif end is None and self.state == PLANNED:
            self._resume(t)
        self.bound = self.timetable.next_boundary(t)

    def _on_part(self) -> None:
        r = self.rng
        self.last_cycle_s = self.cycle_s
        self._maybe_fault()
        p = self.reject_p + PRECURSOR_REJECT_P * self.precursor()
        f = self.fault
        if f is not None and self.t >= f["reject_from_ns"]:
            p += f["gain"] * self.severity()
        if self.since_setup < STARTUP_PARTS:
            p += STARTUP_REJECT_P * (1 - self.since_setup / STARTUP_PARTS)
        self.total += 1
        self._gauges()
        if r.random() < p:
            self.reject += 1
        else:
            self.good += 1
            self.lot_good += 1
        self.since_setup += 1
        self.lot_left -= 1
        self.cycle_s = self._cycle_s()
        self.part_due = self.t + int(self.cycle_s * NS_PER_S)
        if self.lot_left <= 0 and self.flow is not None:
            self.flow.finish(self, self.t)  # the LOT ends: its parts go on along its route
            self._next_lot()
        elif self.lot_left <= 0:
            self._new_lot(self.t)  # the operator enters the new LOT when the changeover starts
            self.since_setup = 0
            self._set(SETUP, self.t + int(r.uniform(SETUP_MIN_S, SETUP_MAX_S) * NS_PER_S))

    def _on_state_end(self) -> None:
        r, t = self.rng, self.t
        if self.state != RUNNING:
            self._resume(t)
        elif self.pending == DOWN:
            if self.fail_kind != "plain":  # ground truth: the failure's warning sign (approximate start)
                self.fault_log.append({"site": self.spec.site, "line": self.spec.line, "machine": self.spec.machine,
                                       "kind": f"precursor_{self.fail_kind}", "start_ns": t - self.precursor_ns,
                                       "end_ns": t, "signals": ["vibration", "spindle_load"]
                                       if self.fail_kind == "spindle" else ["mold_temp"], "reject_from_ns": None})
            d = min(MTTR_MAX_S, max(MTTR_MIN_S, r.expovariate(1.0 / self.mttr_s)))
            self._new_failure()
            self._set(DOWN, t + int(d * NS_PER_S))
        elif self.pending == MICRO_STOP:
            self._set(MICRO_STOP, t + int(r.uniform(MICRO_MIN_S, MICRO_MAX_S) * NS_PER_S))
        else:
            self._set(IDLE, t + int(r.uniform(IDLE_MIN_S, IDLE_MAX_S) * NS_PER_S))

    def advance(self, now: int) -> None:
        """Move the machine to time `now` (ns). Earlier times are ignored (a clock step back
        must not undo production)."""
        if self.t is None or now - self.t > MAX_CATCHUP_NS:
            self._start(now)
            return
        while self.t < now:
            running = self.state == RUNNING
            nxt = min(now, self.bound, self.until, self.part_due if running else _INF)
            nxt = int(nxt)
            dt = nxt - self.t
            self.time_in[self.state] += dt
            if running:
                self.fail_in_ns -= dt
                self.fault_in_ns -= dt
            self.t = nxt
            if nxt >= self.bound:
                self._on_boundary()
            if self.state == RUNNING and nxt >= self.part_due:
                self._on_part()
            if nxt >= self.until:
                self._on_state_end()

    # ------------------------------------------------------------------ outputs
    def precursor(self) -> float:
        """0..1: how far the coming failure's warning sign has grown (0 when none)."""
        if self.fail_kind == "plain" or self.fail_in_ns >= self.precursor_ns:
            return 0.0
        return self.precursor_mag * (1.0 - max(0, self.fail_in_ns) / self.precursor_ns)

    def _heat_target(self, sid: str) -> float:
        key, _tau, hot_states = THERMAL[sid]
        return self.sp[key] if self.state in hot_states else self.ambient

    def _heat_now(self, sid: str, t: int) -> float:
        v0, t0 = self.heat[sid]
        tau = THERMAL[sid][1]
        target = self._heat_target(sid)
        return target + (v0 - target) * math.exp(-(t - t0) / (tau * NS_PER_S))

    @property
    def code(self) -> Value:
        codes = self.codes[self.state]
        # two running codes (Euromap: automatic / semi-automatic): start-up runs semi-automatic
        if self.state == RUNNING and len(codes) > 1 and self.since_setup < STARTUP_PARTS:
            return codes[1]
        return codes[0]

    def values(self) -> dict[str, Value]:
        """Every signal of the machine's class at the model's current time."""
        out: dict[str, Value] = {}
        running = self.state == RUNNING
        for s in self.spec.signals:
            sid = s.id
            if sid == self.state_signal:
                out[sid] = self.code
            elif sid == self.total_signal:
                out[sid] = self.total % self.wrap
            elif sid == self.good_signal:
                out[sid] = self.good % self.wrap
            elif sid == self.reject_signal:
                out[sid] = self.reject % self.wrap
            elif s.kind == "text":
                out[sid] = (self.lot if sid == "lot" else self.lot_product if sid == "lot_product"
                            else self.lot_parents if sid == "lot_parents" else "")
            elif sid in self.gauge:
                out[sid] = self.gauge[sid]
            elif sid == "lot_qty":
                out[sid] = self.lot_qty if self.lot else 0
            elif s.kind in ("counter", "state"):
                out[sid] = 0
            else:
                out[sid] = round(self._analog(s, running), 2)
        return out

    def _analog(self, s: SignalDef, running: bool) -> float:
        n = self.noise.gauss(0.0, 1.0)
        if s.id in THERMAL:
            noise = THERMAL_NOISE.get(s.id, 0.5) * (1.0 if running else 0.2)
            v = self._heat_now(s.id, self.t) + noise * n
            if s.id == "mold_temp" and self.fail_kind == "cooling":
                # failing cooling shows as the hot mold drifting up; a cold mold has nothing to show
                key = THERMAL[s.id][0]
                warmth = (v - self.ambient) / max(1.0, self.sp[key] - self.ambient)
                v += 15.0 * self.precursor() * min(1.0, max(0.0, warmth))
            if self.fault is not None and running:
                v += FAULT_SHIFT.get((self.fault["kind"], s.id), 0.0) * self.severity()
            return v
        gen = PROCESS.get(s.id)
        if gen is not None:
            v = gen(self, running, n)
            if self.fault is not None and running:
                v *= 1.0 + FAULT_GAIN.get((self.fault["kind"], s.id), 0.0) * self.severity()
            return max(0.0, v)
        # a signal this simulator does not know: mid-range when running, bottom when stopped
        lo, hi = s.range or (0.0, 100.0)
        return (lo + hi) / 2 + 0.02 * (hi - lo) * n if running else lo


# signal -> (recipe setpoint, time constant s, states in which it is held at the setpoint);
# outside those states it relaxes to ambient, so a long stop reads ambient
THERMAL: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "billet_temp": ("billet", 60.0, (RUNNING,)),  # no billet under the pyrometer when stopped
    "melt_temp": ("melt", 25 * 60.0, (RUNNING, MICRO_STOP, IDLE, SETUP)),
    "mold_temp": ("mold", 8 * 60.0, (RUNNING, MICRO_STOP, IDLE, SETUP)),
    "die_temp": ("die", 20 * 60.0, (RUNNING,)),
}
THERMAL_NOISE = {"billet_temp": 4.0, "melt_temp": 0.8, "mold_temp": 0.4, "die_temp": 0.5}


# in-line gauges: signal -> (nominal, per-part sigma, shift at full fault severity, decimals)
GAUGES: dict[str, tuple[float, float, float, int]] = {
    "bore_dia": (25.000, 0.003, -0.015, 3),
    "part_weight": (48.00, 0.10, -0.5, 2),
    "burr_height": (0.050, 0.008, 0.05, 3),
}
# process faults per class: kind, ramp (min), reject delay (min), the signals it moves
FAULTS: dict[str, tuple[str, tuple[float, float], tuple[float, float], tuple[str, ...]]] = {
    "cnc": ("tool_wear", (10, 25), (4, 6), ("vibration", "spindle_load", "bore_dia")),
    "injection": ("mold_temp_drift", (5, 12), (2, 4), ("mold_temp", "injection_pressure", "part_weight")),
    "forging": ("low_billet_temp", (1, 3), (1.5, 2.5), ("billet_temp", "forging_force")),
    "press": ("die_wear", (10, 25), (4, 6), ("tonnage", "burr_height")),
}
# at full severity: thermal signals shifted by (°C), kinetic ones scaled by 1 + gain
FAULT_SHIFT = {("mold_temp_drift", "mold_temp"): -6.0, ("low_billet_temp", "billet_temp"): -50.0}
FAULT_GAIN = {("tool_wear", "vibration"): 0.5, ("tool_wear", "spindle_load"): 0.10,
              ("mold_temp_drift", "injection_pressure"): 0.03, ("low_billet_temp", "forging_force"): 0.065,
              ("die_wear", "tonnage"): 0.04}


def _vibration(m: MachineModel, running: bool, n: float) -> float:
    if not running:
        return 0.15 + 0.05 * abs(n)  # the floor shakes a little
    creep = 6.5 * m.precursor() ** 1.5 if m.fail_kind == "spindle" else 0.0
    return m.sp["vib"] * (1 + 0.08 * n) + creep


def _kinetic(key: str, rel_noise: float) -> Callable[[MachineModel, bool, float], float]:
    """A signal that is its recipe setpoint with noise while running and 0 otherwise."""
    return lambda m, running, n: m.sp[key] * (1 + rel_noise * n) if running else 0.0


def _strokes(m: MachineModel, running: bool, n: float) -> float:
    return 60.0 / m.cycle_s * (1 + 0.005 * n) if running else 0.0


PROCESS: dict[str, Callable[[MachineModel, bool, float], float]] = {
    "spindle_speed": _kinetic("rpm", 0.004),
    "spindle_load": lambda m, running, n: (
        m.sp["load"] * (1 + 0.06 * n) + (25.0 * m.precursor() if m.fail_kind == "spindle" else 0.0)
        if running else 0.0),
    "feed_rate": _kinetic("feed", 0.01),
    "vibration": _vibration,
    "cycle_time": lambda m, running, n: m.last_cycle_s if running else 0.0,
    "forging_force": _kinetic("force", 0.03),
    "stroke_rate": _strokes,
    "strokes_per_min": _strokes,
    "injection_pressure": _kinetic("pressure", 0.02),
    "screw_torque": _kinetic("torque", 0.025),
    "tonnage": _kinetic("tonnage", 0.02),
}


# LOTs of a route step of one of these processes merge: an assembly LOT consumes MERGE_INPUTS
# LOTs of the step before it; into any other process a LOT continues split into SPLIT_INTO
MERGE_PROCESSES = frozenset({"assembly"})
MERGE_INPUTS = 2
SPLIT_INTO = 2


@dataclass
class Lot:
    """A LOT handed to a machine, or waiting in the buffer before a route step."""

    number: str
    product: ProductDef
    qty: int  # planned quantity (parts)
    parents: str  # comma-separated parent LOT numbers, "" when none
    step: int  # the route index it runs (or waits) at
    good: int = 0  # good parts of its finished step (an input waiting to be merged)


def assign_products(lines: dict[str, dict[str, str]], products: list[ProductDef]) -> dict[tuple[str, str], list[ProductDef]]:
    """Which products each line runs: {site: {line: process}} x the products' routes.

    A product runs on a site only when every process of its route has a line there. A line
    takes, among the products of its process, the one running on the fewest lines of that
    process so far (ties: the longer route, then shifts.yaml order), so two products of one process share
    the plant's lines of it instead of one taking all. A product that got a line of one of
    its route's processes but none of another on the same site is added to that process's
    least loaded line (such a line then alternates between its products)."""
    count: dict[tuple[str, str], int] = {}  # (product, process) -> lines
    order = {p.id: i for i, p in enumerate(products)}
    out: dict[tuple[str, str], list[ProductDef]] = {}
    for site, procs in lines.items():
        have = set(procs.values())
        cand = [p for p in products if p.route and all(q in have for q in p.route)]
        for line, proc in procs.items():
            el = [p for p in cand if proc in p.route]
            if el:
                best = min(el, key=lambda p: (count.get((p.id, proc), 0), -len(p.route), order[p.id]))
                out[(site, line)] = [best]
                count[(best.id, proc)] = count.get((best.id, proc), 0) + 1
        running = {p.id: p for (st, _), ps in out.items() if st == site for p in ps}
        for p in running.values():
            for q in p.route:
                ql = [ln for ln, pr in procs.items() if pr == q]
                if not any(p in out.get((site, ln), []) for ln in ql):
                    ln = min(ql, key=lambda x: len(out.get((site, x), [])))
                    out.setdefault((site, ln), []).append(p)
    return out


class LotFlow:
    """The LOTs of a plant moving along their products' routes, per site.

    LOTs are released at a route's first process when a machine there asks for one (unless
    the buffer after it is full: the machine then waits idle), wait in a buffer per (site,
    product, route step) between processes, and are taken by the next free machine of that
    process. All draws come from one generator, used in the plant's event order."""

    def __init__(self, config: Config, models: list["MachineModel"], products: list[ProductDef],
                 tz: ZoneInfo, lot_scale: float, seed: int) -> None:
        self.tz, self.scale, self.seed = tz, lot_scale, seed
        lines: dict[str, dict[str, str]] = {}
        for m in models:
            ln = config.line(m.spec.site, m.spec.line)
            if ln is not None:
                lines.setdefault(m.spec.site, {})[m.spec.line] = ln.process
        self.process = {(site, line): proc for site, procs in lines.items() for line, proc in procs.items()}
        self.line_products = assign_products(lines, products)
        # (site, product, route step) -> the machines that run it
        self.stations: dict[tuple[str, str, int], list[MachineModel]] = {}
        self.members: list[MachineModel] = []
        for m in models:
            key = (m.spec.site, m.spec.line)
            for p in self.line_products.get(key, []):
                for k in self.steps(p, self.process[key]):
                    self.stations.setdefault((m.spec.site, p.id, k), []).append(m)
            if key in self.line_products:
                self.members.append(m)
        self.last_seq: dict[tuple[str, str], int] = {}  # (prefix, YYMMDD) -> last seq: unique per run
        self.touched: list[MachineModel] = []  # machines woken since the plant last looked
        self.reset()

    def reset(self) -> None:
        self.rng = random.Random(f"{self.seed}|lots")
        self.buffers: dict[tuple[str, str, int], deque[Lot]] = {k: deque() for k in self.stations if k[2] > 0}
        self.waiters: list[MachineModel] = []
        self._spare: dict[tuple[str, str, int], Lot] = {}
        self._waking = self._dirty = False

    @staticmethod
    def steps(p: ProductDef, process: str) -> list[int]:
        return [k for k, q in enumerate(p.route) if q == process]

    def products_of(self, m: "MachineModel") -> list[ProductDef]:
        return self.line_products.get((m.spec.site, m.spec.line), [])

    # ------------------------------------------------------------------ numbers, quantities
    def number(self, p: ProductDef, t: int) -> str:
        """<prefix><YYMMDD>-<seq>: seq = seconds since local midnight x 100 + a counter (7
        digits), so a restart later the same day never reuses a number of an earlier run."""
        dt = datetime.fromtimestamp(t // NS_PER_S, self.tz)
        day = f"{dt.year % 100:02d}{dt.month:02d}{dt.day:02d}"
        key = (p.lot_prefix, day)
        n = max(self.last_seq.get(key, -1) + 1, (dt.hour * 3600 + dt.minute * 60 + dt.second) * 100)
        self.last_seq[key] = n
        return f"{p.lot_prefix}{day}-{n:07d}"

    def planned(self, p: ProductDef, m: "MachineModel") -> int:
        qty = p.lot_qty
        if qty is None:  # no planned quantity in shifts.yaml: some hours of the machine's work
            qty = self.rng.uniform(LOT_MIN_H, LOT_MAX_H) * 3600 / (m.base_ideal_s * m.perf)
        return max(1, round(qty * self.scale))

    @staticmethod
    def _halves(good: int) -> list[int]:
        qs = [good // SPLIT_INTO + (1 if i < good % SPLIT_INTO else 0) for i in range(SPLIT_INTO)]
        return [q for q in qs if q > 0]

    # ------------------------------------------------------------------ start
    def initial(self, m: "MachineModel", t: int) -> Lot:
        """The LOT a machine is in the middle of when the model starts."""
        r = self.rng
        ps = self.products_of(m)
        p = ps[r.randrange(len(ps))]
        k = self.steps(p, self.process[(m.spec.site, m.spec.line)])[0]
        if k == 0:
            return Lot(self.number(p, t), p, self.planned(p, m), "", 0)
        key = (m.spec.site, p.id, k)
        if p.route[k] in MERGE_PROCESSES:
            parents = [(self.number(p, t), int(self.planned(p, m) * r.uniform(0.95, 0.99)))
                       for _ in range(MERGE_INPUTS)]
            return Lot(self.number(p, t), p, max(1, sum(g for _, g in parents)),
                       ",".join(n for n, _ in parents), k)
        spare = self._spare.pop(key, None)
        if spare is not None:  # the sibling of the LOT the machine before took
            return spare
        kids = self._split_children(p, k, t, m)
        if len(kids) > 1:
            self._spare[key] = kids[1]
        return kids[0]

    def _split_children(self, p: ProductDef, k: int, t: int, m: "MachineModel") -> list[Lot]:
        parent = self.number(p, t)
        good = int(self.planned(p, m) * self.rng.uniform(0.95, 0.99))
        return [Lot(f"{parent}-{i}", p, q, parent, k) for i, q in enumerate(self._halves(good), start=1)]

    def prefill(self, t: int) -> None:
        """LOTs already waiting between processes when the model starts."""
        r = self.rng
        for key, spare in self._spare.items():
            self.buffers[key].append(spare)
        self._spare.clear()
        for (site, pid, k), buf in self.buffers.items():
            m = self.stations[(site, pid, k)][0]
            p = next(p for p in self.products_of(m) if p.id == pid)
            if p.route[k] in MERGE_PROCESSES:
                for _ in range(r.randint(1, 3)):
                    g = int(self.planned(p, m) * r.uniform(0.95, 0.99))
                    buf.append(Lot(self.number(p, t), p, g, "", k, good=g))
            else:
                for _ in range(r.randint(0, 1)):
                    buf.extend(self._split_children(p, k, t, m))

    # ------------------------------------------------------------------ flow
    def take(self, m: "MachineModel", t: int) -> Optional[Lot]:
        """The next LOT for machine m at time t, or None (nothing waiting, or a full buffer
        after a first process)."""
        ps = self.products_of(m)
        n = len(ps)
        proc = self.process[(m.spec.site, m.spec.line)]
        for i in range(n):
            p = ps[(m.rr + i) % n]
            for k in self.steps(p, proc):
                lot = self._take(m, p, k, t)
                if lot is not None:
                    m.rr = (m.rr + i + 1) % n
                    return lot
        return None

    def _take(self, m: "MachineModel", p: ProductDef, k: int, t: int) -> Optional[Lot]:
        site = m.spec.site
        if k == 0:
            if not self._may_release(site, p):
                return None
            return Lot(self.number(p, t), p, self.planned(p, m), "", 0)
        buf = self.buffers[(site, p.id, k)]
        if p.route[k] in MERGE_PROCESSES:
            if len(buf) < MERGE_INPUTS:
                return None
            ins = [buf.popleft() for _ in range(MERGE_INPUTS)]
            self._changed(t)
            return Lot(self.number(p, t), p, max(1, sum(x.good for x in ins)), ",".join(x.number for x in ins), k)
        if not buf:
            return None
        lot = buf.popleft()
        self._changed(t)
        return lot

    def _may_release(self, site: str, p: ProductDef) -> bool:
        """A new LOT at the route's first process only while the buffer after it (with what
        the first process is making now) holds less than one LOT per machine after it, plus one."""
        if len(p.route) < 2 or (site, p.id, 1) not in self.stations:
            return True
        merge = p.route[1] in MERGE_PROCESSES
        fan = 1 / MERGE_INPUTS if merge else SPLIT_INTO
        making = sum(1 for x in self.stations.get((site, p.id, 0), ())
                     if x.lot and x.lot_product == p.id and x.lot_step == 0)
        waiting = len(self.buffers[(site, p.id, 1)]) * (fan if merge else 1)
        return waiting + fan * making < len(self.stations[(site, p.id, 1)]) + 1

    def finish(self, m: "MachineModel", t: int) -> None:
        """Machine m ended its LOT at time t: its good parts go on to the next route step."""
        site, k, good = m.spec.site, m.lot_step, max(0, m.lot_good)
        p = next((x for x in self.products_of(m) if x.id == m.lot_product), None)
        number, parents = m.lot, m.lot_parents
        m.lot = m.lot_product = m.lot_parents = ""
        m.lot_qty = m.lot_good = 0
        if p is None or k + 1 >= len(p.route):
            self._changed(t)  # the first process has room for a new LOT
            return
        key = (site, p.id, k + 1)
        if key not in self.buffers:
            return
        if p.route[k + 1] in MERGE_PROCESSES:
            if good > 0:
                self.buffers[key].append(Lot(number, p, good, parents, k + 1, good=good))
        else:
            self.buffers[key].extend(Lot(f"{number}-{i}", p, q, number, k + 1)
                                     for i, q in enumerate(self._halves(good), start=1))
        self._changed(t)

    def wait(self, m: "MachineModel") -> None:
        if m not in self.waiters:
            self.waiters.append(m)

    def _changed(self, t: int) -> None:
        """Buffers changed at time t: machines waiting for material try again, longest waiting
        first (re-entrant calls only mark the work; the outer call loops until it is done)."""
        self._dirty = True
        if self._waking:
            return
        self._waking = True
        try:
            while self._dirty:
                self._dirty = False
                for w in list(self.waiters):
                    if w.waiting and w.state == IDLE and w.try_wake(t):
                        self.touched.append(w)
                    if not (w.waiting and w.state == IDLE):
                        self.waiters.remove(w)
                        self.touched.append(w)
        finally:
            self._waking = False


class Plant:
    """The given machines (default: every configured one), stepped together.

    Machines of lines that run products (shifts.yaml `products` with routes) pass LOTs to each
    other (LotFlow), so the plant moves from event to event across all machines in time order
    (ties: plant order), and how often it is stepped still never changes what happens."""

    def __init__(self, config: Config, seed: Optional[int] = None, work_days_off: bool = False,
                 machines: Optional[Iterable[MachineSpec]] = None, lot_scale: Optional[float] = None,
                 fault_every_h: Optional[float] = None) -> None:
        self.config = config
        fe = config.system.simulator.fault_every_h if fault_every_h is None else fault_every_h
        self.seed = config.system.simulator.seed if seed is None else seed
        self.lot_scale = config.system.simulator.lot_scale if lot_scale is None else lot_scale
        if not self.lot_scale > 0:
            raise ValueError(f"lot_scale must be > 0, got {self.lot_scale}")
        calendar = load_shifts(config)
        self.timetable = Timetable(calendar, work_days_off)
        tz = ZoneInfo(config.plant.timezone)
        self.models: list[MachineModel] = []
        n16 = 0
        for spec in (config.machines() if machines is None else machines):
            near = False
            if spec.definition.counter_bits == 16:
                near, n16 = n16 % 2 == 0, n16 + 1  # every other 16-bit machine shows a wrap soon
            m = MachineModel(spec, self.seed, self.timetable, tz, start_near_wrap=near)
            m.idx, m.lot_scale = len(self.models), self.lot_scale
            m.fault_every_s = max(0.0, fe) * 3600.0
            self.models.append(m)
        products = [p for p in calendar.spec.products if p.route]
        flow = LotFlow(config, self.models, products, tz, self.lot_scale, self.seed) if products else None
        self.flow = flow if flow is not None and flow.members else None
        if self.flow is not None:
            for m in self.flow.members:
                m.flow = self.flow
        self.t: Optional[int] = None
        self._nexts: list[float] = []

    def faults(self) -> list[dict]:
        """Ground truth (docs/quality.md): every process fault and failure precursor so far,
        open ones with end_ns None, by start."""
        out = [f for m in self.models for f in m.fault_log + m.open_faults()]
        return sorted(out, key=lambda f: f["start_ns"])

    def _start(self, now_ns: int) -> None:
        if self.flow is not None:
            self.flow.reset()
        for m in self.models:
            m._start(now_ns)
        if self.flow is not None:
            self.flow.prefill(now_ns)
        self._nexts = [m.next_event() for m in self.models]
        self.t = now_ns

    def _run(self, now_ns: int) -> None:
        models, nexts, flow = self.models, self._nexts, self.flow
        while True:
            te = min(nexts)
            if te > now_ns:
                break
            i = nexts.index(te)
            m = models[i]
            m.advance(int(te))
            nexts[i] = m.next_event()
            if flow is not None and flow.touched:
                for w in flow.touched:
                    nexts[w.idx] = w.next_event()
                flow.touched.clear()
        for m in models:
            m.advance(now_ns)  # no event left up to now: only the time in state moves on
        self.t = now_ns

    def step(self, now_ns: int) -> list[tuple[MachineSpec, dict[str, Value]]]:
        """Advance every machine to now_ns and return each machine's signal values. Earlier
        times are ignored (a clock step back must not undo production); a step further ahead
        than MAX_CATCHUP_NS restarts the model instead of replaying every part."""
        if self.t is None or now_ns - self.t > MAX_CATCHUP_NS:
            self._start(now_ns)
        elif now_ns > self.t:
            self._run(now_ns)
        return [(m.spec, m.values()) for m in self.models]
