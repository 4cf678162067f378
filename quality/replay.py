"""Replay the simulated plant through the quality monitor, in process (bench/quality and the
tests): the same samples the collectors would hand the pipeline, without broker or store.

score_detections() scores alarm raises against the simulator's ground truth: a raise on a
machine during a fault (from its start to 10 min after its end) is a true detection of it; a
raise inside a failure precursor is neither right nor a false alarm; every other raise is a
false alarm.
"""
from __future__ import annotations

import statistics
from typing import Any, Callable, Iterable, Optional

from gwanje.config import Config
from gwanje.model import NS_PER_S, Sample
from gwanje.quality import QualityMonitor

PROCESS_FAULTS = ("tool_wear", "mold_temp_drift", "low_billet_temp", "die_wear")
GRACE_NS = 10 * 60 * NS_PER_S


def run(config: Config, plant: Any, monitor: QualityMonitor, start_ns: int, end_ns: int, step_s: float = 2.0,
        on_events: Optional[Callable[[list], None]] = None) -> dict[str, list]:
    """Step the plant from start to end, feed every machine's values to the monitor, collect
    its records and alarm calls."""
    keys = {m.key for m in config.machines()}
    events: list = []
    calls: list = []
    step = int(step_s * NS_PER_S)
    t = start_ns
    while t < end_ns:
        batch = []
        for spec, values in plant.step(t):
            if spec.key not in monitor.machines or spec.key not in keys:
                continue
            site, line, machine = spec.key
            for sig, v in values.items():
                batch.append(Sample(site, line, machine, sig, float(v) if isinstance(v, (int, float)) else v, t))
        ev = monitor.on_samples(batch)
        if on_events is not None:
            on_events(ev)
        events += ev
        calls += monitor.take_calls()
        t += step
    events += monitor.tick(end_ns + 3 * monitor.window_ns)
    calls += monitor.take_calls()
    return {"events": events, "calls": calls}


def score_detections(calls: Iterable[Any], faults: list[dict], start_ns: int, end_ns: int, prefix: str,
                     shifts: float, machines: int) -> dict[str, Any]:
    """Precision, recall, detection delays and false alarms per machine per shift of the
    alarm raises whose rule starts with `prefix`, for faults that start in [start, end)."""
    raises = [c for c in calls if c.action == "activate" and c.rule.startswith(prefix) and start_ns <= c.ts < end_ns]
    by_machine: dict[str, list[dict]] = {}
    for f in faults:
        by_machine.setdefault(f["machine"], []).append(f)
    process = [f for f in faults if f["kind"] in PROCESS_FAULTS and start_ns <= f["start_ns"] < end_ns]
    detected: dict[int, int] = {}
    tp = fp = neutral = 0
    for c in raises:
        hit = None
        for f in by_machine.get(c.machine, ()):
            fend = f["end_ns"] if f["end_ns"] is not None else end_ns
            if f["start_ns"] <= c.ts <= fend + GRACE_NS:
                hit = f
                break
        if hit is None:
            fp += 1
        elif hit["kind"] in PROCESS_FAULTS:
            tp += 1
            i = id(hit)
            detected[i] = min(detected.get(i, c.ts), c.ts)
        else:
            neutral += 1
    delays = sorted((detected[id(f)] - f["start_ns"]) / NS_PER_S / 60 for f in process if id(f) in detected)
    within10 = sum(1 for d in delays if d <= 10)
    q = (lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]) if delays else (lambda p: None)
    return {"faults": len(process), "detected": len(delays), "detected_within_10min": within10,
            "recall": len(delays) / len(process) if process else None,
            "recall_10min": within10 / len(process) if process else None,
            "precision": tp / (tp + fp) if tp + fp else None, "raises": len(raises), "true": tp, "false": fp,
            "precursor_raises": neutral,
            "delay_median_min": statistics.median(delays) if delays else None, "delay_p90_min": q(0.9),
            "false_per_machine_shift": fp / max(1, machines) / shifts if shifts else None}
