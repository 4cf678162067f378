"""Data the store will never accept (InfluxDB 400/422 partial writes, DuckDB constraint errors,
points beyond the retention) must cost only itself: the good samples around it are stored, the
refused ones land in the dead-letter file with their reason, are counted, and raise one system
alarm — and a refusal is never mistaken for an outage (spooled and retried forever).

As deployed (`app.py collect` subprocess, real mosquitto, real influxd) and in process (MQTT
collector -> pipeline -> real influxd / DuckDB file) for the cases the subprocess cannot stage."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from gwanje.model import Event, Sample
from storage.influx import InfluxStore
from tests.faults.harness import LINE, MACHINE, SIGNAL, SITE, TOPIC, US, Publisher, check_values, stored
from tests.faults.test_collector_kill import CollectProcess
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services

PLC_RESET_NS = 978_307_200 * 10**9  # 2001-01-01: a PLC whose clock battery died
REFUSED_ALARM = "system:data_refused"


def admin(influxd, q: str) -> None:
    """An administrator's InfluxQL statement (POST: 1.x runs no write statement over GET)."""
    r = requests.post(influxd.url + "/query", data={"q": q}, timeout=10)
    assert r.status_code == 200 and "error" not in r.text, r.text


def dead_letters(data_dir: Path) -> list[dict]:
    out = []
    for p in sorted((data_dir / "deadletter").glob("deadletter*.jsonl*")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def metric(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_sample_beyond_the_retention_costs_only_itself(mosquitto, influxd, tmp_path):
    db = "refused_retention"
    admin(influxd, f'CREATE DATABASE "{db}" WITH DURATION 2d')
    reader = InfluxStore(influxd.url, db).start()
    collect = CollectProcess(tmp_path, mosquitto.url, influxd.url, db)
    collect.start()
    pub = None
    try:
        assert wait_for(collect.mqtt_connected, timeout=30), collect.log.read_text()[-3000:]
        pub = Publisher(mosquitto.port, "device-refused")
        pub.client.publish(TOPIC, json.dumps([{"signal": SIGNAL, "value": 7, "ts": PLC_RESET_NS}]), qos=1)
        t0 = time.time_ns() - 60 * 10**9
        n = 40
        pub.publish(t0, 0, n, per_msg=1)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=20), stored(reader, t0, n)
        check_values(reader, t0, n)

        letters = wait_for(lambda: [d for d in dead_letters(tmp_path / "data") if d["kind"] == "sample"])
        assert [(d["reason"], d["record"]["ts"], d["record"]["value"]) for d in letters] == [
            ("timestamp_too_old", PLC_RESET_NS, 7.0)]
        assert letters[0]["record"]["machine"] == MACHINE
        # what the engine derived from it (a state change in 2001) cannot be stored either
        events = [d for d in dead_letters(tmp_path / "data") if d["kind"] == "event"]
        assert {(d["reason"], d["record"]["ts"]) for d in events} <= {("timestamp_too_old", PLC_RESET_NS)}
        text = requests.get(f"http://127.0.0.1:{collect.health_port}/metrics", timeout=2).text
        assert metric(text, 'gwanje_store_refused_total{kind="sample",reason="timestamp_too_old"}') == 1
        alarms = wait_for(lambda: reader.events("alarm", 0, 2**62, key=REFUSED_ALARM))
        assert [(a.data["event"], a.data["status"]) for a in alarms] == [("raised", "unack_active")]
        # nothing waits in the spool for a store that will never take it
        ready = requests.get(f"http://127.0.0.1:{collect.health_port}/readyz", timeout=2).json()
        assert ready["spool_samples"] == 0
        assert collect.proc.poll() is None
    finally:
        if pub is not None:
            pub.close()
        collect.stop()


# ---------------------------------------------------------------- in process, real servers
def ingest(store, tmp_path, mosquitto, client_id: str, **kw):
    """MQTT collector -> pipeline (spool, dead-letter file) -> store, started and connected."""
    from collectors.mqtt import MqttCollector
    from gwanje.config import Secrets, load_config
    from runtime.pipeline import Pipeline
    from storage.deadletter import DeadLetter
    from storage.spool import Spool

    pipeline = Pipeline(store, batch_size=1000, flush_interval_s=0.05, retry_interval_s=0.5,
                        spool=Spool(tmp_path / "spool", 10**8, fsync=False),
                        deadletter=DeadLetter(tmp_path / "deadletter", store=store.name), **kw)
    collector = MqttCollector(load_config("config", env={}), pipeline, Secrets.from_env({}), url=mosquitto.url,
                              client_id=client_id)
    pipeline.start()
    collector.start()
    assert wait_for(lambda: collector.status().connected), collector.status()
    return pipeline, collector


def payload(t0: int, start: int, n: int) -> list[dict]:
    return [{"signal": SIGNAL, "value": j, "ts": t0 + j * US} for j in range(start, start + n)]


def test_influxdb_partial_writes_are_isolated_by_their_answer_and_the_rest_is_stored(mosquitto, influxd, tmp_path):
    """The retention shrinks after the pipeline read it (an admin's ALTER), and another tool
    made `text` a float field in this shard: InfluxDB answers 400 partial writes, which name
    the reason and the count; the good points of the same requests are stored."""
    db = "refused_partial"
    reader = InfluxStore(influxd.url, db).start()
    t0 = time.time_ns() - 60 * 10**9
    r = requests.post(influxd.url + "/write", params={"db": db, "precision": "ns"},
                      data=f"sample,site={SITE},line={LINE},machine={MACHINE},signal=lot text=1.0,q=0i {t0}")
    assert r.status_code == 204
    store = InfluxStore(influxd.url, db).start()
    pipeline, collector = ingest(store, tmp_path, mosquitto, "refused-partial", retention_refresh_s=3600)
    pub = Publisher(mosquitto.port, "device-partial")
    try:
        assert wait_for(lambda: pipeline.stats()["batches_written"] >= 0 and pipeline._retention_at > 0)
        admin(influxd, f'ALTER RETENTION POLICY "autogen" ON "{db}" DURATION 2d SHARD DURATION 1h')
        n = 40
        # one message: 20 good, the 2001 sample, a LOT text (type conflict), 20 good
        pub.client.publish(TOPIC, json.dumps(
            payload(t0, 0, 20) + [{"signal": SIGNAL, "value": 7, "ts": PLC_RESET_NS},
                                  {"signal": "lot", "value": "LOT-1", "ts": t0 + 5 * US}] + payload(t0, 20, 20)),
            qos=1)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=10), stored(reader, t0, n)
        check_values(reader, t0, n)
        letters = wait_for(lambda: [d for d in dead_letters(tmp_path) if d["kind"] == "sample"][1:] and
                           [d for d in dead_letters(tmp_path) if d["kind"] == "sample"])
        assert sorted((d["reason"], d["record"]["signal"], d["record"]["ts"]) for d in letters) == [
            ("beyond_retention", SIGNAL, PLC_RESET_NS), ("field_type_conflict", "lot", t0 + 5 * US)]
        assert "already exists as type float" in next(d["detail"] for d in letters if d["record"]["signal"] == "lot")
        st = pipeline.stats()
        assert (st["samples_refused"], st["write_errors"], st["spool_samples"]) == (2, 0, 0)
        assert st["refused"]["sample"] == {"beyond_retention": 1, "field_type_conflict": 1}
        alarms = wait_for(lambda: reader.events("alarm", 0, 2**62, key=REFUSED_ALARM))
        assert [a.data["event"] for a in alarms] == ["raised"]
    finally:
        pub.close()
        collector.stop()
        pipeline.stop()


