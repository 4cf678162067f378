"""The data layer: what a tile shows for hand-picked samples and clocks, and the shared cache."""
from __future__ import annotations

import threading
import time

import pytest

from dashboards.data import DataLayer, DataUnavailable, TTLCache, build_snapshot, trend_from_frame
from gwanje.model import NS_PER_S, MachineState, Quality, Sample

T0 = 1_700_000_000 * NS_PER_S  # 2023-11-14 22:13:20 UTC = 2023-11-15 07:13:20 in Seoul
CNC = ("changwon-1", "cnc-1", "cnc-101")  # cnc class: running [3], idle [1, 2], down [4], setup [5], planned [0]
IMM = ("changwon-2", "injection-1", "imm-101")  # injection: running [10, 11], idle [20], down [30]


def s(machine, signal, value, ts, quality=Quality.GOOD):
    return Sample(*machine, signal, value, ts, quality)


def test_state_codes_map_through_the_class(plant_config):
    samples = [s(CNC, "state", 3.0, T0), s(IMM, "state", 11.0, T0)]
    snap = build_snapshot(plant_config, samples, T0 + 2 * NS_PER_S)
    assert snap.machine(*CNC).state is MachineState.RUNNING
    assert snap.machine(*IMM).state is MachineState.RUNNING  # 11 is the second running code
    other = build_snapshot(plant_config, [s(CNC, "state", 0.0, T0), s(IMM, "state", 30.0, T0)], T0)
    assert other.machine(*CNC).state is MachineState.PLANNED_STOP
    assert other.machine(*IMM).state is MachineState.DOWN


def test_the_newest_state_sample_wins(plant_config):
    samples = [s(CNC, "state", 4.0, T0 + 1 * NS_PER_S), s(CNC, "state", 3.0, T0)]
    snap = build_snapshot(plant_config, samples, T0 + 2 * NS_PER_S)
    assert snap.machine(*CNC).state is MachineState.DOWN


def test_an_unmapped_code_is_unknown_never_guessed(plant_config):
    snap = build_snapshot(plant_config, [s(CNC, "state", 99.0, T0)], T0)
    v = snap.machine(*CNC)
    assert v.state is MachineState.UNKNOWN
    assert v.code == 99.0 and v.unmapped and not v.stale


def test_bad_quality_state_is_unknown(plant_config):
    snap = build_snapshot(plant_config, [s(CNC, "state", 3.0, T0, Quality.BAD)], T0)
    assert snap.machine(*CNC).state is MachineState.UNKNOWN


def test_stale_after_threshold_hides_the_last_state(plant_config):
    # stale_after_s is 10 in config/plant.yaml: 10.0 s old is still fresh, 10.5 s is stale
    samples = [s(CNC, "state", 3.0, T0), s(CNC, "spindle_speed", 8000.0, T0)]
    fresh = build_snapshot(plant_config, samples, T0 + 10 * NS_PER_S).machine(*CNC)
    assert fresh.state is MachineState.RUNNING and not fresh.stale and fresh.age_s == 10.0
    stale = build_snapshot(plant_config, samples, T0 + 10_500_000_000).machine(*CNC)
    assert stale.stale and stale.state is MachineState.UNKNOWN and stale.age_s == 10.5
    assert stale.code == 3.0  # kept for diagnosis, not shown as the state


def test_age_counts_from_the_newest_sample_of_any_signal(plant_config):
    # the state was sent 60 s ago but the spindle speed 3 s ago: the machine talks, state holds
    samples = [s(CNC, "state", 5.0, T0), s(CNC, "spindle_speed", 0.0, T0 + 57 * NS_PER_S)]
    v = build_snapshot(plant_config, samples, T0 + 60 * NS_PER_S).machine(*CNC)
    assert v.age_s == 3.0 and not v.stale and v.state is MachineState.SETUP


def test_machine_without_data_is_stale_with_no_age(plant_config):
    snap = build_snapshot(plant_config, [], T0)
    v = snap.machine(*CNC)
    assert v.stale and v.age_s is None and v.last_ts is None and v.state is MachineState.UNKNOWN
    assert snap.newest_ts is None and snap.age_s is None


