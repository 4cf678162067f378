"""The stores' columnar write path (gwanje.batch.SampleBatch) against the per-Sample path.

Randomised: batches of clean, repetitive and hostile samples — names with a newline, a
backslash before a separator, NUL, too long, a lone surrogate, not a str at all; NaN, ±inf,
ints, bools and bytes as values; texts with quotes, backslashes, newlines, NUL, too long;
times that are floats, bools, strings or out of range; qualities that are not a Quality. For
every batch, both paths give the same line protocol byte for byte, the same refusals (the
same records, reasons, order), the same rows in DuckDB (a redelivery overwrites itself), the
same spool bytes; a spool record the previous version wrote still replays.
"""
from __future__ import annotations

import base64
import random
import uuid

import pytest
import requests

from gwanje.batch import SampleBatch
from gwanje.model import Quality, Sample
from storage.base import Refused
from storage.checks import MAX_TS, MIN_TS
from storage.embedded import EmbeddedStore
from storage.influx import InfluxStore
from storage.lineprotocol import encode_batch, encode_samples
from storage.spool import HEADER, MAGIC, Spool, decode_batch, encode_batch as spool_encode

T0 = 1_767_225_600 * 1_000_000_000
NAN, INF = float("nan"), float("inf")

GOOD_NAMES = ["s", "창원 1", "l,1", "m=1", 'sig "x"', "a b", "", "프레스", "🏭", "x\\y", "n" * 256, "q'"]
BAD_NAMES = ["a\nb", "a\rb", "a\\", "a\\,b", "a\\ b", "a\\=b", "nul\x00", "x" * 257, "\ud800",
             5, None, 2.5, b"bytes", ["unhashable"]]
GOOD_FLOATS = [0.0, -0.0, 1.5, 3.0, 0.1, 1e-7, 5e-324, -2.2250738585072014e-308, 123456.789, 1e16, 2.0**53 + 2]
# finite, but their sum overflows (the batch is checked the slow way): rare
HUGE_FLOATS = [1e300, 1.7976931348623157e308, -1.7976931348623157e308]
GOOD_TEXTS = ["LOT-1", 'he said "hi" \\o/\nbye', "창원", "a\\", "tab\tx\r\n", "", 'q"', "\\\""]
LONG_TEXT = "y" * 17000  # may be too long for InfluxDB (its UTF-8 is checked the slow way): rare
BAD_VALUES = [NAN, INF, -INF, 1, True, None, b"x", [1.0], "nul\x00", "\udc00", "z" * 70000, "창" * 22000]
GOOD_TS = [T0, T0 + 1, MIN_TS, MAX_TS, -5, 0]
BAD_TS = [MAX_TS + 1, MIN_TS - 1, 1.5, True, "123", None, 2**70]
# not a Quality: what a caller may get wrong (ints 0..2 are a gwanje.batch defect, see the end)
BAD_QUALITIES = ["good", None, 5, -1, True, 1.0]


