"""/healthz /readyz /metrics over real HTTP: a real pipeline, a real MQTT collector and a real
mosquitto that the test stops to make the process unready."""
import dataclasses
import json

import pytest
import requests
from flask import Flask

from gwanje.config import Secrets, load_config
from runtime.health import HealthServer, add_routes
from runtime.pipeline import Pipeline
from tests.faults.flaky import FlakyStore
from tests.fixtures.common import wait_for
from tests.fixtures.prom import metric_value


def serve_collector(config, mosquitto, client_id: str):
    """A real MQTT collector -> pipeline -> FlakyStore, with its health server started:
    (store, pipeline, collector, status(), server); stop them with stop_all()."""
    from collectors.mqtt import MqttCollector

    store = FlakyStore()
    pipeline = Pipeline(store, flush_interval_s=0.05)
    collector = MqttCollector(config, pipeline, Secrets.from_env({}), url=mosquitto.url, client_id=client_id)

    def status():
        return {"pipeline": pipeline.stats(), "sources": [dataclasses.asdict(collector.status())],
                "store": {"name": store.name, "ok": store.ping()}, "started_ns": 1}

    server = HealthServer(status).start()
    pipeline.start()
    collector.start()
    return store, pipeline, collector, status, server


def stop_all(pipeline, collector, server) -> None:
    collector.stop()
    pipeline.stop()
    server.stop()


@pytest.mark.services
def test_readyz_follows_the_broker_and_the_store(mosquitto):
    store, pipeline, collector, _, server = serve_collector(load_config("config"), mosquitto, "health-test")
    try:
        assert requests.get(server.url + "/healthz", timeout=2).status_code == 200
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=2).status_code == 200)
        body = requests.get(server.url + "/readyz", timeout=2).json()
        assert body["ready"] is True and body["sources"][0]["connected"] is True

        mosquitto.stop()
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=2).status_code == 503)
        body = requests.get(server.url + "/readyz", timeout=2).json()
        assert body["problems"] == [f"mqtt source {collector.name} not connected"]
        assert requests.get(server.url + "/healthz", timeout=2).status_code == 200  # still alive

        store.down = True
        body = requests.get(server.url + "/readyz", timeout=2).json()
        assert "store embedded unreachable" in body["problems"]

        mosquitto.start()
        store.down = False
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=2).status_code == 200, 15)
        m = requests.get(server.url + "/metrics", timeout=2)
        assert m.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert metric_value(m.text, "gwanje_source_reconnects_total", source=collector.name, kind="mqtt") == 1
    finally:
        stop_all(pipeline, collector, server)


def test_a_failing_status_provider_gives_503_not_a_dead_server():
    def broken():
        raise RuntimeError("runtime half started")

    server = HealthServer(broken).start()
    try:
        r = requests.get(server.url + "/readyz", timeout=2)
        assert r.status_code == 503
        assert r.json()["problems"] == ["status unavailable: RuntimeError"]
        assert requests.get(server.url + "/metrics", timeout=2).status_code == 500
        assert requests.get(server.url + "/healthz", timeout=2).status_code == 200
        assert requests.get(server.url + "/nope", timeout=2).status_code == 404
    finally:
        server.stop()


def test_a_status_metrics_cannot_render_gives_500_not_a_dropped_connection():
    """A figure that is no number (a runtime bug) must not leave the scraper without an answer:
    /metrics says 500, the other endpoints go on."""
    server = HealthServer(lambda: {"store": {"name": "embedded", "ok": True}, "sources": [],
                                   "pipeline": {"queue_depth": "lots"}, "started_ns": 1}).start()
    try:
        r = requests.get(server.url + "/metrics", timeout=2)
        assert r.status_code == 500 and r.text.startswith("#")
        assert requests.get(server.url + "/readyz", timeout=2).status_code == 200
        assert requests.get(server.url + "/healthz", timeout=2).status_code == 200
    finally:
        server.stop()


def test_add_routes_mounts_the_same_endpoints_on_flask():
    app = Flask("t")
    state = {"ok": True}
    add_routes(app, lambda: {"store": {"name": "embedded", "ok": state["ok"]}, "sources": [],
                             "pipeline": {"queue_depth": 3}, "started_ns": 1})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200 and json.loads(r.data)["queue_depth"] == 3
    state["ok"] = False
    r = client.get("/readyz")
    assert r.status_code == 503 and json.loads(r.data)["problems"] == ["store embedded unreachable"]
    assert metric_value(client.get("/metrics").get_data(as_text=True), "gwanje_pipeline_queue_depth_samples") == 3