def test_counts_and_lot_are_the_latest_values(plant_config):
    samples = [
        s(CNC, "part_count_total", 100.0, T0), s(CNC, "part_count_total", 105.0, T0 + NS_PER_S),
        s(CNC, "part_count_good", 101.0, T0 + NS_PER_S), s(CNC, "part_count_reject", 4.0, T0 + NS_PER_S),
        s(CNC, "lot", "L2411-07", T0), s(CNC, "lot", "L2411-08", T0 + NS_PER_S),
    ]
    v = build_snapshot(plant_config, samples, T0 + 2 * NS_PER_S).machine(*CNC)
    assert (v.total, v.good, v.reject, v.lot) == (105.0, 101.0, 4.0, "L2411-08")


def test_every_configured_machine_is_in_the_snapshot_and_unknown_ones_are_ignored(plant_config):
    samples = [Sample("nowhere", "x", "y", "state", 3.0, T0), s(CNC, "state", 3.0, T0)]
    snap = build_snapshot(plant_config, samples, T0)
    assert len(snap.machines) == 36  # the demo plant: 2 sites, 8 lines, 36 machines
    assert [sv.site for sv in snap.sites] == ["changwon-1", "changwon-2"]
    assert sum(len(sv.lines) for sv in snap.sites) == 8
    assert snap.line("changwon-1", "cnc-1").running == 1 and snap.line("changwon-1", "cnc-1").total == 6
    assert snap.machine("nowhere", "x", "y") is None


def test_ttl_cache_serves_within_ttl_and_reloads_after():
    now = [0.0]
    cache = TTLCache(ttl_s=1.0, clock=lambda: now[0])
    loads = []
    load = lambda: loads.append(1) or len(loads)  # noqa: E731
    assert cache.get("k", load) == 1
    now[0] = 0.9
    assert cache.get("k", load) == 1
    now[0] = 1.0
    assert cache.get("k", load) == 2
    assert cache.get("other", load) == 3
    assert (cache.hits, cache.misses) == (1, 3)


def test_ttl_cache_does_not_keep_expired_entries():
    # trend keys change every second: without sweeping the cache would grow for ever
    now = [0.0]
    cache = TTLCache(ttl_s=1.0, clock=lambda: now[0])
    for i in range(1000):
        now[0] = float(i)
        cache.get(("series", i), lambda: "x" * 100)
    assert len(cache) <= TTLCache._SWEEP_EVERY + 1


def test_ttl_cache_a_failed_load_is_not_cached():
    cache = TTLCache(ttl_s=60.0)

    def boom():
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        cache.get("k", boom)
    assert cache.get("k", lambda: "back") == "back"


def test_ttl_cache_concurrent_misses_make_one_query():
    cache = TTLCache(ttl_s=60.0)
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(threading.get_ident())
        gate.wait(5)
        return "v"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(8)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for th in threads:
        th.join(5)
    assert results == ["v"] * 8
    assert len(calls) == 1


def test_data_layer_reads_a_real_store(plant_config, store):
    samples = [s(CNC, "state", 4.0, T0), s(CNC, "part_count_total", 7.0, T0)]
    samples += [s(CNC, "spindle_speed", float(i * 10), T0 - (59 - i) * NS_PER_S) for i in range(60)]
    store.write_samples(samples)
    layer = DataLayer(plant_config, store, clock=lambda: T0 + 5 * NS_PER_S)
    v = layer.plant_snapshot().machine(*CNC)
    assert v.state is MachineState.DOWN and v.total == 7.0 and v.age_s == 5.0
    trends = layer.machine_trends(*CNC, window_s=900)
    # every numeric signal of the cnc class, and only those (no state, no lot)
    assert list(trends) == ["part_count_total", "part_count_good", "part_count_reject", "spindle_speed",
                            "spindle_load", "feed_rate", "vibration", "cycle_time", "bore_dia"]
    sp = trends["spindle_speed"]
    assert len(sp.y) == 60 and sp.y[0] == 0.0 and sp.y[-1] == 590.0
    # plant-local time: T0 is 07:13:20 in Seoul, the first point 59 s earlier
    assert sp.x[0] == "2023-11-15 07:12:21.000" and sp.x[-1] == "2023-11-15 07:13:20.000"
    assert trends["part_count_good"].y == []


