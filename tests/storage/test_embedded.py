"""EmbeddedStore beyond the contract: the file keeps its data across a restart; a closed
store answers as an unavailable one."""
from __future__ import annotations

import pytest

from gwanje.model import Event, Sample
from storage.base import StoreUnavailable
from storage.embedded import EmbeddedStore

S = 1_000_000_000
T0 = 1_767_225_600 * S


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


def test_a_closed_store_is_unavailable_not_crashing(tmp_path):
    store = EmbeddedStore(tmp_path / "g.duckdb")
    store.close()
    assert store.ping() is False
    with pytest.raises(StoreUnavailable):
        store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    with pytest.raises(StoreUnavailable):
        store.latest()
