"""Scale-out by partition (gwanje/partition.py, system.yaml collect.instances): validation of
the instances against the plant, and the Config one instance runs — its lines, its OPC UA
endpoints, its MQTT client id, subscriptions and Sparkplug host id. Expected values computed
by hand from the shipped demo plant:

  changwon-1: cnc-1 (mqtt), cnc-2 (mqtt), forge-1 (opcua changwon-1), press-1 (opcua changwon-1)
  changwon-2: injection-1 (mqtt), assembly-1 (opcua changwon-2), press-2 (mqtt), forge-2 (opcua changwon-2)
"""
import shutil
from pathlib import Path

import pytest
import yaml

from collectors.payloads import MessageDecoder
from collectors.sparkplug import Metric, encode_payload
from gwanje.config import ConfigError, load_config
from gwanje.partition import covers, for_instance, minimal, template_filter, topic_filters

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfgdir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def with_collect(cfgdir: Path, collect: dict, mqtt: dict | None = None):
    p = cfgdir / "system.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["collect"] = collect
    if mqtt:
        data["mqtt"].update(mqtt)
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(cfgdir, env={})


TWO_SITES = {"instances": [{"name": "a", "sites": ["changwon-1"]}, {"name": "b", "sites": ["changwon-2"]}]}


# ------------------------------------------------------------------ validation
def test_no_instances_is_the_single_process_default():
    c = load_config(ROOT / "config", env={})
    assert c.system.collect.instances == [] and c.instance is None and c.foreign_lines == frozenset()


def test_unknown_site_refused(cfgdir):
    with pytest.raises(ConfigError) as e:
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1", "busan"]},
                                            {"name": "b", "sites": ["changwon-2"]}]})
    msg = str(e.value)
    assert "system.yaml: collect.instances: a: site 'busan' is not in plant.yaml" in msg
    assert "changwon-1" in msg and "changwon-2" in msg  # the sites that exist


def test_unknown_line_refused(cfgdir):
    with pytest.raises(ConfigError, match=r"b: line 'changwon-2/cnc-9' is not in plant.yaml \(lines of changwon-2"):
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1"]},
                                            {"name": "b", "lines": ["changwon-2/cnc-9"]}]})
    with pytest.raises(ConfigError, match=r"b: line 'gimhae/cnc-1': site 'gimhae' is not in plant.yaml"):
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1"]},
                                            {"name": "b", "lines": ["gimhae/cnc-1"]}]})


def test_malformed_line_ref_refused(cfgdir):
    with pytest.raises(ConfigError, match=r"collect.instances.0.lines.0"):
        with_collect(cfgdir, {"instances": [{"name": "a", "lines": ["changwon-1"]}]})


def test_instance_owning_nothing_refused(cfgdir):
    with pytest.raises(ConfigError, match=r"c: owns no line"):
        with_collect(cfgdir, {"instances": TWO_SITES["instances"] + [{"name": "c"}]})


def test_line_owned_twice_refused(cfgdir):
    with pytest.raises(ConfigError, match=r"line changwon-1/cnc-2 is owned by both a and b"):
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1"]},
                                            {"name": "b", "sites": ["changwon-2"], "lines": ["changwon-1/cnc-2"]}]})


def test_line_owned_by_nobody_refused(cfgdir):
    with pytest.raises(ConfigError) as e:
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1"]},
                                            {"name": "b", "lines": ["changwon-2/injection-1", "changwon-2/press-2"]}]})
    assert "lines ['changwon-2/assembly-1', 'changwon-2/forge-2'] are owned by no instance" in str(e.value)


def test_duplicate_instance_names_refused(cfgdir):
    with pytest.raises(ConfigError, match=r"duplicate instance ids \['a'\]"):
        with_collect(cfgdir, {"instances": [{"name": "a", "sites": ["changwon-1"]}, {"name": "a", "sites": ["changwon-2"]}]})


def test_shared_subscriptions_refused(cfgdir):
    p = cfgdir / "system.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["mqtt"]["subscriptions"] = ["$share/gwanje/gwanje/#"]
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mqtt.subscriptions: \['\$share/gwanje/gwanje/#'\]: a shared subscription"):
        load_config(cfgdir, env={})


def test_unknown_instance_name(cfgdir):
    c = with_collect(cfgdir, TWO_SITES)
    with pytest.raises(ConfigError, match=r"--instance z: not in system.yaml collect.instances \['a', 'b'\]"):
        for_instance(c, "z")
    with pytest.raises(ConfigError, match="has no collect.instances"):
        for_instance(load_config(ROOT / "config", env={}), "a")


