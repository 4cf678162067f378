"""Store fixtures: every contract test runs once on DuckDB and once on a real influxd."""
from __future__ import annotations

import uuid

import pytest

from storage.embedded import EmbeddedStore
from storage.influx import InfluxStore


@pytest.fixture(params=["embedded", pytest.param("influxdb", marks=pytest.mark.services)])
def new_store(request):
    """A function opening an empty store of the parametrized kind (property tests need one
    per example); the stores are closed, and their InfluxDB databases dropped, afterwards."""
    opened = []

    def open_():
        if request.param == "embedded":
            s = EmbeddedStore()
        else:
            server = request.getfixturevalue("influxd")
            # a fresh database: tests never see each other's points
            s = InfluxStore(server.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=5).start()
        opened.append(s)
        return s

    yield open_
    for s in opened:
        if isinstance(s, InfluxStore):
            s._query(f'DROP DATABASE "{s.database}"', write=True)
        s.close()


@pytest.fixture
def store(new_store):
    return new_store()
