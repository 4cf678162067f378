"""The OPC UA collector against a server of another stack (node-opcua, tests/peers/opcua):
endpoints per machine and line, node ids per machine, namespace URIs across a restart that
renumbers the namespaces, every scalar type, and the server certificate trust list."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors import build_collectors
from collectors.opcua import OpcuaCollector
from gwanje.config import Secrets, load_config
from tests.collectors.test_opcua import ListSink
from tests.fixtures.common import wait_for
from tests.fixtures.node_opcua import NAMESPACE_URI
from tests.fixtures.opcua import make_certificate

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
NO_SECRETS = Secrets.from_env({})
NSU = f"nsu={NAMESPACE_URI}"

PLANT = """\
name: {ko: 시험 공장, en: Test plant}
machine_classes:
  press:
    name: {ko: 프레스, en: Press}
    state_codes: {running: [1], idle: [2], down: [3]}
    good_signal: null
    reject_signal: null
    signals:
      - {id: state, name: {ko: 상태, en: State}, kind: state}
      - {id: part_count_total, name: {ko: 생산수, en: Count}, kind: counter}
      - {id: speed, name: {ko: 속도, en: Speed}, unit: rpm}
      - {id: running, name: {ko: 운전, en: Running}}
      - {id: lot, name: {ko: LOT, en: LOT}, kind: text}
      - {id: last_cycle, name: {ko: 최종, en: Last cycle}, kind: text}
  oven:
    name: {ko: 오븐, en: Oven}
    state_codes: {}
    state_signal: null
    total_signal: null
    good_signal: null
    reject_signal: null
    signals:
      - {id: temperature, name: {ko: 온도, en: Temperature}}
      - {id: door_open, name: {ko: 문, en: Door}}
      - {id: recipe, name: {ko: 레시피, en: Recipe}, kind: text}
      - {id: batch, name: {ko: 배치, en: Batch}, kind: text}
      - {id: health, name: {ko: 상태코드, en: Health}, kind: text}
      - {id: shift, name: {ko: 근무, en: Shift}, kind: text}
      - {id: zone, name: {ko: 구역, en: Zone}}
      - {id: fan, name: {ko: 팬, en: Fan}}
      - {id: energy, name: {ko: 에너지, en: Energy}}
      - {id: snapshot, name: {ko: 사진, en: Snapshot}, kind: text}
      - {id: profile, name: {ko: 프로파일, en: Profile}}
sites:
  - id: gw
    name: {ko: 게이트웨이, en: Gateway}
    opcua_endpoint: gw-a
    lines:
      - id: press-line-2
        name: {ko: 프레스 2라인, en: Press line 2}
        process: press
        machines:
          - id: press-201
            name: {ko: 프레스 201, en: Press 201}
            class: press
            source: opcua
            ideal_cycle_s: 3
            counter_bits: 64
            nodes: &press201
              state: "NSU;i=70003"
              part_count_total: "NSU;i=70002"
              speed: "NSU;s=Press_201.Motor.Speed"
              running: "NSU;s=Press_201.Running"
              lot: "NSU;s=Press_201.Lot"
              last_cycle: "NSU;s=Press_201.LastCycle"
          - id: press-202b
            name: {ko: 프레스 202, en: Press 202}
            class: press
            source: opcua
            ideal_cycle_s: 3
            counter_bits: 64
            opcua_endpoint: gw-b        # another server than the site's
            nodes:
              state: "NSU;i=70103"
              part_count_total: "NSU;i=70102"
              speed: "NSU;s=Press_202.Motor.Speed"
              running: "NSU;s=Press_202.Running"
              lot: "NSU;s=Press_202.Lot"
              last_cycle: "NSU;s=Press_202.LastCycle"
      - id: ovens
        name: {ko: 오븐, en: Ovens}
        process: other
        opcua_endpoint: gw-b            # the line's endpoint for its machines
        machines:
          - id: oven-7
            name: {ko: 오븐 7, en: Oven 7}
            class: oven
            source: opcua
            ideal_cycle_s: 60
            nodes:
              # a browse path names namespaces by index: gw-b has one more namespace first
              temperature: "0:Objects/3:Oven 7/3:Temperature"
              door_open: "NSU;s=Oven7.DoorOpen"
              recipe: "NSU;s=Oven7.Recipe"
              batch: "NSU;s=Oven7.BatchId"
              health: "NSU;s=Oven7.Health"
              shift: "NSU;s=Oven7.Shift"
              zone: "NSU;s=Oven7.Zone"
              fan: "NSU;s=Oven7.Fan"
              energy: "NSU;s=Oven7.Energy"
              snapshot: "NSU;s=Oven7.Snapshot"
              profile: "NSU;s=Press_202.Profile"
