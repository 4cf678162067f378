"""The engine end to end: samples in batches (live path) and the same shift recomputed from a
real embedded DuckDB store (history path) give the same, hand-computed numbers."""
from __future__ import annotations

import functools

import pytest

from gwanje.engine import Engine
from gwanje.losses import reason_pareto, stops_of
from gwanje.model import NS_PER_S, Event, MachineState, Sample
from gwanje.reasons import ReasonTree
from gwanje.shifts import ReasonDef, load_shifts
from storage.embedded import EmbeddedStore
from tests.engine.conftest import (MIN, PLANNED, RUN, Counters, Segment, issue_example, kst,
                                   make_config, scenario)

SHIFT_START = kst(2026, 11, 24, 6)  # a Tuesday
SHIFT_END = kst(2026, 11, 24, 14)
T_BEFORE = SHIFT_START - 5 * MIN * NS_PER_S  # data starts at 05:55
KEY = "2026-11-24/day"


@functools.lru_cache(maxsize=1)
def plant_samples() -> tuple[Sample, ...]:
    """05:55-14:06 for the three machines of the test plant (samples are immutable: built once):
    past the shift end + the engine's close delay (the 5 min small-stop threshold)."""
    # m2: 5 min running before the shift, the issue's shift, 6 min after
    m2 = scenario(("s1", "l1", "m2"), T_BEFORE,
                  [Segment(5 * MIN, RUN, 10)] + issue_example() + [Segment(6 * MIN, RUN, 12)])
    # m1: counters reset to zero at 06:00, a 20 min silence 09:00-09:20, slower than ideal
    m1 = scenario(("s1", "l1", "m1"), T_BEFORE,
                  [Segment(5 * MIN, RUN, 10), Segment(180 * MIN, RUN, 300), Segment(20 * MIN, RUN, 30, silent=True),
                   Segment(40 * MIN, RUN, 70), Segment(30 * MIN, PLANNED), Segment(210 * MIN, RUN, 400, 8),
                   Segment(6 * MIN, RUN, 12)],
                  Counters(5000, 4990, 10), resets_at=frozenset({5 * 60}))
    # press (16-bit counters starting near the top: they wrap during the shift)
    press = scenario(("s1", "p1", "press"), T_BEFORE,
                     [Segment(5 * MIN, RUN, 50), Segment(240 * MIN, RUN, 4000), Segment(30 * MIN, PLANNED),
                      Segment(210 * MIN, RUN, 3500, 35), Segment(6 * MIN, RUN, 60)],
                     Counters(65000, 64000, 1000), bits=16)
    return tuple(m1 + m2 + press)


def live(config, samples, batch=3000) -> tuple[Engine, list[Event]]:
    # samples of all machines interleaved by time, as the pipeline delivers them
    samples = sorted(samples, key=lambda s: s.ts)
    eng = Engine(config, clock=None)
    events = []
    for i in range(0, len(samples), batch):
        events += eng.on_samples(samples[i:i + batch])
    return eng, events


_LIVE: dict[str, tuple[Engine, list[Event]]] = {}


def live_once() -> tuple[Engine, list[Event]]:
    """The live path over plant_samples(), run once per test process (the events do not
    depend on the reason tree or products, which other modules' configs add)."""
    if "run" not in _LIVE:
        _LIVE["run"] = live(make_config_once(), plant_samples())
    return _LIVE["run"]


@pytest.fixture(scope="module")
def world():
    config = make_config_once()
    samples = plant_samples()
    eng, events = live_once()
    store = EmbeddedStore(":memory:")
    store.write_samples(samples)
    store.write_events(events)
    yield config, eng, events, store
    store.close()


def oee_events(events, key=KEY):
    return {(e.site, e.line, e.machine): e.data for e in events if e.kind == "oee_shift" and e.key == key}


def r4(x):
    return None if x is None else round(x, 4)


