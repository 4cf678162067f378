"""The runner's own checks, without servers: what it refuses to start with."""
from __future__ import annotations

from pathlib import Path

import pytest

from gwanje.config import load_config

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config")


def test_a_misspelt_sparkplug_line_is_an_error_not_json():
    from simulator.runner import Simulator

    with pytest.raises(ValueError, match="press-9"):
        Simulator(CONFIG, "mqtt://127.0.0.1:1", sparkplug_lines=["press-9"])
    with pytest.raises(ValueError, match="forge-1"):  # a line of OPC UA machines only
        Simulator(CONFIG, "mqtt://127.0.0.1:1", sparkplug_lines=["changwon-1/forge-1"])


@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker.plant.local", ("broker.plant.local", 1883, False)),
    ("mqtts://broker.plant.local", ("broker.plant.local", 8883, True)),
    ("mqtt://127.0.0.1:18830", ("127.0.0.1", 18830, False)),
])
def test_mqtt_urls(url, expected):
    from simulator.mqtt_publisher import parse_mqtt_url

    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker:1883", "broker:1883", "mqtt://"])
def test_a_url_that_is_not_mqtt_is_refused_with_its_text(url):
    from simulator.mqtt_publisher import parse_mqtt_url

    with pytest.raises(ValueError, match="MQTT url"):
        parse_mqtt_url(url)


def test_the_json_message_is_the_documented_one_time_many_signals_shape():
    from simulator.mqtt_publisher import payload_for

    # docs/payloads.md: {"ts": <epoch ms>, "values": {...}}; ns are cut to ms, text stays UTF-8
    assert payload_for(1_732_400_000_123_456_789, {"state": 3, "spindle_speed": 1200.5, "lot": "L2611-0042"}) == (
        b'{"ts":1732400000123,"values":{"state":3,"spindle_speed":1200.5,"lot":"L2611-0042"}}')


def test_a_sparkplug_line_with_a_real_mqtt_machine_is_refused(tmp_path):
    """Its real gateway may be the Sparkplug edge node of the line: a second one would
    scramble its births and deaths."""
    import shutil

    import yaml

    from simulator.runner import Simulator

    d = tmp_path / "config"
    shutil.copytree(Path(__file__).resolve().parents[2] / "config", d)
    plant = yaml.safe_load((d / "plant.yaml").read_text(encoding="utf-8"))
    plant["sites"][1]["lines"][2]["machines"][3]["simulated"] = False  # press-204
    (d / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    cfg = load_config(d, env={})
    with pytest.raises(ValueError, match=r"changwon-2/press-2 has real MQTT machines \['press-204'\]"):
        Simulator(cfg, "mqtt://127.0.0.1:1", sparkplug_lines=["press-2"])
    sim = Simulator(cfg, "mqtt://127.0.0.1:1")  # JSON: the real one is simply not published
    assert "press-204" not in {m.machine for m in sim.machines} and len(sim.machines) == 35


def test_the_log_tells_made_up_machines_from_real_ones():
    from simulator.runner import describe

    playing = {m.key for m in CONFIG.machines() if m.line != "forge-2"}
    text = describe(CONFIG, playing)
    assert text.startswith("33 of 36 machines: changwon-1/cnc-1 (all 6); ")
    assert "Real devices (never simulated): none" in text
    assert text.endswith("Marked simulated but not played (see the warnings): changwon-2/forge-2 (all 3)")
