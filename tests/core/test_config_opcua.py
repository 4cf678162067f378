"""OPC UA placement in plant.yaml: an endpoint on the site, the line or the machine (nearest
wins) and node ids per machine; and the one slug rule for foreign names."""
import shutil
from pathlib import Path

import pytest
import yaml

from gwanje.config import ID_PATTERN, ConfigError, load_config
from gwanje.naming import slug

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfgdir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    # a real site of its own, on two endpoints
    plant = yaml.safe_load((d / "plant.yaml").read_text(encoding="utf-8"))
    plant["sites"].append({
        "id": "plant-3", "name": {"ko": "3공장", "en": "Plant 3"}, "opcua_endpoint": "gw-a",
        "lines": [
            {"id": "l1", "name": {"ko": "1", "en": "1"}, "process": "press", "machines": [
                {"id": "p1", "name": {"ko": "p1", "en": "p1"}, "class": "press", "source": "opcua", "ideal_cycle_s": 3},
                {"id": "p2", "name": {"ko": "p2", "en": "p2"}, "class": "press", "source": "opcua", "ideal_cycle_s": 3,
                 "opcua_endpoint": "gw-b", "nodes": {"tonnage": "nsu=urn:x;i=1042", "lot": "0:Objects/2:P2/2:Lot"}},
            ]},
            {"id": "l2", "name": {"ko": "2", "en": "2"}, "process": "other", "opcua_endpoint": "gw-b", "machines": [
                {"id": "p3", "name": {"ko": "p3", "en": "p3"}, "class": "press", "source": "opcua", "ideal_cycle_s": 3},
                {"id": "p4", "name": {"ko": "p4", "en": "p4"}, "class": "press", "source": "opcua", "ideal_cycle_s": 3,
                 "opcua_endpoint": "gw-a"},
            ]}]})
    (d / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    system = yaml.safe_load((d / "system.yaml").read_text(encoding="utf-8"))
    system["opcua"]["endpoints"] += [{"name": "gw-a", "url": "opc.tcp://127.0.0.1:1/a"},
                                     {"name": "gw-b", "url": "opc.tcp://127.0.0.1:2/b"}]
    (d / "system.yaml").write_text(yaml.safe_dump(system, allow_unicode=True), encoding="utf-8")
    return d


def edit(path: Path, fn):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_the_nearest_endpoint_wins_and_machine_nodes_override_the_template(cfgdir):
    c = load_config(cfgdir, env={})
    eps = {m.machine: m.opcua_endpoint for m in c.machines() if m.site == "plant-3"}
    assert eps == {"p1": "gw-a", "p2": "gw-b", "p3": "gw-b", "p4": "gw-a"}
    p2 = c.machine("plant-3", "l1", "p2")
    ep = c.endpoint("gw-b")
    assert p2.node(p2.signal("tonnage"), ep) == "nsu=urn:x;i=1042"
    assert p2.node(p2.signal("lot"), ep) == "0:Objects/2:P2/2:Lot"
    assert p2.node(p2.signal("die_temp"), ep) == "ns=2;s=plant-3.l1.p2.die_temp"  # the template
    # the demo plant's sites still name one endpoint each
    assert c.machine("changwon-1", "forge-1", "forge-101").opcua_endpoint == "changwon-1"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["sites"][2]["lines"][0]["machines"][1].update(opcua_endpoint="nope"),
     "sites.plant-3.lines.l1.machines.p2.opcua_endpoint: 'nope' is not an endpoint"),
    (lambda d: d["sites"][2]["lines"][1].update(opcua_endpoint="nope"),
     "sites.plant-3.lines.l2.opcua_endpoint: 'nope' is not an endpoint"),
    (lambda d: d["sites"][2]["lines"][0]["machines"][1]["nodes"].update(speed="i=1"),
     "machines[p2]: nodes ['speed'] are not signals of class 'press'"),
    (lambda d: d["sites"][2]["lines"][0]["machines"][1].update(source="mqtt"),
     "nodes are OPC UA node ids, the machine's source is mqtt"),
    (lambda d: (d["sites"][2].pop("opcua_endpoint")),
     "machine p1 has source opcua but neither the machine, its line nor the site has an opcua_endpoint"),
    # a real machine on the simulator's endpoint
    (lambda d: d["sites"][2]["lines"][0]["machines"][0].update(opcua_endpoint="changwon-1"),
     "endpoint 'changwon-1' would serve simulated machines"),
])
def test_a_wrong_placement_names_file_path_and_problem(cfgdir, change, message):
    edit(cfgdir / "plant.yaml", change)
    with pytest.raises(ConfigError, match="plant.yaml") as e:
        load_config(cfgdir, env={})
    assert message in str(e.value)


def test_duplicate_endpoint_names_refused(cfgdir):
    edit(cfgdir / "system.yaml", lambda d: d["opcua"]["endpoints"].append({"name": "gw-a", "url": "opc.tcp://x:1"}))
    with pytest.raises(ConfigError, match=r"system.yaml: opcua.endpoints: duplicate endpoint names \['gw-a'\]"):
        load_config(cfgdir, env={})


def test_unmapped_state_codes_are_valid_but_not_for_a_simulated_machine(cfgdir):
    def unmapped(d):
        d["machine_classes"]["press"]["state_codes"] = {}
    edit(cfgdir / "plant.yaml", unmapped)
    # the demo's simulated presses cannot be played without codes; real ones show state unknown
    with pytest.raises(ConfigError, match="a simulated machine needs a class with a state_signal and running"):
        load_config(cfgdir, env={})


@pytest.mark.parametrize("name, expected", [
    ("Press Line 2", "press-line-2"), ("Press_201", "press_201"), ("Motor.Speed", "motor-speed"),
    ("  --Oven 7--  ", "oven-7"), ("cnc-101", "cnc-101"), ("Bottles Total", "bottles-total"),
    ("a" * 80, "a" * 64), ("x" * 63 + ".y", "x" * 63), ("창원", ""),
])
def test_slug(name, expected):
    import re

    assert slug(name) == expected
    if expected:
        assert re.match(ID_PATTERN, expected)
