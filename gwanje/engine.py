"""The engine: the sample stream in, derived records and live OEE out.

`Engine(config)` is a pipeline listener (`on_samples(batch) -> events`); it keeps, per machine,
a state tracker, counter trackers and the recent state intervals and per-minute counts, and
writes derived records so history pages never recompute a day from raw samples:

  kind="state"     ts = interval start; data {state, code, end_ns (None while open),
                   prev_state}. Emitted when an interval opens and again when it closes: the
                   same identity, so the closed version replaces the open one.
  kind="counts"    ts = UTC minute; data {total, good, reject, ideal_s, gap_total}; minutes
                   with parts only.
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
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import polars as pl

from gwanje.config import Config, MachineSpec
from gwanje.counters import CounterTracker
from gwanje.losses import six_big_losses
from gwanje.model import NS_PER_S, Event, MachineState, Quality, Sample
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
        # minutes with parts not yet written as a counts event (again: a late delta re-dirties)
        self.dirty: set[int] = set()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.spec.key

    def product_of(self, lot: str) -> tuple[Optional[str], float]:
        """The product a LOT number names, and this machine's ideal cycle for it."""
        product = next((p for prefix, p in self.product_prefixes if lot.startswith(prefix)), None)
        return product, self.products.get(product, self.default_cycle_s) if product else self.default_cycle_s

    def set_lot(self, lot: str) -> bool:
        if lot == self.lot:
            return False
        self.lot = lot
        self.product, self.cycle_s = self.product_of(lot)
        return True

    def feed(self, s: Sample, track_lots: bool = False) -> tuple[list[StateInterval], bool]:
        """Returns the state intervals this sample closed, and whether it changed the LOT.
        Text samples (the LOT) set the product but are not liveness: the history path reads
        numeric series only, and both paths must see the same liveness. Text state codes (some
        PLCs) are states all the same."""
        if not isinstance(s.value, float) and s.signal != self.state_signal:
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
                self.dirty.add(s.ts - s.ts % MINUTE_NS)
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
        return _minute_counts(m, self.minutes[m], set(self.counter_signals.values()), self.cycle_s)

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
        # the pipeline thread feeds, UI/alarm threads read snapshots: one lock for both
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ live path
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        """Pipeline listener: feed a written batch, return the derived events to store."""
        with self._lock:
            return self._on_samples(samples)

    def _on_samples(self, samples: Sequence[Sample]) -> list[Event]:
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
        events.extend(self._flush_counts(run, self.watermark))
        return events

    def _flush_counts(self, run: MachineRun, watermark: Optional[int]) -> list[Event]:
        """counts events for the minutes that are complete: the machine has reported past them,
        or the plant clock is a comm timeout past them (a machine that fell silent)."""
        if not run.dirty:
            return []
        last = run.tracker.last_seen_ns or 0
        stale = (watermark or 0) - self.timeout_ns
        done = sorted(m for m in run.dirty if m + MINUTE_NS <= max(last, stale))
        site, line, machine = run.key
        events = []
        for m in done:
            run.dirty.discard(m)
            if m in run.minutes:
                c = run.minute_counts(m)
                events.append(Event("counts", m, site, line, machine, "",
                                    {"total": c.total, "good": c.good, "reject": c.reject, "ideal_s": c.ideal_s,
                                     "gap_total": c.gap_total}))
        return events

    def tick(self, now_ns: int) -> list[Event]:
        """Close shifts by the wall clock when no data arrives (every machine offline)."""
        with self._lock:
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
        # once a minute: the counts of machines that fell silent, and pruning (it walks every
        # machine's history)
        if now_ns // MINUTE_NS != prev // MINUTE_NS:
            keep = now_ns - RETAIN_NS
            for run in self.runs.values():
                events.extend(self._flush_counts(run, now_ns))
                run.prune(keep)
        return events

    def close_shift(self, sh: ShiftInstance, now_ns: int) -> list[Event]:
        results = {key: self._result(run, sh.start_ns, sh.end_ns, max(now_ns, sh.end_ns + self.timeout_ns))
                   for key, run in self.runs.items()}
        return self.shift_events(sh.key, sh.start_ns, results)

    def _result(self, run: MachineRun, start: int, end: int, now_ns: int) -> OeeResult:
        return compute(start, end, run.all_intervals(now_ns), run.all_counts(),
                       self.calendar.planned_stops(start, end, *run.key), self.small_stop_s, self.startup_window_s)

    # ------------------------------------------------------------------ read side
    def snapshot(self, now_ns: int, start_ns: Optional[int] = None) -> Snapshot:
        """Live OEE from the start of the current shift (or start_ns, for a rolling window of
        at most a day) to now, per machine, line and site."""
        sh = self.calendar.shift_at(now_ns)
        if start_ns is None:
            start_ns = sh.start_ns if sh else now_ns - 8 * 3600 * NS_PER_S
        with self._lock:
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

    def records_horizon(self, now_ns: int, last_seen: dict[tuple[str, str, str], Optional[int]]) -> int:
        """Where the stored records of a running shift are complete. Counts are written per
        finished minute, once a machine reports past it or, for a plant gone silent, once the
        comm timeout has passed (_flush_counts); while data flows, a figure from records must
        end at that minute boundary too, or the open minute's run time without its parts drags
        performance down (to 0 % just after a start)."""
        newest = max((t for t in last_seen.values() if t is not None), default=now_ns)
        if now_ns - newest > self.timeout_ns:
            return now_ns  # silent: every minute is flushed
        horizon = min(now_ns, newest)
        return horizon - horizon % MINUTE_NS

    def from_records(self, state_events: Sequence[Event], counts_events: Sequence[Event], start_ns: int,
                     end_ns: int, now_ns: int, last_seen: Optional[dict[tuple[str, str, str], Optional[int]]] = None
                     ) -> Snapshot:
        """OEE per machine, line and site over [start_ns, min(end_ns, now_ns)) from the derived
        records in storage (state intervals and minute counts), as the UI computes the running
        shift without touching raw samples. last_seen: newest sample per machine, to end an
        open interval of a machine that has gone silent (then unknown up to now)."""
        stop = min(end_ns, now_ns)
        ivs: dict[tuple[str, str, str], list[Event]] = {}
        for e in state_events:
            ivs.setdefault((e.site, e.line, e.machine), []).append(e)
        cnt: dict[tuple[str, str, str], list[MinuteCounts]] = {}
        for e in counts_events:
            d = e.data
            cnt.setdefault((e.site, e.line, e.machine), []).append(MinuteCounts(
                e.ts, int(d.get("total", 0)), int(d.get("good", 0)), int(d.get("reject", 0)),
                float(d.get("ideal_s", 0.0)), int(d.get("gap_total", 0))))
        machines = {}
        for key in self.runs:
            seen = (last_seen or {}).get(key)
            intervals = intervals_from_events(ivs.get(key, []), now_ns, seen, self.timeout_ns)
            machines[key] = compute(start_ns, stop, intervals, cnt.get(key, []),
                                    self.calendar.planned_stops(start_ns, stop, *key), self.small_stop_s,
                                    self.startup_window_s)
        lines, sites = self.aggregate(machines)
        return Snapshot(self.calendar.shift_at(start_ns), start_ns, stop, machines, lines, sites)

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
        """One machine's OEE over [start_ns, end_ns) from the store's raw numeric series."""
        lookback = self.timeout_ns + int(self.startup_window_s * NS_PER_S)
        frame, lots = self._read(store, spec, start_ns - lookback, end_ns + self.timeout_ns)
        return self.frame_oee(spec, frame, lots, start_ns, end_ns)

    def _read(self, store: Any, spec: MachineSpec, a: int, b: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
        """Raw numeric samples of a machine in [a, b) as (signal, ts, value), and its LOT changes."""
        max_points = int((b - a) // NS_PER_S) * 20 + 1000  # never downsampled: raw points
        frames = []
        for sig in spec.signals:
            if sig.kind != "text":
                df = store.series(spec.site, spec.line, spec.machine, sig.id, a, b, max_points=max_points)
                frames.append(df.select(pl.lit(sig.id).alias("signal"), "ts", "value"))
        lots: list[tuple[int, str]] = []
        if self.track_lots:
            lots = [(e.ts, str(e.data.get("lot", ""))) for e in
                    store.events("lot", a - LOT_LOOKBACK_NS, b, spec.site, spec.line, spec.machine)]
        return pl.concat(frames), lots

    def warm_start(self, store: Any, now_ns: int) -> None:
        """After a restart: rebuild every machine's state, counter baselines, intervals and
        minute counts of the running shift from the store's raw samples (vectorised), so the
        shift closes with the whole shift, not only the part since the restart."""
        sh = self.calendar.shift_at(now_ns)
        start = sh.start_ns if sh else now_ns - 8 * 3600 * NS_PER_S
        a = start - self.timeout_ns - int(self.startup_window_s * NS_PER_S)
        with self._lock:
            for spec in self.config.machines():
                frame, lots = self._read(store, spec, a, now_ns + 1)
                if frame.height:
                    self._seed(self.runs[spec.key], frame, lots)
            seen = [r.tracker.last_seen_ns for r in self.runs.values() if r.tracker.last_seen_ns is not None]
            if seen:
                self.watermark = max(seen)

    def _seed(self, run: MachineRun, frame: pl.DataFrame, lots: Sequence[tuple[int, str]]) -> None:
        spec = run.spec
        last = int(frame["ts"].max())  # type: ignore[arg-type]
        parts = {k[0]: v for k, v in frame.partition_by("signal", as_dict=True).items()}
        # ending "now" 1 ns after the newest sample makes the last interval the open one
        ivs = frame_intervals(frame.select("ts"), parts.get(spec.klass.state_signal),
                              spec.klass.state_codes.mapping(), self.timeout_ns, last + 1)
        t = run.tracker
        run.intervals = ivs[:-1]
        t.state, t.code, t.since_ns, t.last_seen_ns = ivs[-1].state, ivs[-1].code, ivs[-1].start_ns, last
        for sig, ctr in run.counters.items():
            c = parts.get(sig)
            if c is None:
                continue
            c = c.filter(pl.col("value").is_finite() & (pl.col("value") >= 0)
                         & (pl.col("value") == pl.col("value").floor()) & (pl.col("value") < float(ctr.modulus)))
            if c.height:
                row = c.sort("ts").row(-1, named=True)
                ctr.prev, ctr.prev_ts = int(row["value"]), int(row["ts"])
        cycles = [(ts, run.product_of(lot)[1]) for ts, lot in sorted(lots)] if self.track_lots else []
        run.minutes = {m.minute_ns: [m.total, m.good, m.reject, m.ideal_s, m.gap_total]
                       for m in frame_minutes(parts, run, self.timeout_ns, cycles)}
        # complete minutes were written before the restart; the one in progress is not yet
        run.dirty = {last - last % MINUTE_NS} & set(run.minutes)
        if self.track_lots and lots:
            run.set_lot(max(lots)[1])

    def frame_oee(self, spec: MachineSpec, frame: pl.DataFrame, lots: Sequence[tuple[int, str]],
                  start_ns: int, end_ns: int) -> OeeResult:
        """The bulk history path: the same rules as StateTracker and CounterTracker, vectorised
        with polars over a frame of (signal, ts, value) rows of one machine, which should start
        a look-back (timeout + startup window) before start_ns and end one timeout after end_ns.
        lots: (ts, LOT) changes, used when products are configured."""
        return self.frame_windows(spec, frame, lots, [(start_ns, end_ns)])[0]

    def frame_windows(self, spec: MachineSpec, frame: pl.DataFrame, lots: Sequence[tuple[int, str]],
                      windows: Sequence[tuple[int, int]]) -> list[OeeResult]:
        """frame_oee for several windows (the shifts of a day) in one pass over the frame."""
        live = self.runs[spec.key]
        now = max(e for _, e in windows) + self.timeout_ns
        parts = {k[0]: v for k, v in frame.partition_by("signal", as_dict=True).items()}
        intervals = frame_intervals(frame.select("ts"), parts.get(spec.klass.state_signal),
                                    spec.klass.state_codes.mapping(), self.timeout_ns, now)
        cycles = [(ts, live.product_of(lot)[1]) for ts, lot in sorted(lots)] if self.track_lots else []
        minutes = frame_minutes(parts, live, self.timeout_ns, cycles)
        return [compute(a, b, intervals, minutes, self.calendar.planned_stops(a, b, *spec.key), self.small_stop_s,
                        self.startup_window_s) for a, b in windows]


_STATES = list(MachineState)
_STATE_INDEX = {st: i for i, st in enumerate(_STATES)}
# a state code no PLC reports (the most negative float): "unknown since a gap"
_GAP_MARK = -1.7976931348623157e308


def frame_intervals(times: pl.DataFrame, states: Optional[pl.DataFrame], mapping: dict[float | str, MachineState],
                    timeout_ns: int, now_ns: int) -> list[StateInterval]:
    """StateTracker's intervals (closed and open at now_ns): `times` holds the ts of every
    sample (liveness), `states` the (ts, value) rows of the state signal."""
    if times.height == 0:
        return []
    # states as small ints inside polars (strings cost a third of the pass), names at the end
    num = {float(k): _STATE_INDEX[v] for k, v in mapping.items() if not isinstance(k, str)}
    unknown = _STATE_INDEX[MachineState.UNKNOWN]
    if states is None:
        states = pl.DataFrame(schema={"ts": pl.Int64, "value": pl.Float64})
    codes = states.lazy().group_by("ts", maintain_order=True).agg(pl.col("value").last().alias("code"))
    # sort then drop repeats: much cheaper than a hash unique on a day of 1 Hz samples
    t = (times.lazy().select(pl.col("ts").sort()).filter(pl.col("ts").diff().fill_null(1) != 0)
         .join(codes, on="ts", how="left", maintain_order="left")
         .with_columns(gap=(pl.col("ts").diff() > timeout_ns).fill_null(False))
         .with_columns(seg=pl.col("gap").cast(pl.Int64).cum_sum(),
                       # a gap forgets the state: mark it so the forward fill stops there
                       code=pl.when(pl.col("gap") & pl.col("code").is_null()).then(pl.lit(_GAP_MARK))
                       .otherwise(pl.col("code")))
         .with_columns(code=pl.col("code").forward_fill())
         .with_columns(code=pl.when(pl.col("code") == _GAP_MARK).then(None).otherwise(pl.col("code")))
         .with_columns(state=pl.when(pl.col("code").is_null()).then(pl.lit(unknown, dtype=pl.Int8))
                       .otherwise(pl.col("code").replace_strict(num, default=unknown, return_dtype=pl.Int8))))
    seg_lazy = t.group_by("seg").agg(pl.col("ts").max().alias("seg_last"), pl.col("ts").min().alias("seg_first"))
    changed = ((pl.col("seg") != pl.col("seg").shift()) | (pl.col("state") != pl.col("state").shift())
               | pl.col("code").ne_missing(pl.col("code").shift())).fill_null(True)
    starts_lazy = (t.filter(changed).join(seg_lazy, on="seg", how="left", maintain_order="left")
                   .with_columns(nxt=pl.col("ts").shift(-1), nseg=pl.col("seg").shift(-1))
                   .with_columns(end=pl.when(pl.col("nseg") == pl.col("seg")).then(pl.col("nxt"))
                                 .otherwise(pl.col("seg_last"))))
    starts, seg_last = pl.collect_all([starts_lazy, seg_lazy])
    out: list[StateInterval] = []
    rows = starts.select("ts", "end", "state", "code", "seg").rows()
    last_seg = rows[-1][4]
    segs = seg_last.sort("seg").rows()
    first_of = {sg: f for sg, _, f in segs}
    last_of = {sg: la for sg, la, _ in segs}
    prev_seg = None
    for i, (a, e, st, code, sg) in enumerate(rows):
        if prev_seg is not None and sg != prev_seg:
            out.append(StateInterval(last_of[prev_seg], first_of[sg], MachineState.UNKNOWN, None))
        prev_seg = sg
        state = _STATES[st]
        is_open = i == len(rows) - 1 and sg == last_seg
        if is_open:
            last = last_of[sg]
            if now_ns - last > timeout_ns:
                if last > a:
                    out.append(StateInterval(a, last, state, code))
                if now_ns > last:
                    out.append(StateInterval(last, now_ns, MachineState.UNKNOWN, None))
            elif max(now_ns, last) > a:
                out.append(StateInterval(a, max(now_ns, last), state, code))
        elif e > a:
            out.append(StateInterval(a, e, state, code))
    return out


def frame_minutes(parts: dict[str, pl.DataFrame], run: MachineRun, timeout_ns: int,
                  cycles: Sequence[tuple[int, float]]) -> list[MinuteCounts]:
    """CounterTracker's per-minute counts from (ts, value) frames per signal; cycles: the
    ideal cycle time in force from each ts on (LOT changes), else the machine's."""
    acc: dict[int, list[float]] = {}
    for sig, name in run.counter_signals.items():
        ctr = run.counters[sig]
        mod = float(ctr.modulus)
        if sig not in parts:
            continue
        c = (parts[sig].filter(pl.col("value").is_finite() & (pl.col("value") >= 0)
                               & (pl.col("value") == pl.col("value").floor()) & (pl.col("value") < mod))
             .select("ts", "value").sort("ts"))
        if c.height == 0:
            continue
        v, p = pl.col("value"), pl.col("value").shift()
        dt = pl.col("ts") - pl.col("ts").shift()
        plausible = (dt.clip(lower_bound=0) // ctr.min_cycle_ns + 1).cast(pl.Float64)
        wrapped = v + mod - p
        delta = (pl.when(p.is_null()).then(0.0).when(v >= p).then(v - p)
                 .when(pl.lit(ctr.bits < 64) & (wrapped <= plausible)).then(wrapped)
                 .when(v <= plausible).then(v).otherwise(0.0))
        c = c.with_columns(delta=delta, gap=(dt > timeout_ns).fill_null(False),
                           minute=pl.col("ts") - pl.col("ts") % MINUTE_NS)
        if cycles:
            cyc = pl.DataFrame({"ts": [x[0] for x in cycles], "cycle": [x[1] for x in cycles]},
                               schema={"ts": pl.Int64, "cycle": pl.Float64})
            c = c.join_asof(cyc, on="ts", strategy="backward").with_columns(
                pl.col("cycle").fill_null(run.default_cycle_s))
        else:
            c = c.with_columns(cycle=pl.lit(run.default_cycle_s))
        g = (c.filter(pl.col("delta") > 0).group_by("minute").agg(
            pl.col("delta").sum().alias("d"),
            (pl.col("delta") * pl.col("cycle")).filter(~pl.col("gap")).sum().alias("ideal"),
            pl.col("delta").filter(pl.col("gap")).sum().alias("gapd")))
        idx = {"total": 0, "good": 1, "reject": 2}[name]
        for m, d, ideal, gapd in g.rows():
            row = acc.setdefault(m, [0, 0, 0, 0.0, 0])
            row[idx] += int(d)
            if name == "total":
                row[3] += float(ideal or 0.0)
                row[4] += int(gapd or 0)
    return [_minute_counts(m, acc[m], set(run.counter_signals.values()), run.default_cycle_s) for m in sorted(acc)]


def intervals_from_events(events: Sequence[Event], now_ns: int, last_seen: Optional[int],
                          timeout_ns: int) -> list[StateInterval]:
    """State records (kind="state") back into intervals. An open record (end_ns None) runs to
    now while the machine still talks, else to its newest sample and unknown after that."""
    out: list[StateInterval] = []
    for e in sorted(events, key=lambda e: e.ts):
        try:
            st = MachineState(e.data.get("state"))
        except ValueError:
            st = MachineState.UNKNOWN
        code = e.data.get("code")
        end = e.data.get("end_ns")
        if isinstance(end, int):
            out.append(StateInterval(e.ts, end, st, code))
            continue
        if last_seen is not None and now_ns - last_seen > timeout_ns:
            if last_seen > e.ts:
                out.append(StateInterval(e.ts, last_seen, st, code))
            out.append(StateInterval(max(e.ts, last_seen), now_ns, MachineState.UNKNOWN, None))
        elif now_ns > e.ts:
            out.append(StateInterval(e.ts, now_ns, st, code))
    return out


def _minute_counts(m: int, row: list[float], has: set[str], cycle_s: float) -> MinuteCounts:
    """A minute's counts, filling in a counter the machine class does not have."""
    t, g, r, ideal, gap = row
    if "total" not in has:
        t = g + r
        ideal = t * cycle_s
    if "good" not in has:
        g = t - r
    if "reject" not in has:
        r = t - g
    return MinuteCounts(m, int(t), int(g), int(r), float(ideal), int(gap))


def _state_event(run: MachineRun, iv: StateInterval, end_ns: Optional[int]) -> Event:
    site, line, machine = run.key
    return Event("state", iv.start_ns, site, line, machine, "",
                 {"state": iv.state.value, "code": iv.code, "end_ns": end_ns})


def _payload(r: OeeResult) -> dict[str, Any]:
    d = r.to_dict()
    d["losses"] = {x.name: {"minutes": x.minutes, "share": x.share} for x in six_big_losses(r)}
    return d
