"""The shipped config loads; a bad config fails with file, key path and what is wrong."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gwanje.config import ConfigError, Secrets, load_config
from gwanje.model import MachineState

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfgdir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def edit(path: Path, fn):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_shipped_demo_plant():
    c = load_config(ROOT / "config", env={})
    machines = list(c.machines())
    assert len(c.plant.sites) == 2
    assert sum(len(s.lines) for s in c.plant.sites) == 8
    assert 30 <= len(machines) <= 50
    assert {ln.process for s in c.plant.sites for ln in s.lines} == {"cnc", "forging", "injection", "assembly", "press"}
    by_source = {src: sum(1 for m in machines if m.definition.source == src) for src in ("mqtt", "opcua")}
    assert by_source["mqtt"] >= 12 and by_source["opcua"] >= 12
    cnc = c.machine("changwon-1", "cnc-1", "cnc-101")
    assert cnc.klass.state_codes.mapping().get(3.0) is MachineState.RUNNING
    assert cnc.signal("spindle_speed").unit == "rpm"
    assert c.machine("changwon-1", "press-1", "press-101").definition.counter_bits == 16


def test_unknown_key_names_file_and_path(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][0]["lines"][1]["machines"][2].update(ideal_cycle=3))
    with pytest.raises(ConfigError) as e:
        load_config(cfgdir, env={})
    msg = str(e.value)
    assert "plant.yaml" in msg
    assert "sites.0.lines.1.machines.2.ideal_cycle" in msg
    assert "Extra inputs are not permitted" in msg


def test_wrong_type_and_range(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][1]["lines"][0]["machines"][0].update(ideal_cycle_s=-5))
    with pytest.raises(ConfigError, match=r"plant.yaml: sites.1.lines.0.machines.0.ideal_cycle_s: Input should be greater than 0"):
        load_config(cfgdir, env={})


@pytest.mark.parametrize("clock, message", [
    ({"future_tolerance_s": 0}, "clock.future_tolerance_s: Input should be greater than 0"),
    ({"future_tolerance_s": "soon"}, "clock.future_tolerance_s: Input should be a valid number"),
    ({"future_tolerence_s": 5}, "clock.future_tolerence_s: Extra inputs are not permitted"),
])
def test_clock_tolerance_is_validated(cfgdir, clock, message):
    edit(cfgdir / "system.yaml", lambda d: d.update(clock=clock))
    with pytest.raises(ConfigError, match=f"system.yaml: {message}"):
        load_config(cfgdir, env={})


def test_undefined_machine_class(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][0]["lines"][0]["machines"][0].update({"class": "lathe"}))
    with pytest.raises(ConfigError, match=r"class 'lathe' is not defined in machine_classes"):
        load_config(cfgdir, env={})


def test_duplicate_state_code(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d["machine_classes"]["press"]["state_codes"].update(idle=[1]))
    with pytest.raises(ConfigError, match=r"machine_classes.press.state_codes: state code 1 appears in both running and idle"):
        load_config(cfgdir, env={})


def test_opcua_endpoint_must_exist(cfgdir):
    edit(cfgdir / "system.yaml", lambda d: d["opcua"]["endpoints"].pop())
    with pytest.raises(ConfigError, match=r"sites.changwon-2.opcua_endpoint: 'changwon-2' is not an endpoint"):
        load_config(cfgdir, env={})


def test_invalid_yaml_names_line(cfgdir):
    (cfgdir / "system.yaml").write_text("mqtt:\n  url: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"system.yaml: line \d+ column \d+: not valid YAML"):
        load_config(cfgdir, env={})


def test_bad_timezone(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d.update(timezone="Asia/Nowhere"))
    with pytest.raises(ConfigError, match="plant.yaml: timezone: unknown time zone 'Asia/Nowhere'"):
        load_config(cfgdir, env={})


def test_environment_overrides_non_secrets():
    c = load_config(ROOT / "config", env={
        "GWANJE_MQTT_URL": "mqtts://broker:8883", "GWANJE_STORAGE": "influxdb", "GWANJE_PORT": "9000",
        "GWANJE_INFLUX_URL": "http://db:8086", "GWANJE_OPCUA_URL_CHANGWON_1": "opc.tcp://plc:4840", "GWANJE_DEMO": "0"})
    assert c.system.mqtt.url == "mqtts://broker:8883"
    assert c.system.storage.kind == "influxdb"
    assert c.system.storage.influxdb.url == "http://db:8086"
    assert c.system.ui.port == 9000
    assert c.endpoint("changwon-1").url == "opc.tcp://plc:4840"
    assert c.endpoint("changwon-2").url.endswith(":4842/gwanje/changwon-2")
    assert c.system.demo is False


def test_secrets_come_from_environment_and_never_show():
    s = Secrets.from_env({"GWANJE_MQTT_PASSWORD": "hunter2", "GWANJE_INFLUX_TOKEN": "tok-123"})
    assert s.mqtt_password == "hunter2"
    assert "hunter2" not in repr(s) and "tok-123" not in repr(s)


def test_secret_keys_in_yaml_are_rejected(cfgdir):
    edit(cfgdir / "system.yaml", lambda d: d["mqtt"].update(password="plain"))
    with pytest.raises(ConfigError, match=r"system.yaml: mqtt.password: Extra inputs are not permitted"):
        load_config(cfgdir, env={})


def test_check_config_cli(cfgdir):
    ok = subprocess.run([sys.executable, str(ROOT / "app.py"), "check-config", "--config", str(cfgdir)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "2 sites, 8 lines, 36 machines (36 simulated)" in ok.stdout
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][0].pop("lines"))
    bad = subprocess.run([sys.executable, str(ROOT / "app.py"), "check-config"], capture_output=True, text=True,
                         timeout=60, env={"GWANJE_CONFIG_DIR": str(cfgdir), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2
    assert "plant.yaml: sites.0.lines: Field required" in bad.stderr


def test_simulated_is_the_nearest_flag_and_real_by_default(cfgdir):
    def mark(d):
        site1, site2 = d["sites"]
        site1["simulated"] = True
        site1["lines"][0]["simulated"] = False              # cnc-1: real ...
        site1["lines"][0]["machines"][0]["simulated"] = True  # ... but cnc-101
        site2.pop("simulated")                              # changwon-2: nothing said
        site2["lines"][0]["simulated"] = True               # ... but injection-1
    edit(cfgdir / "plant.yaml", mark)
    c = load_config(cfgdir, env={})
    simulated = {m.machine for m in c.simulated_machines()}
    assert {"cnc-101", "cnc-201", "forge-101"} <= simulated and "cnc-102" not in simulated
    assert {m.machine for m in c.machines() if m.site == "changwon-2" and m.simulated} == {
        f"imm-10{i}" for i in range(1, 7)}
    assert c.machine("changwon-1", "cnc-1", "cnc-106").simulated is False


def test_simulated_must_be_a_boolean_at_its_key_path(cfgdir):
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][0]["lines"][2]["machines"][1].update(simulated="maybe"))
    with pytest.raises(ConfigError, match=r"plant.yaml: sites.0.lines.2.machines.1.simulated: Input should be a "
                                          r"valid boolean"):
        load_config(cfgdir, env={})


def test_an_opcua_endpoint_of_real_and_simulated_machines_is_refused(cfgdir):
    # the simulator would hold the real server's address (or could not serve its machines)
    edit(cfgdir / "plant.yaml", lambda d: d["sites"][1]["lines"][1]["machines"][3].update(simulated=False))
    with pytest.raises(ConfigError) as e:
        load_config(cfgdir, env={})
    msg = str(e.value)
    assert "plant.yaml: sites.changwon-2.opcua_endpoint: endpoint 'changwon-2' would serve simulated" in msg
    assert "real machines ['changwon-2/assembly-1/asm-104']" in msg
    assert "either the simulator's or a real server's" in msg
    # real and simulated MQTT machines share a broker: nothing to refuse
    edit(cfgdir / "plant.yaml", lambda d: (d["sites"][1]["lines"][1]["machines"][3].pop("simulated"),
                                          d["sites"][1]["lines"][0]["machines"][0].update(simulated=False)))
    assert not load_config(cfgdir, env={}).machine("changwon-2", "injection-1", "imm-101").simulated
