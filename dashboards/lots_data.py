"""What the LOT pages read (docs/lots.md records), through the data layer's shared short-TTL
cache: the live LOT index with holds (/lots), one LOT with its ancestors' steps, holds and
descendants (/lot/<LOT>), the LOTs that ran on a machine in a window (/trace).

Two halves, like dashboards/data.py: pure functions from records to view models (tests feed
them hand-made events) and loaders that ask the Store and cache what they got. Records from
the store are read defensively: a field of the wrong type is treated as missing, never raised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from gwanje.model import NS_PER_S, Event

from dashboards.data import DataLayer

DAY_NS = 86_400 * NS_PER_S
# the LOT numbers a URL may carry: an id's shape (gwanje.validate.ID), letters, digits, _ . -
LOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_ROWS = 1_000_000
MAX_TREE = 2_000  # LOTs a genealogy walk visits at most (a loop or a runaway tree stops there)
STATUSES = ("in_process", "waiting", "done", "consumed")


def lot_id_problem(lot: Any) -> Optional[str]:
    """Why a text cannot name a LOT in a URL (None: it can)."""
    if not isinstance(lot, str) or not lot:
        return "empty"
    if len(lot) > 64:
        return "overlong"
    if ".." in lot or not LOT_RE.match(lot):
        return "bad_lot"
    return None


def _int(v: Any) -> Optional[int]:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _float(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _texts(v: Any) -> tuple[str, ...]:
    if type(v) is not list or not v:
        return ()
    return tuple(x for x in v if type(x) is str and x)


def _machine(v: Any) -> Optional[tuple[str, str, str]]:
    parts = v.split("/") if isinstance(v, str) else []
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


# ----------------------------------------------------------------------------- view models
@dataclass(frozen=True)
class LotRow:
    """One lot_index record."""

    lot: str
    product: str
    status: str
    process: str
    machine: Optional[tuple[str, str, str]]
    since_ns: int
    first_ns: int
    last_ns: int
    steps: int
    good: Optional[int]
    reject: Optional[int]
    planned_qty: Optional[int]
    parents: tuple[str, ...]
    children: tuple[str, ...]
    route: tuple[str, ...]
    held: bool = False

    @classmethod
    def of(cls, e: Event, held: bool = False) -> "LotRow":
        d = e.data if isinstance(e.data, dict) else {}
        return cls(e.key, _str(d.get("product")), _str(d.get("status")) or "done", _str(d.get("process")),
                   _machine(d.get("machine")), _int(d.get("since_ns")) or e.ts, _int(d.get("first_ns")) or e.ts,
                   _int(d.get("last_ns")) or e.ts, _int(d.get("steps")) or 0, _int(d.get("good")),
                   _int(d.get("reject")), _int(d.get("planned_qty")), _texts(d.get("parents")),
                   _texts(d.get("children")), _texts(d.get("route")), held)


@dataclass(frozen=True)
class StepRow:
    """One lot_step record."""

    lot: str
    site: str
    line: str
    machine: str
    process: str
    step: Optional[int]
    start_ns: int
    end_ns: Optional[int]
    total: Optional[int]
    good: Optional[int]
    reject: Optional[int]
    plan_s: Optional[float]
    product: str

    @classmethod
    def of(cls, e: Event) -> "StepRow":
        d = e.data if isinstance(e.data, dict) else {}
        return cls(e.key, e.site, e.line, e.machine, _str(d.get("process")), _int(d.get("step")), e.ts,
                   _int(d.get("end_ns")), _int(d.get("total")), _int(d.get("good")), _int(d.get("reject")),
                   _float(d.get("plan_s")), _str(d.get("product")))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.site, self.line, self.machine)

    def duration_s(self, now_ns: int) -> float:
        return max(0, (self.end_ns if self.end_ns is not None else now_ns) - self.start_ns) / NS_PER_S

    @property
    def yield_ratio(self) -> Optional[float]:
        g, r = self.good or 0, self.reject or 0
        return g / (g + r) if g + r > 0 else None

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return self.start_ns < end_ns and (self.end_ns is None or self.end_ns > start_ns)


@dataclass(frozen=True)
class HoldRow:
    """One lot_hold record (the event kept, to rewrite its identity on release)."""

    event: Event
    lot: str
    reason: str
    detail: str
    status: str
    priority: str
    released_by: str
    comment: str
    released_ns: Optional[int]

    @classmethod
    def of(cls, e: Event) -> "HoldRow":
        d = e.data if isinstance(e.data, dict) else {}
        return cls(e, _str(d.get("lot")) or e.key, _str(d.get("reason")), _str(d.get("detail")),
                   _str(d.get("status")) or "held", _str(d.get("priority")), _str(d.get("released_by")),
                   _str(d.get("comment")), _int(d.get("released_ns")))

    @property
    def held(self) -> bool:
        return self.status == "held"


@dataclass(frozen=True)
class ProcessWip:
    process: str
    in_process: int
    waiting: int
    wait_mean_s: Optional[float]
    wait_max_s: Optional[float]


@dataclass(frozen=True)
class LotIndex:
    """The live index over lots.lookback_days: every LOT, newest first, with holds."""

    now_ns: int
    rows: tuple[LotRow, ...]
    by_lot: dict[str, LotRow] = field(default_factory=dict)

    def in_process(self) -> list[LotRow]:
        """LOTs on a machine now, held first, then the longest running first."""
        out = [r for r in self.rows if r.status == "in_process"]
        return sorted(out, key=lambda r: (not r.held, r.since_ns, r.lot))

    def held(self) -> list[LotRow]:
        return sorted((r for r in self.rows if r.held), key=lambda r: (r.since_ns, r.lot))

    def recent_done(self, n: int = 30) -> list[LotRow]:
        out = [r for r in self.rows if r.status in ("done", "consumed")]
        return sorted(out, key=lambda r: (-r.since_ns, r.lot))[:n]

    def search(self, text: str = "", product: str = "", n: int = 200) -> tuple[list[LotRow], int]:
        """LOTs whose number contains text (case-insensitive; a prefix match ranks first) and of
        the product (its id); (at most n of them, how many matched)."""
        needle = text.strip().lower()
        hits = [r for r in self.rows if (not needle or needle in r.lot.lower()) and (not product or r.product == product)]
        hits.sort(key=lambda r: (not r.lot.lower().startswith(needle), not r.held, -r.first_ns, r.lot))
        return hits[:n], len(hits)

    def wip(self, processes: Sequence[str]) -> list[ProcessWip]:
        """Per process: LOTs on its machines, LOTs waiting for it and how long they have
        waited (now - since_ns): mean and max. Processes in the order given, then any other
        the index names."""
        inproc: dict[str, int] = {}
        waits: dict[str, list[float]] = {}
        for r in self.rows:
            if r.status == "in_process":
                inproc[r.process] = inproc.get(r.process, 0) + 1
            elif r.status == "waiting":
                waits.setdefault(r.process, []).append(max(0, self.now_ns - r.since_ns) / NS_PER_S)
        order = list(processes) + sorted((set(inproc) | set(waits)) - set(processes))
        out = []
        for p in order:
            w = waits.get(p, [])
            out.append(ProcessWip(p, inproc.get(p, 0), len(w), sum(w) / len(w) if w else None,
                                  max(w) if w else None))
        return out


def held_lots(holds: Iterable[Event]) -> set[str]:
    """LOTs with a lot_hold record of status held."""
    return {HoldRow.of(e).lot for e in holds if HoldRow.of(e).held}


def build_index(index: Iterable[Event], holds: Iterable[Event], now_ns: int) -> LotIndex:
    held = held_lots(holds)
    newest: dict[str, Event] = {}
    for e in index:  # one record per LOT; if a store kept two, the newest version wins
        old = newest.get(e.key)
        if old is None or e.ts >= old.ts:
            newest[e.key] = e
    rows = tuple(sorted((LotRow.of(e, e.key in held) for e in newest.values()), key=lambda r: (-r.first_ns, r.lot)))
    return LotIndex(now_ns, rows, {r.lot: r for r in rows})


@dataclass(frozen=True)
class LotDetail:
    lot: LotRow
    steps: tuple[StepRow, ...]  # this LOT's steps, by start
    ancestors: tuple[LotRow, ...]  # parents, grandparents, ... (nearest first)
    ancestor_steps: tuple[StepRow, ...]
    holds: tuple[HoldRow, ...]
    now_ns: int

    @property
    def held(self) -> bool:
        return any(h.held for h in self.holds)

    def route_steps(self) -> list[StepRow]:
        """Every step the LOT's material went through: its ancestors' and its own, by start."""
        return sorted((*self.ancestor_steps, *self.steps), key=lambda s: (s.start_ns, s.lot, s.machine))


def descendants_of(lot: str, links: Iterable[Event], index: Optional[dict[str, LotRow]] = None) -> list[tuple[str, str, int]]:
    """Every child, grandchild, ... of lot as (LOT, its parent on the way, generation),
    breadth first, from lot_link records (and lot_index children lists when given)."""
    kids: dict[str, list[str]] = {}
    for e in links:
        d = e.data if isinstance(e.data, dict) else {}
        p, c = _str(d.get("parent")), _str(d.get("child"))
        if not (p and c) and ">" in e.key:
            p, c = e.key.split(">", 1)
        if p and c and c not in kids.setdefault(p, []):
            kids[p].append(c)
    for r in (index or {}).values():
        for c in r.children:
            if c not in kids.setdefault(r.lot, []):
                kids[r.lot].append(c)
    out: list[tuple[str, str, int]] = []
    seen = {lot}
    frontier = [(lot, 0)]
    while frontier and len(out) < MAX_TREE:
        nxt = []
        for parent, gen in frontier:
            for c in kids.get(parent, []):
                if c not in seen:
                    seen.add(c)
                    out.append((c, parent, gen + 1))
                    nxt.append((c, gen + 1))
        frontier = nxt
    return out


# ----------------------------------------------------------------------------- loaders
def lookback_ns(layer: DataLayer) -> int:
    """lots.lookback_days of shifts.yaml, in ns."""
    from dashboards.components.oee import engine_for

    return int(engine_for(layer.config).calendar.spec.lots.lookback_days * DAY_NS)


def _bucket(layer: DataLayer, now: int) -> tuple[int, int]:
    """now rounded up to the TTL (displays asking within one TTL share one query)."""
    ttl_ns = max(1, int(layer.cache.ttl_s * NS_PER_S))
    return now // ttl_ns, (now // ttl_ns + 1) * ttl_ns


def load_index(layer: DataLayer, now_ns: Optional[int] = None) -> LotIndex:
    now = layer.clock() if now_ns is None else now_ns
    b, end = _bucket(layer, now)
    start = end - lookback_ns(layer)

    def load() -> LotIndex:
        idx = layer.store.events("lot_index", start, end, limit=MAX_ROWS)
        holds = layer.store.events("lot_hold", start, end, limit=MAX_ROWS)
        return build_index(idx, holds, now)

    return layer._query(("lots-index", b), load)


def _find_index(layer: DataLayer, lot: str, end: int) -> Optional[Event]:
    evs = layer.store.events("lot_index", end - lookback_ns(layer), end, key=lot, limit=100)
    if not evs:  # older than the lookback: the whole history (cached per LOT like every query)
        evs = layer.store.events("lot_index", 0, end, key=lot, limit=100)
    return max(evs, key=lambda e: e.ts) if evs else None


def load_row(layer: DataLayer, lot: str, now_ns: Optional[int] = None) -> Optional[LotRow]:
    """One LOT's index record (no steps), None: no such LOT."""
    now = layer.clock() if now_ns is None else now_ns
    b, end = _bucket(layer, now)

    def load() -> Optional[LotRow]:
        ev = _find_index(layer, lot, end)
        return LotRow.of(ev) if ev is not None else None

    return layer._query(("lot-row", lot, b), load)


