"""One meaning per PLC code: the engine, the overview tiles and the alarm rules read a state
code the same way, whether the PLC sends it as a number or as text (issue 8, bullet 5)."""
from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules import Evaluator, load_rules
from dashboards.data import build_snapshot
from gwanje.config import ConfigError, load_config
from gwanje.engine import Engine
from gwanje.model import NS_PER_S, MachineState, Quality, Sample

REPO = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000 * NS_PER_S


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config")


def _cnc(config):
    return next(m for m in config.machines() if m.klass.state_codes.running == [3])


@pytest.mark.parametrize("sent, state", [
    (3.0, MachineState.RUNNING), ("3", MachineState.RUNNING), (" 3.0 ", MachineState.RUNNING),
    ("4", MachineState.DOWN), ("99", MachineState.UNKNOWN), ("RUN", MachineState.UNKNOWN),
])
def test_engine_tiles_and_alarm_rules_agree_on_a_code(config, sent, state):
    m = _cnc(config)
    samples = [Sample(m.site, m.line, m.machine, m.klass.state_signal, sent, T0)]

    eng = Engine(config, clock=lambda: T0)
    eng.on_samples(samples)
    engine_state = eng.runs[m.key].tracker.state

    tile = build_snapshot(config, samples, T0 + NS_PER_S).machine(m.site, m.line, m.machine)

    ev = Evaluator(config, load_rules(config))
    ev.feed(samples)
    alarm_state = ev.machine_state(*m.key)

    assert (engine_state, tile.state, alarm_state) == (state, state, state)


def test_a_bad_reading_is_unknown_everywhere_an_uncertain_one_keeps_its_code(config):
    m = _cnc(config)
    for quality, state in ((Quality.BAD, MachineState.UNKNOWN), (Quality.UNCERTAIN, MachineState.RUNNING)):
        samples = [Sample(m.site, m.line, m.machine, "state", 3.0, T0, quality)]
        eng = Engine(config, clock=lambda: T0)
        eng.on_samples(samples)
        ev = Evaluator(config, load_rules(config))
        ev.feed(samples)
        tile = build_snapshot(config, samples, T0 + NS_PER_S).machine(m.site, m.line, m.machine)
        assert (eng.runs[m.key].tracker.state, tile.state, ev.machine_state(*m.key)) == (state, state, state)


def test_text_and_number_of_the_same_code_in_two_states_is_a_config_error(tmp_path, config):
    import shutil

    import yaml
    shutil.copytree(REPO / "config", tmp_path / "c")
    plant = yaml.safe_load((tmp_path / "c" / "plant.yaml").read_text())
    cls = next(iter(plant["machine_classes"].values()))
    cls["state_codes"]["idle"] = list(cls["state_codes"].get("idle", [])) + [str(cls["state_codes"]["running"][0])]
    (tmp_path / "c" / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True))
    with pytest.raises(ConfigError, match="appears in both running and idle"):
        load_config(tmp_path / "c")


def test_text_codes_stay_text():
    from gwanje.state import CodeMap

    cm = CodeMap({"RUN": MachineState.RUNNING, 4.0: MachineState.DOWN})
    assert cm.get(" RUN ") is MachineState.RUNNING
    assert cm.get("4") is MachineState.DOWN and cm.get(4) is MachineState.DOWN and cm.get(True) is None
    assert cm.get(float("nan")) is None and cm.get(None) is None
