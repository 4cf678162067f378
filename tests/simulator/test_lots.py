"""LOTs moving along the products' routes in the pure plant model, read back only from what the
machines report (lot, lot_product, lot_qty, lot_parents, the part counters), the way the
engine sees them.

Demo config: shaft [forging, cnc] 240 ea, bracket [press] 3000, housing [injection,
assembly] 400, flange [forging] 600, cover [press] 2500; lot_scale 0.1 here, so 24, 300, 40,
60, 250 parts. 2026-11-24 is a Tuesday; shifts start 06:00 / 14:00 / 22:00.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gwanje.config import SimulatorConfig, load_config
from gwanje.shifts import ProductDef
from simulator.machines import Plant, assign_products

KST = ZoneInfo("Asia/Seoul")
S = 1_000_000_000
CONFIG = load_config(Path(__file__).resolve().parents[2] / "config")
T0 = int(datetime(2026, 11, 24, 6, 0, 30, tzinfo=KST).timestamp()) * S
STEP_S = 10
HOURS = 8
ROUTES = {"shaft": ["forging", "cnc"], "bracket": ["press"], "housing": ["injection", "assembly"],
          "flange": ["forging"], "cover": ["press"]}
QTY = {"shaft": 24, "bracket": 300, "housing": 40, "flange": 60, "cover": 250}
PREFIX = {"shaft": "SH", "bracket": "BR", "housing": "HS", "flange": "FL", "cover": "CV"}
NUMBER = re.compile(r"(SH|BR|HS|FL|CV)(\d{6})-(\d{7})(-[12])?")


@dataclass
class Seg:
    """One LOT on one machine, as seen in the samples."""

    lot: str
    machine: str
    process: str
    product: str
    qty: float
    parents: str
    start: int
    end: int | None = None
    total: int = 0
    good: int = 0
    whole: bool = True  # seen from its start to its end
    meta: set = field(default_factory=set)  # (product, qty, parents) seen during it


def _delta(prev: int, v: int, bits: int) -> int:
    if v >= prev:
        return v - prev
    wrap = 2 ** bits
    return v + wrap - prev if prev > wrap - 50 else v  # a wrap, else the shift-start reset


@pytest.fixture(scope="module")
def flow():
    plant = Plant(CONFIG, seed=7, lot_scale=0.1)
    proc = {(s.id, ln.id): ln.process for s in CONFIG.plant.sites for ln in s.lines}
    segs: list[Seg] = []
    open_: dict[str, Seg] = {}
    prev: dict[str, dict] = {}
    samples = []  # (t, {machine: lot})
    n = HOURS * 3600 // STEP_S
    for i in range(n + 1):
        t = T0 + i * STEP_S * S
        res = plant.step(t)
        samples.append((t, {spec.machine: v["lot"] for spec, v in res}))
        for spec, v in res:
            m = spec.machine
            p = prev.get(m)
            cur = open_.get(m)
            if p is not None and cur is not None:
                # parts since the last sample belong to the LOT shown then (a LOT ends with its last part)
                cur.total += _delta(p["part_count_total"], v["part_count_total"], spec.definition.counter_bits)
                cur.good += _delta(p["part_count_good"], v["part_count_good"], spec.definition.counter_bits)
            if cur is not None and v["lot"] != cur.lot:
                cur.end = t
                del open_[m]
            if v["lot"] and m not in open_:
                s = Seg(v["lot"], m, proc[(spec.site, spec.line)], v["lot_product"], v["lot_qty"],
                        v["lot_parents"], t, whole=i > 0)
                open_[m] = s
                segs.append(s)
            if v["lot"]:
                open_[m].meta.add((v["lot_product"], v["lot_qty"], v["lot_parents"]))
            prev[m] = v
    return segs, samples


def test_lines_run_the_products_of_their_process_and_site(flow):
    segs, _ = flow
    made = defaultdict(set)
    for s in segs:
        made[s.machine[:-2]].add(s.product)
    assert dict(made) == {"cnc-1": {"shaft"}, "cnc-2": {"shaft"}, "forge-1": {"shaft"}, "press-1": {"bracket"},
                          "imm-1": {"housing"}, "asm-1": {"housing"}, "press-2": {"cover"}, "forge-2": {"flange"}}


def test_lot_numbers_products_and_quantities(flow):
    segs, _ = flow
    seen = set()
    for s in segs:
        g = NUMBER.fullmatch(s.lot)
        assert g, s.lot
        assert g.group(1) == PREFIX[s.product] and g.group(2) in ("261124", "261125")
        assert s.meta == {(s.product, s.qty, s.parents)}  # the LOT's data stays while it runs
        assert (s.lot, s.process) not in seen  # a number is used once per process
        seen.add((s.lot, s.process))
        if s.process == ROUTES[s.product][0]:
            assert s.qty == QTY[s.product] and s.parents == ""


def test_steps_follow_the_route_and_a_lot_is_on_one_machine_at_a_time(flow):
    segs, samples = flow
    for s in segs:
        assert s.process in ROUTES[s.product]
    by_lot = defaultdict(list)
    for s in segs:
        by_lot[s.lot].append(s)
    for lot, ss in by_lot.items():
        assert len(ss) == 1, ss  # one step per LOT: a LOT going on becomes child LOTs
    for _, on in samples:
        lots = [x for x in on.values() if x]
        assert len(lots) == len(set(lots))


def test_lot_quantities_are_respected(flow):
    segs, _ = flow
    whole = [s for s in segs if s.whole and s.end is not None]
    assert len(whole) >= 100
    shift_starts = [int(datetime(2026, 11, 24, h, tzinfo=KST).timestamp()) * S for h in (14, 22)]
    for s in whole:
        if any(s.start < b <= s.end for b in shift_starts):
            # the counters reset at the shift start: a part made in the sample period before
            # it is not visible in the samples
            assert s.qty - 1 <= s.total <= s.qty, (s.lot, s.machine, s.total, s.qty)
        else:
            assert s.total == s.qty, (s.lot, s.machine, s.total, s.qty)


def test_shaft_children_continue_a_finished_forging_lot(flow):
    segs, _ = flow
    by_lot = {s.lot: s for s in segs}
    kids = [s for s in segs if s.product == "shaft" and s.process == "cnc"]
    checked = 0
    halves = defaultdict(list)
    for k in kids:
        parent = k.parents
        assert k.lot in (f"{parent}-1", f"{parent}-2") and "," not in parent
        halves[parent].append(k)
        p = by_lot.get(parent)
        if p is None:
            continue  # forged before the model joined
        assert p.process == "forging" and p.end is not None and p.end <= k.start
        checked += 1
    assert checked >= 10
    for parent, ks in halves.items():
        p = by_lot.get(parent)
        if p is not None and p.whole and len(ks) == 2:
            # the children's planned quantities add up to the parent's good parts
            assert sum(k.qty for k in ks) == p.good
            assert abs(ks[0].qty - ks[1].qty) <= 1
    # the two halves of a forging LOT may run on different CNC machines
    assert any(len({k.machine for k in ks}) == 2 for ks in halves.values())


def test_assembly_lot_merges_two_finished_injection_lots(flow):
    segs, _ = flow
    by_lot = {s.lot: s for s in segs}
    asm = [s for s in segs if s.process == "assembly"]
    assert len(asm) >= 8
    checked = 0
    used = set()
    for a in asm:
        parents = a.parents.split(",")
        assert len(parents) == 2 and a.lot not in parents
        assert not used & set(parents)  # an injection LOT is consumed once
        used |= set(parents)
        ps = [by_lot.get(x) for x in parents]
        if any(p is None for p in ps):
            continue
        for p in ps:
            assert p.process == "injection" and p.product == "housing" and p.end <= a.start
        if all(p.whole for p in ps):
            assert a.qty == sum(p.good for p in ps)
        checked += 1
    assert checked >= 4



def test_a_machine_waiting_for_material_takes_it_when_it_comes(flow):
    """No CNC machine waits idle without a LOT while a shaft child is ready (its parent's
    forging ended), no assembly station while two injection LOTs are ready."""
    segs, samples = flow
    by_lot = {s.lot: s for s in segs}
    ready: dict[str, list[tuple[int, int]]] = {"cnc": [], "assembly": []}  # (ready at, taken at)
    for s in segs:
        if s.process not in ready or not s.parents:
            continue
        ps = [by_lot.get(x) for x in s.parents.split(",")]
        if all(p is not None and p.end is not None for p in ps):
            # a merge input is ready when it ended; a merge needs both
            ready[s.process].append((max(p.end for p in ps), s.start))
    assert len(ready["cnc"]) >= 10 and len(ready["assembly"]) >= 4
    waited = 0
    for t, on in samples:
        for process, prefix in (("cnc", "cnc-"), ("assembly", "asm-")):
            waiting = [m for m, lot in on.items() if m.startswith(prefix) and not lot]
            if waiting:
                waited += 1
                late = [(a, b) for a, b in ready[process] if a <= t < b]
                assert not late, (t, process, waiting, late)
    assert waited >= 10  # the check did meet machines waiting


def test_some_lots_in_process_some_waiting_some_done_at_once(flow):
    segs, samples = flow
    by_lot = {s.lot: s for s in segs}
    consumers = defaultdict(list)  # parent -> starts of the LOTs that continue it
    for s in segs:
        for x in filter(None, s.parents.split(",")):
            consumers[x].append(s.start)
    both = 0
    for t, on in samples[360:]:  # after the first hour
        in_process = {x for x in on.values() if x}
        ended = [s for s in by_lot.values() if s.end is not None and s.end <= t]
        done = [s for s in ended if s.process == ROUTES[s.product][-1]]
        waiting = [s for s in ended if s.process != ROUTES[s.product][-1]
                   and not any(c <= t for c in consumers[s.lot])]
        if in_process and done and waiting:
            both += 1
    assert both >= 100


def test_a_restart_the_same_day_uses_new_numbers():
    a = Plant(CONFIG, seed=7, lot_scale=0.1)
    first = set()
    for i in range(0, 3600, 10):
        first |= {v["lot"] for _, v in a.step(T0 + i * S)}
    # the same seed restarted 5 s after the first run stopped
    b = Plant(CONFIG, seed=7, lot_scale=0.1)
    second = set()
    for i in range(3605, 5400, 10):
        second |= {v["lot"] for _, v in b.step(T0 + i * S)}
    assert first - {""} and second - {""}
    assert not (first & second) - {""}


def test_products_go_where_their_route_has_lines():
    """Another plant: a product runs on a site only where every process of its route has a
    line; two products of one process share its lines."""
    p = {x: ProductDef(id=x, lot_prefix=x.upper(), route=r) for x, r in {
        "a": ["cnc"], "b": ["cnc"], "c": ["forging", "assembly"], "d": ["press", "cnc"]}.items()}
    lines = {"s1": {"l1": "cnc", "l2": "cnc", "l3": "forging"},
             "s2": {"m1": "forging", "m2": "assembly", "m3": "cnc"}}
    got = {k: [x.id for x in v] for k, v in assign_products(lines, list(p.values())).items()}
    # s1: no assembly line, so c is not run there and l3 (forging) stays without LOTs; d needs press
    assert got == {("s1", "l1"): ["a"], ("s1", "l2"): ["b"], ("s2", "m1"): ["c"], ("s2", "m2"): ["c"],
                   ("s2", "m3"): ["a"]}


def test_lot_scale_is_validated():
    assert SimulatorConfig().lot_scale == 1.0
    assert SimulatorConfig(lot_scale=0.1).lot_scale == 0.1
    for bad in (0, -1, 1000):
        with pytest.raises(ValueError):
            SimulatorConfig(lot_scale=bad)
    with pytest.raises(ValueError):
        Plant(CONFIG, lot_scale=0)
