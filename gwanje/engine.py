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

Clocks are per machine. Each machine's shift closes when that machine's own clock passes
shift end + the close delay (the larger of the comm timeout and the small-stop threshold:
stragglers within the timeout still count, and a stop running over the shift end is known
long enough to be classed). A machine's clock is its newest source time while it talks and,
between samples, the wall clock (`tick(now)`) corrected by the offset last measured between
the two — so a PLC running 4 minutes fast closes its own shift by its own time, never every
other machine's, and a silent machine still closes (resolved to unknown) on time. The line
and site records follow once every machine of the line / site has closed the shift.

`recompute(store, ...)` and `warm_start(store, now)` page a machine's raw samples
(Store.samples: every signal, text and quality, never downsampled) through the very same
MachineRun (StateTracker, CounterTracker) the live path uses: one implementation of the
state and counter rules, so the live and history paths give the same numbers.

The engine does no I/O itself: recompute() only calls the Store interface it is handed.
"""
from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from operator import not_, sub
from typing import Any, Callable, Optional, Sequence

from gwanje.batch import SERIES, SampleBatch, _quality
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
# raw samples read per page when rebuilding from the store
PAGE_SIZE = 50_000


class MachineRun:
    """Everything the engine knows about one machine right now."""

    def __init__(self, spec: MachineSpec, timeout_ns: int, products: dict[str, float] | None = None,
                 product_prefixes: Sequence[tuple[str, str]] = (), counter_margin: float = 2.0) -> None:
        self.spec = spec
        k = spec.klass
        self.state_signal = k.state_signal
        self.tracker = StateTracker(k.state_codes.mapping(), timeout_ns)
        self.counter_signals = {s: name for s, name in ((k.total_signal, "total"), (k.good_signal, "good"),
                                                        (k.reject_signal, "reject")) if s}
        self.counters = {s: CounterTracker(spec.definition.counter_bits, spec.definition.ideal_cycle_s, counter_margin)
                         for s in self.counter_signals}
        # this machine's clock: newest source time (watermark) and, when the engine has a
        # wall clock, source time - wall time when it was received (None: not measured yet)
        self.watermark: Optional[int] = None
        self.offset_ns: Optional[int] = None
        self.next_due_ns: Optional[int] = None  # when the next shift of this machine closes
        self.default_cycle_s = spec.definition.ideal_cycle_s
        self.cycle_s = self.default_cycle_s
        self.products = products or {}  # product id -> ideal cycle of this machine
        self.product_prefixes = product_prefixes  # (prefix, product id), longest first
        self.lot: Optional[str] = None
        self.product: Optional[str] = None
        self.intervals: list[StateInterval] = []
        # minute -> [total, good, reject, ideal_s, gap_total, counter faults]
        self.minutes: dict[int, list[float]] = {}
        # minutes with parts not yet written as a counts event (again: a late delta re-dirties)
        self.dirty: set[int] = set()
        # where the interval this run's first sample opened starts: where the run began to
        # read, not a state change (None once the true start is known, see Engine.rebuild)
        self.opened_ns: Optional[int] = None
        self.opened_prev: Optional[str] = None  # that interval's prev_state, when known

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
        return self.feed_value(s.signal, s.value, s.ts, s.quality == Quality.BAD, track_lots)

    def feed_value(self, signal: str, value: Any, ts: int, bad: bool,
                   track_lots: bool = False) -> tuple[list[StateInterval], bool]:
        """feed() of one sample given by its fields (bad: its quality == Quality.BAD), for the
        columnar path (Engine._on_batch), which builds no Sample."""
        if not isinstance(value, float) and signal != self.state_signal:
            return [], signal == "lot" and track_lots and self.set_lot(value)
        t = self.tracker
        if t.last_seen_ns is not None and ts < t.last_seen_ns:
            t.late += 1
            return [], False
        is_state = signal == self.state_signal
        first = t.since_ns is None
        closed = t.feed(ts, value if is_state else None, is_state, bad)
        if first and t.since_ns is not None:
            self.opened_ns = t.since_ns
        if closed:
            self.intervals.extend(closed)
        ctr = self.counters.get(signal)
        if ctr is not None and not bad:
            gap = ctr.prev_ts is not None and ts - ctr.prev_ts > self.tracker.timeout_ns
            faults = ctr.faults
            d = ctr.feed(ts, value)
            if d or ctr.faults != faults:
                minute = ts - ts % MINUTE_NS
                self.dirty.add(minute)
                m = self.minutes.setdefault(minute, [0, 0, 0, 0.0, 0, 0])
                m[5] += ctr.faults - faults
                name = self.counter_signals[signal]
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

    def feed_many(self, samples: Sequence[Sample], track_lots: bool = False) -> None:
        """Feed samples in engine order (see _order); closed intervals are kept in
        self.intervals, the LOT in self.lot (a rebuild, which writes no events)."""
        for s in sorted(samples, key=lambda s: _order(self, s)):
            self.feed(s, track_lots)

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


_ODD = -2  # Engine._series_codes: a key that is not four texts
_UNKNOWN = -1  # a machine the config does not have (or a sample rejected for its time)
_INT = {int}
_FLOAT = {float}


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
        self.counter_margin = spec.counter_margin
        # a shift closes this long after its end: stragglers within the comm timeout still
        # count, and a stop running over the end is known long enough to be classed
        self.close_delay_ns = max(self.timeout_ns, int(self.small_stop_s * NS_PER_S))
        self.clock = clock
        self.rejects = Rejects("engine")
        self._prefixes = sorted(((p.lot_prefix, p.id) for p in spec.products), key=lambda x: -len(x[0]))
        self.runs: dict[tuple[str, str, str], MachineRun] = {m.key: self._new_run(m) for m in config.machines()}
        self.track_lots = bool(spec.products)
        # per shift key until every machine has closed it: the machines' results so far, and
        # which records (machine, line, site) were written
        self._closing: dict[str, tuple[dict[tuple[str, str, str], OeeResult], set]] = {}
        # the pipeline thread feeds, UI/alarm threads read snapshots: one lock for both
        self._lock = threading.RLock()
        # True from a restart until adopt(): the live runs began at the restart, so the interval
        # each one's first sample opened is no state change and its record is not written (it
        # would stand beside the stored record of the same interval); adopt() writes the true one
        self.warming = False
        # the columnar path's per-series knowledge (see _on_batch): machine slot and role per
        # series id of gwanje.batch.SERIES, filled for new ids as they appear
        self._slot_keys: list[tuple[str, str, str]] = list(self.runs)
        self._slots = {k: i for i, k in enumerate(self._slot_keys)}
        self._sid_code: list[int] = []
        self._sid_rank: list[int] = []

    def _new_run(self, m: MachineSpec) -> MachineRun:
        per_product = {p.id: p.ideal_cycle_s[m.machine] for p in self.calendar.spec.products
                       if m.machine in p.ideal_cycle_s}
        return MachineRun(m, self.timeout_ns, per_product, self._prefixes, self.counter_margin)

    # ------------------------------------------------------------------ live path
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        """Pipeline listener: feed a written batch, return the derived events to store. A
        gwanje.batch.SampleBatch is read from its columns (_on_batch), any other sequence of
        Samples one Sample at a time (_on_samples): the same events and state either way."""
        with self._lock:
            if isinstance(samples, SampleBatch):
                return self._on_batch(samples)
            return self._on_samples(samples)

    def _on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        events: list[Event] = []
        wall = self.clock() if self.clock else None
        limit = wall + MAX_FUTURE_NS if wall is not None else None
        # older than the engine keeps anything (a PLC whose clock reset to 2001): it would
        # set the machine's clock decades back and change nothing that is still shown
        oldest = wall - RETAIN_NS if wall is not None else None
        by_machine: dict[tuple[str, str, str], list[Sample]] = {}
        for s in samples:
            key = (s.site, s.line, s.machine)
            if key not in self.runs:
                self.rejects.reject("unknown_machine", "/".join(key))
                continue
            if limit is not None and s.ts > limit:
                self.rejects.reject("timestamp_in_future", "/".join(key))
                continue
            if oldest is not None and s.ts < oldest:
                self.rejects.reject("timestamp_too_old", "/".join(key))
                continue
            by_machine.setdefault(key, []).append(s)
        for key, batch in by_machine.items():
            run = self.runs[key]
            batch.sort(key=lambda s, run=run: _order(run, s))
            before = run.tracker.last_seen_ns
            events.extend(self._feed_run(run, batch))
            newest = run.tracker.last_seen_ns
            if newest is not None and newest != before:
                if wall is not None:
                    run.offset_ns = newest - wall
                events.extend(self._advance(run, newest))
        return events

    def _feed_run(self, run: MachineRun, batch: Sequence[Sample]) -> list[Event]:
        site, line, machine = run.key
        events: list[Event] = []
        state_before = (run.tracker.state, run.tracker.code, run.tracker.since_ns)
        if run.watermark is None and batch:
            events.extend(self._advance(run, batch[0].ts))
        for s in batch:
            if s.ts >= run.next_due_ns:  # type: ignore[operator]  # set by _advance
                # close before this sample: the shift is judged on what came before its close
                # time, exactly as a rebuild from the store reads it
                events.extend(self._advance(run, run.next_due_ns))  # type: ignore[arg-type]
            closed, lot_changed = run.feed(s, self.track_lots)
            if lot_changed:
                events.append(Event("lot", s.ts, site, line, machine, "", {"lot": run.lot, "product": run.product}))
            self._closed_events(run, closed, events)
        self._feed_tail(run, state_before, events)
        return events

    def _feed_tail(self, run: MachineRun, state_before: tuple, events: list[Event]) -> None:
        """After a machine's samples of a batch: the record of the interval now open (when it
        changed) and the counts of the minutes that are complete."""
        t = run.tracker
        if (t.state, t.code, t.since_ns) != state_before and t.since_ns is not None and \
                not (self.warming and t.since_ns == run.opened_ns):
            prev = run.intervals[-1].state.value if run.intervals else None
            events.append(Event("state", t.since_ns, *run.key, "",
                                {"state": t.state.value, "code": t.code, "end_ns": None, "prev_state": prev}))
        events.extend(self._flush_counts(run, run.watermark))

    # ------------------------------------------------------------------ columnar live path
    def _series_codes(self) -> list[int]:
        """Per series id of SERIES: slot * 2 + role of the series, where slot is its machine's
        index in self._slot_keys and role 0 = a sample the engine reads (state code, counter,
        LOT when products are configured), 1 = one whose time is all that matters (liveness:
        every other signal); _UNKNOWN for a machine the config does not have, _ODD for a key
        that is not four texts (garbage a caller put in a Sample: the per-Sample path decides)."""
        codes, ranks = self._sid_code, self._sid_rank
        keys = SERIES.keys
        for j in range(len(codes), len(keys)):
            key = keys[j]
            code, rank = _ODD, 2
            if type(key) is tuple and len(key) == 4 and all(type(x) is str for x in key):
                slot = self._slots.get(key[:3])
                if slot is None:
                    code = _UNKNOWN
                else:
                    run = self.runs[key[:3]]
                    sig = key[3]
                    # _order's rank: the LOT first, then the state, then the rest
                    rank = 0 if sig == "lot" else 1 if sig == run.state_signal else 2
                    reads = sig == run.state_signal or sig in run.counter_signals or (sig == "lot" and self.track_lots)
                    code = slot * 2 + (0 if reads else 1)
            codes.append(code)
            ranks.append(rank)
        return codes

    def _on_batch(self, b: SampleBatch) -> list[Event]:
        """_on_samples of a SampleBatch, read from its columns: the same rejections, events and
        state, in the same order, without building a Sample per value.

        Per series id (cached, _series_codes) the machine and whether the engine reads the
        value. The samples are grouped by machine with one sort of their codes; a machine's
        samples the engine reads (state, counters, LOT) are fed one by one in engine order
        (_order), exactly as _feed_run feeds them; the others (temperatures, vibration, ...)
        only prove the machine is talking, and when the batch can change nothing else about
        the machine — its clock is set, the batch closes no shift (every sample before the
        machine's next shift close) and no gap longer than the comm timeout can lie inside
        it (newest sample within the timeout of the newest one seen before) — their effect is
        just the machine's newest time and the count of late ones: a max() and a min().
        Anything else (a machine's first batch, a silence, a shift close, a batch with a name
        that is not text or a time that is not an int) takes the per-Sample path, for that
        machine or for the whole batch."""
        sid, ts, value = b.sid, b.ts, b.value
        n = len(sid)
        info = self._series_codes()
        try:
            codes = list(map(info.__getitem__, sid))
            usual = n > 0 and set(map(type, ts)) == _INT and min(codes) != _ODD
        except (IndexError, TypeError):  # an id SERIES does not have, or not an int at all
            usual = False
        if not usual:
            return self._on_samples(b)
        events: list[Event] = []
        wall = self.clock() if self.clock else None
        unknown = codes.count(_UNKNOWN)
        if unknown:
            self.rejects.reject("unknown_machine", "/".join(SERIES.machine[sid[codes.index(_UNKNOWN)]]), unknown)
        if wall is not None:
            limit = wall + MAX_FUTURE_NS
            oldest = wall - RETAIN_NS  # see _on_samples
            if max(ts) > limit or min(ts) < oldest:
                self._reject_times(codes, sid, ts, limit, oldest)
        # group by machine: positions sorted by code (stable: arrival order within a code)
        order = sorted(range(n), key=codes.__getitem__)
        sc = list(map(codes.__getitem__, order))
        groups: dict[int, list] = {}  # slot -> [first position, read positions, liveness positions]
        p = bisect_left(sc, 0)
        while p < n:
            c = sc[p]
            q = bisect_right(sc, c, p)
            pos = order[p:q]
            g = groups.get(c >> 1)
            if g is None:
                groups[c >> 1] = g = [pos[0], [], []]
            elif pos[0] < g[0]:
                g[0] = pos[0]
            g[1 + (c & 1)] = pos
            p = q
        allfloat = None
        # machines in the order of their first sample, as _on_samples meets them
        for slot in sorted(groups, key=lambda k: groups[k][0]):
            _, reads, alive = groups[slot]
            if alive and allfloat is None:
                allfloat = set(map(type, value)) == _FLOAT
            run = self.runs[self._slot_keys[slot]]
            before = run.tracker.last_seen_ns
            self._feed_run_batch(run, b, reads, alive, bool(allfloat), events)
            newest = run.tracker.last_seen_ns
            if newest is not None and newest != before:
                if wall is not None:
                    run.offset_ns = newest - wall
                events.extend(self._advance(run, newest))
        return events

    def _reject_times(self, codes: list[int], sid: list[int], ts: list[int], limit: int, oldest: int) -> None:
        """Count the samples of known machines too far in the future or the past (_on_samples'
        rules) and mark them _UNKNOWN in codes, so that nothing else sees them."""
        future = old = 0
        fdetail = odetail = ""
        for i, t in enumerate(ts):
            if codes[i] < 0:
                continue
            if t > limit:
                future += 1
                fdetail = fdetail or "/".join(SERIES.machine[sid[i]])
                codes[i] = _UNKNOWN
            elif t < oldest:
                old += 1
                odetail = odetail or "/".join(SERIES.machine[sid[i]])
                codes[i] = _UNKNOWN
        if future:
            self.rejects.reject("timestamp_in_future", fdetail, future)
        if old:
            self.rejects.reject("timestamp_too_old", odetail, old)

    def _feed_run_batch(self, run: MachineRun, b: SampleBatch, reads: list[int], alive: list[int],
                        allfloat: bool, events: list[Event]) -> None:
        """One machine's samples of a batch (positions: `reads` the engine reads, `alive` the
        others), with the events and state _feed_run gives for them in engine order.

        The samples read are fed one by one in engine order (time, rank, arrival). The others
        only prove the machine talks (numbers; text not even that) and can matter through
        the shift close check alone (_feed_run advances the machine's clock before the first
        sample at or past its next close). They are taken in bulk (_alive: the newest time,
        the count of late ones, and one by one only a sample ending a silence longer than the
        comm timeout; those past the next shift close one by one), all those strictly
        earlier than a sample read that comes after a silence (or is the machine's first, or
        is past the shift close), and the rest at the end: between two such, no liveness
        sample can end a silence or change how a sample read is taken (late is late against
        the newest time before the batch, and a silence the sample read does not see cannot
        hold one). A liveness sample at the same time as a sample read is taken after it: at
        one time, whichever comes first closes the same silence with the same intervals and
        nothing else happens between them."""
        ts, sid, ranks, value = b.ts, b.sid, self._sid_rank, b.value
        ft: list[int] = []
        xt: list[int] = []
        xpos: list[int] = []
        fpos = alive
        if alive:
            if not allfloat:
                isf = list(map(isinstance, map(value.__getitem__, alive), repeat(float)))
                fpos = list(compress(alive, isf))
                xpos = list(compress(alive, map(not_, isf)))
                xpos.sort(key=ts.__getitem__)
                xt = list(map(ts.__getitem__, xpos))
            fpos = sorted(fpos, key=ts.__getitem__)  # stable: arrival order among equal times
            ft = list(map(ts.__getitem__, fpos))
        items = sorted([(ts[i], ranks[sid[i]], i) for i in reads])
        t = run.tracker
        state_before = (t.state, t.code, t.since_ns)
        if run.watermark is None:
            events.extend(self._advance(run, min(chain(ft[:1], xt[:1], (x[0] for x in items[:1])))))
        cur = [0, 0, t.last_seen_ns]  # liveness samples taken so far (numbers, text); the newest time before
        others = bool(ft or xt)
        timeout = t.timeout_ns
        for tsi, _, i in items:
            # the earlier liveness samples can only matter to this one, or say anything
            # themselves, when it comes after a silence or past the shift close: else they wait
            if others and (t.last_seen_ns is None or tsi - t.last_seen_ns > timeout or tsi >= run.next_due_ns):
                self._alive_until(run, b, tsi, ft, fpos, xt, xpos, cur, events)
            if tsi >= run.next_due_ns:  # type: ignore[operator]  # set by _advance
                events.extend(self._advance(run, run.next_due_ns))  # type: ignore[arg-type]
            self._feed_item(run, b, i, tsi, events)
        if others:
            self._alive_until(run, b, None, ft, fpos, xt, xpos, cur, events)
        self._feed_tail(run, state_before, events)

    def _feed_item(self, run: MachineRun, b: SampleBatch, i: int, tsi: int, events: list[Event]) -> None:
        """_feed_run's step for the sample at position i of b (after the shift close check)."""
        q = b.quality
        bad = q is not None and _quality(q[i]) == Quality.BAD
        closed, lot_changed = run.feed_value(SERIES.keys[b.sid[i]][3], b.value[i], tsi, bad, self.track_lots)
        if lot_changed:
            events.append(Event("lot", tsi, *run.key, "", {"lot": run.lot, "product": run.product}))
        if closed:
            self._closed_events(run, closed, events)

    def _closed_events(self, run: MachineRun, closed: Sequence[StateInterval], events: list[Event]) -> None:
        """The state records of the intervals a sample closed (the last len(closed) of
        run.intervals), each with the state before it; none for the interval a restart opened
        while warming (the warm start writes the true one)."""
        first = len(run.intervals) - len(closed)
        for k, iv in enumerate(closed):
            if self.warming and iv.start_ns == run.opened_ns:
                continue
            prev = run.intervals[first + k - 1].state.value if first + k > 0 else None
            events.append(_state_event(run, iv, iv.end_ns, prev))

    def _alive_until(self, run: MachineRun, b: SampleBatch, limit: Optional[int], ft: list[int], fpos: list[int],
                     xt: list[int], xpos: list[int], cur: list[int], events: list[Event]) -> None:
        """Take the liveness samples (numbers: times ft at positions fpos; text: xt, xpos; both
        sorted, cur = how many of each are taken) earlier than `limit` (None: all)."""
        j, jx = cur[0], cur[1]
        due = run.next_due_ns
        before_due = limit is not None and limit <= due  # type: ignore[operator]
        stop = limit if before_due else due
        k = bisect_left(ft, stop, j)
        if k > j:
            self._alive(run, b, ft, fpos, j, k, cur[2], events)
        jx = bisect_left(xt, stop, jx)
        if not before_due:
            # past the next shift close: one by one, as _feed_run takes them (rare)
            k2 = len(ft) if limit is None else bisect_left(ft, limit, k)
            x2 = len(xt) if limit is None else bisect_left(xt, limit, jx)
            if k2 > k or x2 > jx:
                ts, sid, ranks = b.ts, b.sid, self._sid_rank
                for tsi, _, i in sorted([(ts[i], ranks[sid[i]], i) for i in chain(fpos[k:k2], xpos[jx:x2])]):
                    if tsi >= run.next_due_ns:  # type: ignore[operator]
                        events.extend(self._advance(run, run.next_due_ns))  # type: ignore[arg-type]
                    self._feed_item(run, b, i, tsi, events)
                k, jx = k2, x2
        cur[0], cur[1] = k, jx

    def _alive(self, run: MachineRun, b: SampleBatch, ft: list[int], fpos: list[int], j: int, k: int,
               before: Optional[int], events: list[Event]) -> None:
        """Numeric liveness samples ft[j:k] (sorted, all before the next shift close), as
        feeding them one by one in engine order would take them: the first sample the machine
        ever sent opens its first interval; those older than `before` (the machine's newest
        time before this batch) are late; those not newer than a sample read already fed lie
        where no silence can be (see _feed_run_batch); among the rest, a sample after a
        silence longer than the comm timeout closes it (these fed as samples), and the others
        only move the newest time."""
        t = run.tracker
        if t.last_seen_ns is None:
            self._feed_item(run, b, fpos[j], ft[j], events)
            j += 1
        if before is not None and j < k and ft[j] < before:
            m = bisect_left(ft, before, j, k)
            t.late += m - j
            j = m
        seen = t.last_seen_ns
        if j < k and ft[j] <= seen:  # type: ignore[operator]
            j = bisect_right(ft, seen, j, k)
        if j >= k:
            return
        timeout = t.timeout_ns
        if ft[k - 1] - seen > timeout:  # type: ignore[operator]
            # silences inside: each is closed by the sample after it
            gaps = list(compress(range(j, k), map(timeout.__lt__, map(sub, islice(ft, j, k),
                                                                       chain((seen,), islice(ft, j, k - 1))))))
            for g in gaps:
                if g > j:
                    t.last_seen_ns = ft[g - 1]
                self._feed_item(run, b, fpos[g], ft[g], events)
        if ft[k - 1] > t.last_seen_ns:  # type: ignore[operator]
            t.last_seen_ns = ft[k - 1]

    def _flush_counts(self, run: MachineRun, machine_now: Optional[int]) -> list[Event]:
        """counts events for the minutes that are complete: the machine has reported past them,
        or its clock is a comm timeout past them (a machine that fell silent)."""
        if not run.dirty:
            return []
        last = run.tracker.last_seen_ns or 0
        stale = (machine_now or 0) - self.timeout_ns
        done = sorted(m for m in run.dirty if m + MINUTE_NS <= max(last, stale))
        site, line, machine = run.key
        events = []
        for m in done:
            run.dirty.discard(m)
            if m in run.minutes:
                c = run.minute_counts(m)
                events.append(Event("counts", m, site, line, machine, "",
                                    {"total": c.total, "good": c.good, "reject": c.reject, "ideal_s": c.ideal_s,
                                     "gap_total": c.gap_total, "faults": c.faults}))
        return events

    def tick(self, now_ns: int) -> list[Event]:
        """Advance every machine's clock by the wall clock (each corrected by its measured
        offset): closes shifts and flushes counts of machines that send nothing."""
        with self._lock:
            events: list[Event] = []
            for run in self.runs.values():
                events.extend(self._advance(run, now_ns + (run.offset_ns or 0)))
            return events

    def _advance(self, run: MachineRun, t: int) -> list[Event]:
        """Move one machine's clock to t: close its shifts that are due; once a minute flush
        the counts of a silent machine and prune its history."""
        prev = run.watermark
        if prev is not None and t <= prev:
            return []
        run.watermark = t
        events: list[Event] = []
        if prev is None:
            run.next_due_ns = self._next_due(t)
            return events
        if run.next_due_ns is not None and t >= run.next_due_ns:
            # a clock that jumps by years closes only the shifts the engine still holds data
            # for, not every shift in between
            since = max(prev, t - RETAIN_NS)
            for sh in self.calendar.shifts_between(since - self.close_delay_ns - 1, t - self.close_delay_ns):
                due = sh.end_ns + self.close_delay_ns
                if since < due <= t:
                    events.extend(self._close_machine_shift(run, sh))
            run.next_due_ns = self._next_due(t)
        if t // MINUTE_NS != prev // MINUTE_NS:
            events.extend(self._flush_counts(run, t))
            run.prune(t - RETAIN_NS)
        return events

    def _next_due(self, t: int) -> int:
        """The first shift close after machine time t (or a day on, to look again)."""
        lo = t - self.close_delay_ns
        for sh in self.calendar.shifts_between(lo, lo + 2 * 86400 * NS_PER_S):
            if sh.end_ns + self.close_delay_ns > t:
                return sh.end_ns + self.close_delay_ns
        return t + 86400 * NS_PER_S

    def _close_machine_shift(self, run: MachineRun, sh: ShiftInstance) -> list[Event]:
        """This machine's record of the shift, and the line's and site's once all of their
        machines have closed it."""
        results, written = self._closing.setdefault(sh.key, ({}, set()))
        if run.key in results:
            return []
        # judged at its close time, whenever the machine's clock got past it: a rebuild reads
        # the same samples (those before it) and evaluates at the same moment
        results[run.key] = self._result(run, sh.start_ns, sh.end_ns, sh.end_ns + self.close_delay_ns)
        out = []
        for e in self.shift_events(sh.key, sh.start_ns, results):
            ident = (e.site, e.line, e.machine)
            if ident not in written:
                written.add(ident)
                out.append(e)
        if len(results) == len(self.runs):
            del self._closing[sh.key]
        return out

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
                float(d.get("ideal_s", 0.0)), int(d.get("gap_total", 0)), int(d.get("faults", 0))))
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

    @property
    def lookback_ns(self) -> int:
        """How far before a window a rebuild starts reading: the comm timeout (state and
        counter baselines) plus the startup-reject window or a small stop, whichever is longer
        (a setup or a stop that began before the window)."""
        return self.timeout_ns + int(max(self.startup_window_s, self.small_stop_s) * NS_PER_S)

    def recompute_machine(self, store: Any, spec: MachineSpec, start_ns: int, end_ns: int) -> OeeResult:
        """One machine's OEE over [start_ns, end_ns) from the store's raw samples, through the
        live path's own code, evaluated where the live path closes the shift."""
        until = end_ns + self.close_delay_ns
        run = self.replay(store, spec, start_ns - self.lookback_ns, until)
        return self._result(run, start_ns, end_ns, until)

    def replay(self, store: Any, spec: MachineSpec, a: int, b: int) -> MachineRun:
        """A fresh MachineRun fed every raw sample of the machine in [a, b), page by page, in
        the live path's order (a page may end inside a timestamp: that timestamp waits for
        the next page)."""
        run = self._new_run(spec)
        if self.track_lots:
            before = store.events("lot", a - LOT_LOOKBACK_NS, a, spec.site, spec.line, spec.machine)
            if before:
                run.set_lot(str(before[-1].data.get("lot", "")))
        self._feed_stored(run, store, spec, a, b)
        return run

    def _feed_stored(self, run: MachineRun, store: Any, spec: MachineSpec, a: int, b: int) -> None:
        held: list[Sample] = []
        for page in store.samples(spec.site, spec.line, spec.machine, a, b, page_size=PAGE_SIZE):
            if not page:
                continue
            batch = held + page
            last = batch[-1].ts
            held = [x for x in batch if x.ts == last]
            run.feed_many([x for x in batch if x.ts != last], self.track_lots)
        run.feed_many(held, self.track_lots)

    def warm_start(self, store: Any, now_ns: int) -> list[Event]:
        """After a restart: rebuild every machine's state, counter baselines, intervals and
        minute counts of the running shift from the store's raw samples (the live path's own
        code, fed page by page), so the shift closes with the whole shift, not only the part
        since the restart. warm_start = adopt(rebuild()), both at once; the records to store."""
        return self.adopt(store, self.rebuild(store, now_ns), now_ns)

    def rebuild(self, store: Any, now_ns: int, cancelled: Callable[[], bool] = lambda: False) -> "Rebuilt":
        """The heavy half of a warm start, without the engine's lock (live samples keep
        flowing meanwhile): every machine's run of the running shift from the samples stored
        up to now_ns. adopt() then brings it up to date and puts it in place. cancelled() is
        asked between machines: True ends the rebuild early (RebuildCancelled)."""
        sh = self.calendar.shift_at(now_ns)
        start = sh.start_ns if sh else now_ns - 8 * 3600 * NS_PER_S
        a = start - self.lookback_ns
        runs = {}
        for spec in self.config.machines():
            if cancelled():
                raise RebuildCancelled()
            runs[spec.key] = run = self.replay(store, spec, a, now_ns + 1)
            self._true_start(store, run)
        return Rebuilt(a, now_ns + 1, runs)

    def _true_start(self, store: Any, run: MachineRun) -> None:
        """The rebuilt run's first interval began where the rebuild began to read; when the
        store's state records show the same state since earlier, that record's start is the
        interval's (so adopt() closes the stored record instead of writing a second one)."""
        t0 = run.opened_ns
        if t0 is None:
            return
        iv = run.intervals[0] if run.intervals else None
        state = iv.state if iv is not None else run.tracker.state
        site, line, machine = run.key
        recs = [e for e in store.events("state", t0 - RETAIN_NS, t0 + 1, site, line, machine, limit=200_000)
                if e.ts <= t0]
        rec = recs[-1] if recs else None
        end = rec.data.get("end_ns") if rec is not None else None
        if rec is None or rec.data.get("state") != state.value or (isinstance(end, int) and end < t0):
            # no stored record continues into it (a first start, another state before, or a
            # gap): what is known begins at the first stored sample, and that is its record
            if rec is not None and rec.data.get("state") != state.value:
                run.opened_prev = rec.data.get("state")
            run.opened_ns = None
            return
        if iv is not None:
            run.intervals[0] = StateInterval(rec.ts, iv.end_ns, iv.state, iv.code)
        else:
            run.tracker.since_ns = rec.ts
        run.opened_ns, run.opened_prev = None, rec.data.get("prev_state")

    def adopt(self, store: Any, rebuilt: "Rebuilt", now_ns: int) -> list[Event]:
        """The light half: each rebuilt run is fed what the store received since rebuild()
        read it (after its newest sample, up to now_ns), then replaces the live run. The
        caller makes sure the store holds every sample the live engine has seen (runtime:
        called in the pipeline's writer thread, between two batches, spool drained).

        Returns the records to store: the live runs wrote theirs since the restart from what
        they had seen (their first minute without the parts before their first reading), so
        the running shift's state and counts records are written again from the rebuilt runs,
        which replace them (same identities); the minute in progress follows when complete."""
        events: list[Event] = []
        shift_start = rebuilt.start_ns + self.lookback_ns
        with self._lock:
            for spec in self.config.machines():
                run = rebuilt.runs.get(spec.key)
                if run is None:
                    continue
                last = run.tracker.last_seen_ns
                since = rebuilt.start_ns if last is None else last + 1
                if now_ns + 1 > since:
                    self._feed_stored(run, store, spec, since, now_ns + 1)
                last = run.tracker.last_seen_ns
                if last is None:
                    continue
                run.dirty = {m for m in run.minutes if m >= shift_start}
                run.watermark = last
                run.next_due_ns = self._next_due(last)
                self.runs[spec.key] = run
                events += self._rebuilt_states(run, shift_start)
                events += self._flush_counts(run, last)
            self.warming = False
        return events

    def _rebuilt_states(self, run: MachineRun, since: int) -> list[Event]:
        """The state records of a rebuilt run's intervals that reach into [since, ...), the
        open one last; not an interval whose true start is unknown (run.opened_ns)."""
        out = []
        for i, iv in enumerate(run.intervals):
            if iv.end_ns > since and iv.start_ns != run.opened_ns:
                prev = run.intervals[i - 1].state.value if i > 0 else run.opened_prev
                out.append(_state_event(run, iv, iv.end_ns, prev))
        t = run.tracker
        if t.since_ns is not None and t.since_ns != run.opened_ns:
            prev = run.intervals[-1].state.value if run.intervals else run.opened_prev
            out.append(Event("state", t.since_ns, *run.key, "",
                             {"state": t.state.value, "code": t.code, "end_ns": None, "prev_state": prev}))
        return out


class RebuildCancelled(Exception):
    """Engine.rebuild ended early: its caller is stopping."""


@dataclass
class Rebuilt:
    """Engine.rebuild's result: the runs rebuilt from the stored samples in [start_ns, end_ns)."""
    start_ns: int
    end_ns: int
    runs: dict[tuple[str, str, str], MachineRun]


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
    t, g, r, ideal, gap, faults = row
    if "total" not in has:
        t = g + r
        ideal = t * cycle_s
    if "good" not in has:
        g = t - r
    if "reject" not in has:
        r = t - g
    return MinuteCounts(m, int(t), int(g), int(r), float(ideal), int(gap), int(faults))


def _state_event(run: MachineRun, iv: StateInterval, end_ns: Optional[int], prev: Optional[str]) -> Event:
    # prev_state again: the closed record replaces the open one whole
    site, line, machine = run.key
    return Event("state", iv.start_ns, site, line, machine, "",
                 {"state": iv.state.value, "code": iv.code, "end_ns": end_ns, "prev_state": prev})


def _payload(r: OeeResult) -> dict[str, Any]:
    d = r.to_dict()
    d["losses"] = {x.name: {"minutes": x.minutes, "share": x.share} for x in six_big_losses(r)}
    return d
