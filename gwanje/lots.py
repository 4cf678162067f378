"""LOT tracking: step records, genealogy, the live LOT index and holds, derived from what the
machines report (docs/lots.md). Pure: no I/O; restore() only calls the Store interface it
is handed.

`LotTracker(config)` is a pipeline listener (`on_samples(batch) -> events`). Per machine it
reads four LOT signals — `lot` (the LOT on the machine now, "" = none), `lot_product`,
`lot_qty`, `lot_parents` — and the part counters, and writes:

  lot_step   key = LOT, ts = step start, the machine: one LOT on one machine for one stretch
             of time, with its counter deltas; rewritten while open (at most once a minute)
             and when it closes (end_ns set)
  lot_index  key = LOT, ts = its first start: the LOT's status, where it is, genealogy
  lot_link   key = "<parent>><child>", ts = the child's first start
  lot_hold   key = LOT, ts = hold time: a reject spike or an alarm during a step

A LOT change on a machine ends the step of the LOT before and starts the next one. Samples of
one machine are taken in time order; at one timestamp the counters first (the parts counted
up to the change were made under the LOT before), then `lot`, then the LOT's attributes
(sent with the LOT start, they belong to the new LOT). Counter deltas use the engine's
CounterTracker (wraps, resets and implausible jumps alike).
"""
from __future__ import annotations

import functools
import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from gwanje.batch import SERIES, SampleBatch, selected
from gwanje.config import Config, MachineSpec
from gwanje.counters import CounterTracker
from gwanje.model import NS_PER_S, Event, Quality, Sample
from gwanje.oee import MINUTE_NS
from gwanje.rejects import Rejects
from gwanje.shifts import ShiftCalendar, load_shifts

log = logging.getLogger("gwanje.lots")

ATTRS = ("lot_product", "lot_qty", "lot_parents")
LOT_SIGNALS = ("lot",) + ATTRS
PRIORITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4, "off": 99}
# a LOT number as a record key and a URL part: printable, no separators of our own
MAX_LOT_LEN = 64
MAX_PARENTS = 32
REWRITE_NS = 60 * NS_PER_S  # an open step's record is rewritten at most this often
PAGE_SIZE = 50_000


def lot_problem(lot: Any) -> Optional[str]:
    """Why a text cannot be a LOT number (None: it can): 1..64 printable characters without
    ',', '>', '/', quotes, backslash or whitespace."""
    if not isinstance(lot, str) or not lot:
        return "empty"
    if len(lot) > MAX_LOT_LEN:
        return "too_long"
    if any(c in ',>/\\"\'`<' or not c.isprintable() or c.isspace() for c in lot):
        return "bad_character"
    return None


@dataclass
class Step:
    lot: str
    key: tuple[str, str, str]
    start_ns: int
    process: str
    step: Optional[int]
    planned_qty: Optional[int]
    plan_s: Optional[float]
    product: Optional[str]
    end_ns: Optional[int] = None
    total: int = 0
    good: int = 0
    reject: int = 0
    counted_ns: int = 0
    written_ns: Optional[int] = None  # counted_ns of the last record written (None: never)
    dirty: bool = True
    holds: set = field(default_factory=set)  # reasons this step was put on hold for
    # (minute, parts, rejects) of the last reject window
    window: deque = field(default_factory=deque)

    def event(self, ctr: dict[str, int]) -> Event:
        site, line, machine = self.key
        return Event("lot_step", self.start_ns, site, line, machine, self.lot, {
            "lot": self.lot, "product": self.product, "process": self.process, "step": self.step,
            "end_ns": self.end_ns, "total": self.total, "good": self.good, "reject": self.reject,
            "planned_qty": self.planned_qty, "plan_s": self.plan_s, "counted_ns": self.counted_ns,
            "ctr": dict(ctr)})