def load_lot(layer: DataLayer, lot: str, now_ns: Optional[int] = None) -> Optional[LotDetail]:
    """The LOT with its steps, holds and the steps of its ancestors; None: no such LOT."""
    now = layer.clock() if now_ns is None else now_ns
    b, end = _bucket(layer, now)

    def load() -> Optional[LotDetail]:
        store = layer.store
        ev = _find_index(layer, lot, end)
        if ev is None:
            return None
        holds = tuple(HoldRow.of(e) for e in store.events("lot_hold", ev.ts, end, key=lot, limit=1000))
        row = LotRow.of(ev, any(h.held for h in holds))
        steps = tuple(sorted((StepRow.of(e) for e in store.events("lot_step", ev.ts, end, key=lot, limit=10_000)),
                             key=lambda s: s.start_ns))
        ancestors: list[LotRow] = []
        a_steps: list[StepRow] = []
        seen = {lot}
        frontier = list(row.parents)
        while frontier and len(seen) < MAX_TREE:
            nxt = []
            for p in frontier:
                if p in seen or lot_id_problem(p):
                    continue
                seen.add(p)
                pe = _find_index(layer, p, end)
                if pe is None:
                    continue
                pr = LotRow.of(pe)
                ancestors.append(pr)
                a_steps += [StepRow.of(e) for e in store.events("lot_step", pe.ts, end, key=p, limit=10_000)]
                nxt += list(pr.parents)
            frontier = nxt
        return LotDetail(row, steps, tuple(ancestors), tuple(a_steps), holds, now)

    return layer._query(("lot", lot, b), load)


