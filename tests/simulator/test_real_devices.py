"""Real devices are never faked: the demo runtime (what `python app.py` starts) beside real
devices on a real mosquitto and a real asyncua server. Only machines marked `simulated` in
plant.yaml get simulator data; a real server on a configured OPC UA address is left to the
collector; simulator.enabled false means no simulator at all."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from gwanje.config import Secrets, load_config
from gwanje.model import NS_PER_S, now_ns
from tests.fixtures.common import free_port, wait_for

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def config_dir(tmp: Path, mqtt_url: str | None, plant_fn=None, system_fn=None) -> Path:
    """The shipped config on free ports (broker, OPC UA endpoints), edited by the test."""
    d = tmp / "config"
    shutil.copytree(ROOT / "config", d)

    def system(s: dict) -> None:
        s["mqtt"]["url"] = mqtt_url
        s["mqtt"]["client_id"] = f"gwanje-realdev-{free_port()}"
        for ep in s["opcua"]["endpoints"]:
            ep["url"] = f"opc.tcp://127.0.0.1:{free_port()}/gwanje/{ep['name']}"
        s["simulator"]["period_s"] = 0.2
        if system_fn:
            system_fn(s)

    edit(d / "system.yaml", system)
    if plant_fn:
        edit(d / "plant.yaml", plant_fn)
        # the shipped alarm rules name machines a trimmed plant no longer has
        (d / "alarms.yaml").unlink()
        (d / "notify.yaml").unlink()
    return d


def keep(plant: dict, wanted: dict[str, list[str]]) -> None:
    """Keep only the lines named per site ({site: [line, ...]}) and the sites that have one."""
    for site in plant["sites"]:
        site["lines"] = [ln for ln in site["lines"] if ln["id"] in wanted.get(site["id"], [])]
    plant["sites"] = [s for s in plant["sites"] if s["lines"]]


def demo_runtime(cfg_dir: Path, data: Path):
    """What `python app.py` (demo) starts, in this order."""
    from runtime.process import Runtime

    rt = Runtime(load_config(cfg_dir, env={}), data, Secrets.from_env({}))
    rt.start_broker_if_needed()
    rt.start_simulator()
    rt.start_collect()
    return rt


class Subscriber:
    """Every message on the broker, in a list; ready once the broker acknowledged the subscription."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.ready = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{port}")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("#", qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: setattr(self, "ready", True)
        # every message but the control bus's (collect's retained status and alarm snapshots,
        # runtime/control.py): no telemetry, and not the subject of these tests
        c.on_message = lambda cl, u, m: None if m.topic.startswith("gwanje-sys/") else self.messages.append(
            (m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert wait_for(lambda: self.ready), "no SUBACK from the broker"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RealDevice:
    """A real MQTT device: its own paho client, JSON on its configured topic."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"real-device-{port}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, ts_ms: int, values: dict) -> bytes:
        payload = json.dumps({"ts": ts_ms, "values": values}).encode()
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)
        return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored(store, site, line, machine, signal, t0) -> list[tuple[int, float]]:
    df = store.series(site, line, machine, signal, t0, now_ns() + 60 * NS_PER_S, max_points=10_000)
    return list(zip(df["ts"].to_list(), df["value"].to_list()))


def test_a_real_mqtt_device_beside_a_simulated_one_keeps_its_own_values(tmp_path, mosquitto):
    """cnc-101 is marked simulated, cnc-102 on the same line and broker is not: the simulator
    publishes cnc-101 only, and cnc-102's stored values are exactly what the real device sent."""
    def plant(p: dict) -> None:
        keep(p, {"changwon-1": ["cnc-1"]})
        site = p["sites"][0]
        site.pop("simulated", None)
        ln = site["lines"][0]
        ln["machines"] = ln["machines"][:2]
        ln["machines"][0]["simulated"] = True  # cnc-101; cnc-102 is a real device

    cfg_dir = config_dir(tmp_path, mosquitto.url, plant)
    sim_topic, real_topic = "gwanje/changwon-1/cnc-1/cnc-101", "gwanje/changwon-1/cnc-1/cnc-102"
    sub = Subscriber(mosquitto.port)
    device = RealDevice(mosquitto.port)
    t0 = now_ns()
    rt = demo_runtime(cfg_dir, tmp_path / "data")
    try:
        # the collector is subscribed once the simulated machine's data arrives
        assert wait_for(lambda: stored(rt.store, "changwon-1", "cnc-1", "cnc-101", "spindle_speed", t0), 20)
        base_ms = now_ns() // 1_000_000
        sent = {}
        payloads = set()
        for i in range(5):
            ts_ms = base_ms + 200 * i
            sent[ts_ms * 1_000_000] = 4000.0 + i
            payloads.add(device.publish(real_topic, ts_ms, {"state": 3, "spindle_speed": 4000.0 + i,
                                                            "part_count_total": 100 + i}))
        last_real = max(sent)
        assert wait_for(lambda: len(stored(rt.store, "changwon-1", "cnc-1", "cnc-102", "spindle_speed", t0)) >= 5,
                        20, interval=0.1)
        # the simulator kept stepping past the real device's messages: whatever it sent for
        # cnc-102 in an earlier step (one connection, in order) is stored by now
        assert wait_for(lambda: any(ts > last_real + NS_PER_S for ts, _ in
                                    stored(rt.store, "changwon-1", "cnc-1", "cnc-101", "spindle_speed", t0)),
                        20, interval=0.1)
        assert dict(stored(rt.store, "changwon-1", "cnc-1", "cnc-102", "spindle_speed", t0)) == sent
        assert [v for _, v in stored(rt.store, "changwon-1", "cnc-1", "cnc-102", "state", t0)] == [3.0] * 5
        got = list(sub.messages)
        assert {t for t, _ in got} == {sim_topic, real_topic}
        assert {p for t, p in got if t == real_topic} == payloads  # nothing else on the real topic
        assert rt.status()["simulator"]["machines"] == ["changwon-1/cnc-1/cnc-101"]
    finally:
        rt.stop()
        device.close()
        sub.close()


def _opcua_plant(simulated_site: bool):
    def plant(p: dict) -> None:
        # changwon-1's OPC UA lines, and changwon-2's press-2 (MQTT) so that the simulator runs
        keep(p, {"changwon-1": ["forge-1", "press-1"], "changwon-2": ["press-2"]})
        if not simulated_site:  # the shipped plant marks both sites simulated
            p["sites"][0]["simulated"] = False
    return plant


@pytest.mark.parametrize("simulated_site", [True, False], ids=["marked-simulated", "real"])
def test_a_real_opcua_server_on_a_configured_address_is_read_not_fought(tmp_path, mosquitto, simulated_site):
    """A real asyncua server already listens on changwon-1's address. Whether its machines are
    marked simulated (the address is taken: warn, do not serve) or real (never served), the
    demo runtime starts and the collector reads the real server's values."""
    from tests.fixtures.opcua import OpcuaTestServer, plant_variables

    cfg_dir = config_dir(tmp_path, mosquitto.url, _opcua_plant(simulated_site))
    config = load_config(cfg_dir, env={})
    endpoint = config.endpoint("changwon-1")
    u = urlparse(endpoint.url)
    server = OpcuaTestServer(plant_variables(config, endpoint), port=u.port, path=u.path).start()
    node = "ns=2;s=changwon-1.forge-1.forge-101.forging_force"
    rt = None
    try:
        t0 = now_ns()
        rt = demo_runtime(cfg_dir, tmp_path / "data")
        status = rt.status()["simulator"]
        assert status["running"]
        assert status["machines"] == [f"changwon-2/press-2/press-20{i}" for i in range(1, 5)]
        if simulated_site:
            assert "changwon-1" in status["unserved_endpoints"]
        else:
            assert status["unserved_endpoints"] == {}
        written = []
        for i in range(3):
            written.append(12_345.0 + i)
            server.write(node, written[-1])
            assert wait_for(lambda: written[-1] in [v for _, v in stored(rt.store, "changwon-1", "forge-1",
                                                                          "forge-101", "forging_force", t0)],
                            20, interval=0.1)
        values = [v for _, v in stored(rt.store, "changwon-1", "forge-1", "forge-101", "forging_force", t0)]
        assert set(values) <= {0.0, *written}, values  # the real server's, nothing made up
    finally:
        if rt is not None:
            rt.stop()
        server.stop()


def test_simulator_disabled_the_demo_runs_on_real_devices_only(tmp_path, mosquitto, caplog):
    cfg_dir = config_dir(tmp_path, mosquitto.url, system_fn=lambda s: s["simulator"].update(enabled=False))
    config = load_config(cfg_dir, env={})
    sub = Subscriber(mosquitto.port)
    device = RealDevice(mosquitto.port)
    rt = None
    try:
        t0 = now_ns()
        with caplog.at_level(logging.INFO, logger="gwanje"):
            rt = demo_runtime(cfg_dir, tmp_path / "data")
        topic = "gwanje/changwon-1/cnc-1/cnc-101"
        assert wait_for(lambda: rt.collectors[0].subscribed)
        ts_ms = t0 // 1_000_000 + 1
        payload = device.publish(topic, ts_ms, {"state": 3, "spindle_speed": 1234.0})
        assert wait_for(lambda: stored(rt.store, "changwon-1", "cnc-1", "cnc-101", "spindle_speed", t0), 20,
                        interval=0.1) == [(ts_ms * 1_000_000, 1234.0)]
        assert rt.store.count_samples(t0 - 60 * NS_PER_S, now_ns() + 60 * NS_PER_S) == 2  # the device's two
        assert sub.messages == [(topic, payload)]
        for ep in config.system.opcua.endpoints:  # no simulated OPC UA server listens
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", urlparse(ep.url).port)) != 0, ep.name
        assert rt.status()["simulator"] == {"running": False, "machines": [], "unserved_endpoints": {}}
        assert [r.getMessage() for r in caplog.records if "without the simulator" in r.getMessage()] == [
            "running without the simulator: simulator.enabled is false in system.yaml; every machine's data "
            "comes from a real device"]
    finally:
        if rt is not None:
            rt.stop()
        device.close()
        sub.close()


@pytest.mark.parametrize("command", [["app.py", "simulate"], ["-m", "simulator"]])
def test_simulate_refuses_when_the_simulator_is_disabled(tmp_path, command):
    cfg_dir = config_dir(tmp_path, "mqtt://127.0.0.1:1", system_fn=lambda s: s["simulator"].update(enabled=False))
    r = subprocess.run([sys.executable, *command, "--config", str(cfg_dir)], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "simulator.enabled is false in system.yaml" in r.stderr