@dataclass
class Lot:
    lot: str
    product: Optional[str]
    planned_qty: Optional[int]
    route: list[str]
    first_ns: int
    place: tuple[str, str, str]
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    status: str = "in_process"
    process: str = ""
    machine: str = ""
    since_ns: int = 0
    last_ns: int = 0
    steps: int = 0
    good: int = 0
    reject: int = 0
    last_step: Optional[int] = None  # route index of the latest step
    open: int = 0  # steps open now (a LOT may run on two machines at once)
    taken: float = 0.0  # planned quantities of the split children (inf: merged)

    def event(self) -> Event:
        return Event("lot_index", self.first_ns, *self.place, self.lot, {
            "lot": self.lot, "product": self.product, "status": self.status, "process": self.process,
            "machine": self.machine, "since_ns": self.since_ns, "first_ns": self.first_ns,
            "last_ns": self.last_ns, "steps": self.steps, "good": self.good, "reject": self.reject,
            "planned_qty": self.planned_qty, "parents": list(self.parents), "children": list(self.children),
            "route": list(self.route)})

    @classmethod
    def from_event(cls, e: Event) -> Optional["Lot"]:
        d = e.data if isinstance(e.data, dict) else {}
        if lot_problem(e.key):
            return None

        def texts(v: Any) -> list[str]:
            return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

        def num(v: Any, default: int = 0) -> int:
            return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

        lot = cls(e.key, d.get("product") if isinstance(d.get("product"), str) else None,
                  num(d.get("planned_qty"), 0) or None, texts(d.get("route")), e.ts, (e.site, e.line, e.machine),
                  texts(d.get("parents")), texts(d.get("children")), str(d.get("status") or "done"),
                  str(d.get("process") or ""), str(d.get("machine") or ""), num(d.get("since_ns"), e.ts),
                  num(d.get("last_ns"), e.ts), num(d.get("steps")), num(d.get("good")), num(d.get("reject")))
        return lot


class _Machine:
    """What the tracker knows of one machine."""

    def __init__(self, spec: MachineSpec, margin: float) -> None:
        self.spec = spec
        k = spec.klass
        self.names = {s: n for s, n in ((k.total_signal, "total"), (k.good_signal, "good"),
                                        (k.reject_signal, "reject")) if s and spec.signal(s) is not None}
        self.counters = {s: CounterTracker(spec.definition.counter_bits, spec.definition.ideal_cycle_s, margin)
                         for s in self.names}
        self.has_lot = spec.signal("lot") is not None
        self.lot = ""  # the LOT the machine reported last
        self.lot_ts: Optional[int] = None
        self.step: Optional[Step] = None
        self.regs: dict[str, tuple[int, Any]] = {}  # attribute -> (ts, value), the newest
        self.last_ts: Optional[int] = None

    def ctr(self) -> dict[str, int]:
        return {s: c.prev for s, c in self.counters.items() if c.prev is not None}


def _locked(fn: Any) -> Any:
    """The writer thread feeds samples, the ticker and the alarm service's own writes call in
    from theirs: one lock for the tracker's state."""
    @functools.wraps(fn)
    def wrapper(self: "LotTracker", *a: Any, **kw: Any) -> Any:
        with self._lock:
            return fn(self, *a, **kw)
    return wrapper


