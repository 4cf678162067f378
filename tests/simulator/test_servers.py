"""The simulator against real servers: a mosquitto broker (fixture), its own asyncua OPC UA
servers on free ports, read back by a separate paho subscriber and an asyncua Client."""
from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gwanje.config import load_config
from tests.fixtures.common import free_port

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
LOT = re.compile(r"(SH|BR|HS|FL|CV)\d{6}-\d{7}(-[12])?")  # "" while a machine waits for material
PRODUCTS = {"shaft", "bracket", "housing", "flange", "cover"}
LOT_SIGNALS = ("lot", "lot_product", "lot_qty", "lot_parents")


def lot_signals_ok(values) -> bool:
    """lot, lot_product, lot_qty, lot_parents of one message: a LOT and its data, or none."""
    if values["lot"] == "":
        return values["lot_product"] == values["lot_parents"] == "" and values["lot_qty"] == 0
    return (bool(LOT.fullmatch(values["lot"])) and values["lot_product"] in PRODUCTS and values["lot_qty"] > 0
            and all(LOT.fullmatch(x) for x in values["lot_parents"].split(",") if values["lot_parents"]))


def _opcua_env() -> dict[str, str]:
    return {f"GWANJE_OPCUA_URL_{site.upper().replace('-', '_')}":
            f"opc.tcp://127.0.0.1:{free_port()}/gwanje/{site}" for site in ("changwon-1", "changwon-2")}