@pytest.mark.services
def test_readyz_is_not_ready_while_writes_fail_even_though_the_store_answers_its_ping(influxd, tmp_path):
    """A retention policy named in system.yaml that the server does not have: /ping answers,
    every write gets 500 and goes to the spool. That is not ready."""
    from gwanje.model import Sample
    from runtime.process import Runtime
    from storage.influx import InfluxStore

    rt = Runtime(load_config("config", env={}), tmp_path / "data")
    rt.store = InfluxStore(influxd.url, "ready_writes", retention_policy="no_such_rp")
    rt.pipeline = Pipeline(rt.store, flush_interval_s=0.02, retry_interval_s=0.1)
    server = HealthServer(rt.status).start()
    rt.pipeline.start()
    try:
        assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
        rt.pipeline.submit([Sample("changwon-1", "cnc-1", "cnc-101", "spindle_speed", 1.0, 1_800_000_000 * 10**9)])
        assert wait_for(lambda: rt.pipeline.stats()["write_errors"] > 0)
        r = requests.get(server.url + "/readyz", timeout=5)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["store"]["ok"] is True  # the ping alone says all is well
        assert any(p.startswith("store influxdb: writes failing") and "no_such_rp" in p for p in body["problems"])

        requests.post(influxd.url + "/query", data={
            "q": 'CREATE RETENTION POLICY "no_such_rp" ON "ready_writes" DURATION 1d REPLICATION 1'})
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=5).status_code == 200)
    finally:
        rt.pipeline.stop()


def test_a_fast_source_clock_shows_in_metrics_and_on_the_status_page(mosquitto):
    """A machine whose clock runs 10 min ahead publishes through a real broker: /metrics over
    HTTP carries its clock offset and the timestamp_in_future rejections, and the /status
    page body built from the same status shows the offset in warning style."""
    import time

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from dashboards import create_app
    from storage.embedded import EmbeddedStore
    from tests.dashboards.helpers import by_class, text

    config = load_config("config", env={})
    _, pipeline, collector, status, server = serve_collector(config, mosquitto, "clock-test")
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="clock-test-pub", protocol=paho.MQTTv311)
    try:
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=2).status_code == 200)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        topic = "gwanje/changwon-1/cnc-2/cnc-203"

        def published() -> bool:  # until the subscription is live: the collector counts the rejection
            ahead_ms = int(time.time() * 1000) + 600_000
            pub.publish(topic, json.dumps({"ts": ahead_ms, "values": {"vibration": 1.0}}), qos=1).wait_for_publish(5)
            return wait_for(lambda: collector.status().rejects.get("timestamp_in_future", 0) > 0, 0.5)

        assert wait_for(published), collector.status()
        m = requests.get(server.url + "/metrics", timeout=2).text
        offset = metric_value(m, "gwanje_source_clock_offset_seconds", source=collector.name, kind="mqtt",
                              origin="changwon-1/cnc-2/cnc-203")
        assert offset is not None and 570 < offset <= 600, offset  # 10 min ahead less the transit
        assert metric_value(m, "gwanje_rejects_total", source=collector.name, reason="timestamp_in_future") >= 1
        page_store = EmbeddedStore()
        try:
            create_app(config, page_store, None)  # pages import only once an app exists
            from dashboards.pages.status import status_body

            cell = by_class(status_body(status(), None, time.time_ns(), "en",
                                        config.system.clock.future_tolerance_s), "gw-clock-offset")[0]
            assert 570 < float(text(cell).split()[0]) <= 600 and "gw-bad" in cell.className, text(cell)
        finally:
            page_store.close()
    finally:
        pub.disconnect()
        pub.loop_stop()
        stop_all(pipeline, collector, server)


@pytest.mark.services
def test_metrics_of_a_live_collector_are_the_numbers_of_its_status(mosquitto):
    """A real MQTT collector and pipeline take samples through a real broker; the /metrics a
    running health server serves, read with prometheus_client's parser, carries exactly the
    figures of the status dict that scrape rendered (recorded as the server asked for it)."""
    import time

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.ops.test_metrics import check_against

    _, pipeline, collector, status, server = serve_collector(load_config("config", env={}), mosquitto, "live-metrics")
    seen = []

    def recording():
        seen.append(status())
        return seen[-1]

    scraped = HealthServer(recording).start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="live-metrics-pub", protocol=paho.MQTTv311)
    try:
        assert wait_for(lambda: requests.get(server.url + "/readyz", timeout=2).status_code == 200)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for v in (1.0, 2.0, 3.0):
            pub.publish("gwanje/changwon-1/cnc-2/cnc-203",
                        json.dumps({"ts": int(time.time() * 1000), "values": {"vibration": v}}),
                        qos=1).wait_for_publish(5)
        assert wait_for(lambda: pipeline.stats()["samples_written"] >= 3), pipeline.stats()
        r = requests.get(scraped.url + "/metrics", timeout=5)
        assert r.status_code == 200 and len(seen) == 1
        check_against(seen[0], r.text)
        assert metric_value(r.text, "gwanje_pipeline_samples_written_total") >= 3  # not a comparison of zeros
        assert metric_value(r.text, "gwanje_source_samples_in_total", source=collector.name, kind="mqtt") >= 3
        assert metric_value(r.text, "gwanje_store_write_latency_seconds_count") >= 1
    finally:
        pub.disconnect()
        pub.loop_stop()
        scraped.stop()
        stop_all(pipeline, collector, server)