class LotTracker:
    def __init__(self, config: Config, calendar: Optional[ShiftCalendar] = None) -> None:
        self.config = config
        spec = (calendar or load_shifts(config)).spec
        self.products = {p.id: p for p in spec.products}
        self.prefixes = sorted(((p.lot_prefix, p.id) for p in spec.products), key=lambda x: -len(x[0]))
        self.holds = spec.lots.holds
        self.lookback_ns = int(spec.lots.lookback_days * 86400 * NS_PER_S)
        self.machines: dict[tuple[str, str, str], _Machine] = {
            m.key: _Machine(m, spec.counter_margin) for m in config.machines()}
        self.process = {m.key: (ln.process if (ln := config.line(m.site, m.line)) else "other")
                        for m in config.machines()}
        self.lots: dict[str, Lot] = {}
        self.rejects = Rejects("lots")
        self.restored = False
        self._pending_since: Optional[int] = None  # first sample skipped while not restored
        self._sid_code: list[int] = []  # per SERIES id: 0 not read, 1 counter, 2 lot, 3 attribute
        self._alarm_rank = PRIORITY_RANK[self.holds.alarm_priority]
        self._lock = threading.RLock()
        self._dirty_lots: set[str] = set()  # LOTs whose index record is to be written
        self._pending_events: list[Event] = []  # records made outside a batch's event list

    # ------------------------------------------------------------------ live path
    @_locked
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        """Pipeline listener: the LOT records this batch gives."""
        if not self.restored:
            if samples and self._pending_since is None:
                self._pending_since = min(samples.ts) if isinstance(samples, SampleBatch) else \
                    min((s.ts for s in samples if isinstance(s, Sample)), default=None)
            return []
        events: list[Event] = []
        by_machine: dict[tuple[str, str, str], list[tuple]] = {}
        for key, sig, value, ts, bad in _relevant(samples, self):
            by_machine.setdefault(key, []).append((ts, _RANK.get(sig, 0), sig, value, bad))
        for key, items in by_machine.items():
            items.sort(key=lambda x: (x[0], x[1]))
            self._feed(self.machines[key], items, events)
        self._flush(events)
        return events

    def _feed(self, m: _Machine, items: Iterable[tuple], events: list[Event]) -> None:
        for ts, _rank, sig, value, bad in items:
            if m.last_ts is not None and ts < m.last_ts:
                self.rejects.reject("late_sample", "/".join(m.spec.key))
                continue
            m.last_ts = ts
            if sig == "lot":
                if not bad and isinstance(value, str):
                    self._on_lot(m, ts, value, events)
            elif sig in ATTRS:
                if not bad:
                    self._on_attr(m, ts, sig, value)
            else:
                c = m.counters.get(sig)
                if c is None or bad:
                    continue
                d = c.feed(ts, value)
                st = m.step
                if st is not None:
                    st.counted_ns = ts
                    if d:
                        name = m.names[sig]
                        setattr(st, name, getattr(st, name) + d)
                        st.dirty = True
                        self._window(m, st, ts, name, d, events)

    def _on_lot(self, m: _Machine, ts: int, value: str, events: list[Event]) -> None:
        value = value.strip()
        if value == m.lot:
            return
        if value and lot_problem(value):
            self.rejects.reject(f"bad_lot_{lot_problem(value)}", "/".join(m.spec.key))
            return
        m.lot, m.lot_ts = value, ts
        if m.step is not None:
            self._close(m, ts, events)
        if value:
            self._open(m, value, ts, events)

    def _on_attr(self, m: _Machine, ts: int, sig: str, value: Any) -> None:
        m.regs[sig] = (ts, value)
        st = m.step
        if st is None or ts < st.start_ns:
            return
        lot = self.lots.get(st.lot)
        if lot is None:
            return
        # an attribute of the LOT running: sent with its start, or filling in what it lacked
        first = ts == st.start_ns
        if sig == "lot_product" and isinstance(value, str) and value and (first or st.product is None):
            product = value if value in self.products else None
            if product is None:
                self.rejects.reject("unknown_product", value[:64])
            elif product != st.product:
                st.product = lot.product = product
                lot.route = list(self.products[product].route)
                st.step = self._route_index(lot, st.process)
                st.planned_qty = st.planned_qty or self.products[product].lot_qty
                st.plan_s = self._plan_s(m, st.product, st.planned_qty)
                lot.planned_qty = lot.planned_qty or st.planned_qty
                st.dirty = True
                self._changed(lot)
        elif sig == "lot_qty" and isinstance(value, float) and value.is_integer() and 0 < value <= 1e7 \
                and (first or st.planned_qty is None or st.planned_qty == self._default_qty(st.product)):
            q = int(value)
            if q != st.planned_qty:
                st.planned_qty = lot.planned_qty = q
                st.plan_s = self._plan_s(m, st.product, q)
                st.dirty = True
                self._changed(lot)
        elif sig == "lot_parents" and isinstance(value, str) and (first or not lot.parents):
            parents = self._parents(value, st.lot)
            new = [p for p in parents if p not in lot.parents]
            if new:
                lot.parents.extend(new)
                self._link(lot, new, st, self._pending_events)
                self._changed(lot)

    def _parents(self, value: str, lot: str) -> list[str]:
        out: list[str] = []
        for p in value.split(","):
            p = p.strip()
            if not p:
                continue
            if lot_problem(p) or p == lot:
                self.rejects.reject("bad_parent", lot)
                continue
            if p not in out:
                out.append(p)
        if len(out) > MAX_PARENTS:
            self.rejects.reject("too_many_parents", lot)
            out = out[:MAX_PARENTS]
        return out

    def _default_qty(self, product: Optional[str]) -> Optional[int]:
        return self.products[product].lot_qty if product in self.products else None

    def _product_of(self, lot: str) -> Optional[str]:
        return next((p for prefix, p in self.prefixes if lot.startswith(prefix)), None)

    def _plan_s(self, m: _Machine, product: Optional[str], qty: Optional[int]) -> Optional[float]:
        if not qty:
            return None
        p = self.products.get(product) if product else None
        cycle = p.ideal_cycle_s.get(m.spec.machine) if p is not None else None
        return round(qty * (cycle or m.spec.definition.ideal_cycle_s), 3)

    def _route_index(self, lot: Lot, process: str) -> Optional[int]:
        r = lot.route
        start = (lot.last_step + 1) if lot.last_step is not None else 0
        for i in list(range(start, len(r))) + list(range(0, start)):
            if r[i] == process:
                return i
        return None

    def _open(self, m: _Machine, value: str, ts: int, events: list[Event]) -> None:
        regs = {k: v for k, (t, v) in m.regs.items() if t == ts}
        lot = self.lots.get(value)
        new = lot is None
        if lot is None:
            product = regs.get("lot_product")
            if not (isinstance(product, str) and product in self.products):
                if isinstance(product, str) and product:
                    self.rejects.reject("unknown_product", product[:64])
                product = self._product_of(value)
            q = regs.get("lot_qty")
            qty = int(q) if isinstance(q, float) and q.is_integer() and 0 < q <= 1e7 else self._default_qty(product)
            route = list(self.products[product].route) if product else []
            lot = Lot(value, product, qty, route, ts, m.spec.key)
            self.lots[value] = lot
        process = self.process[m.spec.key]
        idx = self._route_index(lot, process)
        st = Step(value, m.spec.key, ts, process, idx, lot.planned_qty, self._plan_s(m, lot.product, lot.planned_qty),
                  lot.product, counted_ns=ts)
        m.step = st
        lot.open += 1
        lot.status, lot.process, lot.machine, lot.since_ns = "in_process", process, "/".join(m.spec.key), ts
        lot.last_ns = max(lot.last_ns, ts)
        lot.good = lot.reject = 0
        if new:
            parents = self._parents(regs["lot_parents"], value) if isinstance(regs.get("lot_parents"), str) else []
            if parents:
                lot.parents = parents
                self._link(lot, parents, st, events)
        self._changed(lot)

    def _link(self, lot: Lot, parents: list[str], st: Step, events: list[Event]) -> None:
        kind = "merge" if len(lot.parents) > 1 else "split"
        for p in parents:
            # + the parent's position (ns): a merge's links are distinct typed points in InfluxDB
            events.append(Event("lot_link", lot.first_ns + lot.parents.index(p), *st.key, f"{p}>{lot.lot}",
                                {"parent": p, "child": lot.lot, "kind": kind}))
            par = self.lots.get(p)
            if par is None:
                continue
            if lot.lot not in par.children:
                par.children.append(lot.lot)
            par.taken += float("inf") if kind == "merge" else (lot.planned_qty or float("inf"))
            if par.open == 0 and par.status == "waiting" and par.taken >= max(1, par.good):
                par.status, par.since_ns = "consumed", lot.first_ns
            self._changed(par)

    def _close(self, m: _Machine, ts: int, events: list[Event]) -> None:
        st = m.step
        assert st is not None
        m.step = None
        st.end_ns = ts
        st.counted_ns = max(st.counted_ns, ts)
        events.append(st.event(m.ctr()))
        lot = self.lots.get(st.lot)
        if lot is None:
            return
        lot.open = max(0, lot.open - 1)
        lot.steps += 1
        lot.good, lot.reject = st.good, st.reject
        lot.last_ns = max(lot.last_ns, ts)
        if st.step is not None:
            lot.last_step = st.step if lot.last_step is None else max(lot.last_step, st.step)
        if lot.open == 0:
            nxt = lot.last_step + 1 if lot.last_step is not None else None
            if nxt is not None and nxt < len(lot.route):
                lot.status, lot.process = "waiting", lot.route[nxt]
            else:
                lot.status, lot.process = "done", st.process
            if lot.children and lot.taken >= max(1, lot.good):
                lot.status = "consumed"
            lot.since_ns = ts
            lot.machine = "/".join(st.key)
        self._changed(lot)

    def _window(self, m: _Machine, st: Step, ts: int, name: str, d: int, events: list[Event]) -> None:
        h = self.holds
        minute = ts - ts % MINUTE_NS
        w = st.window
        if not w or w[-1][0] != minute:
            w.append([minute, 0, 0])
        if name == "total" or ("total" not in m.names.values() and name in ("good", "reject")):
            w[-1][1] += d
        if name == "reject":
            w[-1][2] += d
        cutoff = ts - int(h.reject_window_s * NS_PER_S)
        while w and w[0][0] + MINUTE_NS <= cutoff:
            w.popleft()
        if "reject_spike" in st.holds:
            return
        parts = sum(x[1] for x in w)
        rej = sum(x[2] for x in w)
        if parts >= h.reject_min_parts and rej / parts >= h.reject_ratio:
            self._hold(st, ts, "reject_spike", f"{rej}/{parts} rejected in {h.reject_window_s:g} s",
                       events, total=parts, reject=rej)

    def _hold(self, st: Step, ts: int, reason: str, detail: str, events: list[Event], **extra: Any) -> None:
        st.holds.add(reason)
        data = {"lot": st.lot, "reason": reason, "detail": detail, "step_ns": st.start_ns, "status": "held",
                "alarm": None, "priority": None, "total": None, "reject": None}
        data.update(extra)
        events.append(Event("lot_hold", ts, *st.key, st.lot, data))
        log.warning("LOT %s on hold (%s at %s): %s", st.lot, reason, "/".join(st.key), detail)

    @_locked
    def on_alarm_events(self, events: Sequence[Event]) -> list[Event]:
        """Alarm records the alarm service wrote: one of the configured priority or above
        raised on a machine puts the LOT running there on hold."""
        out: list[Event] = []
        if not self.restored:
            return out
        for e in events:
            if e.kind != "alarm" or not isinstance(e.data, dict) or e.data.get("event") != "raised":
                continue
            if PRIORITY_RANK.get(str(e.data.get("priority")), 0) < self._alarm_rank:
                continue
            m = self.machines.get((e.site, e.line, e.machine))
            st = m.step if m is not None else None
            if st is None or "alarm" in st.holds or e.ts < st.start_ns:
                continue
            msg = e.data.get("message_en") or e.key
            self._hold(st, e.ts, "alarm", str(msg)[:200], out, alarm=e.key, priority=e.data.get("priority"))
        return out

    @_locked
    def tick(self, now_ns: int) -> list[Event]:
        """Wall clock: the open steps' records of machines that fell silent."""
        events: list[Event] = []
        if self.restored:
            self._flush(events, stale_before=now_ns - REWRITE_NS)
        return events

    # ------------------------------------------------------------------ records
    def _changed(self, lot: Lot) -> None:
        self._dirty_lots.add(lot.lot)

    def _flush(self, events: list[Event], stale_before: Optional[int] = None) -> None:
        """The records due: links and index rewrites, and each open step whose counts changed
        when a minute (of its machine's time) passed since its last record, or its machine
        went silent (stale_before: the wall clock a minute ago, from tick())."""
        events.extend(self._pending_events)
        self._pending_events.clear()
        for m in self.machines.values():
            st = m.step
            if st is not None and st.dirty and (st.written_ns is None or st.counted_ns - st.written_ns >= REWRITE_NS
                                                or stale_before is not None and st.counted_ns < stale_before):
                st.dirty = False
                st.written_ns = st.counted_ns
                events.append(st.event(m.ctr()))
                lot = self.lots.get(st.lot)
                if lot is not None:
                    lot.good, lot.reject = st.good, st.reject
                    self._dirty_lots.add(lot.lot)
        for name in sorted(self._dirty_lots):
            lot = self.lots.get(name)
            if lot is not None:
                events.append(lot.event())
        self._dirty_lots.clear()
        self._prune()

    def _prune(self) -> None:
        if len(self.lots) <= 200_000:
            return
        newest = max(lot.last_ns for lot in self.lots.values())
        for name in [n for n, lot in self.lots.items() if lot.open == 0 and lot.last_ns < newest - self.lookback_ns]:
            del self.lots[name]

    # ------------------------------------------------------------------ restart
    @_locked
    def restore(self, store: Any, now_ns: int) -> list[Event]:
        """After a restart: the live index and the open steps from the store's records, then
        every raw sample the store holds after what those records counted (and after the
        first sample skipped before the restore), so counts resume where they were."""
        a = now_ns - self.lookback_ns
        for e in store.events("lot_index", a, now_ns + 1, limit=1_000_000):
            lot = Lot.from_event(e)
            if lot is not None:
                self.lots[lot.lot] = lot
        steps = store.events("lot_step", a, now_ns + 1, limit=1_000_000)
        holds = store.events("lot_hold", a, now_ns + 1, limit=1_000_000)
        held = {(h.key, h.data.get("step_ns"), h.data.get("reason")) for h in holds if isinstance(h.data, dict)}
        for e in steps:
            d = e.data if isinstance(e.data, dict) else {}
            lot = self.lots.get(e.key)
            if lot is not None and isinstance(d.get("step"), int):
                lot.last_step = d["step"] if lot.last_step is None else max(lot.last_step, d["step"])
            if d.get("end_ns") is not None:
                continue
            m = self.machines.get((e.site, e.line, e.machine))
            if m is None or lot_problem(e.key):
                continue
            if m.step is not None and m.step.start_ns > e.ts:
                continue
            st = Step(e.key, m.spec.key, e.ts, str(d.get("process") or self.process[m.spec.key]),
                      d.get("step") if isinstance(d.get("step"), int) else None,
                      d.get("planned_qty") if isinstance(d.get("planned_qty"), int) else None,
                      d.get("plan_s") if isinstance(d.get("plan_s"), (int, float)) else None,
                      d.get("product") if isinstance(d.get("product"), str) else None,
                      total=_int(d.get("total")), good=_int(d.get("good")), reject=_int(d.get("reject")),
                      counted_ns=_int(d.get("counted_ns")) or e.ts, dirty=False)
            st.written_ns = st.counted_ns
            st.holds = {r for (k, s, r) in held if k == e.key and s == e.ts}
            m.step, m.lot, m.lot_ts, m.last_ts = st, e.key, e.ts, st.counted_ns
            ctr = d.get("ctr") if isinstance(d.get("ctr"), dict) else {}
            for sig, c in m.counters.items():
                v = ctr.get(sig)
                if isinstance(v, int) and not isinstance(v, bool):
                    c.prev, c.prev_ts = v, st.counted_ns
        running = Counter(m.step.lot for m in self.machines.values() if m.step is not None)
        for lot in self.lots.values():
            lot.open = running[lot.lot]
            lot.taken = sum((self.lots[c].planned_qty or float("inf")) if c in self.lots else 0.0
                            for c in lot.children)
        self.restored = True
        events: list[Event] = []
        for m in self.machines.values():
            since = m.step.counted_ns + 1 if m.step is not None else None
            if self._pending_since is not None:
                since = self._pending_since if since is None else min(since, self._pending_since)
                if m.step is None:
                    m.last_ts = None
            if since is None or since > now_ns:
                continue
            s = m.spec
            for page in store.samples(s.site, s.line, s.machine, since, now_ns + 1, page_size=PAGE_SIZE):
                items = [(x.ts, _RANK.get(x.signal, 0), x.signal, x.value, x.quality == Quality.BAD)
                         for x in page if x.signal in LOT_SIGNALS or x.signal in m.counters]
                items.sort(key=lambda x: (x[0], x[1]))
                self._feed(m, items, events)
        self._pending_since = None
        self._flush(events)
        log.info("LOT index restored: %d LOTs, %d open steps", len(self.lots),
                 sum(1 for m in self.machines.values() if m.step is not None))
        return events


