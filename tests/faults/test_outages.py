"""Fault injection against real servers the tests start and stop: mosquitto killed mid-stream,
InfluxDB stopped under load, the OPC UA server restarted, the spool filled while InfluxDB is
down. What is checked is what an operator would query afterwards: the store."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from collectors.mqtt import MqttCollector
from gwanje.config import Secrets, load_config
from gwanje.model import Sample
from runtime.pipeline import SPOOL_ALARM_KEY, Pipeline
from storage.influx import InfluxStore
from storage.spool import Spool
from tests.faults.harness import (LINE, MACHINE, SITE, US, Publisher, RecordingInflux, check_values, stored)
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services

CONFIG = load_config("config", env={})
NO_SECRETS = Secrets.from_env({})
HOUR_NS = 3600 * 10**9


def ingest(store, tmp_path, mosquitto, client_id: str, **spool_kw):
    """MQTT collector -> pipeline (with spool) -> store, started and connected."""
    spool = Spool(tmp_path / "spool", spool_kw.pop("max_bytes", 100_000_000), fsync=False, **spool_kw)
    pipeline = Pipeline(store, batch_size=1000, flush_interval_s=0.05, retry_interval_s=0.5, spool=spool)
    collector = MqttCollector(CONFIG, pipeline, NO_SECRETS, url=mosquitto.url, client_id=client_id)
    pipeline.start()
    collector.start()
    assert wait_for(lambda: collector.status().connected), collector.status()
    return pipeline, collector


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_restarted_mid_stream_every_sample_stored_exactly_once(mosquitto, influxd, tmp_path, how):
    db_name = f"fault_broker_{how}"
    store = RecordingInflux(influxd.url, db_name).start()
    reader = InfluxStore(influxd.url, db_name).start()
    pipeline, collector = ingest(store, tmp_path, mosquitto, f"fault-broker-{how}")
    pub = Publisher(mosquitto.port, f"device-broker-{how}")
    t0 = time.time_ns() - HOUR_NS
    n = 6000
    try:
        # mosquitto persists by periodic snapshot (autosave_interval 1 s here) and on a clean
        # shutdown: a crash loses sessions younger than the last save (docs/deploy.md). Wait
        # for a save that includes the collector's subscription, as a running plant has.
        subscribed = time.time() + 0.2
        db = mosquitto.dir / "mosquitto.db"
        assert wait_for(lambda: db.exists() and db.stat().st_mtime > subscribed, timeout=5)
        pub.publish(t0, 0, 3000)
        if how == "stop":
            # SIGTERM while the broker still holds messages for the collector (the collector
            # acks only after storing, so the broker's queue is not empty): it saves them
            assert wait_for(lambda: stored(reader, t0, n) > 0)
            mosquitto.stop()
        else:
            # SIGKILL loses what the broker accepted and had not delivered since its last
            # snapshot (a mosquitto limit, docs/deploy.md); kill once it has delivered the
            # first part — the stream itself goes on across the outage
            assert wait_for(lambda: stored(reader, t0, n) == 3000, timeout=20)
            mosquitto.kill()
        pub.publish(t0, 3000, 1000)  # published while the broker is down: the device keeps them
        mosquitto.start()
        pub.publish(t0, 4000, 2000)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=30), stored(reader, t0, n)
        assert wait_for(lambda: collector.status().reconnects >= 1)
        check_values(reader, t0, n)  # exactly once: 6,000 distinct points with their own values
        st = pipeline.stats()
        assert st["samples_dropped"] == 0
        # at-least-once on the wire, once in the store: redeliveries overwrote themselves
        assert st["samples_written"] >= n
    finally:
        pub.close()
        collector.stop()
        pipeline.stop()


def test_influxdb_stopped_under_load_nothing_lost_spool_drains_in_order(mosquitto, influxd, tmp_path):
    store = RecordingInflux(influxd.url, "fault_store", timeout_s=2).start()
    reader = InfluxStore(influxd.url, "fault_store").start()
    pipeline, collector = ingest(store, tmp_path, mosquitto, "fault-store")
    pub = Publisher(mosquitto.port, "device-store")
    t0 = time.time_ns() - HOUR_NS
    n = 100 * 10 * 14
    done = pub.stream(t0, msgs_per_s=100, per_msg=10, seconds=14)  # 1,000 samples/s for 14 s
    try:
        time.sleep(2)  # load before the outage (not an assertion)
        influxd.stop()
        first_down = pub.published
        time.sleep(8.5)  # the outage (not an assertion)
        last_down = pub.published  # published ≥1.5 s before the store returns: surely spooled
        time.sleep(1.5)
        assert pipeline.stats()["spool_samples"] > 0
        influxd.start()
        assert done.wait(20)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=30), stored(reader, t0, n)
        assert wait_for(lambda: pipeline.stats()["spool_samples"] == 0)
        check_values(reader, t0, n)
        st = pipeline.stats()
        assert st["samples_dropped"] == 0 and st["samples_replayed"] >= 9 * 1000
        # the outage was replayed oldest first
        outage = [ts for ts in store.written_ts if t0 + first_down * US <= ts < t0 + last_down * US]
        assert outage == sorted(outage)
        assert len(set(outage)) == last_down - first_down
    finally:
        if influxd.proc is None or influxd.proc.poll() is not None:
            influxd.start()
        pub.close()
        collector.stop()
        pipeline.stop()


def test_spool_full_while_influxdb_is_down_applies_policy_and_raises_the_alarm(influxd, tmp_path, caplog):
    store = InfluxStore(influxd.url, "fault_full", timeout_s=2).start()
    reader = InfluxStore(influxd.url, "fault_full").start()
    spool = Spool(tmp_path / "spool", max_bytes=20_000, policy="drop_oldest", segment_bytes=2_000, fsync=False)
    pipeline = Pipeline(store, batch_size=200, flush_interval_s=0.02, retry_interval_s=0.3, spool=spool)
    t0 = time.time_ns() - HOUR_NS
    n = 20_000
    caplog.set_level(logging.ERROR, logger="gwanje.pipeline")
    influxd.stop()
    try:
        pipeline.start()
        for k in range(0, n, 200):
            pipeline.submit([Sample(SITE, LINE, MACHINE, "part_count_total", float(i), t0 + i * US)
                             for i in range(k, k + 200)])
            time.sleep(0.005)
        assert wait_for(lambda: pipeline.stats()["spool_alarm"])
        assert any(SPOOL_ALARM_KEY in r.getMessage() for r in caplog.records)
        assert wait_for(lambda: pipeline.queue_depth == 0)
        st = pipeline.stats()
        assert st["spool_bytes"] <= 20_000 and st["spool_dropped_samples"] > 0
        influxd.start()
        assert wait_for(lambda: pipeline.stats()["spool_samples"] == 0 and pipeline.stats()["events_pending"] == 0,
                        timeout=20)
        kept = stored(reader, t0, n)
        dropped = pipeline.stats()["spool_dropped_samples"]
        assert kept + dropped == n  # every sample either stored or counted as dropped
        # drop_oldest: what survived is the newest, without holes
        df = reader.series(SITE, LINE, MACHINE, "part_count_total", t0, t0 + n * US, max_points=n)
        assert df["value"].to_list() == [float(i) for i in range(n - kept, n)]
        alarms = reader.events("alarm", 0, 2**62, key=SPOOL_ALARM_KEY)
        assert [a.data["event"] for a in alarms][:1] == ["raised"]
        assert alarms[0].data["extra"]["policy"] == "drop_oldest" and alarms[0].data["extra"]["dropped_samples"] > 0
    finally:
        if influxd.proc is None or influxd.proc.poll() is not None:
            influxd.start()
        pipeline.stop()


def test_opcua_server_restart_resubscribes_within_10s_and_invents_nothing(opcua_server, tmp_path):
    from collectors.opcua import OpcuaCollector
    from storage.embedded import EmbeddedStore

    config, server = opcua_server.config, opcua_server
    endpoint = server.endpoint.model_copy(update=dict(publishing_ms=50, sampling_ms=0, reconnect_min_s=0.2,
                                                      reconnect_max_s=1.0))
    store = EmbeddedStore(tmp_path / "opcua.duckdb")
    pipeline = Pipeline(store, flush_interval_s=0.05, spool=Spool(tmp_path / "spool", 10**7, fsync=False))
    collector = OpcuaCollector(config, endpoint, pipeline, NO_SECRETS)
    node = "ns=2;s=changwon-1.forge-1.forge-101.forging_force"
    utc = timezone.utc
    before = datetime.now(utc) - timedelta(seconds=30)
    pipeline.start()
    collector.start()
    try:
        assert wait_for(lambda: collector.status().connected, timeout=15), collector.status()
        server.write(node, 700.0, source_ts=before)
        ts_before = (before - datetime(1970, 1, 1, tzinfo=utc)) // timedelta(microseconds=1) * 1000

        def force(start_ns, end_ns):
            df = store.series("changwon-1", "forge-1", "forge-101", "forging_force", start_ns, end_ns)
            return list(zip(df["ts"].to_list(), df["value"].to_list()))

        assert wait_for(lambda: force(ts_before, ts_before + 1) == [(ts_before, 700.0)])
        server.stop()
        gap_start = time.time_ns()
        assert wait_for(lambda: not collector.status().connected)
        time.sleep(1.0)  # the outage itself (not an assertion)
        server.start()
        gap_end = time.time_ns()
        assert wait_for(lambda: collector.status().connected, timeout=10.0), "no resubscription within 10 s"
        server.write(node, 701.0)
        assert wait_for(lambda: [v for _, v in force(gap_end, time.time_ns() + 10**9)] == [701.0], timeout=10)
        assert collector.status().reconnects == 1
        # nothing was stored with a source time inside the outage: the gap stays a gap
        assert store.count_samples(gap_start, gap_end, site="changwon-1") == 0
        assert pipeline.stats()["samples_dropped"] == 0
    finally:
        collector.stop()
        pipeline.stop()
        store.close()


def test_a_store_unreachable_at_start_is_opened_later_and_the_spool_fills_it(influxd, tmp_path):
    from storage.base import StoreUnavailable
    from storage.spool import DeferredStore

    def opener():
        return InfluxStore(influxd.url, "fault_deferred", timeout_s=2).start()

    influxd.stop()
    pipeline = None
    try:
        with pytest.raises(StoreUnavailable):
            opener()
        store = DeferredStore(opener, name="influxdb")
        assert store.ping() is False
        pipeline = Pipeline(store, batch_size=500, flush_interval_s=0.02, retry_interval_s=0.2,
                            spool=Spool(tmp_path / "spool", 10**7, fsync=False))
        pipeline.start()
        t0 = time.time_ns() - HOUR_NS
        for k in range(0, 2000, 100):
            pipeline.submit([Sample(SITE, LINE, MACHINE, "part_count_total", float(i), t0 + i * US)
                             for i in range(k, k + 100)])
        assert wait_for(lambda: pipeline.stats()["spool_samples"] == 2000)
        influxd.start()
        assert wait_for(lambda: pipeline.stats()["spool_samples"] == 0, timeout=10)
        assert store.ping()
        check_values(store, t0, 2000)  # once open, reads go to the real store too
    finally:
        if influxd.proc is None or influxd.proc.poll() is not None:
            influxd.start()
        if pipeline is not None:
            pipeline.stop()