def test_the_retention_is_read_again_and_then_old_samples_never_reach_the_store(influxd, tmp_path):
    from runtime.pipeline import Pipeline
    from storage.deadletter import DeadLetter

    db = "refused_refresh"
    store = InfluxStore(influxd.url, db).start()
    pipeline = Pipeline(store, flush_interval_s=0.02, retention_refresh_s=0.1,
                        deadletter=DeadLetter(tmp_path / "deadletter"))
    pipeline.start()
    try:
        assert wait_for(lambda: pipeline._retention_at > 0)
        assert pipeline.stats()["retention_s"] is None  # autogen keeps data forever
        admin(influxd, f'ALTER RETENTION POLICY "autogen" ON "{db}" DURATION 3d SHARD DURATION 1h')
        assert wait_for(lambda: pipeline.stats()["retention_s"] == 3 * 86400)
        t = time.time_ns()
        pipeline.submit([Sample(SITE, LINE, MACHINE, SIGNAL, 1.0, PLC_RESET_NS),
                         Sample(SITE, LINE, MACHINE, SIGNAL, 2.0, t)])
        assert wait_for(lambda: store.count_samples(t, t + 1) == 1)
        assert pipeline.stats()["refused"] == {"sample": {"timestamp_too_old": 1}}
        assert [d["reason"] for d in dead_letters(tmp_path)] == ["timestamp_too_old"]
    finally:
        pipeline.stop()


