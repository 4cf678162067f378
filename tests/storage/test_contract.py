"""The Store contract, run against both stores: DuckDB (embedded) and a real influxd.

What a reader of the store sees after writes: newest values, filtered views, idempotent
re-delivery, text and quality kept, equal-width downsampling, events, counts, and names
from a real plant (Korean, spaces, punctuation) given back unchanged.
"""
from __future__ import annotations

import threading

import polars as pl
import pytest

from gwanje.model import Event, Quality, Sample

S = 1_000_000_000  # one second in ns
T0 = 1_767_225_600 * S  # 2026-01-01 00:00:00 UTC


def smp(signal, value, ts, site="changwon", line="cnc-1", machine="m1", quality=Quality.GOOD):
    return Sample(site, line, machine, signal, value, ts, quality)


def by_series(samples):
    return {s.series: s for s in samples}


def test_latest_is_the_newest_sample_of_every_series(store):
    store.write_samples([
        smp("spindle_load", 41.5, T0),
        smp("spindle_load", 43.25, T0 + 2 * S),
        smp("spindle_load", 42.0, T0 + 1 * S),  # older, arrives last: must not win
        smp("state", 1.0, T0 + 1 * S),
        smp("state", 1.0, T0 + 5 * S, machine="m2"),
    ])
    got = by_series(store.latest())
    assert got == {
        ("changwon", "cnc-1", "m1", "spindle_load"): smp("spindle_load", 43.25, T0 + 2 * S),
        ("changwon", "cnc-1", "m1", "state"): smp("state", 1.0, T0 + 1 * S),
        ("changwon", "cnc-1", "m2", "state"): smp("state", 1.0, T0 + 5 * S, machine="m2"),
    }


def test_latest_filters_by_site_line_machine_and_since(store):
    store.write_samples([
        smp("state", 1.0, T0, site="changwon", line="cnc-1", machine="m1"),
        smp("state", 2.0, T0 + S, site="changwon", line="cnc-2", machine="m1"),
        smp("state", 3.0, T0 + 2 * S, site="busan", line="press-1", machine="p1"),
    ])
    assert {s.value for s in store.latest(site="changwon")} == {1.0, 2.0}
    assert {s.value for s in store.latest(site="changwon", line="cnc-2")} == {2.0}
    assert {s.value for s in store.latest(machine="p1")} == {3.0}
    assert store.latest(site="nowhere") == []
    # since_ns is inclusive: the sample at exactly T0 + S counts, the one at T0 does not
    assert {s.value for s in store.latest(since_ns=T0 + S)} == {2.0, 3.0}
    # a machine outside any line (empty line name) is found by filtering on the empty name
    store.write_samples([smp("state", 4.0, T0, site="busan", line="", machine="compressor")])
    assert store.latest(site="busan", line="") == [smp("state", 4.0, T0, site="busan", line="", machine="compressor")]


def test_rewriting_the_same_identity_keeps_one_point_and_the_later_value(store):
    store.write_samples([smp("temp", 20.0, T0), smp("temp", 21.0, T0 + S)])
    store.write_samples([smp("temp", 99.0, T0, quality=Quality.UNCERTAIN)])  # redelivery, corrected
    # the same identity twice inside one batch: the later one wins too
    store.write_samples([smp("temp", 5.0, T0 + 2 * S), smp("temp", 6.0, T0 + 2 * S)])

    assert store.count_samples(T0, T0 + 10 * S) == 3
    df = store.series("changwon", "cnc-1", "m1", "temp", T0, T0 + 10 * S)
    assert df.to_dicts() == [
        {"ts": T0, "value": 99.0}, {"ts": T0 + S, "value": 21.0}, {"ts": T0 + 2 * S, "value": 6.0}]
    assert store.latest() == [smp("temp", 6.0, T0 + 2 * S)]


def test_text_and_numeric_signals_come_back_as_written(store):
    store.write_samples([
        smp("lot", "LOT-2026-0001", T0),
        smp("lot", "LOT-2026-0002", T0 + S),
        smp("cycle_time", 12.5, T0 + S),
    ])
    got = by_series(store.latest())
    assert got[("changwon", "cnc-1", "m1", "lot")].value == "LOT-2026-0002"
    assert got[("changwon", "cnc-1", "m1", "cycle_time")].value == 12.5
    assert isinstance(got[("changwon", "cnc-1", "m1", "cycle_time")].value, float)
    # a text signal has no numeric series to plot
    assert store.series("changwon", "cnc-1", "m1", "lot", T0, T0 + 10 * S).height == 0
    assert store.count_samples(T0, T0 + 10 * S) == 3


