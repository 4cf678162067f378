"""The disk spool: order, restart, torn records, size policy (real files in tmp dirs)."""
from pathlib import Path

import pytest

from gwanje.model import Quality, Sample
from storage.spool import HEADER, Spool

T0 = 1_732_400_000_000_000_000


def batch(n: int, start: int = 0, machine: str = "cnc-01") -> list[Sample]:
    return [Sample("changwon", "cnc", machine, "spindle_speed", float(start + i), T0 + start + i)
            for i in range(n)]


def drain(spool: Spool) -> list[Sample]:
    out = []
    while (b := spool.peek()) is not None:
        out.extend(b.samples)
        spool.ack(b.token, len(b.samples))
    return out


def test_round_trip_keeps_text_values_quality_and_order(tmp_path):
    sp = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=300)
    first = [Sample("s", "l", "m", "lot", "L-24-0031", T0, Quality.GOOD),
             Sample("s", "l", "m", "temp", 1.5, T0 + 1, Quality.UNCERTAIN),
             Sample("s", "l", "m", "temp", -0.0, T0 + 2, Quality.BAD),
             Sample("s", "l", "m", "state", "E-STOP", T0 + 3)]
    batches = [first] + [batch(50, 100 * i) for i in range(1, 8)]
    for b in batches:
        assert sp.append(b)
    assert sp.stats()["spool_segments"] > 1  # 300-byte segments: several files
    assert sp.batches == 8 and sp.samples == 4 + 7 * 50
    got = drain(sp)
    assert got == [s for b in batches for s in b]
    assert isinstance(got[0].value, str) and isinstance(got[1].value, float)
    assert sp.batches == 0 and sp.bytes == 0
    assert list(Path(tmp_path).glob("seg-*.spool")) == []


def test_a_new_spool_on_the_same_dir_replays_what_was_not_acknowledged(tmp_path):
    sp = Spool(tmp_path, max_bytes=1_000_000)
    for i in range(3):
        sp.append(batch(10, 10 * i), notified=(i != 2))
    b = sp.peek()
    sp.ack(b.token, len(b.samples))
    sp.close()

    again = Spool(tmp_path, max_bytes=1_000_000)
    assert again.batches == 2 and again.samples == 20
    b2 = again.peek()
    assert b2.samples == batch(10, 10) and b2.notified
    again.ack(b2.token, 10)
    b3 = again.peek()
    assert b3.samples == batch(10, 20) and not b3.notified
    again.ack(b3.token, 10)
    assert again.peek() is None


def test_a_torn_last_record_is_cut_off_and_counted(tmp_path):
    sp = Spool(tmp_path, max_bytes=1_000_000)
    sp.append(batch(10, 0))
    sp.append(batch(10, 10))
    sp.close()
    seg = next(Path(tmp_path).glob("seg-*.spool"))
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # the crash came in the middle of the second record
        f.truncate(size - 7)

    again = Spool(tmp_path, max_bytes=1_000_000)
    assert again.rejects.counts() == {"torn_record": 1}
    assert again.batches == 1
    assert again.append(batch(5, 100))
    assert drain(again) == batch(10, 0) + batch(5, 100)


def test_a_torn_header_is_cut_off_too(tmp_path):
    sp = Spool(tmp_path, max_bytes=1_000_000)
    sp.append(batch(3, 0))
    sp.close()
    seg = next(Path(tmp_path).glob("seg-*.spool"))
    with open(seg, "ab") as f:
        f.write(b"GWSP\x05")  # 5 of the 17 header bytes made it to disk
    again = Spool(tmp_path, max_bytes=1_000_000)
    assert again.rejects.counts() == {"torn_record": 1}
    assert drain(again) == batch(3, 0)


def test_a_flipped_bit_loses_only_that_batch(tmp_path):
    sp = Spool(tmp_path, max_bytes=1_000_000)
    for i in range(3):
        sp.append(batch(4, 10 * i))
    sp.close()
    seg = next(Path(tmp_path).glob("seg-*.spool"))
    data = bytearray(seg.read_bytes())
    rec_len = len(data) // 3  # three equal-size records
    data[rec_len + HEADER.size + 3] ^= 0xFF  # inside the second payload
    seg.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1_000_000)
    assert drain(again) == batch(4, 0) + batch(4, 20)
    assert again.rejects.counts() == {"bad_checksum": 1}
    assert again.dropped_batches == 1 and again.dropped_samples == 4


def test_drop_oldest_keeps_the_newest_and_counts_the_loss(tmp_path):
    sp = Spool(tmp_path / "s", max_bytes=4000, segment_bytes=1000, policy="drop_oldest")
    appended = []
    for i in range(40):
        b = batch(20, 1000 * i)
        assert sp.append(b)
        appended.append(b)
    st = sp.stats()
    assert st["spool_full"] is True and st["spool_full_events"] == 1
    assert st["spool_bytes"] <= 4000
    assert st["spool_dropped_batches"] > 0
    got = drain(sp)
    kept_batches = len(got) // 20
    # nothing in between is lost: what is kept is exactly the newest batches, in order
    assert got == [s for b in appended[-kept_batches:] for s in b]
    assert st["spool_dropped_batches"] + kept_batches == 40
    assert st["spool_dropped_samples"] == 20 * st["spool_dropped_batches"]


def test_drop_newest_keeps_the_oldest_and_refuses_the_rest(tmp_path):
    sp = Spool(tmp_path, max_bytes=4000, segment_bytes=1000, policy="drop_newest")
    results = [sp.append(batch(20, 1000 * i)) for i in range(40)]
    kept = results.index(False)
    assert all(results[:kept]) and not any(results[kept:])
    assert sp.full and sp.dropped_batches == 40 - kept
    assert drain(sp) == [s for i in range(kept) for s in batch(20, 1000 * i)]
    # drained below half: the alarm condition clears
    assert sp.full is False


def test_a_batch_bigger_than_the_whole_spool_is_refused(tmp_path):
    sp = Spool(tmp_path, max_bytes=200)
    assert sp.append(batch(500)) is False
    assert sp.dropped_samples == 500
    assert sp.rejects.counts() == {"batch_larger_than_spool": 1}


def test_unknown_policy_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path, 1000, policy="drop_random")  # type: ignore[arg-type]


def test_peek_many_reads_ahead_without_consuming(tmp_path):
    sp = Spool(tmp_path, max_bytes=1_000_000)
    for i in range(5):
        sp.append(batch(10, 10 * i))
    group = sp.peek_many(35)  # three records of 10 fit, the fourth would make 40
    assert [b.samples for b in group] == [batch(10, 0), batch(10, 10), batch(10, 20)]
    assert sp.batches == 5  # nothing consumed until acked
    for b in group:
        sp.ack(b.token, 10)
    assert [b.samples for b in sp.peek_many(1)] == [batch(10, 30)]  # at least one
    assert drain(sp) == batch(10, 30) + batch(10, 40)
