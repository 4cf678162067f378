"""Sparkplug B against a peer from another project: Eclipse Tahu's JavaScript edge node
(npm sparkplug-client, tests/peers/sparkplug/edge_node.js) with mixed-case names, a real
mosquitto, our MQTT collector, the pipeline and a real (embedded DuckDB) store — the path a
user's third-party edge node takes. plant.yaml holds the device under its slugged ids only
(tests/collectors/sparkplug_plant.py); no mapping table."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttCollector
from dashboards.data import build_snapshot
from gwanje.config import Secrets
from runtime.metrics import render
from gwanje.model import MachineState, Quality
from runtime.pipeline import Pipeline
from storage.embedded import EmbeddedStore
from tests.collectors import sparkplug_plant as sp
from tests.fixtures.common import wait_for
from tests.fixtures.prom import metric_value
from tests.fixtures.sparkplug_peer import EdgeNodePeer, find_peer

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


class Host:
    """Our side: collector -> pipeline -> embedded store, restartable with the same client id
    (a persistent session, as deployed)."""

    def __init__(self, config, mosquitto, client_id: str) -> None:
        self.config, self.mosquitto, self.client_id = config, mosquitto, client_id
        self.store = EmbeddedStore()
        self.pipeline = Pipeline(self.store, flush_interval_s=0.02)
        self.pipeline.start()
        self.collector = self._collector()

    def _collector(self) -> MqttCollector:
        c = MqttCollector(self.config, self.pipeline, Secrets.from_env({}), url=self.mosquitto.url,
                          client_id=self.client_id)
        c.start()
        assert wait_for(lambda: c.subscribed), c.status().detail
        return c

    def restart(self) -> None:
        self.collector.stop()
        self.collector = self._collector()

    def latest(self) -> dict[str, object]:
        return {s.signal: s for s in self.store.latest(sp.SITE, sp.LINE, sp.MACHINE)}

    def stop(self) -> None:
        self.collector.stop()
        self.pipeline.stop()


@pytest.fixture
def host(tmp_path, mosquitto):
    find_peer()  # before anything starts: fail or skip with the reason
    h = Host(sp.write_config(tmp_path / "config"), mosquitto, f"gwanje-spb-{tmp_path.name}")
    yield h
    h.stop()


@pytest.fixture
def peer(mosquitto):
    p = EdgeNodePeer(mosquitto.port, sp.GROUP, sp.EDGE_NODE, sp.DEVICE, sp.METRICS, period_ms=100)
    yield p
    p.stop()


def _fresh(host: Host, after_ns: int, quality: Quality = Quality.GOOD):
    """The device's newest samples once every signal has one newer than after_ns."""
    def check():
        latest = host.latest()
        ok = set(latest) == set(sp.SIGNALS.values()) and all(
            s.ts > after_ns and s.quality is quality for s in latest.values())
        return latest if ok else None
    return check


def test_third_party_edge_node_data_reaches_the_store(host, peer):
    start = time.time_ns()
    assert peer.wait_event(lambda e: e["event"] == "birth"), peer.stderr()
    latest = wait_for(_fresh(host, start), timeout=5)
    assert latest, (host.latest(), host.collector.status())
    assert latest["state"].value == 1.0
    assert latest["motor-speed"].value >= 1000.5
    assert isinstance(latest["cyclecount"].value, float)  # UInt32: the library sends it in long_value
    assert latest["lot"].value.startswith("L-")
    status = host.collector.status()
    assert status.rejects == {} and status.rebirths_requested == 0
    # the control room shows it running
    view = build_snapshot(host.config, host.store.latest(), time.time_ns()).machine(sp.SITE, sp.LINE, sp.MACHINE)
    assert view.state is MachineState.RUNNING and not view.stale


def test_a_restarted_collector_asks_for_a_rebirth_and_the_data_resumes(host, peer):
    assert peer.wait_event(lambda e: e["event"] == "birth")
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)
    host.collector.stop()
    # the edge node keeps publishing DDATA (aliases only) while we are away; the broker keeps
    # it for our persistent session, and it reaches a collector that has seen no birth
    assert peer.wait_event(lambda e: e["event"] == "ddata", timeout=5)
    restarted = time.time_ns()
    host.collector = host._collector()
    assert peer.wait_event(lambda e: e["event"] == "rebirth", timeout=5), peer.seen
    assert wait_for(_fresh(host, restarted), timeout=5), (host.latest(), host.collector.status())
    status = host.collector.status()
    assert status.rebirths_requested == 1
    aliases_before = status.rejects.get("unknown_alias", 0)
    # every DDATA after the rebirth is understood
    for _ in range(3):
        assert peer.wait_event(lambda e: e["event"] == "ddata", timeout=5)
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)
    status = host.collector.status()
    assert status.rejects.get("unknown_alias", 0) == aliases_before
    assert status.rebirths_requested == 1