def test_quality_round_trips(store):
    store.write_samples([
        smp("a", 1.0, T0, quality=Quality.GOOD),
        smp("b", 2.0, T0, quality=Quality.UNCERTAIN),
        smp("c", "x", T0, quality=Quality.BAD),
    ])
    assert {s.signal: s.quality for s in store.latest()} == {
        "a": Quality.GOOD, "b": Quality.UNCERTAIN, "c": Quality.BAD}


def test_series_returns_raw_points_when_they_fit(store):
    store.write_samples([smp("p", float(i), T0 + i * S) for i in range(5)])
    df = store.series("changwon", "cnc-1", "m1", "p", T0 + S, T0 + 4 * S, max_points=3)
    # [T0+1s, T0+4s) holds 3 points: no downsampling, end excluded
    assert df.schema == pl.Schema({"ts": pl.Int64, "value": pl.Float64})
    assert df.to_dicts() == [{"ts": T0 + S, "value": 1.0}, {"ts": T0 + 2 * S, "value": 2.0},
                             {"ts": T0 + 3 * S, "value": 3.0}]


def test_series_downsamples_to_equal_width_bucket_means(store):
    # one point per second, value = seconds since T0, for 0..59 s; nothing in 30..34 s
    store.write_samples([smp("p", float(i), T0 + i * S) for i in range(60) if not 30 <= i < 35])
    # window [T0+5s, T0+45s) = 40 s, max 4 points -> 10 s buckets starting at T0+5s:
    #   [5,15): 5..14 -> mean 9.5     [15,25): 15..24 -> 19.5
    #   [25,35): 25..29 only -> 27.0  [35,45): 35..44 -> 39.5
    df = store.series("changwon", "cnc-1", "m1", "p", T0 + 5 * S, T0 + 45 * S, max_points=4)
    assert df.to_dicts() == [
        {"ts": T0 + 5 * S, "value": 9.5}, {"ts": T0 + 15 * S, "value": 19.5},
        {"ts": T0 + 25 * S, "value": 27.0}, {"ts": T0 + 35 * S, "value": 39.5}]
    # window [T0+29s, T0+38s) = 9 s, max 3 points -> 3 s buckets from T0+29s:
    #   [29,32): 29 only -> 29.0   [32,35): empty, left out   [35,38): 35..37 -> 36.0
    df = store.series("changwon", "cnc-1", "m1", "p", T0 + 29 * S, T0 + 38 * S, max_points=3)
    assert df.to_dicts() == [{"ts": T0 + 29 * S, "value": 29.0}, {"ts": T0 + 35 * S, "value": 36.0}]


def test_series_of_an_unknown_series_is_empty_with_the_right_columns(store):
    df = store.series("changwon", "cnc-1", "m1", "nothing", T0, T0 + S)
    assert df.height == 0
    assert df.schema == pl.Schema({"ts": pl.Int64, "value": pl.Float64})


def ev(ts, key="", data=None, kind="alarm", site="changwon", line="cnc-1", machine="m1"):
    return Event(kind, ts, site, line, machine, key, data if data is not None else {})


def test_events_query_in_time_order_with_filters_and_limit(store):
    store.write_events([
        ev(T0 + 2 * S, "spindle_hot", {"state": "raised", "value": 81.5}),
        ev(T0 + 1 * S, "door_open", {"state": "raised"}),
        ev(T0 + 3 * S, "spindle_hot", {"state": "acknowledged", "user": "김철수"}),
        ev(T0 + 4 * S, "", {"state": "running"}, kind="state", line="", machine=""),
    ])
    got = store.events("alarm", T0, T0 + 10 * S)
    assert [(e.ts, e.key, e.data) for e in got] == [
        (T0 + S, "door_open", {"state": "raised"}),
        (T0 + 2 * S, "spindle_hot", {"state": "raised", "value": 81.5}),
        (T0 + 3 * S, "spindle_hot", {"state": "acknowledged", "user": "김철수"}),
    ]
    assert [e.ts for e in store.events("alarm", T0, T0 + 10 * S, key="spindle_hot")] == [T0 + 2 * S, T0 + 3 * S]
    assert [e.ts for e in store.events("alarm", T0 + 2 * S, T0 + 3 * S)] == [T0 + 2 * S]
    assert [e.ts for e in store.events("alarm", T0, T0 + 10 * S, limit=2)] == [T0 + S, T0 + 2 * S]
    assert store.events("alarm", T0, T0 + 10 * S, machine="m9") == []
    # empty line, machine and key come back empty
    assert store.events("state", T0, T0 + 10 * S) == [
        Event("state", T0 + 4 * S, "changwon", "", "", "", {"state": "running"})]