class Subscriber:
    """A separate paho client that hands every message to a queue (as a collector would)."""

    def __init__(self, url_port: int, topic: str = "gwanje/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: queue.Queue = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_message = lambda cl, u, m: self.messages.put((m.topic, m.payload, time.time_ns()))
        c.reconnect_delay_set(1, 2)
        c.connect("127.0.0.1", url_port)
        c.loop_start()
        self.client = c

    def collect(self, until, timeout: float = 15.0) -> list:
        """Messages until until(messages) is true or the deadline passes."""
        got: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(got):
            try:
                got.append(self.messages.get(timeout=0.1))
            except queue.Empty:
                pass
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def sim(mosquitto_module, tmp_path_factory):
    pytest.importorskip("asyncua")
    from simulator.runner import Simulator

    cfg = load_config(ROOT / "config", env=_opcua_env())
    s = Simulator(cfg, mosquitto_module.url, seed=7, period_s=0.2, data_dir=tmp_path_factory.mktemp("simdata"),
                  sparkplug_lines=["changwon-2/press-2"])
    s.start()
    yield cfg, s
    s.stop()


def test_every_mqtt_machine_publishes_json_the_collector_accepts(sim, mosquitto_module):
    from collectors.payloads import MessageDecoder

    cfg, _ = sim
    mqtt_machines = {f"gwanje/{m.site}/{m.line}/{m.machine}": m for m in cfg.machines()
                     if m.definition.source == "mqtt" and m.line != "press-2"}  # press-2 speaks Sparkplug B
    assert len(mqtt_machines) == 17
    sub = Subscriber(mosquitto_module.port)
    try:
        got = sub.collect(lambda msgs: {t for t, _, _ in msgs} >= set(mqtt_machines))
    finally:
        sub.close()
    latest = {t: (p, rx) for t, p, rx in got}
    assert set(latest) == set(mqtt_machines)  # every MQTT machine, and nothing else
    decoder = MessageDecoder(cfg)
    for topic, (payload, rx_ns) in latest.items():
        spec = mqtt_machines[topic]
        msg = json.loads(payload)
        assert set(msg) == {"ts", "values"}
        assert isinstance(msg["ts"], int) and abs(msg["ts"] * 1_000_000 - rx_ns) < 10 * 1_000_000_000
        assert set(msg["values"]) == {s.id for s in spec.signals}
        sc = spec.klass.state_codes
        assert msg["values"]["state"] in {*sc.running, *sc.idle, *sc.down, *sc.setup, *sc.planned_stop}
        assert lot_signals_ok(msg["values"]), msg
        samples, rejected = decoder.decode(topic, payload)
        assert rejected == [] and len(samples) == len(spec.signals), (topic, rejected)


def test_sparkplug_line_publishes_ddata_a_late_collector_understands(sim, mosquitto_module):
    """The collector subscribed after the births: names in DDATA still make every metric a sample."""
    from collectors.payloads import MessageDecoder

    cfg, _ = sim
    press2 = {m.machine: m for m in cfg.machines() if m.line == "press-2"}
    sub = Subscriber(mosquitto_module.port, "spBv1.0/#")
    try:
        got = sub.collect(lambda msgs: {t.split("/")[-1] for t, _, _ in msgs if "/DDATA/" in t} >= set(press2))
    finally:
        sub.close()
    decoder = MessageDecoder(cfg)
    ddata = {t: p for t, p, _ in got if "/DDATA/" in t}
    assert set(ddata) == {f"spBv1.0/changwon-2/DDATA/press-2/{m}" for m in press2}
    for topic, payload in ddata.items():
        spec = press2[topic.split("/")[-1]]
        samples, rejected = decoder.decode(topic, payload)
        assert rejected == [] and {s.signal for s in samples} == {s.id for s in spec.signals}
        values = {s.signal: s.value for s in samples}
        assert values["state"] in {float(c) for c in spec.klass.state_codes.running + spec.klass.state_codes.idle
                                   + spec.klass.state_codes.down + spec.klass.state_codes.setup
                                   + spec.klass.state_codes.planned_stop}
        assert lot_signals_ok(values), values


def test_sparkplug_edge_node_births_before_data_and_dies_with_its_bdseq(mosquitto):
    from collectors.payloads import MessageDecoder
    from collectors.sparkplug import decode_payload
    from gwanje.config import Secrets
    from simulator.machines import Plant
    from simulator.sparkplug_publisher import SparkplugEdgeNode

    cfg = load_config(ROOT / "config", env={})
    plant = Plant(cfg, seed=7)
    sub = Subscriber(mosquitto.port, "spBv1.0/#")
    node = SparkplugEdgeNode(mosquitto.url, "changwon-2", "press-2", cfg.system.mqtt, Secrets.from_env({}))
    node.start()
    try:
        deadline = time.monotonic() + 10
        while not node.status().connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.status().connected
        published = []
        for i in range(2):
            now = time.time_ns() + i * 1_000_000_000
            for spec, values in plant.step(now):
                if spec.line == "press-2":
                    node.publish(spec, now, values)
                    published.append((spec.machine, values))
        node.stop()
        got = sub.collect(lambda msgs: any("/NDEATH/" in t for t, _, _ in msgs))
    finally:
        sub.close()
    kinds = [t.split("/")[2] for t, _, _ in got]
    assert kinds == ["NBIRTH"] + ["DBIRTH"] * 4 + ["DDATA"] * 4 + ["NDEATH"]
    payloads = [decode_payload(p) for _, p, _ in got]
    assert [p.seq for p in payloads[:-1]] == list(range(9))
    birth_bdseq = next(m.long_value for m in payloads[0].metrics if m.name == "bdSeq")
    assert next(m.long_value for m in payloads[-1].metrics if m.name == "bdSeq") == birth_bdseq
    decoder = MessageDecoder(cfg)
    decoded = [decoder.decode(t, p) for t, p, _ in got]
    assert all(rejected == [] for _, rejected in decoded)
    # what the collector reads is what the plant said, message by message
    for (machine, values), (samples, _) in zip(published, decoded[1:9]):
        assert {s.machine for s in samples} == {machine}
        assert {s.signal: s.value for s in samples} == {k: v if isinstance(v, str) else float(v)
                                                        for k, v in values.items()}


def test_sparkplug_edge_node_rebirths_when_the_host_asks(mosquitto):
    """A collector that restarted asks for a rebirth (NCMD): the simulated node births again,
    so the collector does not keep asking."""
    import paho.mqtt.client as mqtt

    from collectors.sparkplug import rebirth_request
    from gwanje.config import Secrets
    from simulator.machines import Plant
    from simulator.sparkplug_publisher import SparkplugEdgeNode

    cfg = load_config(ROOT / "config", env={})
    plant = Plant(cfg, seed=7)
    sub = Subscriber(mosquitto.port, "spBv1.0/+/+/press-2/#")
    node = SparkplugEdgeNode(mosquitto.url, "changwon-2", "press-2", cfg.system.mqtt, Secrets.from_env({}))
    node.start()
    host = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    host.connect("127.0.0.1", mosquitto.port)
    host.loop_start()

    def step(until):
        def f(msgs):
            now = time.time_ns()
            for spec, values in plant.step(now):
                if spec.line == "press-2":
                    node.publish(spec, now, values)
            return until(msgs)
        return f

    try:
        got = sub.collect(step(lambda msgs: sum("/DDATA/" in t for t, _, _ in msgs) >= 4), timeout=10)
        assert [t.split("/")[2] for t, _, _ in got].count("NBIRTH") == 1
        host.publish("spBv1.0/changwon-2/NCMD/press-2", rebirth_request(time.time_ns() // 10**6), qos=1).wait_for_publish(5)
        got = sub.collect(step(lambda msgs: any("/NBIRTH/" in t for t, _, _ in msgs)), timeout=10)
        kinds = [t.split("/")[2] for t, _, _ in got]
        assert "NBIRTH" in kinds, kinds
    finally:
        host.loop_stop()
        host.disconnect()
        node.stop()
        sub.close()


async def _read_site(cfg, site: str) -> dict:
    from asyncua import Client

    ep = cfg.endpoint(cfg.site(site).opcua_endpoint)
    out = {}
    async with Client(ep.url, timeout=15) as client:
        for spec in cfg.machines():
            if spec.opcua_endpoint != ep.name:
                continue
            for sig in spec.signals:
                node = client.get_node(ep.node_template.format(site=spec.site, line=spec.line,
                                                               machine=spec.machine, signal=sig.id))
                out[(spec.machine, sig.id)] = await node.read_data_value()
    return out


@pytest.mark.parametrize("site", ["changwon-1", "changwon-2"])
def test_every_opcua_machine_signal_can_be_read_with_its_plc_type(sim, site):
    from asyncua import ua

    cfg, _ = sim
    specs = {m.machine: m for m in cfg.machines() if m.site == site and m.opcua_endpoint}
    assert len(specs) == {"changwon-1": 8, "changwon-2": 7}[site]
    deadline = time.monotonic() + 10
    while True:  # the first write follows the servers' start by one step
        values = asyncio.run(_read_site(cfg, site))
        if all(LOT.fullmatch(values[(m, "lot")].Value.Value) for m in specs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(values) == sum(len(m.signals) for m in specs.values())
    now = datetime.now(timezone.utc)
    for (machine, sig_id), dv in values.items():
        spec = specs[machine]
        kind = spec.signal(sig_id).kind
        v = dv.Value
        assert dv.StatusCode.is_good()
        assert abs((now - dv.SourceTimestamp.replace(tzinfo=timezone.utc)).total_seconds()) < 10
        if kind == "state":
            sc = spec.klass.state_codes
            assert v.VariantType == ua.VariantType.Int32
            assert v.Value in {*sc.running, *sc.idle, *sc.down, *sc.setup, *sc.planned_stop}
        elif kind == "counter":
            bits = spec.definition.counter_bits
            assert v.VariantType == {16: ua.VariantType.UInt16, 32: ua.VariantType.UInt32}[bits], machine
            assert 0 <= v.Value < 2 ** bits
        elif kind == "text":
            assert v.VariantType == ua.VariantType.String, sig_id
        else:
            assert v.VariantType == ua.VariantType.Double
    for machine in specs:
        lot = {sid: values[(machine, sid)].Value.Value for sid in LOT_SIGNALS}
        assert lot_signals_ok(lot), lot



def test_opcua_lot_variables_are_written_with_one_source_timestamp(sim):
    """The four LOT variables of a machine change together: one source timestamp (read in one
    Read request; a read may fall between two steps' writes, so it is tried a few times)."""
    from asyncua import Client, ua

    cfg, _ = sim
    ep = cfg.endpoint("changwon-1")
    machines = [m for m in cfg.machines() if m.opcua_endpoint == ep.name]

    async def read() -> dict:
        async with Client(ep.url, timeout=15) as client:
            agreed = {}
            for _ in range(10):
                for m in machines:
                    if m.machine in agreed:
                        continue
                    nodes = [client.get_node(ep.node_template.format(site=m.site, line=m.line, machine=m.machine,
                                                                     signal=sid)) for sid in LOT_SIGNALS]
                    dvs = await client.read_attributes(nodes, ua.AttributeIds.Value)
                    if len({dv.SourceTimestamp for dv in dvs}) == 1:
                        agreed[m.machine] = {sid: dv.Value for sid, dv in zip(LOT_SIGNALS, dvs)}
                if len(agreed) == len(machines):
                    break
                await asyncio.sleep(0.05)
            return agreed

    got = asyncio.run(read())
    assert set(got) == {m.machine for m in machines}
    for machine, vs in got.items():
        assert vs["lot_qty"].VariantType == ua.VariantType.Double
        assert all(vs[sid].VariantType == ua.VariantType.String for sid in ("lot", "lot_product", "lot_parents"))
        assert lot_signals_ok({k: v.Value for k, v in vs.items()}), (machine, vs)


def test_a_lot_start_message_carries_the_lot_and_its_data_with_one_ts(mosquitto):
    """Through a real broker: the message in which a machine's lot changes to a new number has
    lot_product, lot_qty and lot_parents of that LOT, under the message's one ts."""
    from collectors.payloads import MessageDecoder
    from gwanje.config import MqttConfig, Secrets
    from simulator.machines import Plant
    from simulator.mqtt_publisher import MqttPublisher, topic_for

    cfg = load_config(ROOT / "config", env={})
    plant = Plant(cfg, seed=7, lot_scale=0.02)  # shaft LOTs of 5 parts: children start within minutes
    specs = [m for m in cfg.machines() if m.line in ("cnc-1", "injection-1")]
    pub = MqttPublisher(mosquitto.url, MqttConfig(), Secrets.from_env({}), client_id="sim-lot-start-test")
    pub.start()
    sub = Subscriber(mosquitto.port, "gwanje/#")
    t0 = time.time_ns() - 4 * 3600 * 1_000_000_000  # four hours of the model, 20 s per step
    try:
        deadline = time.monotonic() + 10
        while not pub.status().connected and time.monotonic() < deadline:
            time.sleep(0.05)
        probe = next(m for m in cfg.machines() if m.line == "press-2")  # not one of the tested topics
        assert sub.collect(lambda msgs: pub.publish(probe, time.time_ns(), {}) and any(
            t == topic_for(probe) for t, _, _ in msgs), timeout=10)
        while not sub.messages.empty():
            sub.messages.get()
        n = 0
        for i in range(720):
            t = t0 + i * 20_000_000_000
            for spec, values in plant.step(t):
                if spec in specs:
                    pub.publish(spec, t, values)
                    n += 1
        topics = {topic_for(m) for m in specs}
        got = sub.collect(lambda msgs: sum(t in topics for t, _, _ in msgs) >= n, timeout=30)
    finally:
        pub.stop()
        sub.close()
    got = [x for x in got if x[0] in topics]
    assert len(got) == n
    decoder = MessageDecoder(cfg)
    last: dict[str, str] = {}
    starts = []
    for topic, payload, _ in got:
        msg = json.loads(payload)
        lot = msg["values"]["lot"]
        if topic in last and lot and lot != last[topic]:
            starts.append((topic, payload, msg))
        last[topic] = lot
    cnc = [m for t, _, m in starts if "/cnc-1/" in t]
    inj = [m for t, _, m in starts if "/injection-1/" in t]
    assert len(cnc) >= 5 and len(inj) >= 5
    for msg in cnc:
        v = msg["values"]
        assert v["lot_product"] == "shaft" and v["lot"] == v["lot_parents"] + v["lot"][-2:]
        assert v["lot"][-2:] in ("-1", "-2") and 1 <= v["lot_qty"] <= 3
    for msg in inj:
        v = msg["values"]
        assert v["lot_product"] == "housing" and v["lot_parents"] == "" and v["lot_qty"] == 8
        assert v["lot"].startswith("HS")
    for topic, payload, msg in starts:
        samples, rejected = decoder.decode(topic, payload)
        assert rejected == []
        lot = {s.signal: s for s in samples if s.signal in LOT_SIGNALS}
        assert set(lot) == set(LOT_SIGNALS)
        assert {s.ts for s in lot.values()} == {msg["ts"] * 1_000_000}
    assert topics == {t for t, _, _ in got}


def test_opcua_folder_tree_site_line_machine_can_be_browsed(sim):
    cfg, _ = sim
    ep = cfg.endpoint("changwon-2")

    async def browse() -> list[str]:
        from asyncua import Client

        async with Client(ep.url, timeout=15) as client:
            node = client.nodes.objects
            for name in ("changwon-2", "assembly-1", "asm-103"):
                children = {(await c.read_browse_name()).Name: c for c in await node.get_children()}
                node = children[name]
            return sorted([(await c.read_browse_name()).Name for c in await node.get_children()])

    assert asyncio.run(browse()) == sorted(["state", "part_count_total", "part_count_good", "part_count_reject",
                                            "screw_torque", "cycle_time", "lot", "lot_product", "lot_qty",
                                            "lot_parents"])


def test_publisher_comes_back_after_a_broker_restart(mosquitto):
    from gwanje.config import MqttConfig, Secrets
    from simulator.mqtt_publisher import MqttPublisher

    cfg = load_config(ROOT / "config", env={})
    spec = next(m for m in cfg.machines() if m.machine == "press-201")
    pub = MqttPublisher(mosquitto.url, MqttConfig(reconnect_min_s=0.5, reconnect_max_s=1),
                        Secrets.from_env({}), client_id="sim-reconnect-test")
    pub.start()
    sub = Subscriber(mosquitto.port)
    seq = iter(range(10**6))

    def publish_until(pred, timeout=15.0):
        got: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred(got):
            pub.publish(spec, time.time_ns(), {"state": 1, "part_count_total": next(seq)})
            got += sub.collect(lambda m: False, timeout=0.1)
        return got

    try:
        assert publish_until(lambda got: len(got) > 0)
        mosquitto.restart(down_s=0.5)
        after_restart = next(seq)
        got = publish_until(
            lambda got: any(json.loads(p)["values"]["part_count_total"] > after_restart for _, p, _ in got))
        assert any(json.loads(p)["values"]["part_count_total"] > after_restart for _, p, _ in got)
        assert pub.status().reconnects >= 1 and pub.status().connected
    finally:
        sub.close()
        pub.stop()


def _mqtt_only_config(d: Path) -> Path:
    """The demo config without its OPC UA machines: the process test is about the command, and
    the OPC UA servers (seconds of start-up) are tested above."""
    import shutil

    import yaml

    shutil.copytree(ROOT / "config", d)
    plant = yaml.safe_load((d / "plant.yaml").read_text(encoding="utf-8"))
    for site in plant["sites"]:
        for line in site["lines"]:
            line["machines"] = [m for m in line["machines"] if m["source"] == "mqtt"]
        site["lines"] = [ln for ln in site["lines"] if ln["machines"]]
    (d / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    return d


def test_standalone_process_publishes_and_stops_on_sigterm(mosquitto, tmp_path):
    config_dir = _mqtt_only_config(tmp_path / "config")
    env = {**os.environ, "GWANJE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    sub = Subscriber(mosquitto.port)
    log = (tmp_path / "simulator.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--config", str(config_dir),
                             "--mqtt-url", mosquitto.url, "--period", "0.2"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        got = sub.collect(lambda msgs: len(msgs) >= 21, timeout=30)
        assert len(got) >= 21 and all(t.startswith("gwanje/changwon-") for t, _, _ in got), \
            (tmp_path / "simulator.log").read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        sub.close()
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_secure_endpoint_is_served_only_with_basic256sha256(tmp_path):
    """Production: no plain endpoint; a self-signed server certificate is made in the data dir."""
    pytest.importorskip("asyncua")
    from asyncua import Client, ua
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from gwanje.config import OpcuaEndpoint
    from simulator.machines import Plant
    from simulator.opcua_server import SiteServer

    cfg = load_config(ROOT / "config", env={})
    ep = OpcuaEndpoint(name="changwon-1", url=f"opc.tcp://127.0.0.1:{free_port()}/gwanje/changwon-1",
                       security_policy="Basic256Sha256", security_mode="SignAndEncrypt")
    server = SiteServer(ep, cfg.machines(), demo=False, cert_dir=tmp_path / "opcua")
    node_id = "ns=2;s=changwon-1.press-1.press-102.part_count_total"
    cert, key = tmp_path / "client.der", tmp_path / "client.pem"

    async def run():
        await setup_self_signed_certificate(key, cert, "urn:gwanje:test:client", "localhost",
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "gwanje-test"})
        await server.start()
        try:
            now = time.time_ns()
            await server.write(now, Plant(cfg, seed=7).step(now))
            with pytest.raises(ua.UaError, match="No matching endpoints"):
                async with Client(ep.url, timeout=3) as plain:
                    await plain.get_node(node_id).read_value()
            secure = Client(ep.url, timeout=15)  # generous: RSA handshakes on a loaded CI machine
            await secure.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
            async with secure:
                dv = await secure.get_node(node_id).read_data_value()
            return dv
        finally:
            await server.stop()

    dv = asyncio.run(run())
    assert dv.Value.VariantType == ua.VariantType.UInt16 and 0 <= dv.Value.Value < 65536
    assert (tmp_path / "opcua" / "changwon-1" / "server_cert.der").exists()


def test_a_taken_port_is_an_error_naming_the_endpoint_and_the_override():
    pytest.importorskip("asyncua")
    import socket

    from gwanje.config import OpcuaEndpoint
    from simulator.opcua_server import SiteServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ep = OpcuaEndpoint(name="changwon-2", url=f"opc.tcp://127.0.0.1:{port}/gwanje/changwon-2")
        server = SiteServer(ep, [], demo=True)
        with pytest.raises(RuntimeError, match=f"changwon-2.*:{port}.*GWANJE_OPCUA_URL_CHANGWON_2"):
            asyncio.run(server.start())
