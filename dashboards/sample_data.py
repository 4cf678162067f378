"""Plausible history for every machine of a config, for screenshots, the render benchmark and
browser tests — a store that looks like a working plant without running the simulator.

Pure: returns Samples; the caller writes them. Deterministic for a seed.
"""
from __future__ import annotations

import math
import random
from typing import Iterator, Mapping, Optional

from gwanje.config import Config, MachineSpec
from gwanje.model import NS_PER_S, MachineState, Sample

# a rough mix of what a shift looks like
_STATE_WEIGHTS = [(MachineState.RUNNING, 0.7), (MachineState.IDLE, 0.1), (MachineState.DOWN, 0.08),
                  (MachineState.SETUP, 0.07), (MachineState.PLANNED_STOP, 0.05)]


def code_for(spec: MachineSpec, state: MachineState) -> float | str:
    """The first PLC code the class maps to the state (for writing test data)."""
    codes = getattr(spec.klass.state_codes, state.value)
    if not codes:
        raise ValueError(f"class of {spec.key} has no code for {state.value}")
    c = codes[0]
    return float(c) if isinstance(c, (int, float)) else c


def _analog(spec: MachineSpec, signal_id: str, t_s: float, phase: float, running: bool) -> float:
    sdef = spec.signal(signal_id)
    lo, hi = sdef.range if sdef and sdef.range else (0.0, 100.0)
    mid, amp = lo + (hi - lo) * 0.6, (hi - lo) * 0.08
    base = mid if running else lo + (hi - lo) * 0.1
    return round(base + amp * math.sin(t_s / 60.0 + phase) + amp * 0.3 * math.sin(t_s / 7.0 + 2 * phase), 3)


def machine_history(spec: MachineSpec, end_ns: int, duration_s: int, period_s: float,
                    state: MachineState, rng: random.Random, lot: Optional[str] = None) -> Iterator[Sample]:
    """Samples of every signal of one machine every period_s up to end_ns, ending in `state`."""
    k = spec.klass
    phase = rng.random() * 6.28
    n = int(duration_s / period_s)
    total = float(rng.randint(200, 3000))
    reject = float(int(total * rng.uniform(0.005, 0.03)))
    running = state is MachineState.RUNNING
    lot = lot or f"L{rng.randint(2400, 2499)}-{rng.randint(1, 99):02d}"
    for i in range(n):
        ts = end_ns - int((n - 1 - i) * period_s * NS_PER_S)
        t_s = ts / NS_PER_S
        if running and rng.random() < period_s / spec.definition.ideal_cycle_s:
            total += 1
            if rng.random() < 0.02:
                reject += 1
        for s in k.signals:
            if s.id == k.state_signal:
                v: float | str = code_for(spec, state)
            elif s.id == k.total_signal:
                v = total
            elif s.id == k.good_signal:
                v = total - reject
            elif s.id == k.reject_signal:
                v = reject
            elif s.kind == "text":
                v = lot
            else:
                v = _analog(spec, s.id, t_s, phase, running)
            yield Sample(spec.site, spec.line, spec.machine, s.id, v, ts)


def plant_history(config: Config, end_ns: int, duration_s: int = 900, period_s: float = 5.0, seed: int = 7,
                  states: Optional[Mapping[str, MachineState]] = None,
                  silent: Mapping[str, float] = {}) -> list[Sample]:
    """History of the whole plant. states: "site/line/machine" -> final state (else random);
    silent: "site/line/machine" -> seconds since it last sent anything (stale machines)."""
    rng = random.Random(seed)
    out: list[Sample] = []
    for spec in config.machines():
        key = "/".join(spec.key)
        if states and key in states:
            state = states[key]
        else:
            r, acc, state = rng.random(), 0.0, MachineState.RUNNING
            for st, w in _STATE_WEIGHTS:
                acc += w
                if r < acc:
                    state = st
                    break
        end = end_ns - int(silent.get(key, 0.0) * NS_PER_S)
        out.extend(machine_history(spec, end, duration_s, period_s, state, rng))
    return out