def test_latest_events_and_event_rewrite(store):
    store.write_events([
        ev(T0 + 1 * S, "spindle_hot", {"state": "raised"}),
        ev(T0 + 5 * S, "spindle_hot", {"state": "cleared"}),
        ev(T0 + 2 * S, "door_open", {"state": "raised"}),
        ev(T0 + 3 * S, "door_open", {"state": "raised"}, machine="m2"),
    ])
    # the same identity again replaces the record
    store.write_events([ev(T0 + 2 * S, "door_open", {"state": "shelved", "by": "operator 1"})])
    got = {(e.machine, e.key): (e.ts, e.data) for e in store.latest_events("alarm")}
    assert got == {
        ("m1", "spindle_hot"): (T0 + 5 * S, {"state": "cleared"}),
        ("m1", "door_open"): (T0 + 2 * S, {"state": "shelved", "by": "operator 1"}),
        ("m2", "door_open"): (T0 + 3 * S, {"state": "raised"}),
    }
    assert {e.key for e in store.latest_events("alarm", machine="m2")} == {"door_open"}
    assert len(store.events("alarm", T0, T0 + 10 * S)) == 4


def test_count_samples_by_window_and_filters(store):
    store.write_samples([
        smp("a", 1.0, T0), smp("a", 2.0, T0 + S), smp("b", "x", T0 + S),
        smp("a", 3.0, T0 + S, machine="m2"), smp("a", 4.0, T0 + S, site="busan"),
    ])
    assert store.count_samples(T0, T0 + 2 * S) == 5
    assert store.count_samples(T0 + S, T0 + 2 * S) == 4
    assert store.count_samples(T0, T0 + S) == 1  # end excluded
    assert store.count_samples(T0, T0 + 2 * S, site="changwon", machine="m1") == 3
    assert store.count_samples(T0, T0 + 2 * S, signal="a") == 4
    assert store.count_samples(T0, T0 + 2 * S, site="nowhere") == 0


HOSTILE = [
    ("창원 제1공장", "프레스 라인, 2호", "가압=300t", '신호 "온도"'),
    ("site with spaces", "a,b", "x=y", "back\\slash"),
    ("q'uote", 'd"quote', "semi;colon", "tab\there"),
    ("x' OR '1'='1", '") OR ("a"="a', "a\\\\b", "trailing space "),
    ("slash/\\path", "emoji 🏭", "m", "=,"),
]


@pytest.mark.parametrize("site,line,machine,signal", HOSTILE)
def test_real_plant_and_hostile_names_round_trip_unchanged(store, site, line, machine, signal):
    text = 'LOT "A-1", 불량=0\\ok\n두 번째 줄'
    written = [Sample(site, line, machine, signal, 1.25, T0, Quality.UNCERTAIN),
               Sample(site, line, machine, signal + "_txt", text, T0 + S),
               Sample("other", "l", "m", signal, 7.0, T0)]  # must not match the filters below
    store.write_samples(written)
    assert sorted(store.latest(site=site, line=line, machine=machine), key=lambda s: s.ts) == written[:2]
    assert store.series(site, line, machine, signal, T0, T0 + S).to_dicts() == [{"ts": T0, "value": 1.25}]
    assert store.count_samples(T0, T0 + 2 * S, site=site, machine=machine) == 2
    store.write_events([Event(signal, T0, site, line, machine, signal, {"text": text})])
    assert store.events(signal, T0, T0 + S, site=site, key=signal) == [
        Event(signal, T0, site, line, machine, signal, {"text": text})]


