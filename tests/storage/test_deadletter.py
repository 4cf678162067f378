"""The dead-letter file: bounded by rotation (what rotates out is counted), readable oldest
first, and replayable into the configured store with the CLI."""
import json

from gwanje.model import Event, Quality, Sample
from storage import deadletter
from storage.deadletter import DeadLetter
from storage.embedded import EmbeddedStore

T0 = 1_800_000_000 * 10**9


def samples(n, start=0):
    return [Sample("changwon-1", "cnc-1", "cnc-101", "spindle_speed", float(i), T0 + i) for i in range(start, start + n)]


def test_the_files_stay_within_their_bound_and_count_what_rotates_out(tmp_path):
    d = DeadLetter(tmp_path / "dl", max_bytes=64 * 1024, files=4)
    for k in range(0, 2000, 100):
        assert d.write("sample", samples(100, k), "beyond_retention", "partial write: … dropped=100") == 100
    st = d.stats()
    line = len(json.dumps({"x": 1})) + 300  # one record is ~300 bytes
    assert st["deadletter_bytes"] <= 64 * 1024 + line
    kept = list(deadletter.read(tmp_path / "dl"))
    assert st["deadletter_records"] == 2000 and st["deadletter_lost_records"] == 2000 - len(kept) > 0
    # oldest first, and what is left is the newest, without holes
    ts = [doc["record"]["ts"] for doc in kept]
    assert ts == list(range(T0 + 2000 - len(kept), T0 + 2000))
    d.close()


def test_records_read_back_as_what_was_refused_and_replay_into_the_store(tmp_path, capsys):
    d = DeadLetter(tmp_path / "data" / "deadletter", store="embedded")
    lot = Sample("changwon-1", "cnc-1", "cnc-101", "lot", "LOT-7", T0, Quality.UNCERTAIN)
    ev = Event("state", T0, "changwon-1", "cnc-1", "cnc-101", data={"state": "running"})
    d.write("sample", [lot], "field_type_conflict", "…")
    d.write("event", [ev], "timestamp_too_old", "…")
    d.close()
    docs = list(deadletter.read(tmp_path / "data" / "deadletter"))
    assert [deadletter.record_from(doc) for doc in docs] == [lot, ev]

    assert deadletter.main(["summary", str(tmp_path / "data" / "deadletter")]) == 0
    assert "field_type_conflict" in capsys.readouterr().out
    assert deadletter.main(["replay", str(tmp_path / "data" / "deadletter"), "--config", "config",
                            "--data-dir", str(tmp_path / "data")]) == 0
    assert "2 written, 0 still refused" in capsys.readouterr().out
    store = EmbeddedStore(tmp_path / "data" / "gwanje.duckdb")
    assert store.latest() == [lot] and store.events("state", T0, T0 + 1) == [ev]
    store.close()