def test_duckdb_constraint_errors_are_found_by_splitting_the_batch(mosquitto, tmp_path):
    """An embedded file whose samples table an operator gave a CHECK: DuckDB refuses the whole
    statement without naming the row; bisection finds it, the rest is stored."""
    import duckdb

    from storage.embedded import EmbeddedStore

    path = tmp_path / "plant.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE samples (
        site VARCHAR NOT NULL, line VARCHAR NOT NULL, machine VARCHAR NOT NULL, signal VARCHAR NOT NULL,
        ts BIGINT NOT NULL, value DOUBLE, text VARCHAR, quality TINYINT NOT NULL,
        CHECK (value IS NULL OR value < 1000000),
        PRIMARY KEY (site, line, machine, signal, ts))""")
    con.close()
    store = EmbeddedStore(path)
    pipeline, collector = ingest(store, tmp_path, mosquitto, "refused-duckdb")
    pub = Publisher(mosquitto.port, "device-duckdb")
    t0 = time.time_ns() - 60 * 10**9
    n = 300
    try:
        bad = {"signal": SIGNAL, "value": 5e6, "ts": t0 + 1000 * US}
        pub.client.publish(TOPIC, json.dumps(payload(t0, 0, 137) + [bad] + payload(t0, 137, n - 137)), qos=1)
        assert wait_for(lambda: store.count_samples(t0, t0 + n * US + 1) == n, timeout=10)
        check_values(store, t0, n)
        letters = dead_letters(tmp_path)
        assert [(d["reason"], d["record"]["value"], d["store"]) for d in letters] == [
            ("constraint", 5e6, "embedded")]
        assert "CHECK constraint failed" in letters[0]["detail"]
        assert pipeline.stats()["write_errors"] == 0
    finally:
        pub.close()
        collector.stop()
        pipeline.stop()
        store.close()


def test_a_refused_batch_in_the_spool_does_not_stop_the_replay(influxd, tmp_path):
    """Spooled during an outage, refused when replayed: the replay dead-letters it and goes on."""
    from runtime.pipeline import Pipeline
    from storage.deadletter import DeadLetter
    from storage.spool import Spool

    db = "refused_replay"
    t0 = time.time_ns() - 60 * 10**9
    reader = InfluxStore(influxd.url, db).start()
    requests.post(influxd.url + "/write", params={"db": db, "precision": "ns"},
                  data=f"sample,site={SITE},line={LINE},machine={MACHINE},signal=lot text=1.0,q=0i {t0}")
    spool = Spool(tmp_path / "spool", 10**8, fsync=False)
    n = 3000
    for k in range(0, n, 500):  # left by a previous run: a refused text sample in the second batch
        batch = [Sample(SITE, LINE, MACHINE, SIGNAL, float(i), t0 + i * US) for i in range(k, k + 500)]
        if k == 500:
            batch.insert(100, Sample(SITE, LINE, MACHINE, "lot", "LOT-7", t0 + 3 * US))
        spool.append(batch)
    pipeline = Pipeline(InfluxStore(influxd.url, db), batch_size=1000, flush_interval_s=0.02, spool=spool,
                        deadletter=DeadLetter(tmp_path / "deadletter"))
    pipeline.start()
    try:
        assert wait_for(lambda: pipeline.stats()["spool_samples"] == 0, timeout=10), pipeline.stats()
        assert stored(reader, t0, n) == n
        check_values(reader, t0, n)
        assert [(d["reason"], d["record"]["value"]) for d in dead_letters(tmp_path)] == [
            ("field_type_conflict", "LOT-7")]
    finally:
        pipeline.stop()


def test_a_refused_event_does_not_block_the_events_behind_it(influxd, tmp_path):
    """Derived events from a listener: one the store can never keep (its time is beyond the
    retention), the others written; the pending-event queue empties."""
    from runtime.pipeline import Pipeline
    from storage.deadletter import DeadLetter

    db = "refused_events"
    admin(influxd, f'CREATE DATABASE "{db}" WITH DURATION 2d')
    store = InfluxStore(influxd.url, db).start()

    def listener(batch):
        return [Event("state", s.ts, s.site, s.line, s.machine, data={"v": s.value}) for s in batch]

    pipeline = Pipeline(store, flush_interval_s=0.02, listeners=[listener],
                        deadletter=DeadLetter(tmp_path / "deadletter"), retention_refresh_s=3600)
    t = time.time_ns() - 10**9
    pipeline.start()
    try:
        pipeline.submit([Sample(SITE, LINE, MACHINE, SIGNAL, 1.0, PLC_RESET_NS),
                         Sample(SITE, LINE, MACHINE, SIGNAL, 2.0, t)])
        assert wait_for(lambda: [e.ts for e in store.events("state", t, t + 1)] == [t])
        # engine records written by the runtime go the same way: refused ones do not raise
        pipeline.write_events([Event("shift_oee", PLC_RESET_NS, SITE, LINE, key="day", data={}),
                               Event("shift_oee", t, SITE, LINE, key="day", data={"oee": 0.5})])
        assert [e.data for e in store.events("shift_oee", t, t + 1)] == [{"oee": 0.5}]
        st = pipeline.stats()
        assert st["events_pending"] == 0 and st["write_errors"] == 0
        assert st["refused"]["event"] == {"timestamp_too_old": 2}
        assert sorted(d["record"]["kind"] for d in dead_letters(tmp_path) if d["kind"] == "event") == [
            "shift_oee", "state"]
    finally:
        pipeline.stop()


def test_an_alarm_event_the_store_refuses_does_not_block_the_others(tmp_path):
    """The alarm service writes its own events (tick: comm lost; operator actions) through
    the pipeline's write_events, as `collect` wires it: an event the store refuses for good
    (here an operator's CHECK on the events table) is dead-lettered and the others are stored,
    instead of the whole retry list failing on every tick."""
    import duckdb

    from alerts.service import AlarmService
    from gwanje.config import load_config
    from runtime.pipeline import Pipeline
    from storage.deadletter import DeadLetter
    from storage.embedded import EmbeddedStore

    path = tmp_path / "plant.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE events (
        kind VARCHAR NOT NULL, site VARCHAR NOT NULL, line VARCHAR NOT NULL, machine VARCHAR NOT NULL,
        key VARCHAR NOT NULL, ts BIGINT NOT NULL, data VARCHAR NOT NULL,
        CHECK (key NOT LIKE '%cnc-101%'),
        PRIMARY KEY (kind, site, line, machine, key, ts))""")
    con.close()
    store = EmbeddedStore(path)
    config = load_config("config", env={})
    t = time.time_ns()
    svc = AlarmService.from_config(config, store, clock=lambda: t)
    pipeline = Pipeline(store, deadletter=DeadLetter(tmp_path / "deadletter"))
    svc.write_events = pipeline.write_events  # what Runtime.start_collect does
    try:
        svc.on_samples([Sample("changwon-1", "cnc-1", m, "spindle_speed", 1.0, t) for m in ("cnc-101", "cnc-102")])
        svc.tick(t + 31 * 10**9)  # both fall silent: comm-lost for each
        stored = {e.key for e in store.events("alarm", t, t + 60 * 10**9)}
        assert any("cnc-102" in k for k in stored) and not any("cnc-101" in k for k in stored)
        assert [d["reason"] for d in dead_letters(tmp_path)] == ["constraint"]
        svc.tick(t + 32 * 10**9)  # nothing left to retry: the refused event is not tried again
        assert [d["reason"] for d in dead_letters(tmp_path)] == ["constraint"]
    finally:
        store.close()