def random_samples(rnd: random.Random, n: int) -> list[Sample]:
    """A batch of one of several profiles: clean floats, clean floats and texts, repetitive
    (few values, shared times: the formatting memo), all text, or hostile at some rate."""
    profile = rnd.choice(["floats", "mixed", "repetitive", "text", "hostile", "hostile", "rare"])
    bad_rate = {"hostile": 0.25, "rare": 0.01}.get(profile, 0.0)
    quality = rnd.choice([[Quality.GOOD], list(Quality)])
    pool = [[rnd.choice(GOOD_NAMES) for _ in range(4)] for _ in range(rnd.randint(1, 12))]
    if bad_rate:
        for key in pool:
            if rnd.random() < 0.3:
                key[rnd.randrange(4)] = rnd.choice(BAD_NAMES)
    floats = ([rnd.choice(GOOD_FLOATS) for _ in range(3)] + [0.0, -0.0] if profile == "repetitive" else None)
    times = [T0 + rnd.randrange(4) for _ in range(2)] if profile == "repetitive" else None
    out = []
    for i in range(n):
        site, line, machine, signal = rnd.choice(pool)

        def bad() -> bool:
            return rnd.random() < bad_rate

        if profile == "text" or (profile != "floats" and rnd.random() < 0.2):
            value = LONG_TEXT if rnd.random() < 0.002 else rnd.choice(GOOD_TEXTS)
        elif floats is not None:
            value = rnd.choice(floats)
        elif rnd.random() < 0.002:
            value = rnd.choice(HUGE_FLOATS)
        else:
            value = rnd.choice([rnd.choice(GOOD_FLOATS), rnd.uniform(-1e4, 1e4),
                                rnd.random() * 10.0 ** rnd.randint(-30, 30), float(rnd.randint(0, 5))])
        if bad():
            value = rnd.choice(BAD_VALUES)
        ts = rnd.choice(times) if times is not None else rnd.choice([T0 + i, T0 + i // 7, rnd.choice(GOOD_TS)])
        if bad():
            ts = rnd.choice(BAD_TS)
        q = rnd.choice(BAD_QUALITIES) if bad() else rnd.choice(quality)
        out.append(Sample(site, line, machine, signal, value, ts, q))
    return out


def seeded(seed: int) -> list[Sample]:
    rnd = random.Random(seed)
    return random_samples(rnd, rnd.choice([1, 5, 63, 64, 200, 700]))


def refusals(enc) -> list[tuple[str, str]]:
    return [(repr(r), reason) for r, reason in enc.rejected]


# ------------------------------------------------------------------ line protocol
class Recorder:
    """The store's rejects, in order, with their details (the refused Sample's repr)."""

    def __init__(self, store) -> None:
        self.seen: list[tuple[str, str]] = []
        real = store.rejects.reject

        def reject(reason, detail="", n=1):
            self.seen.append((reason, detail))
            real(reason, detail, n)

        store.rejects.reject = reject


def rows(store: EmbeddedStore) -> list[tuple[str, ...]]:
    # repr: -0.0 and 0.0 apart, NULL apart from ""
    return [tuple(map(repr, r)) for r in store._fetch(
        "SELECT site, line, machine, signal, ts, value, text, quality FROM samples "
        "ORDER BY site, line, machine, signal, ts", {})]


@pytest.mark.parametrize("seed", range(300))
def test_line_protocol_of_a_batch_is_the_per_sample_encoding(seed):
    samples = seeded(seed)
    batch = SampleBatch.of(samples)
    assert list(batch) == samples or any(s.value != s.value for s in samples)  # NaN != NaN
    old, new = encode_samples(samples), encode_batch(batch)
    assert new.points == old.points
    assert refusals(new) == refusals(old)
    assert [repr(samples[k]) for k in new.rejected_at] == [repr(r) for r, _ in old.rejected]
    assert list(new.bodies(7)) == list(old.bodies(7))
    # the batch's own items through the per-Sample path: the same again
    assert encode_samples(list(batch)).points == new.points


HOSTILE = ([("name", x) for x in BAD_NAMES] + [("value", x) for x in BAD_VALUES]
           + [("ts", x) for x in BAD_TS] + [("quality", x) for x in BAD_QUALITIES]
           + [("value", x) for x in HUGE_FLOATS + [LONG_TEXT]])  # writable, checked the slow way


@pytest.fixture(scope="module")
def duckdb_pair():
    """Two embedded stores (batch path, list path) for many small comparisons: emptied by
    each use (opening a store costs more than a comparison)."""
    pair = EmbeddedStore(), EmbeddedStore()
    recorders = Recorder(pair[0]), Recorder(pair[1])

    def fresh():
        for store, rec in zip(pair, recorders):
            store._con.execute("DELETE FROM samples")
            rec.seen.clear()
        return pair, recorders

    yield fresh
    for store in pair:
        store.close()


@pytest.mark.parametrize("base", ["floats", "mixed", "good_and_uncertain"])
@pytest.mark.parametrize("field,bad", HOSTILE, ids=lambda x: repr(x)[:20])
def test_one_hostile_field_in_a_clean_batch(base, field, bad, duckdb_pair):
    """Every column check on its own: a clean batch (one that takes the fast path) with one
    field of one sample made hostile, at the start, the end or in between."""
    rnd = random.Random(f"{base}{field}{bad!r}")
    samples = [Sample("s", "l", f"m{i % 3}", "lot" if base == "mixed" and i % 4 == 0 else f"g{i % 5}",
                      f"LOT-{i // 9}" if base == "mixed" and i % 4 == 0 else float(i % 7),
                      T0 + i // 10, Quality.UNCERTAIN if base != "floats" and i % 3 == 0 else Quality.GOOD)
               for i in range(100)]
    assert encode_batch(SampleBatch.of(samples)).rejected_at == []
    for at in (0, rnd.randrange(1, 99), 99):
        s = samples[at]
        one = list(samples)
        one[at] = Sample(*(bad if field == "name" and k == 3 else v for k, v in enumerate(s.series)),
                         bad if field == "value" else s.value, bad if field == "ts" else s.ts,
                         bad if field == "quality" else s.quality)
        old, new = encode_samples(one), encode_batch(SampleBatch.of(one))
        assert new.points == old.points
        assert refusals(new) == refusals(old)
        assert new.rejected_at == ([at] if old.rejected else [])
        (by_batch, by_list), (seen_batch, seen_list) = duckdb_pair()
        by_batch.write_samples(SampleBatch.of(one))
        by_list.write_samples(one)
        assert rows(by_batch) == rows(by_list)
        assert seen_batch.seen == seen_list.seen


@pytest.mark.parametrize("texts", [False, True])
def test_repeated_values_and_signed_zeros_keep_their_own_text(texts):
    # 64 samples and more with few distinct values: formatted once per value, -0.0 apart from 0.0
    values = [0.0, -0.0, 1.5, -0.0] + (['L "1"', "0.0"] if texts else [])
    samples = [Sample("s", "l", "m", "g", v, T0 + i // 10) for i, v in enumerate(values * 40)]
    samples += [Sample("s", "l", "m", "g", -0.0, T0), Sample("s", "l", "m", "g", 0.0, T0)]
    enc = encode_batch(SampleBatch.of(samples))
    assert enc.points == encode_samples(samples).points
    assert enc.points[1].split(" ")[1] == "value=-0.0,q=0i" and enc.points[-1].split(" ")[1] == "value=0.0,q=0i"


def test_a_batch_with_every_check_failing_once_keeps_the_rest():
    samples = [Sample("s", "l", "m", "a", 1.0, T0),
               Sample("s", "l", "m", "a", NAN, T0 + 1),
               Sample("s", "l", "m", "a", 1.0, 1.5),
               Sample("s", "l", "m", "a", 1.0, T0 + 2, "good"),
               Sample("s\n", "l", "m", "a", 1.0, T0 + 3),
               Sample("s", "l", "m", "lot", "a\x00b", T0 + 4),
               Sample("s", "l", "m", "lot", 'fine "text"', T0 + 5, Quality.BAD),
               Sample("s", "l", "m", "a", 7, T0 + 6)]
    enc = encode_batch(SampleBatch.of(samples))
    assert [r for _, r in enc.rejected] == ["value_not_finite", "ts_not_int", "quality_wrong_type",
                                            "name_has_newline", "text_has_nul", "value_wrong_type:int"]
    assert enc.rejected_at == [1, 2, 3, 4, 5, 7]
    assert enc.points == [f"sample,site=s,line=l,machine=m,signal=a value=1.0,q=0i {T0}",
                          f'sample,site=s,line=l,machine=m,signal=lot text="fine \\"text\\"",q=2i {T0 + 5}']


# ------------------------------------------------------------------ DuckDB
@pytest.mark.parametrize("seed", range(40))
def test_duckdb_rows_and_refusals_of_a_batch_are_the_per_sample_ones(seed):
    rnd = random.Random(1000 + seed)
    chunks = [random_samples(rnd, rnd.choice([1, 40, 300])) for _ in range(3)]
    # a redelivery of the first (spool replay, QoS 1): overwrites itself, the changed value wins
    chunks.append([s if type(s.value) is not float else Sample(s.site, s.line, s.machine, s.signal, s.value + 1,
                                                                 s.ts, s.quality) for s in chunks[0]])
    by_batch, by_list = EmbeddedStore(), EmbeddedStore()
    seen_batch, seen_list = Recorder(by_batch), Recorder(by_list)
    for c in chunks:
        by_batch.write_samples(SampleBatch.of(c))
        by_list.write_samples(c)
    assert rows(by_batch) == rows(by_list)
    assert seen_batch.seen == seen_list.seen
    assert by_batch.rejects.counts() == by_list.rejects.counts()
    by_batch.close()
    by_list.close()


def test_duckdb_batch_duplicates_inside_and_across_writes_last_one_wins():
    store = EmbeddedStore()
    b = SampleBatch.of([Sample("s", "l", "m", "a", 1.0, T0), Sample("s", "l", "m", "lot", "x", T0),
                        Sample("s", "l", "m", "a", 2.0, T0)])
    store.write_samples(b)
    assert rows(store) == [("'s'", "'l'", "'m'", "'a'", repr(T0), "2.0", "None", "0"),
                           ("'s'", "'l'", "'m'", "'lot'", repr(T0), "None", "'x'", "0")]
    for _ in range(20):  # past the writes that replace directly, back to plain inserts
        store.write_samples(SampleBatch.of([Sample("s", "l", "m", "a", 3.0, T0, Quality.BAD)]))
    store.write_samples(SampleBatch.of([Sample("s", "l", "m", "a", 4.0, T0 + 1)]))
    assert [r[4:] for r in rows(store)] == [(repr(T0), "3.0", "None", "2"), (repr(T0 + 1), "4.0", "None", "0"),
                                            (repr(T0), "None", "'x'", "0")]
    store.close()


def test_duckdb_a_constraint_of_the_operator_still_refuses_a_batch(tmp_path):
    # a file whose samples table an operator gave a CHECK (the plain INSERT tried first fails,
    # and so does the INSERT OR REPLACE after it): the batch is refused, nothing is written
    import duckdb

    path = tmp_path / "g.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE samples (site VARCHAR NOT NULL, line VARCHAR NOT NULL,
        machine VARCHAR NOT NULL, signal VARCHAR NOT NULL, ts BIGINT NOT NULL, value DOUBLE CHECK (value > 0),
        text VARCHAR, quality TINYINT NOT NULL, PRIMARY KEY (site, line, machine, signal, ts))""")
    con.close()
    store = EmbeddedStore(path)
    with pytest.raises(Refused) as e:
        store.write_samples(SampleBatch.of([Sample("s", "l", "m", "a", 1.0, T0),
                                            Sample("s", "l", "m", "a", -1.0, T0 + 1)]))
    assert e.value.reason == "constraint" and e.value.records is None
    assert rows(store) == []
    store.write_samples(SampleBatch.of([Sample("s", "l", "m", "a", 1.0, T0)]))
    assert len(rows(store)) == 1
    store.close()


# ------------------------------------------------------------------ spool
def clean(samples: list[Sample]) -> list[Sample]:
    """What a spool can hold: what JSON carries, with a Quality (others raise, as always)."""
    out = []
    for s in samples:
        if (isinstance(s.quality, Quality) and all(type(n) is str for n in s.series)
                and (type(s.value) is str or type(s.value) is float and s.value - s.value == 0.0)):
            out.append(s)
    return out


@pytest.mark.parametrize("seed", range(60))
def test_spool_bytes_of_a_batch_are_those_of_its_samples(seed):
    samples = clean(seeded(2000 + seed))
    batch = SampleBatch.of(samples)
    payload = spool_encode(batch)
    assert payload == spool_encode(samples)
    back = decode_batch(payload)
    assert isinstance(back, SampleBatch)
    assert [repr(s) for s in back] == [repr(s) for s in samples]


def test_spool_refuses_what_it_refused_before():
    for bad in (Sample("s", "l", "m", "a", NAN, T0), Sample("s", "l", "m", "a", b"x", T0),
                Sample("s", "l", "m", "a", 1.0, T0, "good"), Sample("s", "l", "m", "a", 1.0, T0, 5)):
        samples = [Sample("s", "l", "m", "a", 1.0, T0), bad]
        with pytest.raises(Exception) as was:
            spool_encode(samples)
        with pytest.raises(was.type):
            spool_encode(SampleBatch.of(samples))


# written by the previous version's storage.spool.encode_batch (a per-Sample walk) for OLD
OLD_PAYLOAD = base64.b64decode(
    "eAGFjsEKwjAMhl9l5Oq/kbZ2A8E3ELx4W3uQtac5nawKIr676S4KDgwkJD/fn+RJfXxMtGlbcreuM0FqHbhQBDoh12E795djII+/"
    "VJqhSXzZKpniMJL3oF6OMBQ0GFrmu8yqsqDd/lA4ahw5586EkivB4soww8bS6LXAKcNN3Whta/4EfjW1oOkFzaC0svj69RX71xuK70An")
OLD = [Sample("창원 1", "l,1", "m=1", "load", 1.5, T0, Quality.GOOD),
       Sample("창원 1", "l,1", "m=1", "lot", 'LOT "7"\\\n', T0 + 1, Quality.UNCERTAIN),
       Sample("s", "", "m", "temp", -0.0, T0 + 2, Quality.BAD),
       Sample("창원 1", "l,1", "m=1", "load", 1e300, T0 + 3, Quality.GOOD),
       Sample("s", "", "m", "temp", 5e-324, -5, Quality.GOOD)]


def test_a_spool_left_by_the_previous_version_replays(tmp_path):
    import zlib

    assert spool_encode(OLD) == OLD_PAYLOAD == spool_encode(SampleBatch.of(OLD))
    (tmp_path / "seg-000000000000.spool").write_bytes(
        HEADER.pack(MAGIC, len(OLD_PAYLOAD), zlib.crc32(OLD_PAYLOAD), len(OLD), 1) + OLD_PAYLOAD)
    sp = Spool(tmp_path, max_bytes=1_000_000)
    b = sp.peek()
    assert b.samples == OLD and [repr(s) for s in b.samples] == [repr(s) for s in OLD]
    assert b.notified
    sp.ack(b.token, len(b.samples))
    assert sp.peek() is None
    sp.close()


# ------------------------------------------------------------------ InfluxDB
def dump(store: InfluxStore) -> list:
    r = store._query('SELECT * FROM "sample"')
    return r["results"][0].get("series", [])


@pytest.mark.services
@pytest.mark.parametrize("seed", range(3))
def test_influxdb_stores_and_refuses_the_same_for_a_batch(influxd, seed):
    rnd = random.Random(3000 + seed)
    chunks = [random_samples(rnd, 300) for _ in range(4)]
    stores = [InfluxStore(influxd.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=10).start() for _ in range(2)]
    seen = [Recorder(s) for s in stores]
    try:
        for c in chunks:
            stores[0].write_samples(SampleBatch.of(c))
            stores[1].write_samples(c)
        assert dump(stores[0]) == dump(stores[1]) != []
        assert seen[0].seen == seen[1].seen
    finally:
        for s in stores:
            s._query(f'DROP DATABASE "{s.database}"', write=True)
            s.close()


@pytest.mark.services
def test_influxdb_partial_write_of_a_batch_names_the_refused_by_position(influxd):
    store = InfluxStore(influxd.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=10).start()
    try:
        # another tool wrote `value` as a string into this shard: our floats conflict with it
        r = requests.post(influxd.url + "/write", params={"db": store.database, "precision": "ns"},
                          data=f'sample,site=x value="text" {T0}')
        assert r.status_code == 204
        samples = [Sample("s", "l", "m", "a", 1.0, T0 + 1), Sample("s", "l", "m", "a", NAN, T0 + 2),
                   Sample("s", "l", "m", "lot", "L-1", T0 + 3), Sample("s", "l", "m", "a", 2.0, T0 + 4)]
        with pytest.raises(Refused) as as_list:
            store.write_samples(samples)
        with pytest.raises(Refused) as as_batch:
            store.write_samples(SampleBatch.of(samples))
        for e in (as_list.value, as_batch.value):
            assert e.reason == "field_type_conflict"
            assert e.positions == [0, 3] and e.records == [samples[0], samples[3]]
        assert as_list.value.records[0] is samples[0]  # a list: its own items
        assert store.latest() == [samples[2]]
    finally:
        store._query(f'DROP DATABASE "{store.database}"', write=True)
        store.close()


# ------------------------------------------------------------------ gwanje.batch defects
def test_an_int_quality_is_refused_in_a_batch_as_in_a_sample():
    samples = [Sample("s", "l", "m", "a", 1.0, T0, 1)]  # type: ignore[arg-type]
    assert [r for _, r in encode_samples(samples).rejected] == ["quality_wrong_type"]
    assert [r for _, r in encode_batch(SampleBatch.of(samples)).rejected] == ["quality_wrong_type"]


def test_a_garbage_name_equal_to_a_real_one_does_not_poison_the_series():
    class Name(str):
        pass

    signal = f"poison-{uuid.uuid4().hex[:8]}"
    encode_batch(SampleBatch.of([Sample("s", "l", "m", Name(signal), 1.0, T0)]))
    later = encode_batch(SampleBatch.of([Sample("s", "l", "m", signal, 1.0, T0)]))
    assert later.rejected == [] and later.lines == 1
