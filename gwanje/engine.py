"""The engine: the sample stream in, derived records and live OEE out.

`Engine(config)` is a pipeline listener (`on_samples(batch) -> events`); it keeps, per machine,
a state tracker, counter trackers and the recent state intervals and per-minute counts, and
writes derived records so history pages never recompute a day from raw samples:

  kind="state"     ts = interval start; data {state, code, end_ns (None while open),
                   prev_state}. Emitted when an interval opens and again when it closes: the
                   same identity, so the closed version replaces the open one.
  kind="counts"    ts = UTC minute; data {total, good, reject, ideal_s}; minutes with parts only.
  kind="lot"       ts = LOT change; data {lot, product}; only when products are configured.
  kind="oee_shift" ts = shift start, key = shift key ("2026-11-24/day"); machine, line
                   (machine="") and site (line="", machine="") records with every figure.

A shift closes when the newest sample time (or `tick(now)`) passes shift end + comm timeout:
stragglers within the timeout still count, and a machine silent at the end of the shift is
resolved to unknown exactly as the history path resolves it.

`recompute(store, ...)` reads a past shift's raw samples (plus a look-back for the state and
counter baselines and a look-ahead of one timeout) and runs them through the same code, so the
live and history paths give the same numbers. Known difference: the store's series() returns
numeric values without quality, so the history path cannot see bad-quality state samples
(the live path maps them to unknown) nor text state codes.

The engine does no I/O itself: recompute() only calls the Store interface it is handed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from gwanje.config import Config, MachineSpec
from gwanje.counters import CounterTracker
from gwanje.losses import six_big_losses
from gwanje.model import NS_PER_S, Event, Quality, Sample
from gwanje.oee import MINUTE_NS, MinuteCounts, OeeResult, bottleneck, combine, compute
from gwanje.rejects import Rejects
from gwanje.shifts import ShiftCalendar, ShiftInstance, load_shifts
from gwanje.state import StateInterval, StateTracker

log = logging.getLogger("gwanje.engine")

# how far in the future a sample may claim to be before the engine refuses it: one clock
# skewed by a day would otherwise close every shift early and freeze its state tracker
MAX_FUTURE_NS = 300 * NS_PER_S
# how long intervals and minute counts stay in memory (rolling windows up to a day)
RETAIN_NS = 26 * 3600 * NS_PER_S
# how far back recompute looks for the LOT in force at the start of a shift
LOT_LOOKBACK_NS = 7 * 86400 * NS_PER_S


class MachineRun:
    """Everything the engine knows about one machine right now."""

    def __init__(self, spec: MachineSpec, timeout_ns: int, products: dict[str, float] | None = None,
                 product_prefixes: Sequence[tuple[str, str]] = ()) -> None:
        self.spec = spec
        k = spec.klass
        self.state_signal = k.state_signal
        self.tracker = StateTracker(k.state_codes.mapping(), timeout_ns)
        self.counter_signals = {s: name for s, name in ((k.total_signal, "total"), (k.good_signal, "good"),
                                                        (k.reject_signal, "reject")) if s}
        self.counters = {s: CounterTracker(spec.definition.counter_bits, spec.definition.ideal_cycle_s)
                         for s in self.counter_signals}
        self.default_cycle_s = spec.definition.ideal_cycle_s
        self.cycle_s = self.default_cycle_s
        self.products = products or {}  # product id -> ideal cycle of this machine
        self.product_prefixes = product_prefixes  # (prefix, product id), longest first
        self.lot: Optional[str] = None
        self.product: Optional[str] = None
        self.intervals: list[StateInterval] = []
        # minute -> [total, good, reject, ideal_s, gap_total]
        self.minutes: dict[int, list[float]] = {}
        self.emitted_minute = -1  # newest minute already written as a counts event

    @property
    def key(self) -> tuple[str, str, str]:
        return self.spec.key

    def set_lot(self, lot: str) -> bool:
        if lot == self.lot:
            return False
        self.lot = lot
        self.product = next((p for prefix, p in self.product_prefixes if lot.startswith(prefix)), None)
        self.cycle_s = self.products.get(self.product, self.default_cycle_s) if self.product else self.default_cycle_s
        return True

    def feed(self, s: Sample, track_lots: bool = False) -> tuple[list[StateInterval], bool]:
        """Returns the state intervals this sample closed, and whether it changed the LOT.
        Text samples (the LOT) set the product but are not liveness: the history path reads
        numeric series only, and both paths must see the same liveness."""
        if not isinstance(s.value, float):
            return [], s.signal == "lot" and track_lots and self.set_lot(s.value)
        t = self.tracker
        if t.last_seen_ns is not None and s.ts < t.last_seen_ns:
            t.late += 1
            return [], False
        is_state = s.signal == self.state_signal
        closed = t.feed(s.ts, s.value if is_state else None, is_state, s.quality == Quality.BAD)
        if closed:
            self.intervals.extend(closed)
        ctr = self.counters.get(s.signal)
        if ctr is not None and s.quality != Quality.BAD:
            gap = ctr.prev_ts is not None and s.ts - ctr.prev_ts > self.tracker.timeout_ns
            d = ctr.feed(s.ts, s.value)
            if d:
                m = self.minutes.setdefault(s.ts - s.ts % MINUTE_NS, [0, 0, 0, 0.0, 0])
                name = self.counter_signals[s.signal]
                if name == "total":
                    m[0] += d
                    if gap:
                        m[4] += d
                    else:
                        m[3] += d * self.cycle_s
                elif name == "good":
                    m[1] += d
                else:
                    m[2] += d
        return closed, False

    def minute_counts(self, m: int) -> MinuteCounts:
        t, g, r, ideal, gap = self.minutes[m]
        has = set(self.counter_signals.values())
        if "total" not in has:
            t = g + r
            ideal = t * self.cycle_s
        if "good" not in has:
            g = t - r
        if "reject" not in has:
            r = t - g
        return MinuteCounts(m, int(t), int(g), int(r), float(ideal), int(gap))

    def all_intervals(self, now_ns: int) -> list[StateInterval]:
        return self.intervals + self.tracker.open_intervals(now_ns)

    def all_counts(self) -> list[MinuteCounts]:
        return [self.minute_counts(m) for m in sorted(self.minutes)]

    def prune(self, before_ns: int) -> None:
        self.intervals = [iv for iv in self.intervals if iv.end_ns > before_ns]
        for m in [m for m in self.minutes if m < before_ns]:
            del self.minutes[m]


def _order(run: MachineRun, s: Sample) -> tuple[int, int]:
    # same timestamp: the LOT applies to the parts counted with it, the state before counters
    return (s.ts, 0 if s.signal == "lot" else 1 if s.signal == run.state_signal else 2)


@dataclass
class LineOee:
    result: Optional[OeeResult]
    output: str
    bottleneck: Optional[str]


@dataclass
class Snapshot:
    shift: Optional[ShiftInstance]
    start_ns: int
    end_ns: int
    machines: dict[tuple[str, str, str], OeeResult]
    lines: dict[tuple[str, str], LineOee]
    sites: dict[str, Optional[OeeResult]]


class Engine:
    def __init__(self, config: Config, calendar: Optional[ShiftCalendar] = None,
                 clock: Optional[Callable[[], int]] = time.time_ns) -> None:
        self.config = config
        self.calendar = calendar or load_shifts(config)
        spec = self.calendar.spec
        self.timeout_ns = int(spec.comm_timeout_s * NS_PER_S)
        self.small_stop_s = spec.small_stop_s
        self.startup_window_s = spec.startup_window_s
        self.clock = clock
        self.rejects = Rejects("engine")
        prefixes = sorted(((p.lot_prefix, p.id) for p in spec.products), key=lambda x: -len(x[0]))
        self.runs: dict[tuple[str, str, str], MachineRun] = {}
        for m in config.machines():
            per_product = {p.id: p.ideal_cycle_s[m.machine] for p in spec.products if m.machine in p.ideal_cycle_s}
            self.runs[m.key] = MachineRun(m, self.timeout_ns, per_product, prefixes)
        self.track_lots = bool(spec.products)
        self.watermark: Optional[int] = None
        self.closed_shifts: set[str] = set()
        self._open_shift: Optional[ShiftInstance] = None

    # ------------------------------------------------------------------ live path
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        """Pipeline listener: feed a written batch, return the derived events to store."""
        events: list[Event] = []
        limit = self.clock() + MAX_FUTURE_NS if self.clock else None
        by_machine: dict[tuple[str, str, str], list[Sample]] = {}
        for s in samples:
            key = (s.site, s.line, s.machine)
            if key not in self.runs:
                self.rejects.reject("unknown_machine", "/".join(key))
                continue
            if limit is not None and s.ts > limit:
                self.rejects.reject("future_timestamp", "/".join(key))
                continue
            by_machine.setdefault(key, []).append(s)
        newest = self.watermark
        for key, batch in by_machine.items():
            run = self.runs[key]
            batch.sort(key=lambda s, run=run: _order(run, s))
            events.extend(self._feed_run(run, batch))
            newest = batch[-1].ts if newest is None else max(newest, batch[-1].ts)
        if newest is not None:
            events.extend(self._advance(newest))
        return events

    def _feed_run(self, run: MachineRun, batch: Sequence[Sample]) -> list[Event]:
        site, line, machine = run.key
        events: list[Event] = []
        state_before = (run.tracker.state, run.tracker.code, run.tracker.since_ns)
        for s in batch:
            closed, lot_changed = run.feed(s, self.track_lots)
            if lot_changed:
                events.append(Event("lot", s.ts, site, line, machine, "", {"lot": run.lot, "product": run.product}))
            for iv in closed:
                events.append(_state_event(run, iv, iv.end_ns))
        t = run.tracker
        if (t.state, t.code, t.since_ns) != state_before and t.since_ns is not None:
            prev = run.intervals[-1].state.value if run.intervals else None
            events.append(Event("state", t.since_ns, site, line, machine, "",
                                {"state": t.state.value, "code": t.code, "end_ns": None, "prev_state": prev}))
        # a minute is complete once the machine has reported past it
        last = t.last_seen_ns
        if last is not None:
            for m in sorted(run.minutes):
                if m + MINUTE_NS <= last and m > run.emitted_minute:
                    c = run.minute_counts(m)
                    events.append(Event("counts", m, site, line, machine, "",
                                        {"total": c.total, "good": c.good, "reject": c.reject, "ideal_s": c.ideal_s,
                                         "gap_total": c.gap_total}))
                    run.emitted_minute = m
        return events

    def tick(self, now_ns: int) -> list[Event]:
        """Close shifts by the wall clock when no data arrives (every machine offline)."""
        return self._advance(now_ns)

    def _advance(self, now_ns: int) -> list[Event]:
        if self.watermark is not None and now_ns <= self.watermark:
            return []
        prev = self.watermark
        self.watermark = now_ns
        events: list[Event] = []
        if prev is None:
            return events
        # every shift that ended (plus the timeout) since the previous watermark closes now
        for sh in self.calendar.shifts_between(prev - self.timeout_ns - 1, now_ns - self.timeout_ns):
            due = sh.end_ns + self.timeout_ns
            if prev < due <= now_ns and sh.key not in self.closed_shifts:
                self.closed_shifts.add(sh.key)
                events.extend(self.close_shift(sh, now_ns))
        keep = now_ns - RETAIN_NS
        for run in self.runs.values():
            run.prune(keep)
        return events

    def close_shift(self, sh: ShiftInstance, now_ns: int) -> list[Event]:
        results = {key: self._result(run, sh.start_ns, sh.end_ns, max(now_ns, sh.end_ns + self.timeout_ns))
                   for key, run in self.runs.items()}
        return self.shift_events(sh.key, sh.start_ns, results)

    def _result(self, run: MachineRun, start: int, end: int, now_ns: int) -> OeeResult:
        return compute(start, end, run.all_intervals(now_ns), run.all_counts(),
                       self.calendar.planned_stops(start, end), self.small_stop_s, self.startup_window_s)

    # ------------------------------------------------------------------ read side
    def snapshot(self, now_ns: int, start_ns: Optional[int] = None) -> Snapshot:
        """Live OEE from the start of the current shift (or start_ns, for a rolling window of
        at most a day) to now, per machine, line and site."""
        sh = self.calendar.shift_at(now_ns)
        if start_ns is None:
            start_ns = sh.start_ns if sh else now_ns - 8 * 3600 * NS_PER_S
        machines = {key: self._result(run, start_ns, now_ns, now_ns) for key, run in self.runs.items()}
        lines, sites = self.aggregate(machines)
        return Snapshot(sh, start_ns, now_ns, machines, lines, sites)

    def aggregate(self, machines: dict[tuple[str, str, str], OeeResult]
                  ) -> tuple[dict[tuple[str, str], LineOee], dict[str, Optional[OeeResult]]]:
        """Line OEE = its output machine's, with the bottleneck; site OEE pools the output
        machines of its lines (see oee.combine)."""
        lines: dict[tuple[str, str], LineOee] = {}
        sites: dict[str, Optional[OeeResult]] = {}
        for site in self.config.plant.sites:
            outs = []
            for ln in site.lines:
                members = {m.id: machines[(site.id, ln.id, m.id)] for m in ln.machines
                           if (site.id, ln.id, m.id) in machines}
                if not members:
                    continue
                out = members.get(ln.output)
                lines[(site.id, ln.id)] = LineOee(out, ln.output, bottleneck(members))
                if out is not None:
                    outs.append(out)
            if outs:
                sites[site.id] = combine(outs)
        return lines, sites

    def shift_events(self, key: str, start_ns: int, machines: dict[tuple[str, str, str], OeeResult]) -> list[Event]:
        events = [Event("oee_shift", start_ns, s, ln, m, key, _payload(r)) for (s, ln, m), r in machines.items()]
        lines, sites = self.aggregate(machines)
        line_ids = {(s, ln) for s, ln, _ in machines}
        for (s, ln), lo in lines.items():
            line = self.config.line(s, ln)
            # a line is only reported when all of its machines were computed
            if lo.result is not None and line and all((s, ln, m.id) in machines for m in line.machines):
                events.append(Event("oee_shift", start_ns, s, ln, "", key,
                                    {**_payload(lo.result), "output": lo.output, "bottleneck": lo.bottleneck}))
        for s, r in sites.items():
            site = self.config.site(s)
            if r is not None and site and all((s, ln.id) in line_ids for ln in site.lines) and \
                    len([k for k in machines if k[0] == s]) == sum(len(ln.machines) for ln in site.lines):
                events.append(Event("oee_shift", start_ns, s, "", "", key, _payload(r)))
        return events

    # ------------------------------------------------------------------ history path
    def recompute(self, store: Any, site: str, line: Optional[str] = None, machine: Optional[str] = None,
                  shift_start: Optional[int] = None, shift_end: Optional[int] = None) -> list[Event]:
        """The oee_shift events of a past window, from raw samples in `store` (a storage.base
        Store), for one machine, a line (all its machines) or a site. Write them to replace
        what the live path wrote. Defaults: the shift containing shift_start."""
        if shift_start is None:
            raise ValueError("shift_start is required")
        sh = self.calendar.shift_at(shift_start)
        if shift_end is None:
            if sh is None:
                raise ValueError("shift_start is not inside a shift")
            shift_start, shift_end = sh.start_ns, sh.end_ns
        key = sh.key if sh and sh.start_ns == shift_start and sh.end_ns == shift_end else f"{shift_start}-{shift_end}"
        specs = [m for m in self.config.machines() if m.site == site and (line is None or m.line == line)
                 and (machine is None or m.machine == machine)]
        if not specs:
            raise ValueError("no such site / line / machine")
        results = {m.key: self.recompute_machine(store, m, shift_start, shift_end) for m in specs}
        return self.shift_events(key, shift_start, results)

    def recompute_machine(self, store: Any, spec: MachineSpec, start_ns: int, end_ns: int) -> OeeResult:
        lookback = self.timeout_ns + int(self.startup_window_s * NS_PER_S)
        a, b = start_ns - lookback, end_ns + self.timeout_ns
        live = self.runs[spec.key]  # a machine run configured exactly like the live one
        run = MachineRun(spec, self.timeout_ns, live.products, live.product_prefixes)
        samples: list[Sample] = []
        max_points = int((b - a) // NS_PER_S) * 20 + 1000
        for sig in spec.signals:
            if sig.kind == "text":
                continue
            df = store.series(spec.site, spec.line, spec.machine, sig.id, a, b, max_points=max_points)
            samples.extend(Sample(spec.site, spec.line, spec.machine, sig.id, float(v), int(t))
                           for t, v in zip(df["ts"].to_list(), df["value"].to_list()))
        if self.track_lots:
            lots = store.events("lot", a - LOT_LOOKBACK_NS, b, spec.site, spec.line, spec.machine)
            samples.extend(Sample(spec.site, spec.line, spec.machine, "lot", str(e.data.get("lot", "")), e.ts)
                           for e in lots)
        samples.sort(key=lambda s: _order(run, s))
        for s in samples:
            run.feed(s, self.track_lots)
        return compute(start_ns, end_ns, run.all_intervals(b), run.all_counts(),
                       self.calendar.planned_stops(start_ns, end_ns), self.small_stop_s, self.startup_window_s)


def _state_event(run: MachineRun, iv: StateInterval, end_ns: Optional[int]) -> Event:
    site, line, machine = run.key
    return Event("state", iv.start_ns, site, line, machine, "",
                 {"state": iv.state.value, "code": iv.code, "end_ns": end_ns})


def _payload(r: OeeResult) -> dict[str, Any]:
    d = r.to_dict()
    d["losses"] = {x.name: {"minutes": x.minutes, "share": x.share} for x in six_big_losses(r)}
    return d