# ------------------------------------------------------------------ the instance's Config
def test_instance_config_by_site(cfgdir):
    c = with_collect(cfgdir, TWO_SITES, mqtt={"client_id": "gw", "sparkplug": {"host_id": "scada"}})
    a = for_instance(c, "a")
    assert a.instance == "a"
    assert [(m.site, m.line) for m in a.machines()] == [(m.site, m.line) for m in c.machines() if m.site == "changwon-1"]
    assert [e.name for e in a.system.opcua.endpoints] == ["changwon-1"]
    assert a.system.mqtt.client_id == "gw-a"
    assert a.system.mqtt.sparkplug.host_id == "scada-a"
    # cnc-1 and cnc-2 are its MQTT lines; no explicit Sparkplug devices: raw names unknown
    assert a.system.mqtt.subscriptions == ["gwanje/changwon-1/cnc-1/#", "gwanje/changwon-1/cnc-2/#", "spBv1.0/#"]
    assert a.foreign_lines == {("changwon-2", l) for l in ("injection-1", "assembly-1", "press-2", "forge-2")}
    b = for_instance(c, "b")
    assert b.system.mqtt.client_id == "gw-b"
    assert b.system.mqtt.subscriptions == ["gwanje/changwon-2/injection-1/#", "gwanje/changwon-2/press-2/#",
                                           "spBv1.0/#"]
    assert [e.name for e in b.system.opcua.endpoints] == ["changwon-2"]
    # what an earlier configuration may have left in a's session: b's lines, the unpartitioned list
    assert a.stale_subscriptions == ("gwanje/#", "gwanje/changwon-2/injection-1/#", "gwanje/changwon-2/press-2/#")
    # the full config is unchanged
    assert c.instance is None and c.system.mqtt.client_id == "gw" and len(c.system.opcua.endpoints) == 2


def test_instance_config_by_lines_and_explicit_sparkplug(cfgdir):
    devices = [
        {"group": "Changwon Plant 1", "edge_node": "CNC Line 1", "device": "MC 1", "site": "changwon-1",
         "line": "cnc-1", "machine": "cnc-101"},
        {"group": "Changwon Plant 1", "edge_node": "CNC Line 1", "device": "MC 2", "site": "changwon-1",
         "line": "cnc-1", "machine": "cnc-102"},
    ]
    c = with_collect(cfgdir, {"instances": [
        {"name": "cnc", "lines": ["changwon-1/cnc-1"]},
        {"name": "rest", "sites": ["changwon-2"], "lines": ["changwon-1/cnc-2", "changwon-1/forge-1", "changwon-1/press-1"]},
    ]}, mqtt={"sparkplug": {"devices": devices}})
    cnc = for_instance(c, "cnc")
    assert {m.line for m in cnc.machines()} == {"cnc-1"}
    assert cnc.system.opcua.endpoints == []  # no OPC UA machine on cnc-1
    assert cnc.system.mqtt.sparkplug.host_id is None  # not set: not a primary host
    # cnc-101 and cnc-102 mapped explicitly, cnc-103..106 are not: still the wide filter
    assert cnc.system.mqtt.subscriptions == ["gwanje/changwon-1/cnc-1/#", "spBv1.0/#"]
    rest = for_instance(c, "rest")
    assert [e.name for e in rest.system.opcua.endpoints] == ["changwon-1", "changwon-2"]
    assert rest.system.mqtt.subscriptions == ["gwanje/changwon-1/cnc-2/#", "gwanje/changwon-2/injection-1/#",
                                              "gwanje/changwon-2/press-2/#", "spBv1.0/#"]


def test_every_machine_mapped_explicitly_gives_exact_sparkplug_filters(cfgdir):
    plant = yaml.safe_load((cfgdir / "plant.yaml").read_text(encoding="utf-8"))
    cnc1 = [m["id"] for m in plant["sites"][0]["lines"][0]["machines"]]
    devices = [{"group": "Changwon Plant 1", "edge_node": "CNC Line 1", "device": m.upper(), "site": "changwon-1",
                "line": "cnc-1", "machine": m} for m in cnc1]
    c = with_collect(cfgdir, {"instances": [{"name": "cnc", "lines": ["changwon-1/cnc-1"]},
                                            {"name": "rest", "sites": ["changwon-2"],
                                             "lines": ["changwon-1/cnc-2", "changwon-1/forge-1", "changwon-1/press-1"]}]},
                     mqtt={"sparkplug": {"devices": devices}})
    assert for_instance(c, "cnc").system.mqtt.subscriptions == [
        "gwanje/changwon-1/cnc-1/#", "spBv1.0/Changwon Plant 1/+/CNC Line 1/#"]