def test_live_shift_close_gives_the_hand_computed_numbers(world):
    _, _, events, _ = world
    got = oee_events(events)
    assert set(got) == {("s1", "l1", "m1"), ("s1", "l1", "m2"), ("s1", "p1", "press"),
                        ("s1", "l1", ""), ("s1", "p1", ""), ("s1", "", "")}
    m2 = got[("s1", "l1", "m2")]
    # the issue's example: A = 405/450, P = 21600/24300, Q = 702/720, OEE = 0.78
    assert (r4(m2["availability"]), r4(m2["performance"]), r4(m2["quality"]), r4(m2["oee"])) == \
        (0.9, 0.8889, 0.975, 0.78)
    assert (m2["total"], m2["good"], m2["reject"]) == (720, 702, 18)
    assert m2["losses"]["breakdowns"]["minutes"] == 45.0 and m2["losses"]["small_stops"]["minutes"] == 24.0
    m1 = got[("s1", "l1", "m1")]
    # the 10 parts before 06:00 are not in the shift; the reset at 06:00 counts nothing;
    # 300 + 30 (after the silence) + 70 + 400 = 800 parts, 8 rejects
    assert (m1["total"], m1["good"], m1["reject"], m1["gap_total"]) == (800, 792, 8, 30)
    # silence: last sample 08:59:59, next 09:20:00 -> unknown 1201 s
    assert m1["unknown_s"] == 1201.0
    # planned = 480 min - 30 break - 1201 s unknown = 25799 s, all running: A = 1
    assert m1["planned_s"] == 25799.0 and r4(m1["availability"]) == 1.0
    # P = (800 - 30 seen after the gap) x 30 s / 25799 s = 23100 / 25799 = 0.8954
    # Q = 792 / 800 = 0.99; OEE = 22869 / 25799 = 0.8864
    assert (r4(m1["performance"]), r4(m1["quality"]), r4(m1["oee"])) == (0.8954, 0.99, 0.8864)
    assert m1["flags"] == []  # 1201 / 27000 = 4.4 % unknown, under the 5 % coverage limit
    press = got[("s1", "p1", "press")]
    # 16-bit counters wrapped: 4000 + 3500 = 7500 parts, 35 rejects
    assert (press["total"], press["reject"]) == (7500, 35)
    # A = 27000/27000; P = 7500 x 3 / 27000 = 0.8333; Q = 7465/7500 = 0.9953; OEE = 0.8294
    assert (r4(press["availability"]), r4(press["performance"]), r4(press["quality"]), r4(press["oee"])) == \
        (1.0, 0.8333, 0.9953, 0.8294)
    line = got[("s1", "l1", "")]
    # line OEE is the output machine m2's; m2 (0.78) is below m1 (0.8864): the bottleneck
    assert (line["output"], line["bottleneck"], r4(line["oee"])) == ("m2", "m2", 0.78)
    site = got[("s1", "", "")]
    # pooled output machines m2 + press: A = (24300 + 27000) / 54000 = 0.95;
    # P = (21600 + 22500) / 51300 = 0.8596; Q = (702 + 7465) / (720 + 7500) = 0.9936;
    # OEE = 44100 / 54000 x 8167 / 8220 = 0.8114
    assert (r4(site["availability"]), r4(site["performance"]), r4(site["quality"]), r4(site["oee"])) == \
        (0.95, 0.8596, 0.9936, 0.8114)


def test_history_recompute_equals_live(world):
    config, _, events, store = world
    eng = Engine(config, clock=None)
    recomputed = oee_events(eng.recompute(store, "s1", shift_start=SHIFT_START))
    assert recomputed == oee_events(events)
    # one machine alone, with explicit bounds
    one = oee_events(eng.recompute(store, "s1", "l1", "m1", SHIFT_START, SHIFT_END))
    assert set(one) == {("s1", "l1", "m1")} and one[("s1", "l1", "m1")] == oee_events(events)[("s1", "l1", "m1")]


def test_live_in_different_batch_sizes_gives_the_same_numbers(world):
    config, _, events, _ = world
    _, events_small = live(config, plant_samples(), batch=257)
    assert oee_events(events_small) == oee_events(events)