def _int(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


# counters first at one timestamp, then the LOT, then its attributes
_RANK = {"lot": 1, "lot_product": 2, "lot_qty": 2, "lot_parents": 2}


def _codes(t: LotTracker) -> list[int]:
    """Per SERIES id: 1 when the tracker reads the series (a LOT signal or a counter of a
    machine with a `lot` signal), else 0."""
    codes = t._sid_code
    keys = SERIES.keys
    if len(codes) < len(keys):
        for k in keys[len(codes):]:
            ok = 0
            if type(k) is tuple and len(k) == 4 and all(type(x) is str for x in k):
                m = t.machines.get(k[:3])  # type: ignore[index]
                if m is not None and m.has_lot and (k[3] in LOT_SIGNALS or k[3] in m.counters):
                    ok = 1
            codes.append(ok)
    return codes


def _relevant(samples: Sequence[Sample], t: LotTracker) -> Iterable[tuple]:
    """(machine key, signal, value, ts, bad) of the samples the tracker reads."""
    if isinstance(samples, SampleBatch):
        yield from selected(samples, _codes(t))
        return
    for s in samples:
        m = t.machines.get((s.site, s.line, s.machine)) if isinstance(s, Sample) else None
        if m is None or not m.has_lot or not (s.signal in LOT_SIGNALS or s.signal in m.counters):
            continue
        yield (s.site, s.line, s.machine), s.signal, s.value, s.ts, s.quality == Quality.BAD
