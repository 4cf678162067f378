"""EmbeddedStore beyond the contract: concurrent use from several threads, and the file
keeping its data across a restart."""
from __future__ import annotations

import threading

from gwanje.model import Event, Sample
from storage.embedded import EmbeddedStore

S = 1_000_000_000
T0 = 1_767_225_600 * S


def test_writer_and_readers_in_parallel_threads(tmp_path):
    store = EmbeddedStore(tmp_path / "g.duckdb")
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
    store.close()


def test_data_survives_closing_and_reopening_the_file(tmp_path):
    path = tmp_path / "data" / "gwanje.duckdb"  # the data dir does not exist yet
    store = EmbeddedStore(path)
    store.write_samples([Sample("s", "l", "m", "lot", "LOT-7", T0), Sample("s", "l", "m", "load", 1.5, T0)])
    store.write_events([Event("alarm", T0, "s", "l", "m", "hot", {"state": "raised"})])
    store.close()

    again = EmbeddedStore(path)
    assert sorted(s.value for s in again.latest() if isinstance(s.value, str)) == ["LOT-7"]
    assert again.count_samples(T0, T0 + 1) == 2
    assert again.events("alarm", T0, T0 + 1) == [Event("alarm", T0, "s", "l", "m", "hot", {"state": "raised"})]
    # a redelivery after the restart still overwrites instead of duplicating
    again.write_samples([Sample("s", "l", "m", "load", 2.5, T0)])
    assert again.count_samples(T0, T0 + 1) == 2
    again.close()
