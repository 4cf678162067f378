"""`python app.py discover` as a user runs it: against a third-party OPC UA server (node-opcua)
and a real mosquitto with a JSON publisher -> a new config dir that passes check-config ->
`python app.py collect --config NEWDIR` (a subprocess, InfluxDB) stores the discovered
devices' samples. No YAML written by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import requests
import yaml

from gwanje.config import load_config
from storage.influx import InfluxStore
from tests.fixtures.common import free_port, stop_process, wait_for
from tests.fixtures.prom import by_label

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"


def app(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


class Collect:
    """`python app.py collect --config DIR` into InfluxDB, with /metrics on a free port."""

    def __init__(self, config_dir: Path, data_dir: Path, influx_url: str, db: str, mqtt_url: str) -> None:
        self.health_port = free_port()
        self.log = data_dir.parent / f"collect-{db}.log"
        env = {**os.environ, "GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": influx_url,
               "GWANJE_INFLUX_DB": db, "GWANJE_MQTT_URL": mqtt_url, "GWANJE_LOG_LEVEL": "INFO"}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py"), "collect", "--config", str(config_dir),
                 "--data-dir", str(data_dir), "--health-port", str(self.health_port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def connected(self, source: str) -> bool:
        try:
            text = requests.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        except requests.RequestException:
            return False
        return by_label(text, "gwanje_source_connected", "source").get(source) == 1

    def stop(self) -> None:
        stop_process(self.proc)


def is_subsequence(old: list[str], new: list[str]) -> bool:
    """Every line of old is in new, in the same order (only insertions happened)."""
    it = iter(new)
    return all(any(ln == n for n in it) for ln in old)


def machines_of(config_dir: Path, site: str) -> dict[str, list[str]]:
    cfg = load_config(config_dir, env={})
    return {m.machine: [s.id for s in m.signals] for m in cfg.machines() if m.site == site}


def test_discover_opcua_writes_a_config_that_collects_the_devices(node_opcua, influxd, mosquitto, tmp_path):
    new = tmp_path / "plant-with-gateway"
    r = app("discover", node_opcua.url, "--config", str(CONFIG), "--out", str(new))
    assert r.returncode == 0, r.stderr
    # what it found, printed for the user
    assert "press-gateway/press-line-2/press_201 [Press_201]" in r.stdout
    assert "press-gateway/oven-7/oven-7 [Oven 7]" in r.stdout
    assert "Profile: an array" in r.stdout and "Snapshot: type ByteString" in r.stdout

    ok = app("check-config", "--config", str(new))
    assert ok.returncode == 0, ok.stderr
    found = machines_of(new, "press-gateway")
    assert set(found) == {"press_201", "press_202", "oven-7"}
    assert found["press_201"] == ["motor-speed", "tonnage", "partcount", "state", "running", "lot", "lastcycle"]

    plant = (new / "plant.yaml").read_text()
    # the user's config is all there, comments included; the new parts say what is a guess
    original = (CONFIG / "plant.yaml").read_text()
    assert is_subsequence(original.splitlines(), plant.splitlines())
    assert "STATE CODES UNKNOWN" in plant and "PLACEHOLDER (discover)" in plant
    doc = yaml.safe_load(plant)
    site = next(s for s in doc["sites"] if s["id"] == "press-gateway")
    press = site["lines"][0]["machines"][0]
    assert press["nodes"]["motor-speed"] == "nsu=urn:peer:press-gateway;s=Press_201.Motor.Speed"
    assert press["counter_bits"] == 64
    cls = doc["machine_classes"][press["class"]]
    assert cls["state_codes"] == {} and cls["state_signal"] == "state"
    units = {s["id"]: s.get("unit") for s in cls["signals"]}
    assert units["tonnage"] == "t" and units["motor-speed"] == "r/min"  # EngineeringUnits
    system = (new / "system.yaml").read_text()
    assert is_subsequence((CONFIG / "system.yaml").read_text().splitlines(), system.splitlines())
    assert f"url: {node_opcua.url}" in system

    # the demo plant's MQTT machines need a broker; its OPC UA simulators are not running
    collect = Collect(new, tmp_path / "data", influxd.url, "discover_opcua", mosquitto.url)
    try:
        assert wait_for(lambda: collect.connected("opcua:press-gateway"), timeout=30), collect.log.read_text()[-3000:]
        reader = InfluxStore(influxd.url, "discover_opcua").start()

        def stored():
            return {(s.machine, s.signal): s.value for s in reader.latest(site="press-gateway")}

        want = {(m, s) for m, sigs in found.items() for s in sigs}
        got = wait_for(lambda: want <= set(stored()), timeout=5)
        got = stored()
        assert want <= set(got), sorted(want - set(got))
        assert got[("press_201", "partcount")] >= 2.0**63  # UInt64 above 2**63
        assert got[("press_201", "lastcycle")].endswith("Z")  # DateTime as ISO 8601 text
        assert got[("press_201", "lot")].startswith("LOT-201-")
        assert got[("oven-7", "batchid")] == "72962b91-fa75-4ae6-8d28-b404dc7daf63"  # Guid
        assert got[("oven-7", "shift")] == "1:Night"  # QualifiedName
        assert got[("oven-7", "recipe")].startswith("Bake ")  # LocalizedText
    finally:
        collect.stop()
    # the state codes are unmapped: the control room shows the machine's state unknown
    from gwanje.model import MachineState

    spec = load_config(new, env={}).machine("press-gateway", "press-line-2", "press_201")
    assert spec.klass.state_codes.mapping().state(1.0, False) is MachineState.UNKNOWN


class JsonPublisher:
    """A device of another vendor: JSON on the configured topic template, every 100 ms."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="vendor-gateway")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.1):
            k += 1
            ts = time.time_ns() // 1_000_000
            self.client.publish("gwanje/Weld Shop/Cell_3/Robot.7", json.dumps(
                {"ts": ts, "values": {"Arc Current": 180.5 + k % 3, "PartCount": k, "Mode": 2, "Job": f"J-{k}"}}))
            self.client.publish("gwanje/Weld Shop/Cell_3/Robot.8", json.dumps(
                [{"signal": "Wire.Speed", "value": 7.5, "ts": ts}, {"signal": "Mode", "value": 1, "ts": ts}]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.loop_stop()
        self.client.disconnect()


def test_discover_mqtt_json_writes_a_config_that_collects_the_devices(mosquitto, influxd, tmp_path):
    pub = JsonPublisher(mosquitto.port)
    new = tmp_path / "plant-with-weld-shop"
    try:
        r = app("discover", mosquitto.url, "--config", str(CONFIG), "--out", str(new), "--seconds", "1.5")
        assert r.returncode == 0, r.stderr
        assert "weld-shop/cell_3/robot-7 [Robot.7]" in r.stdout
        ok = app("check-config", "--config", str(new))
        assert ok.returncode == 0, ok.stderr
        found = machines_of(new, "weld-shop")
        assert found == {"robot-7": ["arc-current", "partcount", "mode", "job"], "robot-8": ["wire-speed", "mode"]}
        cfg = load_config(new, env={})
        assert cfg.system.mqtt.url == mosquitto.url
        robot = cfg.machine("weld-shop", "cell_3", "robot-7")
        assert {s.id: s.kind for s in robot.signals} == {"arc-current": "analog", "partcount": "counter",
                                                         "mode": "state", "job": "text"}
        assert "values seen while discovering: 2" in (new / "plant.yaml").read_text()

        collect = Collect(new, tmp_path / "data", influxd.url, "discover_mqtt", mosquitto.url)
        try:
            assert wait_for(lambda: collect.connected(f"mqtt 127.0.0.1:{mosquitto.port}"), timeout=30), collect.log.read_text()[-3000:]
            reader = InfluxStore(influxd.url, "discover_mqtt").start()
            want = {(m, s) for m, sigs in found.items() for s in sigs}
            got = wait_for(lambda: want <= {(s.machine, s.signal) for s in reader.latest(site="weld-shop")},
                           timeout=5)
            assert got, ({(s.machine, s.signal) for s in reader.latest(site="weld-shop")},
                         collect.log.read_text()[-2000:])
        finally:
            collect.stop()
    finally:
        pub.stop()


def test_discover_sparkplug_births_become_machines(mosquitto, tmp_path):
    from collectors.sparkplug import Metric, encode_payload

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="edge-node")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    stop = threading.Event()

    def births() -> None:  # an edge node (re)connecting while discover listens
        while not stop.wait(0.2):
            client.publish("spBv1.0/Plant B/NBIRTH/Edge 1", encode_payload(
                [Metric(name="bdSeq", datatype=8, value=0)], timestamp=time.time_ns() // 10**6, seq=0))
            client.publish("spBv1.0/Plant B/DBIRTH/Edge 1/Filler.2", encode_payload(
                [Metric(name="Motor/Speed", alias=1, datatype=10, value=12.5),
                 Metric(name="Bottles Total", alias=2, datatype=7, value=10),
                 Metric(name="Status", alias=3, datatype=3, value=1),
                 Metric(name="Device Control/Rebirth", alias=4, datatype=11, value=False)],
                timestamp=time.time_ns() // 10**6, seq=1))

    t = threading.Thread(target=births, daemon=True)
    t.start()
    try:
        new = tmp_path / "plant-b"
        r = app("discover", mosquitto.url, "--config", str(CONFIG), "--out", str(new), "--seconds", "1")
        assert r.returncode == 0, r.stderr
        assert app("check-config", "--config", str(new)).returncode == 0
        spec = load_config(new, env={}).machine("plant-b", "edge-1", "filler-2")
        assert spec is not None, r.stdout
        assert {s.id: s.kind for s in spec.signals} == {"motor-speed": "analog", "bottles-total": "counter",
                                                        "status": "state"}
        assert spec.definition.source == "mqtt"
    finally:
        stop.set()
        t.join(2)
        client.loop_stop()
        client.disconnect()


def test_discover_refuses_an_existing_out_dir_and_a_bad_source(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.yaml").write_text("a: 1\n")
    r = app("discover", "opc.tcp://127.0.0.1:1/x", "--config", str(CONFIG), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not empty" in r.stderr
    r = app("discover", "http://example.invalid", "--config", str(CONFIG), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "SOURCE is opc.tcp://" in r.stderr
    assert not (tmp_path / "y").exists()


def test_discover_a_running_tahu_edge_node_then_collect_its_data(mosquitto, influxd, tmp_path):
    """The issue's path with a third-party Sparkplug B edge node (Eclipse Tahu's
    sparkplug-client), mixed-case names, already online before discover starts: discover asks
    its edge node to rebirth, writes a config that passes check-config, and `collect --config
    NEWDIR` stores its data within 5 s. Nothing written by hand."""
    from tests.collectors import sparkplug_plant as sp
    from tests.fixtures.sparkplug_peer import EdgeNodePeer

    peer = EdgeNodePeer(mosquitto.port, sp.GROUP, sp.EDGE_NODE, sp.DEVICE, sp.METRICS, period_ms=200)
    collect = None
    try:
        assert peer.wait_event(lambda e: e.get("event") == "ddata", timeout=15), peer.seen
        new = tmp_path / "with-tahu"
        r = app("discover", mosquitto.url, "--config", str(CONFIG), "--out", str(new), "--seconds", "3")
        assert r.returncode == 0, r.stderr + r.stdout
        assert f"{sp.SITE}/{sp.LINE}/{sp.MACHINE}" in r.stdout, r.stdout
        assert app("check-config", "--config", str(new)).returncode == 0
        spec = load_config(new, env={}).machine(sp.SITE, sp.LINE, sp.MACHINE)
        assert {s.id for s in spec.signals} == set(sp.SIGNALS.values())
        # no state codes can be known: the machine shows state unknown until someone maps them
        assert spec.klass.state_codes.mapping().get(1.0) is None

        collect = Collect(new, tmp_path / "data", influxd.url, "discover_tahu", mosquitto.url)
        reader = InfluxStore(influxd.url, "discover_tahu").start()
        assert wait_for(lambda: collect.connected("mqtt " + mosquitto.url.split("//")[1]) or
                        "connected" in collect.log.read_text(), timeout=30), collect.log.read_text()[-3000:]
        t0 = time.time_ns()

        def fresh() -> set[str]:
            return {s.signal for s in reader.latest(sp.SITE, sp.LINE, sp.MACHINE, since_ns=t0)}

        assert wait_for(lambda: fresh() >= set(sp.SIGNALS.values()), timeout=5), (fresh(), collect.log.read_text()[-3000:])
    finally:
        if collect is not None:
            collect.stop()
        peer.stop()