def test_state_records_are_intervals_with_exact_ends(world):
    _, _, _, store = world
    evs = store.events("state", SHIFT_START, SHIFT_END, "s1", "l1", "m2")
    got = [(e.ts, e.data["state"], e.data["end_ns"]) for e in evs]
    # 07:00-07:45 breakdown, then 07:45 running until the first 2 min stop at 08:00
    assert (kst(2026, 11, 24, 7), "down", kst(2026, 11, 24, 7, 45)) in got
    assert (kst(2026, 11, 24, 7, 45), "running", kst(2026, 11, 24, 8)) in got
    assert (kst(2026, 11, 24, 8), "idle", kst(2026, 11, 24, 8, 2)) in got
    # every closed interval replaced its open version (same identity); only the last one,
    # running since 10:30 and still running at 14:02 when the data ends, is open
    assert [e.ts for e in evs if e.data["end_ns"] is None] == [kst(2026, 11, 24, 10, 30)]
    m1 = store.events("state", SHIFT_START, SHIFT_END, "s1", "l1", "m1")
    assert (kst(2026, 11, 24, 8, 59, 59), "unknown", kst(2026, 11, 24, 9, 20)) in \
        [(e.ts, e.data["state"], e.data["end_ns"]) for e in m1]


def test_a_closed_state_record_keeps_the_state_before_it(world):
    # the closed version replaces the open one: it must not lose prev_state (the typed
    # machine_state measurement and its DuckDB view show what the record holds)
    _, _, _, store = world
    evs = store.events("state", SHIFT_START, SHIFT_END, "s1", "l1", "m2")
    by_ts = {e.ts: e.data for e in evs}
    assert by_ts[kst(2026, 11, 24, 7, 45)]["prev_state"] == "down"
    assert by_ts[kst(2026, 11, 24, 8)]["prev_state"] == "running"
    assert all(e.data["prev_state"] == prev.data["state"] for prev, e in zip(evs, evs[1:]))


def test_minute_counts_records(world):
    _, _, _, store = world
    evs = store.events("counts", SHIFT_START, SHIFT_END, "s1", "l1", "m2")
    assert sum(e.data["total"] for e in evs) == 720
    assert sum(e.data["reject"] for e in evs) == 18
    assert all(e.ts % (60 * NS_PER_S) == 0 for e in evs)


def test_snapshot_mid_shift():
    config = make_config_once()
    samples = [s for s in plant_samples() if s.ts < kst(2026, 11, 24, 10)]
    eng, _ = live(config, samples)
    snap = eng.snapshot(kst(2026, 11, 24, 10))
    assert snap.shift.key == KEY
    m2 = snap.machines[("s1", "l1", "m2")]
    # 06:00-10:00: planned 240 min; run = 60 + 15 + 12 x 8 + 24 small stops = 195 min
    # A = 195 / 240 = 0.8125; 390 parts x 30 s = 195 min: P = 1.0
    assert (r4(m2.availability), r4(m2.performance), r4(m2.quality)) == (0.8125, 1.0, 1.0)
    assert snap.lines[("s1", "l1")].output == "m2"
    assert snap.sites["s1"] is not None
    # at 10:05 nothing new has come for more than the 30 s timeout: running until the last
    # sample at 09:59:59, unknown for the 1 s to 10:00, then the break (planned, not unknown)
    later = eng.snapshot(kst(2026, 11, 24, 10, 5)).machines[("s1", "l1", "m2")]
    assert (later.unknown_s, later.planned_stop_s) == (1.0, 300.0)
    late2 = eng.snapshot(kst(2026, 11, 24, 10, 40))
    # 09:59:59-10:00 and 10:30-10:40 without data outside the break: 1 + 600 s unknown
    assert late2.machines[("s1", "l1", "m2")].unknown_s == 601.0


_CFG = {}


def make_config_once():
    if "c" not in _CFG:
        import tempfile
        from pathlib import Path
        _CFG["c"] = make_config(Path(tempfile.mkdtemp(prefix="gwanje-engine-")))
    return _CFG["c"]


