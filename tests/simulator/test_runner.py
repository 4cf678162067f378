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
