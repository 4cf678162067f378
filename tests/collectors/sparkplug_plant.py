"""A plant with one third-party Sparkplug B device, under the ids the slug rule gives its
names (gwanje.naming): what a user writes into plant.yaml for such a device."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from gwanje.config import Config, load_config

# the device's own names, as its edge node publishes them
GROUP, EDGE_NODE, DEVICE = "Changwon-1", "Press Line 2", "Press_201"
METRICS = [
    {"name": "Motor/Speed", "type": "Double"},
    {"name": "CycleCount", "type": "UInt32"},
    {"name": "State", "type": "Int32"},
    {"name": "Lot", "type": "String"},
]
# ... and what they are in plant.yaml
SITE, LINE, MACHINE = "changwon-1", "press-line-2", "press_201"
SIGNALS = {"Motor/Speed": "motor-speed", "CycleCount": "cyclecount", "State": "state", "Lot": "lot"}

_NAMES = {"ko": "x", "en": "x"}


def plant(extra_signals: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    signals = [
        {"id": "state", "name": _NAMES, "kind": "state"},
        {"id": "cyclecount", "name": _NAMES, "kind": "counter"},
        {"id": "motor-speed", "name": _NAMES, "unit": "rpm"},
        {"id": "lot", "name": _NAMES, "kind": "text"},
        *(extra_signals or []),
    ]
    return {
        "name": {"ko": "시험 공장", "en": "Test plant"},
        "machine_classes": {"sp-press": {
            "name": _NAMES, "signals": signals,
            "state_codes": {"running": [1], "idle": [2], "down": [3]},
            "total_signal": "cyclecount", "good_signal": None, "reject_signal": None}},
        "sites": [{"id": SITE, "name": _NAMES, "lines": [{
            "id": LINE, "name": _NAMES, "process": "press",
            "machines": [{"id": MACHINE, "name": _NAMES, "class": "sp-press", "source": "mqtt",
                          "ideal_cycle_s": 2.0}]}]}],
    }


def write_config(directory: Path, mqtt: Optional[dict[str, Any]] = None,
                 extra_signals: Optional[list[dict[str, Any]]] = None) -> Config:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plant.yaml").write_text(yaml.safe_dump(plant(extra_signals), allow_unicode=True))
    system = {"simulator": {"enabled": False}, "mqtt": {"subscriptions": ["spBv1.0/#"], **(mqtt or {})}}
    (directory / "system.yaml").write_text(yaml.safe_dump(system, allow_unicode=True))
    return load_config(directory, env={})