def test_tick_closes_a_shift_when_every_machine_is_silent():
    config = make_config_once()
    samples = [s for s in plant_samples() if s.ts < kst(2026, 11, 24, 13)]
    eng, events = live(config, samples)
    assert not oee_events(events)
    assert not oee_events(eng.tick(SHIFT_END + 299 * NS_PER_S))  # closes 5 min (small stop) after the end
    closed = oee_events(eng.tick(SHIFT_END + 301 * NS_PER_S))
    m2 = closed[("s1", "l1", "m2")]
    # silent from 12:59:59: unknown until 14:00 = 3601 s
    assert m2["unknown_s"] == 3601.0 and "low_coverage" in m2["flags"]
    assert eng.tick(SHIFT_END + 600 * NS_PER_S) == []  # closed once


def test_bad_input_is_counted_and_the_rest_kept():
    config = make_config_once()
    now = kst(2026, 11, 24, 7)
    eng = Engine(config, clock=lambda: now)
    good = [Sample("s1", "l1", "m1", "state", 3.0, now - NS_PER_S), Sample("s1", "l1", "m1", "state", 4.0, now)]
    bad = [Sample("s1", "l1", "ghost", "state", 3.0, now),
           Sample("s1", "l1", "m1", "state", 3.0, now + 86400 * NS_PER_S),  # a clock a day ahead
           Sample("s1", "l1", "m1", "part_count_total", "not a number", now)]
    events = eng.on_samples(bad[:2] + good + bad[2:])
    assert eng.rejects.counts() == {"unknown_machine": 1, "timestamp_in_future": 1}
    assert [(e.kind, e.data["state"]) for e in events if e.kind == "state"] == [("state", "running"), ("state", "down")]
    assert eng.runs[("s1", "l1", "m1")].tracker.state == MachineState.DOWN


def test_downtime_reasons_feed_the_pareto(world):
    config, eng, _, store = world
    assert ReasonTree(load_shifts(config).spec.reasons).reasons == {}  # the test plant has no tree
    tree = ReasonTree([ReasonDef.model_validate({"id": "mechanical", "name": {"ko": "기계", "en": "Mechanical"},
                                                 "children": [{"id": "spindle", "name": {"ko": "주축", "en": "Spindle"}}]}),
                       ReasonDef.model_validate({"id": "material", "name": {"ko": "자재", "en": "Material"}})])
    assert tree.label("mechanical/spindle", "ko") == "기계 › 주축"
    intervals = eng.runs[("s1", "l1", "m2")].all_intervals(SHIFT_END)
    stops = stops_of("m2", intervals, SHIFT_START, SHIFT_END)
    assert len(stops) == 13  # the breakdown and 12 small stops (the break is planned_stop)
    breakdown = next(s for s in stops if s.minutes == 45)
    small = [s for s in stops if s.minutes == 2]
    evs = [tree.assign("s1", "l1", "m2", breakdown.start_ns, "material", "kim", "first guess", now_ns=1),
           tree.assign("s1", "l1", "m2", breakdown.start_ns, "mechanical/spindle", "kim", "", now_ns=2)]
    evs += [tree.assign("s1", "l1", "m2", s.start_ns, "material", "lee", now_ns=3) for s in small[:5]]
    store.write_events(evs)
    stored = store.events("downtime_reason", SHIFT_START, SHIFT_END, "s1", "l1", "m2")
    assert len(stored) == 6  # the second answer for the breakdown replaced the first
    # spindle 45 min (1 stop); unassigned 7 x 2 = 14 min; material 5 x 2 = 10 min
    assert reason_pareto(stops, stored) == [("mechanical/spindle", 45.0, 1), ("unassigned", 14.0, 7),
                                            ("material", 10.0, 5)]
    for bad in [("nope", "kim", ""), ("material", "kim\nroot", ""), ("material", "kim", "x" * 501)]:
        with pytest.raises(ValueError):
            tree.assign("s1", "l1", "m2", breakdown.start_ns, *bad)


