"""The `store` fixture: every contract test runs once on DuckDB and once on a real influxd."""
from __future__ import annotations

import uuid

import pytest

from storage.embedded import EmbeddedStore
from storage.influx import InfluxStore


@pytest.fixture(params=["embedded", pytest.param("influxdb", marks=pytest.mark.services)])
def store(request):
    if request.param == "embedded":
        s = EmbeddedStore()
    else:
        server = request.getfixturevalue("influxd")
        # a fresh database per test: tests never see each other's points
        s = InfluxStore(server.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=5).start()
    yield s
    s.close()
