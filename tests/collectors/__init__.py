"""Tests of the collectors. Helpers shared by the MQTT test modules live here."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gwanje.config import Config, load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def demo_config(**mqtt: Any) -> Config:
    """The shipped demo config (environment ignored), with system.mqtt fields overridden."""
    config = load_config(CONFIG_DIR, env={})
    if not mqtt:
        return config
    settings = config.system.mqtt.model_copy(update=mqtt)
    return dataclasses.replace(config, system=config.system.model_copy(update={"mqtt": settings}))