def test_ndeath_makes_the_device_unknown_within_a_second(host, peer):
    assert peer.wait_event(lambda e: e["event"] == "birth")
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)
    killed = time.time_ns()
    peer.kill()  # no goodbye: the broker publishes the library's will, NDEATH with its bdSeq
    dead = wait_for(_fresh(host, killed, Quality.BAD), timeout=1.0)
    assert dead, host.latest()
    view = build_snapshot(host.config, host.store.latest(), time.time_ns()).machine(sp.SITE, sp.LINE, sp.MACHINE)
    assert view.state is MachineState.UNKNOWN
    assert host.collector.decoder.sparkplug.stats.deaths == 1


def test_ddeath_makes_that_device_unknown(host, peer):
    assert peer.wait_event(lambda e: e["event"] == "birth")
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)
    sent = time.time_ns()
    peer.send("ddeath")
    assert wait_for(_fresh(host, sent, Quality.BAD), timeout=1.0), host.latest()
    assert host.collector.status().rebirths_requested == 0


def test_a_seq_gap_asks_for_a_rebirth_counted_in_metrics(host, peer):
    assert peer.wait_event(lambda e: e["event"] == "birth")
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)
    peer.send("skip 3")
    assert peer.wait_event(lambda e: e["event"] == "rebirth", timeout=5), peer.seen
    assert wait_for(lambda: host.collector.status().rebirths_requested == 1)
    assert host.collector.decoder.sparkplug.stats.seq_gaps == 1
    text = render({"started_ns": 1, "sources": [dataclasses.asdict(host.collector.status())]})
    assert metric_value(text, "gwanje_source_sparkplug_rebirths_requested_total", source=host.collector.name,
                        kind="mqtt") == 1
    assert wait_for(_fresh(host, time.time_ns()), timeout=5)


# ----------------------------------------------------------------------------------- STATE
def _retained(port: int, topic: str, want=lambda d: True, timeout: float = 5.0):
    """The retained message on topic as JSON, once want() holds for it (a new subscriber each try)."""
    def once():
        got = []
        c = paho.Client(CallbackAPIVersion.VERSION2)
        c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
        c.connect("127.0.0.1", port)
        c.subscribe(topic, qos=1)
        c.loop_start()
        wait_for(lambda: got, timeout=0.5)
        c.loop_stop()
        c.disconnect()
        return got[0] if got and want(got[0]) else None
    return wait_for(once, timeout=timeout, interval=0.05)


def test_primary_host_state_online_after_subscribe_offline_by_will(tmp_path, mosquitto):
    cfg_dir = tmp_path / "config"
    sp.write_config(cfg_dir, mqtt={"url": mosquitto.url, "sparkplug": {"host_id": "gwanje-scada"}})
    topic = "spBv1.0/STATE/gwanje-scada"
    script = ("import sys, time; sys.path.insert(0, sys.argv[1])\n"
              "from collectors.mqtt import MqttCollector\n"
              "from gwanje.config import Secrets, load_config\n"
              "c = MqttCollector(load_config(sys.argv[2], env={}), type('S', (), {'submit': lambda s, x: None})(),"
              " Secrets.from_env({}), client_id='state-test')\n"
              "c.start()\n"
              "while not c.subscribed: time.sleep(0.01)\n"
              "print('subscribed', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(cfg_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "subscribed"
        online = _retained(mosquitto.port, topic, lambda d: d["online"] is True)
        assert online and set(online) == {"online", "timestamp"} and online["timestamp"] > 1.7e12
        proc.kill()  # no clean disconnect: the broker publishes our will
        proc.wait()
        offline = _retained(mosquitto.port, topic, lambda d: d["online"] is False)
        # Sparkplug 3.0: the will carries the timestamp of the birth it ends
        assert offline == {"online": False, "timestamp": online["timestamp"]}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_clean_stop_says_offline(tmp_path, mosquitto):
    config = sp.write_config(tmp_path / "config", mqtt={"sparkplug": {"host_id": "gwanje-scada"}})
    c = MqttCollector(config, Pipeline(EmbeddedStore()), Secrets.from_env({}), url=mosquitto.url,
                      client_id="state-stop")
    c.start()
    assert wait_for(lambda: c.subscribed)
    assert _retained(mosquitto.port, "spBv1.0/STATE/gwanje-scada", lambda d: d["online"] is True)
    c.stop()
    assert _retained(mosquitto.port, "spBv1.0/STATE/gwanje-scada", lambda d: d["online"] is False)
