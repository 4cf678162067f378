"""The issue 11 load: 40 MQTT machines x 50 numeric signals (bench.ingest --load 40x50).

write_config(dest) copies config/ and replaces plant.yaml's plant with `machines` real MQTT
machines (not simulated) of one class with `signals` numeric signals — state (a code),
part_count_total / _good / _reject (counters) and analog a01.. — spread over `lines` lines in
the two demo sites (so notify.yaml's routes still name real sites). system.yaml: no OPC UA
endpoint (no machine uses one), simulator off, and, for `instances` > 0, collect.instances
p1..pN owning the lines round robin (`app.py collect --instance pN`, gwanje.partition).
alarms.yaml: rules over the new class (two analog limits, a rate of change, stale data) that
the publisher's values never trip: the alarm service evaluates every sample as in a plant,
without an alarm storm.

message(k, ...) is one message of the load: machine k % machines' 50 signals at one current
time (time.time_ns(), strictly increasing per machine), as a JSON batch
`[{"signal": .., "value": .., "ts": ..}, ...]` (docs/payloads.md), the shape bench.ingest's
batched mode sends.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MACHINES, SIGNALS, LINES = 40, 50, 8
CLASS = "bench50"
COUNTERS = ("part_count_total", "part_count_good", "part_count_reject")


def signal_ids(signals: int = SIGNALS) -> list[str]:
    return ["state", *COUNTERS] + [f"a{i:02d}" for i in range(1, signals - len(COUNTERS))]


def write_config(dest: Path, machines: int = MACHINES, signals: int = SIGNALS, lines: int = LINES,
                 instances: int = 0) -> Path:
    dest = Path(dest)
    shutil.copytree(REPO / "config", dest)
    plant = yaml.safe_load((dest / "plant.yaml").read_text(encoding="utf-8"))
    sigs = [{"id": "state", "name": {"ko": "운전 상태", "en": "Run state"}, "kind": "state"}]
    sigs += [{"id": c, "name": {"ko": c, "en": c}, "kind": "counter", "unit": "ea"} for c in COUNTERS]
    sigs += [{"id": s, "name": {"ko": f"아날로그 {s}", "en": f"Analog {s}"}, "unit": "u", "range": [0, 1000]}
             for s in signal_ids(signals)[4:]]
    plant["machine_classes"] = {CLASS: {
        "name": {"ko": "벤치 설비", "en": "Bench machine"},
        "state_codes": {"running": [1], "idle": [2], "down": [3], "setup": [4], "planned_stop": [5]},
        "signals": sigs}}
    site_ids = [s["id"] for s in plant["sites"]][:2]
    per_line = -(-machines // lines)
    sites = {sid: [] for sid in site_ids}
    n = 0
    for li in range(lines):
        sid = site_ids[li % len(site_ids)]
        ms = []
        for _ in range(per_line):
            if n == machines:
                break
            n += 1
            ms.append({"id": f"m{n:03d}", "name": {"ko": f"설비 {n}", "en": f"Machine {n}"}, "class": CLASS,
                       "source": "mqtt", "ideal_cycle_s": 10})
        if ms:
            sites[sid].append({"id": f"line-{li + 1}", "name": {"ko": f"라인 {li + 1}", "en": f"Line {li + 1}"},
                               "process": "other", "machines": ms})
    plant["sites"] = [{"id": sid, "name": {"ko": sid, "en": sid}, "simulated": False, "lines": lns}
                      for sid, lns in sites.items() if lns]
    (dest / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True, sort_keys=False), encoding="utf-8")

    system = yaml.safe_load((dest / "system.yaml").read_text(encoding="utf-8"))
    system["opcua"]["endpoints"] = []
    system["simulator"]["enabled"] = False
    all_lines = [f"{s['id']}/{ln['id']}" for s in plant["sites"] for ln in s["lines"]]
    if instances:
        if instances > len(all_lines):
            raise ValueError(f"{instances} instances for {len(all_lines)} lines")
        system["collect"]["instances"] = [{"name": f"p{i + 1}", "lines": all_lines[i::instances]}
                                          for i in range(instances)]
    (dest / "system.yaml").write_text(yaml.safe_dump(system, allow_unicode=True, sort_keys=False), encoding="utf-8")

    msg = {"ko": "{machine_name} {signal} {value}", "en": "{machine_name} {signal} {value}"}
    rules = [
        {"id": "bench-a01", "type": "analog", "scope": {"class": [CLASS]}, "signal": "a01",
         "hh": {"limit": 990, "priority": "critical"}, "h": {"limit": 950, "priority": "high"}, "deadband": 5,
         "on_delay_s": 5, "off_delay_s": 10, "message": msg},
        {"id": "bench-a02", "type": "analog", "scope": {"class": [CLASS]}, "signal": "a02",
         "l": {"limit": -10, "priority": "medium"}, "deadband": 1, "message": msg},
        {"id": "bench-a03-rate", "type": "rate", "scope": {"class": [CLASS]}, "signal": "a03",
         "max_per_s": 1e9, "priority": "medium", "message": msg},
        {"id": "bench-comm", "type": "stale", "max_age_s": 60, "priority": "high", "message": msg},
    ]
    (dest / "alarms.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True, sort_keys=False),
                                      encoding="utf-8")
    return dest


def targets(config_dir: Path) -> list[tuple[str, list[str]]]:
    """(machine topic, its signals) of every MQTT machine of the config."""
    from gwanje.config import load_config

    cfg = load_config(config_dir, env={})
    return [(f"gwanje/{m.site}/{m.line}/{m.machine}", [s.id for s in m.signals])
            for m in cfg.machines() if m.definition.source == "mqtt"]


def message(k: int, n_machines: int, sigs: list[str], ts: int) -> str:
    """Message k: its machine's signals at time ts. Counters count the machine's messages
    (one part each), state stays running (1), analog values stay inside every alarm limit."""
    part = k // n_machines
    out = []
    for j, s in enumerate(sigs):
        if s == "state":
            v = "1"
        elif s == "part_count_reject":
            v = "0"
        elif s in COUNTERS:
            v = str(part)
        else:
            v = "%d.5" % ((k + j) % 900)
        out.append('{"signal":"%s","value":%s,"ts":%d}' % (s, v, ts))
    return "[" + ",".join(out) + "]"
