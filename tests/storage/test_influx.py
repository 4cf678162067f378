"""InfluxStore beyond the contract: outages, refusals, /ping version dispatch, quoting.

All against real servers: influxd 1.6 (the 1.x /write path) and VictoriaMetrics, which
accepts the v2 write API (/api/v2/write) and answers /ping without a version header.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pytest
import requests

from gwanje.model import Quality, Sample
from storage.base import StoreUnavailable
from storage.influx import InfluxStore, quote_ident, quote_literal, where
from tests.fixtures.common import find_binary, free_port, stop_process, wait_port
from tests.fixtures.influxd import Influxd

T0 = 1_767_225_600 * 1_000_000_000


def db() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def test_identifiers_and_literals_are_quoted_so_names_cannot_inject():
    assert quote_ident('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_literal("x' OR '1'='1") == "'x\\' OR \\'1\\'=\\'1'"
    assert quote_literal("a\\'b\nc") == "'a\\\\\\'b\\nc'"
    assert where({"site": "s", "line": None}, 5, 9) == " WHERE \"site\" = 's' AND time >= 5 AND time < 9"
    assert where({}) == ""


def test_unreachable_server_raises_store_unavailable():
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", "gwanje", timeout_s=2)
    with pytest.raises(StoreUnavailable):
        store.start()
    assert store.ping() is False
    with pytest.raises(StoreUnavailable):
        store.latest()


@pytest.mark.services
def test_outage_raises_store_unavailable_and_writes_resume_after(tmp_path):
    server = Influxd(find_binary("influxd"), tmp_path).start()
    try:
        store = InfluxStore(server.url, "gwanje", timeout_s=2, gzip=False).start()
        store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.write_samples([Sample("s", "l", "m", "a", 2.0, T0 + 1)])
        with pytest.raises(StoreUnavailable):
            store.count_samples(T0, T0 + 10)
        server.start()
        store.write_samples([Sample("s", "l", "m", "a", 3.0, T0 + 2)])  # same session, new connection
        assert [(s.value, s.ts) for s in store.latest()] == [(3.0, T0 + 2)]
        assert store.count_samples(T0, T0 + 10) == 2

        # a hung server (frozen process: connects, never answers) times out as unavailable
        server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable):
                store.write_samples([Sample("s", "l", "m", "a", 4.0, T0 + 3)])
        finally:
            server.proc.send_signal(signal.SIGCONT)
        store.write_samples([Sample("s", "l", "m", "a", 5.0, T0 + 4)])
        assert store.count_samples(T0, T0 + 10) in (3, 4)  # the timed-out write may land late
        assert [s.value for s in store.latest()] == [5.0]
    finally:
        server.stop()


@pytest.mark.services
def test_a_write_the_server_refuses_raises_value_error_with_its_message(influxd):
    store = InfluxStore(influxd.url, db()).start()
    # another tool wrote `value` as a string into this shard: our float is a type conflict
    r = requests.post(influxd.url + "/write", params={"db": store.database},
                      data=f'sample,site=s,machine=m,signal=a value="text",q=0i {T0}')
    assert r.status_code == 204
    with pytest.raises(ValueError, match="field type conflict"):
        store.write_samples([Sample("s", "", "m", "a", 1.0, T0 + 1)])


@pytest.mark.services
def test_a_dropped_database_is_created_again_on_the_next_write(influxd):
    store = InfluxStore(influxd.url, db()).start()
    store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    influxd.query(f'DROP DATABASE "{store.database}"', store.database)
    store.write_samples([Sample("s", "l", "m", "a", 2.0, T0 + 1)])
    assert [(s.value, s.ts) for s in store.latest()] == [(2.0, T0 + 1)]
    assert store.count_samples(T0, T0 + 2) == 1  # the old point went with the database


@pytest.mark.services
def test_missing_retention_policy_is_retryable_until_an_admin_creates_it(influxd):
    store = InfluxStore(influxd.url, db(), retention_policy="one_year").start()
    # InfluxDB 1.x answers 500: the batch is kept (spooled) rather than thrown away
    with pytest.raises(StoreUnavailable, match="retention policy not found: one_year"):
        store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    influxd.query(f'CREATE RETENTION POLICY "one_year" ON "{store.database}" DURATION 52w REPLICATION 1',
                  store.database)
    store.write_samples([Sample("s", "l", "m", "a", 1.0, T0)])
    assert [s.value for s in store.latest()] == [1.0]


@pytest.mark.services
def test_influx_1x_is_detected_from_ping_and_written_through_write(influxd):
    store = InfluxStore(influxd.url, db(), gzip=True).start()
    assert store.version.startswith("1.")
    assert store.uses_v2 is False
    store.write_samples([Sample("창원", "l", "m", "a", 2.5, T0, Quality.UNCERTAIN)])
    # read back with a plain query, not through the store: what any InfluxDB user would see
    res = influxd.query('SELECT "value", "q", "site" FROM "sample"', store.database)
    assert res["results"][0]["series"][0]["values"] == [[T0, 2.5, 1, "창원"]]


# ------------------------------------------------------------------ v2 write API
@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    binary = find_binary("victoria-metrics")
    port = free_port()
    d = tmp_path_factory.mktemp("vm")
    log = open(d / "vm.log", "ab")
    proc = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={d}/data",
                             "-loggerLevel=ERROR"], stdout=log, stderr=log)
    try:
        wait_port(port, timeout=20, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


def _influx_write_requests(url: str) -> float:
    # VictoriaMetrics counts /write and /api/v2/write under one path label
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vm_http_requests_total") and 'path="/influx/write"' in line)


@pytest.mark.services
def test_server_without_version_and_a_token_gets_the_v2_write_api(victoria):
    store = InfluxStore(victoria, "gwanje", token="demo-token", org="plant").start()
    assert store.version == ""
    assert store.uses_v2 is True
    before = _influx_write_requests(victoria)
    now = time.time_ns() // 1_000_000 * 1_000_000  # VictoriaMetrics keeps milliseconds
    store.write_samples([Sample("창원 1", "프레스,2", "m=1", "load", 42.5, now),
                         Sample("창원 1", "프레스,2", "m=1", "state", 3.0, now)])
    deadline = time.monotonic() + 10
    while _influx_write_requests(victoria) == before and time.monotonic() < deadline:
        time.sleep(0.1)  # VictoriaMetrics publishes its counters with a short delay
    assert _influx_write_requests(victoria) == before + 1  # one batch, one request

    # VictoriaMetrics makes each field a metric `sample_<field>` with the tags as labels
    deadline = time.monotonic() + 10
    got = {}
    while time.monotonic() < deadline and len(got) < 2:
        r = requests.post(victoria + "/api/v1/export", data={"match[]": '{__name__="sample_value"}'}, timeout=5)
        got = {row["metric"]["signal"]: row for row in map(json.loads, r.text.splitlines())}
        time.sleep(0.2)
    assert got["load"]["metric"] == {"__name__": "sample_value", "site": "창원 1", "line": "프레스,2",
                                     "machine": "m=1", "signal": "load"}
    assert got["load"]["values"] == [42.5] and got["load"]["timestamps"] == [now // 1_000_000]
    assert got["state"]["values"] == [3.0]
    store.close()


@pytest.mark.services
def test_credentials_for_an_influxd_with_authentication(tmp_path, monkeypatch, caplog):
    import tests.fixtures.influxd as influxd_module

    monkeypatch.setattr(influxd_module, "INFLUXD_CONF", influxd_module.INFLUXD_CONF.replace(
        "[http]\n  enabled = true", "[http]\n  enabled = true\n  auth-enabled = true"))
    server = Influxd(find_binary("influxd"), tmp_path).start()
    try:
        # the first user may be created without credentials, as an administrator does
        r = requests.post(server.url + "/query",
                          data={"q": "CREATE USER admin WITH PASSWORD 'pa55 w0rd' WITH ALL PRIVILEGES"})
        assert r.status_code == 200 and "error" not in r.text
        with pytest.raises(StoreUnavailable, match="401"):  # spooled until someone fixes it
            InfluxStore(server.url, "gwanje", username="admin", password="wrong-secret").start()
        with pytest.raises(StoreUnavailable, match="401"):
            InfluxStore(server.url, "gwanje").start()

        store = InfluxStore(server.url, "gwanje", username="admin", password="pa55 w0rd").start()
        store.write_samples([Sample("s", "l", "m", "a", 1.5, T0)])
        assert [s.value for s in store.latest()] == [1.5]
        store.close()
        assert "wrong-secret" not in caplog.text and "pa55 w0rd" not in caplog.text
    finally:
        server.stop()
