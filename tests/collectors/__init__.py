"""Tests of the collectors. Helpers shared by the MQTT test modules live here."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from gwanje.config import Config, load_config
from gwanje.model import MAX_TEXT_LEN, Quality, Sample

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def demo_config(**mqtt: Any) -> Config:
    """The shipped demo config (environment ignored), with system.mqtt fields overridden."""
    config = load_config(CONFIG_DIR, env={})
    if not mqtt:
        return config
    settings = config.system.mqtt.model_copy(update=mqtt)
    return dataclasses.replace(config, system=config.system.model_copy(update={"mqtt": settings}))


def assert_valid(config: Config, samples: list[Sample], reasons: list[str], now: int) -> None:
    """What every decoder output must be: reasons are words; every sample belongs to a
    configured signal, has a finite number (or bounded text for text/state signals), a
    quality, and a source time after 2000 and at most the clock tolerance after `now`."""
    kinds = {(*m.key, s.id): s.kind for m in config.machines() for s in m.signals}
    assert all(isinstance(r, str) and r for r in reasons)
    for s in samples:
        kind = kinds[s.series]
        assert isinstance(s.quality, Quality)
        assert 946_684_800 * 10**9 <= s.ts <= now + int(config.system.clock.future_tolerance_s * 10**9)
        if isinstance(s.value, float):
            assert math.isfinite(s.value) and kind != "text"
        else:
            assert isinstance(s.value, str) and len(s.value) <= MAX_TEXT_LEN and "\x00" not in s.value
            assert kind in ("text", "state")