""".replace("NSU", NSU)

SYSTEM = """\
mqtt: {{sparkplug: false}}
opcua:
  endpoints:
{endpoints}
"""

ENDPOINT = """\
    - name: {name}
      url: {url}
      sampling_ms: 0
      publishing_ms: 50
      reconnect_min_s: 0.2
      reconnect_max_s: 1.0
{extra}"""


def fingerprint(der: bytes) -> str:
    """SHA-256 as an operator reads it off UaExpert or openssl: AB:CD:..."""
    import hashlib

    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def write_config(d: Path, endpoints: dict[str, str], extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "plant.yaml").write_text(PLANT)
    (d / "system.yaml").write_text(SYSTEM.format(endpoints="".join(
        ENDPOINT.format(name=n, url=u, extra=extra) for n, u in endpoints.items())))
    return d


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory, node_opcua_module_servers):
    tmp = tmp_path_factory.mktemp("two-servers")
    a = node_opcua_module_servers(tmp / "pki-a")
    b = node_opcua_module_servers(tmp / "pki-b", pad=1)  # another namespace index on the second server
    config = load_config(write_config(tmp / "config", {"gw-a": a.url, "gw-b": b.url}), env={})
    sink = ListSink()
    collectors = build_collectors(config, sink, NO_SECRETS, data_dir=tmp / "data")
    for c in collectors:
        c.start()
    yield a, b, collectors, sink, tmp
    for c in collectors:
        c.stop()


def latest(sink: ListSink, machine: str, signal: str):
    got = sink.of(machine, signal)
    return got[-1].value if got else None


def test_endpoint_per_machine_and_line_and_node_ids_per_machine(two_servers):
    a, b, collectors, sink, _ = two_servers
    assert b.namespace_index == 3  # nsu= ids find the namespace wherever it is
    by_name = {c.name: c for c in collectors}
    assert set(by_name) == {"opcua:gw-a", "opcua:gw-b"}
    assert wait_for(lambda: all(c.status().connected for c in collectors), timeout=15)
    assert by_name["opcua:gw-b"].status().detail == "subscribed 17 of 17 signals"
    # press-201 on the site's endpoint; press-202b's own endpoint and the ovens line's are gw-b
    assert {s.machine for s in by_name["opcua:gw-a"].signals} == {"press-201"}
    assert {s.machine for s in by_name["opcua:gw-b"].signals} == {"press-202b", "oven-7"}
    assert wait_for(lambda: all(latest(sink, m, s) is not None for m in ("press-201", "press-202b")
                                for s in ("state", "part_count_total", "speed", "running", "lot", "last_cycle")),
                    timeout=15), [c.status() for c in collectors]
    assert str(latest(sink, "press-201", "lot")).startswith("LOT-201-")
    assert str(latest(sink, "press-202b", "lot")).startswith("LOT-202-")
    for c in collectors:
        assert "unknown_node" not in c.status().rejects, c.status()


def test_every_scalar_type_becomes_a_sample_or_a_counted_reason(two_servers):
    a, b, collectors, sink, _ = two_servers
    wanted = ("temperature", "door_open", "recipe", "batch", "health", "shift", "zone", "fan", "energy")
    assert wait_for(lambda: all(latest(sink, "oven-7", s) is not None for s in wanted), timeout=15)
    assert wait_for(lambda: latest(sink, "press-201", "part_count_total") > 2.0**63)
    count = latest(sink, "press-201", "part_count_total")
    assert (count - 2.0**63) % 2048 == 0  # UInt64 above 2**63: the server counts in steps of 2048, exact
    assert latest(sink, "press-201", "state") in (1.0, 2.0, 3.0)  # Int32
    assert latest(sink, "press-201", "running") in (0.0, 1.0)  # Boolean
    assert isinstance(latest(sink, "press-201", "speed"), float)  # Double
    cycle = latest(sink, "press-201", "last_cycle")  # DateTime -> ISO 8601 UTC text
    assert isinstance(cycle, str) and cycle.endswith("Z") and cycle.startswith("20")
    assert isinstance(latest(sink, "oven-7", "temperature"), float)  # Float, by browse path
    assert latest(sink, "oven-7", "recipe") in ("Bake A", "Bake B")  # LocalizedText
    assert latest(sink, "oven-7", "batch") == "72962b91-fa75-4ae6-8d28-b404dc7daf63"  # Guid
    assert wait_for(lambda: {s.value for s in sink.of("oven-7", "health")} >= {"Good", "BadSensorFailure"})
    assert latest(sink, "oven-7", "shift") == "1:Night"  # QualifiedName
    assert latest(sink, "oven-7", "zone") in (-3.0, -2.0, -1.0)  # SByte
    assert latest(sink, "oven-7", "fan") in (65535.0, 65534.0, 65533.0)  # UInt16
    assert -256.0 <= latest(sink, "oven-7", "energy") < -240.0  # Int64, negative
    rejects = next(c for c in collectors if c.name == "opcua:gw-b").status().rejects
    assert rejects.get("unsupported_type:ByteString", 0) >= 1, rejects  # Snapshot
    assert rejects.get("array_not_supported", 0) >= 1, rejects  # Profile (Double[])
    assert sink.of("oven-7", "snapshot") == [] and sink.of("oven-7", "profile") == []


def test_namespace_uri_resolved_again_after_a_restart_with_another_index(tmp_path, node_opcua_servers):
    server = node_opcua_servers(tmp_path / "pki")
    config = load_config(write_config(tmp_path / "config", {"gw-a": server.url, "gw-b": server.url}), env={})
    sink = ListSink()
    col = OpcuaCollector(config, config.endpoint("gw-a"), sink, NO_SECRETS)
    col.start()
    try:
        assert wait_for(lambda: sink.of("press-201", "lot"), timeout=15), col.status()
        assert server.namespace_index == 2
        server.restart(pad=3)  # the same server, its namespace now at index 5
        assert server.namespace_index == 5
        restarted = time.time_ns()
        assert wait_for(lambda: col.status().reconnects >= 1 and col.status().connected, timeout=15), col.status()
        assert wait_for(lambda: all(any(s.ts > restarted for s in sink.of("press-201", sig))
                                    for sig in ("lot", "speed", "state")), timeout=10), col.status()
        assert "unknown_node" not in col.status().rejects
        assert col.status().detail == "subscribed 6 of 6 signals"
    finally:
        col.stop()


def trust_server(config_dir: Path, data_dir: Path, endpoint: str, fp: str, env: dict | None = None):
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "trust-server", endpoint, "--config",
                           str(config_dir), "--data-dir", str(data_dir), "--fingerprint", fp],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def test_demo_trusts_on_first_use_and_refuses_a_changed_certificate(tmp_path, caplog, node_opcua_servers):
    server = node_opcua_servers(tmp_path / "pki-1")
    config_dir = write_config(tmp_path / "config", {"gw-a": server.url, "gw-b": server.url})
    config = load_config(config_dir, env={})
    data = tmp_path / "data"
    trusted = data / "opcua-trust" / "trusted" / "gw-a.der"
    sink = ListSink()
    col = OpcuaCollector(config, config.endpoint("gw-a"), sink, NO_SECRETS, trust_dir=data / "opcua-trust")
    col.start()
    try:
        assert wait_for(lambda: col.status().connected and sink.of("press-201", "lot"), timeout=15), col.status()
        assert trusted.exists()  # recorded on first use (demo mode)
        first = trusted.read_bytes()

        with caplog.at_level(logging.ERROR, logger="gwanje.collectors.opcua"):
            server.restart(pki=tmp_path / "pki-2")  # same address, another certificate
            refused = wait_for(lambda: col.status().rejects.get("server_certificate_changed"), timeout=15)
            assert refused == 1, col.status()
            since = time.time_ns()
            time.sleep(1.5)  # more reconnect attempts: all refused, counted and said once
            st = col.status()
            assert not st.connected and st.rejects["server_certificate_changed"] == 1
            assert "SERVER CERTIFICATE CHANGED" in st.detail
            assert not [s for s in sink.samples if s.ts > since]
        assert sum("SERVER CERTIFICATE CHANGED" in r.getMessage() for r in caplog.records) == 1
        assert trusted.read_bytes() == first  # the trusted one is kept
        pending = data / "opcua-trust" / "pending" / "gw-a.der"
        assert pending.exists() and pending.read_bytes() != first

        # the operator checks the new fingerprint and confirms it
        wrong = trust_server(config_dir, data, "gw-a", fingerprint(first))
        assert wrong.returncode == 2 and "does not match" in wrong.stderr
        ok = trust_server(config_dir, data, "gw-a", fingerprint(pending.read_bytes()))
        assert ok.returncode == 0, ok.stderr
        assert "replaces the trusted certificate" in ok.stdout
        after = time.time_ns()
        assert wait_for(lambda: col.status().connected and any(s.ts > after for s in sink.of("press-201", "lot")),
                        timeout=15), col.status()
    finally:
        col.stop()


def test_production_refuses_an_unknown_server_certificate_until_an_operator_confirms_it(tmp_path, node_opcua_servers):
    server = node_opcua_servers(tmp_path / "pki", secure=True)
    cert, key = make_certificate(tmp_path, "gwanje-client", "urn:gwanje:test-client", server=False)
    extra = (f"      security_policy: Basic256Sha256\n      security_mode: SignAndEncrypt\n"
             f"      certificate: {cert}\n      private_key: {key}\n")
    config_dir = write_config(tmp_path / "config", {"gw-a": server.url, "gw-b": server.url}, extra)
    env = {"GWANJE_DEMO": "0"}
    config = load_config(config_dir, env=env)
    assert not config.system.demo
    data = tmp_path / "data"
    sink = ListSink()
    col = OpcuaCollector(config, config.endpoint("gw-a"), sink, NO_SECRETS, trust_dir=data / "opcua-trust")
    col.start()
    try:
        assert wait_for(lambda: "trust-server gw-a" in col.status().detail, timeout=20), col.status()
        st = col.status()
        assert not st.connected and st.rejects == {"server_certificate_unknown": 1}
        assert sink.samples == []
        assert not (data / "opcua-trust" / "trusted" / "gw-a.der").exists()
        pending = data / "opcua-trust" / "pending" / "gw-a.der"
        assert pending.exists()

        # without a terminal and without --fingerprint nothing is trusted
        asked = subprocess.run([sys.executable, str(ROOT / "app.py"), "trust-server", "gw-a", "--config",
                                str(config_dir), "--data-dir", str(data)], capture_output=True, text=True,
                               timeout=60, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
        assert asked.returncode == 2 and "SHA-256" in asked.stdout, asked.stderr
        ok = trust_server(config_dir, data, "gw-a", fingerprint(pending.read_bytes()).lower(), env)
        assert ok.returncode == 0, ok.stderr
        assert wait_for(lambda: col.status().connected and sink.of("press-201", "lot"), timeout=20), col.status()
    finally:
        col.stop()