def load_descendants(layer: DataLayer, lot: LotRow, now_ns: Optional[int] = None) -> list[tuple[str, str, int]]:
    """Descendants from the lot_link records since the LOT's first start (a child starts after
    its parent did) and the LOT's own children list."""
    now = layer.clock() if now_ns is None else now_ns
    b, end = _bucket(layer, now)

    def load() -> list[tuple[str, str, int]]:
        links = layer.store.events("lot_link", lot.first_ns, end, limit=MAX_ROWS)
        return descendants_of(lot.lot, links, {lot.lot: lot})

    return layer._query(("lot-desc", lot.lot, b), load)


def load_trace(layer: DataLayer, site: str, line: str, machine: str, start_ns: int, end_ns: int) -> list[StepRow]:
    """Every LOT step on the machine overlapping [start_ns, end_ns), by start (a step that began
    up to lots.lookback_days before the window and still ran in it counts)."""
    def load() -> list[StepRow]:
        evs = layer.store.events("lot_step", start_ns - lookback_ns(layer), end_ns, site, line, machine,
                                 limit=MAX_ROWS)
        return [s for s in (StepRow.of(e) for e in evs) if s.overlaps(start_ns, end_ns)]

    return layer._query(("lot-trace", site, line, machine, start_ns, end_ns), load)


def load_alarms(layer: DataLayer, key: tuple[str, str, str], start_ns: int, end_ns: int) -> list[Event]:
    """Alarm records of the machine in [start_ns, end_ns)."""
    return layer._query(("lot-alarms", *key, start_ns, end_ns),
                        lambda: layer.store.events("alarm", start_ns, end_ns, *key, limit=10_000))


def load_series(layer: DataLayer, key: tuple[str, str, str], signal: str, start_ns: int, end_ns: int,
                points: int) -> Any:
    return layer._query(("lot-series", *key, signal, start_ns, end_ns, points),
                        lambda: layer.store.series(*key, signal, start_ns, end_ns, points))