def test_bad_records_are_refused_and_counted_and_good_ones_kept(store):
    good = [smp("a", 1.0, T0), smp("b", "ok", T0)]
    bad = [
        smp("a", float("nan"), T0 + S),
        smp("a", float("inf"), T0 + S),
        smp("a", 1.0, "yesterday"),  # type: ignore[arg-type]
        smp("a", 1.0, 2**63),
        smp("a", None, T0 + S),  # type: ignore[arg-type]
        smp("a\nforged line", 1.0, T0 + S),
        smp("ends with backslash\\", 1.0, T0 + S),
        smp("x" * 300, 1.0, T0 + S),
        smp("nul", "a\x00b", T0 + S),
    ]
    store.write_samples(bad[:3] + good[:1] + bad[3:] + good[1:])
    store.write_events([Event("alarm", T0, "s", data={"v": float("nan")}), Event("alarm", T0, "s", data={"ok": 1}),
                        Event("alarm", T0 + S, "s", data={"obj": object()})])
    assert sorted(store.latest(), key=lambda s: s.signal) == good
    assert [e.data for e in store.events("alarm", T0, T0 + 10 * S)] == [{"ok": 1}]
    assert store.rejects.counts() == {
        "value_not_finite": 2, "ts_not_int": 1, "ts_out_of_range": 1, "value_wrong_type:NoneType": 1,
        "name_has_newline": 1, "name_backslash_before_separator": 1, "name_too_long": 1,
        "text_has_nul": 1, "event_data_not_json": 2}


def test_a_batch_larger_than_one_request_is_written_whole(store):
    # 36 machines x 10 signals x 70 timestamps = 25,200 samples in one call (a spool replay)
    batch = [smp(f"s{g}", float(t), T0 + t * S, machine=f"m{m}") for t in range(70) for m in range(36)
             for g in range(10)]
    store.write_samples(batch)
    assert store.count_samples(T0, T0 + 70 * S) == 25_200
    assert store.count_samples(T0, T0 + 70 * S, machine="m35", signal="s9") == 70
    assert [(s.value, s.ts) for s in store.latest(machine="m7") if s.signal == "s3"] == [(69.0, T0 + 69 * S)]


def test_writer_and_readers_in_parallel_threads(store):
    # the pipeline's writer thread and Dash callbacks share one store
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for b in range(20):
                store.write_samples([Sample("s", "l", f"m{i % 5}", "load", float(i), T0 + (b * 500 + i) * S)
                                     for i in range(500)])
                store.write_events([Event("state", T0 + b * S, "s", "l", "m0", "", {"b": b})])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                store.latest(site="s")
                store.series("s", "l", "m0", "load", T0, T0 + 10_000 * S, max_points=50)
                store.count_samples(T0, T0 + 10_000 * S)
                store.latest_events("state")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.count_samples(T0, T0 + 10_000 * S) == 10_000
    assert [e.data for e in store.latest_events("state")] == [{"b": 19}]


def test_samples_pages_every_raw_sample_of_a_machine_at_any_rate(store):
    """The engine rebuilds from this: all signals, text and quality included, ascending by
    (ts, signal), never downsampled — here 100 samples per second, read in pages of 7 whose
    boundaries fall inside timestamps shared by several signals."""
    written = []
    for i in range(300):  # 3 s at 100 Hz, two signals sharing every timestamp
        ts = T0 + i * 10_000_000
        written.append(smp("vibration", float(i), ts))
        written.append(smp("state", 3.0, ts, quality=Quality.UNCERTAIN if i == 5 else Quality.GOOD))
    written.append(smp("lot", "LOT-7", T0 + 15_000_000))
    written.append(smp("vibration", 1.0, T0, machine="other"))  # another machine: not read
    written.append(smp("vibration", 1.0, T0 + 3 * S))  # at the window end: not read
    store.write_samples(written)
    pages = list(store.samples("changwon", "cnc-1", "m1", T0, T0 + 3 * S, page_size=7))
    got = [s for p in pages for s in p]
    want = sorted((s for s in written if s.machine == "m1" and s.ts < T0 + 3 * S), key=lambda s: (s.ts, s.signal))
    assert got == want
    # bounded pages (a store may complete the last timestamp of a page: two signals here)
    assert len(pages) > 40 and all(1 <= len(p) <= 7 + 2 for p in pages)
    assert list(store.samples("changwon", "cnc-1", "m1", T0 + 5 * S, T0 + 6 * S)) == []