def test_opcua_only_instance_has_no_mqtt_subscriptions(cfgdir):
    c = with_collect(cfgdir, {"instances": [
        {"name": "mq", "lines": ["changwon-1/cnc-1", "changwon-1/cnc-2", "changwon-2/injection-1", "changwon-2/press-2"]},
        {"name": "ua", "lines": ["changwon-1/forge-1", "changwon-1/press-1", "changwon-2/assembly-1", "changwon-2/forge-2"]},
    ]})
    ua = for_instance(c, "ua")
    assert ua.system.mqtt.subscriptions == []
    from collectors import build_collectors

    kinds = [type(x).__name__ for x in build_collectors(ua, sink=None, secrets=None, mqtt_url="mqtt://127.0.0.1:1")]
    assert kinds == ["OpcuaCollector", "OpcuaCollector"]


# ------------------------------------------------------------------ topic filters
def test_template_filters():
    assert template_filter("gwanje/{site}/{line}/{machine}", "s", "l") == "gwanje/s/l/#"
    assert template_filter("gwanje/{site}/{line}/{machine}/{signal}", "s", "l") == "gwanje/s/l/#"
    assert template_filter("plant/{machine}/{site}/cell-{line}", "s", "l") == "plant/+/s/cell-l"
    assert template_filter("f/{site}-{machine}/{line}/{signal}", "s", "l") == "f/+/l/#"
    assert topic_filters(["gwanje/{site}/{line}/{machine}", "gwanje/{site}/{line}/{machine}/{signal}"],
                         [("s", "l1"), ("s", "l2")]) == ["gwanje/s/l1/#", "gwanje/s/l2/#"]


def test_covers_and_minimal():
    assert covers("a/#", "a") and covers("a/#", "a/b/c") and covers("#", "a/+")
    assert covers("a/+/c", "a/b/c") and not covers("a/b/c", "a/+/c")
    assert not covers("a/+", "a/b/c") and not covers("a/+", "a/#") and not covers("a/b", "a")
    assert minimal(["spBv1.0/G/+/E/#", "spBv1.0/#", "gwanje/s/l/#", "gwanje/s/l/#"]) == ["spBv1.0/#", "gwanje/s/l/#"]


# ------------------------------------------------------------------ decoding in an instance
def test_decoder_skips_other_instances_lines_as_other_instance(cfgdir):
    c = with_collect(cfgdir, TWO_SITES)
    dec = MessageDecoder(for_instance(c, "a"))
    now = 1_700_000_000_000_000_000
    body = b'{"values": {"spindle_speed": 1200}, "ts": 1700000000000}'
    samples, reasons = dec.decode("gwanje/changwon-1/cnc-1/cnc-101", body, now)
    assert [s.machine for s in samples] == ["cnc-101"] and reasons == []
    samples, reasons = dec.decode("gwanje/changwon-2/injection-1/imm-101", b'{"values": {"melt_temp": 220}}', now)
    assert samples == [] and reasons == ["other_instance"]
    samples, reasons = dec.decode("gwanje/changwon-9/x/y", body, now)
    assert reasons == ["unknown_machine"]
    # Sparkplug: a foreign edge node is skipped before any session work: no rebirth request
    ddata = encode_payload([Metric(name="melt_temp", value=220.0)], timestamp=1_700_000_000_000, seq=5)
    samples, reasons = dec.decode("spBv1.0/Changwon-2/DDATA/Injection-1/IMM-101", ddata, now)
    assert samples == [] and reasons == ["other_instance"]
    assert dec.sparkplug.take_rebirths() == []
    # one of its own lines, before a birth: asks for a rebirth as usual
    dec.decode("spBv1.0/Changwon-1/DDATA/CNC-1/CNC-101", ddata, now)
    assert dec.sparkplug.take_rebirths() == [("Changwon-1", "CNC-1")]


# ------------------------------------------------------------------ the CLI
def run_app(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GWANJE_INSTANCE"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_collect_without_instance_refuses_naming_the_instances(cfgdir, tmp_path):
    with_collect(cfgdir, TWO_SITES)
    r = run_app("collect", "--config", str(cfgdir), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "collect.instances ['a', 'b']" in r.stderr and "--instance NAME" in r.stderr
    r = run_app("collect", "--config", str(cfgdir), "--data-dir", str(tmp_path / "d"), "--instance", "z")
    assert r.returncode == 2 and "not in system.yaml collect.instances ['a', 'b']" in r.stderr
    r = run_app("collect", "--config", str(cfgdir), "--instance", "a", env_extra={"GWANJE_INSTANCE": "b"})
    assert r.returncode == 2 and "disagree" in r.stderr
    r = run_app("--config", str(cfgdir), "--data-dir", str(tmp_path / "d"))  # the all-in-one demo
    assert r.returncode == 2 and "collect.instances ['a', 'b']" in r.stderr


def test_instance_flag_without_instances_refused(tmp_path):
    r = run_app("collect", "--config", str(ROOT / "config"), "--data-dir", str(tmp_path / "d"), "--instance", "a")
    assert r.returncode == 2 and "system.yaml has no collect.instances" in r.stderr