def test_records_in_storage_give_the_same_shift_numbers(world):
    """The UI's path: OEE from the stored state and minute-count records, no raw samples."""
    config, _, events, store = world
    eng = Engine(config, clock=None)
    states = store.events("state", SHIFT_START - 26 * 3600 * NS_PER_S, SHIFT_END)
    counts = store.events("counts", SHIFT_START, SHIFT_END)
    last = {m.key: max(s.ts for s in plant_samples() if s.machine == m.machine) for m in config.machines()}
    snap = eng.from_records(states, counts, SHIFT_START, SHIFT_END, SHIFT_END + 60 * NS_PER_S, last)
    live = oee_events(events)
    for key, r in snap.machines.items():
        assert eng.shift_events(KEY, SHIFT_START, {key: r})[0].data == live[key], key
    assert r4(snap.sites["s1"].oee) == 0.8114
    # the same records read at 20:00 with every machine silent since 14:01:59: the open
    # interval ends there; the shift window is unaffected
    later = eng.from_records(states, counts, SHIFT_START, SHIFT_END, kst(2026, 11, 24, 20), last)
    assert later.machines[("s1", "l1", "m2")].to_dict() == snap.machines[("s1", "l1", "m2")].to_dict()


def test_ideal_cycle_per_product_from_the_lot(tmp_path):
    """Products by LOT prefix: m2 makes bracket A (ideal 30 s) then bracket B (ideal 60 s)."""
    shifts = {**make_config_once().raw_extra["shifts"],
              "products": [{"id": "bracket-a", "lot_prefix": "BA-", "ideal_cycle_s": {"m2": 30}},
                           {"id": "bracket-b", "lot_prefix": "BB-", "ideal_cycle_s": {"m2": 60}}]}
    config = make_config(tmp_path, shifts=shifts)
    m2 = ("s1", "l1", "m2")
    # 06:00-10:00 running, 400 parts of BA; 10:00-10:30 break; 10:30-14:00 running, 180 of BB
    samples = scenario(m2, SHIFT_START - 60 * NS_PER_S,
                       [Segment(60, RUN), Segment(240 * MIN, RUN, 400), Segment(30 * MIN, PLANNED),
                        Segment(210 * MIN, RUN, 180), Segment(6 * MIN, RUN)])
    samples += [Sample(*m2, "lot", "BA-0001", SHIFT_START - 60 * NS_PER_S),
                Sample(*m2, "lot", "BB-0002", kst(2026, 11, 24, 10, 30))]
    eng, events = live(config, samples)
    lots = [(e.ts, e.data["product"]) for e in events if e.kind == "lot"]
    assert lots == [(SHIFT_START - 60 * NS_PER_S, "bracket-a"), (kst(2026, 11, 24, 10, 30), "bracket-b")]
    got = oee_events(events)[m2]
    # ideal = 400 x 30 s + 180 x 60 s = 12000 + 10800 = 22800 s; run = 450 min = 27000 s
    # P = 22800 / 27000 = 0.8444 (with the machine's 30 s for all: 17400 / 27000 = 0.6444)
    assert got["ideal_s"] == 22800.0 and r4(got["performance"]) == 0.8444
    store = EmbeddedStore(":memory:")
    try:
        store.write_samples(samples)
        store.write_events(events)
        hist = oee_events(Engine(config, clock=None).recompute(store, "s1", "l1", "m2", SHIFT_START, SHIFT_END))
        assert hist[m2] == got
    finally:
        store.close()


def test_warm_start_after_a_restart_gives_the_same_shift(world):
    """The engine restarts at 10:15: rebuilt from the store, it closes the shift with the same
    numbers as the engine that ran all along."""
    config, _, events, _ = world
    restart = kst(2026, 11, 24, 10, 15)
    before = [s for s in plant_samples() if s.ts < restart]
    after = sorted((s for s in plant_samples() if s.ts >= restart), key=lambda s: s.ts)
    store = EmbeddedStore(":memory:")
    try:
        store.write_samples(before)
        eng = Engine(config, clock=None)
        eng.warm_start(store, restart)
        got = []
        for i in range(0, len(after), 3000):
            got += eng.on_samples(after[i:i + 3000])
    finally:
        store.close()
    assert oee_events(got) == oee_events(events)
    # the state records emitted after the restart continue the intervals, no gap at 10:15
    m2_states = [e for e in got if e.kind == "state" and e.machine == "m2"]
    assert m2_states[0].ts == kst(2026, 11, 24, 10) and m2_states[0].data["state"] == "planned_stop"