def test_data_layer_downsamples_to_trend_points(plant_config, store):
    store.write_samples([s(CNC, "vibration", 1.0, T0 - i * NS_PER_S) for i in range(2000)])
    layer = DataLayer(plant_config, store, clock=lambda: T0 + NS_PER_S)
    tr = layer.signal_trend(*CNC, "vibration", window_s=3600, max_points=100)
    assert 0 < len(tr.y) <= 100 and set(tr.y) == {1.0}


def test_shared_cache_means_one_store_query_for_many_displays(plant_config, store):
    store.write_samples([s(CNC, "state", 3.0, T0)])
    calls = []
    real = store.latest

    def counting_latest(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    store.latest = counting_latest  # count the calls on the real store, not a fake
    layer = DataLayer(plant_config, store, ttl_s=30.0, clock=lambda: T0)
    for _ in range(10):  # ten wall displays refreshing within the TTL
        layer.plant_snapshot()
    assert len(calls) == 1


def test_store_failure_becomes_data_unavailable(plant_config, store):
    layer = DataLayer(plant_config, store, clock=lambda: T0)
    store.close()
    with pytest.raises(DataUnavailable):
        layer.plant_snapshot()
    assert sum(layer.failures.counts().values()) == 1


def test_trend_from_empty_frame(plant_config):
    import polars as pl

    tr = trend_from_frame("x", pl.DataFrame(schema={"ts": pl.Int64, "value": pl.Float64}), "Asia/Seoul")
    assert tr.x == [] and tr.y == []


def test_overview_reads_only_the_recent_window_and_remembers_what_it_saw(plant_config, store):
    clock = [T0]
    layer = DataLayer(plant_config, store, ttl_s=0.0, clock=lambda: clock[0], recent_s=900)
    store.write_samples([s(CNC, "state", 3.0, T0), s(CNC, "part_count_total", 50.0, T0),
                         s(IMM, "state", 10.0, T0 - 3600 * NS_PER_S)])  # IMM: silent for an hour
    v = layer.plant_snapshot()
    assert v.machine(*CNC).state is MachineState.RUNNING
    imm = v.machine(*IMM)  # older than the window: not read, shown as silent for 15+ min
    assert imm.stale and imm.last_ts is None and imm.silent_over_s == 900
    clock[0] = T0 + 1000 * NS_PER_S  # CNC falls out of the window, but this process saw it
    cnc = layer.plant_snapshot().machine(*CNC)
    assert cnc.stale and cnc.age_s == 1000.0 and cnc.total == 50.0 and cnc.state is MachineState.UNKNOWN


def test_hostile_values_in_the_store_do_not_break_a_tile(plant_config):
    samples = [s(CNC, "state", "RUN", T0), s(CNC, "part_count_total", "many", T0), s(CNC, "lot", 7.0, T0),
               Sample("x" * 300, "<script>", "m", "state", 3.0, T0)]
    v = build_snapshot(plant_config, samples, T0).machine(*CNC)
    assert v.state is MachineState.UNKNOWN and v.code == "RUN"
    assert v.total is None and v.lot is None


def test_a_silence_in_a_trend_is_a_break_not_a_straight_line():
    import polars as pl

    # samples every 10 s, then nothing for 100 s: one None goes in just before the sample after the gap
    ts = [T0, T0 + 10 * NS_PER_S, T0 + 20 * NS_PER_S, T0 + 120 * NS_PER_S, T0 + 130 * NS_PER_S]
    frame = pl.DataFrame({"ts": ts, "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    tr = trend_from_frame("v", frame, "UTC")
    assert tr.y == [1.0, 2.0, 3.0, None, 4.0, 5.0]
    assert tr.x[2:5] == ["2023-11-14 22:13:40.000", "2023-11-14 22:15:19.999", "2023-11-14 22:15:20.000"]
    steady = trend_from_frame("v", frame.head(3), "UTC")
    assert steady.y == [1.0, 2.0, 3.0]