def test_text_state_codes_are_states():
    config = make_config_once()
    eng = Engine(config, clock=None)
    t = SHIFT_START
    eng.on_samples([Sample("s1", "l1", "m1", "state", "3", t), Sample("s1", "l1", "m1", "state", "4", t + NS_PER_S)])
    run = eng.runs[("s1", "l1", "m1")]
    assert [(iv.state, iv.code) for iv in run.intervals] == [(MachineState.RUNNING, "3")]
    assert (run.tracker.state, run.tracker.code) == (MachineState.DOWN, "4")


def test_night_shift_across_midnight(tmp_path):
    """The demo calendar's night shift 22:00-06:00 (meal break 03:00-03:30), through midnight."""
    import yaml as _yaml
    from pathlib import Path

    demo = _yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "shifts.yaml").read_text("utf-8"))
    config = make_config(tmp_path, shifts=demo)
    start = kst(2026, 11, 24, 22)
    m1 = ("s1", "l1", "m1")
    # 21:58 on: 2 min before, 90 min running (180 parts), 60 min down from 23:30 to 00:30,
    # 150 min running (300), 30 min break (planned code), 150 min running (300), 6 min after
    segs = [Segment(2 * MIN, RUN), Segment(90 * MIN, RUN, 180), Segment(60 * MIN, 4.0), Segment(150 * MIN, RUN, 300),
            Segment(30 * MIN, PLANNED), Segment(150 * MIN, RUN, 300), Segment(6 * MIN, RUN)]
    samples = scenario(m1, start - 2 * MIN * NS_PER_S, segs)
    eng, events = live(config, samples)
    got = {(e.machine, e.key): e.data for e in events if e.kind == "oee_shift"}
    r = got[("m1", "2026-11-24/night")]
    # planned = 480 - 30 = 450 min; run = 450 - 60 = 390 min: A = 390/450 = 0.8667
    # P = 780 x 30 s / (390 x 60 s) = 23400 / 23400 = 1.0; OEE = 0.8667
    assert (r["planned_s"], r["run_s"], r4(r["availability"]), r4(r["performance"]), r4(r["oee"])) == \
        (450 * 60, 390 * 60, 0.8667, 1.0, 0.8667)
    assert r["losses"]["breakdowns"]["minutes"] == 60.0
    store = EmbeddedStore(":memory:")
    try:
        store.write_samples(samples)
        hist = Engine(config, clock=None).recompute(store, "s1", "l1", "m1", kst(2026, 11, 25, 2))
        assert {(e.machine, e.key): e.data for e in hist}[("m1", "2026-11-24/night")] == r
    finally:
        store.close()


def test_counts_of_a_machine_that_falls_silent_are_written():
    """m1 stops talking at 06:00:29 with 3 parts in its last minute; m2 keeps reporting. m2's
    clock is not m1's: once the wall clock is a comm timeout past that minute, its counts
    record is written."""
    config = make_config_once()
    m1 = scenario(("s1", "l1", "m1"), SHIFT_START, [Segment(30, RUN, 3)])
    m2 = scenario(("s1", "l1", "m2"), SHIFT_START, [Segment(3 * MIN, RUN)])
    eng, events = live(config, m1 + m2, batch=40)
    assert [e for e in events if e.kind == "counts" and e.machine == "m1"] == []
    ticked = eng.tick(SHIFT_START + 90 * NS_PER_S)
    counts = [(e.machine, e.ts, e.data["total"]) for e in ticked if e.kind == "counts"]
    assert counts == [("m1", SHIFT_START, 3)]


class WallClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_a_fast_plc_clock_closes_only_its_own_shift():
    """Issue 8: m1's PLC runs 4 minutes fast. At 14:01:00 wall time its samples say 14:05:00,
    the shift's close (end + 5 min): m1's record is written by its own clock, m2's and the
    line's are not (the engine's watermark was the newest source time of any machine, which
    closed every machine's shift 4 minutes early). At 14:05:00 wall time m2 closes too, the
    line follows, and the press, which never spoke, closes by the wall clock (unknown
    throughout), then the site."""
    config = make_config_once()
    wall = WallClock(SHIFT_START)
    eng = Engine(config, clock=wall)
    skew = 4 * MIN * NS_PER_S
    closed_at = {}
    for sec in range(0, 8 * 3600 + 6 * 60, 30):
        wall.t = SHIFT_START + sec * NS_PER_S
        batch = [Sample("s1", "l1", "m1", "state", RUN, wall.t + skew), Sample("s1", "l1", "m2", "state", RUN, wall.t)]
        for key, data in {**oee_events(eng.on_samples(batch)), **oee_events(eng.tick(wall.t))}.items():
            closed_at[key] = (wall.t, data)
    when = {k: (t - SHIFT_END) // NS_PER_S for k, (t, _) in closed_at.items()}
    assert when == {("s1", "l1", "m1"): 60, ("s1", "l1", "m2"): 300, ("s1", "l1", ""): 300,
                    ("s1", "p1", "press"): 300, ("s1", "p1", ""): 300, ("s1", "", ""): 300}
    assert closed_at[("s1", "p1", "press")][1]["unknown_s"] == 8 * 3600 - 30 * 60  # all but the break
    # its samples start at 06:04 by its clock; running counts through the break (oee rule 1)
    assert closed_at[("s1", "l1", "m1")][1]["running_s"] == 8 * 3600 - 4 * 60


def test_planned_maintenance_from_the_calendar(tmp_path):
    """shifts.yaml declares 07:00-07:45 planned maintenance for m2 only: the issue's 45 min
    breakdown becomes planned time for m2; m1 on the same line is not affected."""
    shifts = {**make_config_once().raw_extra["shifts"], "planned_stops": [
        {"start": "2026-11-24 07:00", "end": "2026-11-24 07:45", "site": "s1", "line": "l1", "machine": "m2",
         "reason": "maintenance", "note": "spindle bearing"}]}
    config = make_config(tmp_path, shifts=shifts)
    _, events = live(config, plant_samples())
    got = oee_events(events)
    m2 = got[("s1", "l1", "m2")]
    # planned = 480 - 30 break - 45 maintenance = 405 min = run time: A = 1.0;
    # P = 720 x 30 s / 24300 s = 0.8889; OEE = 1 x 0.8889 x 0.975 = 0.8667
    assert (m2["planned_s"], m2["planned_stop_s"], m2["breakdown_s"]) == (405 * 60, 75 * 60, 0.0)
    assert (r4(m2["availability"]), r4(m2["performance"]), r4(m2["oee"])) == (1.0, 0.8889, 0.8667)
    assert got[("s1", "l1", "m1")] == oee_events(live_once()[1])[("s1", "l1", "m1")]


def test_planned_stop_config_errors(tmp_path):
    from gwanje.config import ConfigError

    base = make_config_once().raw_extra["shifts"]
    for bad, message in [
        ({"start": "2026-11-24 08:00", "end": "2026-11-24 07:00"}, "before it starts"),
        ({"start": "2026-11-24 07:00", "end": "2026-11-24 08:00", "machine": "m2"}, "names its line"),
        ({"start": "2026-11-24 07:00", "end": "2026-11-24 08:00", "reason": "lunch"}, "reason"),
    ]:
        with pytest.raises(ConfigError) as e:
            make_config(tmp_path, shifts={**base, "planned_stops": [bad]})
        assert "planned_stops.0" in str(e.value) and message in str(e.value)


def test_implausible_counters_add_no_parts_and_flag_the_shift():
    """Issue 8 through the engine: m1's total jumps 100 -> 4,000,000 in 1 s (a register
    rewritten) and the press's 16-bit counter reads 0 after an 8 h communication gap (reset,
    not a wrap of 60,546 parts). Before: 3,999,900 and 60,546 invented parts."""
    config = make_config_once()
    m1 = ("s1", "l1", "m1")
    press = ("s1", "p1", "press")
    t0 = SHIFT_START
    samples = []
    for i in range(60):
        ts = t0 + i * NS_PER_S
        samples.append(Sample(*m1, "state", RUN, ts))
        samples.append(Sample(*m1, "part_count_total", 100.0 if i < 30 else 4_000_000.0 + (i - 30) // 30, ts))
    samples += [Sample(*press, "state", RUN, t0 - 8 * 3600 * NS_PER_S), Sample(*press, "part_count_total", 4990.0, t0 - 8 * 3600 * NS_PER_S),
                Sample(*press, "state", RUN, t0), Sample(*press, "part_count_total", 0.0, t0),
                Sample(*press, "state", RUN, t0 + 30 * NS_PER_S), Sample(*press, "part_count_total", 3.0, t0 + 30 * NS_PER_S)]
    eng, _ = live(config, samples, batch=7)
    snap = eng.snapshot(t0 + 60 * NS_PER_S)
    assert (snap.machines[m1].total, snap.machines[m1].counter_faults) == (0, 1)
    assert "counter_fault" in snap.machines[m1].flags
    # 3 parts after the reset; only the total counter is sent here, hence counts_inconsistent
    assert (snap.machines[press].total, snap.machines[press].flags) == (3, ["counts_inconsistent"])


def test_a_plc_clock_reset_to_2001_closes_no_shift_storm():
    """A PLC whose clock battery died says 2001, then the right time again. With a wall clock
    the 2001 sample is refused (older than anything the engine keeps); without one (a replay)
    the machine's clock jumps 25 years and closes only the shifts it still holds data for —
    not the ~27,000 shifts in between, each a record for every machine."""
    config = make_config_once()
    m1 = ("s1", "l1", "m1")
    reset = 978_307_200 * NS_PER_S
    now = SHIFT_START + 3600 * NS_PER_S
    eng = Engine(config, clock=lambda: now)
    eng.on_samples([Sample(*m1, "state", RUN, reset)])
    assert eng.rejects.counts() == {"timestamp_too_old": 1}
    assert [e for e in eng.on_samples([Sample(*m1, "state", RUN, now)]) if e.kind == "oee_shift"] == []
    replay = Engine(config, clock=None)
    replay.on_samples([Sample(*m1, "state", RUN, reset)])
    closed = [e for e in replay.on_samples([Sample(*m1, "state", RUN, now)]) if e.kind == "oee_shift"]
    assert len({e.key for e in closed}) <= 2


def test_recompute_reads_every_sample_at_any_rate():
    """Issue 8: the rebuild read each signal through series() with a point budget of 20
    samples/s over the window and silently downsampled above it (means of state codes), so a
    recompute could overwrite a correct record with a wrong one. A PLC sending its state at
    50 Hz, 10 s running and 10 s down in turn, recomputed over those 10 minutes."""
    config = make_config_once()
    m1 = ("s1", "l1", "m1")
    t0 = SHIFT_START + 3600 * NS_PER_S
    samples = [Sample(*m1, "state", RUN, t0 - 60 * NS_PER_S + i * NS_PER_S) for i in range(60)]
    for i in range(10 * 60 * 50):
        samples.append(Sample(*m1, "state", RUN if (i // 500) % 2 == 0 else 4.0, t0 + i * 20_000_000))
    samples += [Sample(*m1, "state", RUN, t0 + (600 + i) * NS_PER_S) for i in range(0, 400, 20)]
    eng, _ = live(config, samples)
    a, b = t0, t0 + 600 * NS_PER_S
    got = eng._result(eng.runs[m1], a, b, b + 300 * NS_PER_S).to_dict()
    store = EmbeddedStore(":memory:")
    try:
        store.write_samples(samples)
        hist = Engine(config, clock=None).recompute_machine(store, config.machine(*m1), a, b).to_dict()
    finally:
        store.close()
    assert hist == got
    # 30 stops of 10 s down: small stops, 300 s in all; 300 s running
    assert (got["small_stop_s"], got["small_stops"], got["running_s"]) == (300.0, 30, 300.0)
