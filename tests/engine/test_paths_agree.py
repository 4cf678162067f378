"""The live path (StateTracker + CounterTracker fed in batches) and the vectorised history
path (Engine.frame_oee over a polars frame) agree on randomised machines: gaps of every length,
unmapped codes, counter resets, 16-bit wraps, backwards jumps and garbage readings."""
from __future__ import annotations

import random

import polars as pl
import pytest

from gwanje.engine import Engine
from gwanje.model import NS_PER_S, Sample
from tests.engine.conftest import kst

START = kst(2026, 11, 24, 6)
END = START + 2 * 3600 * NS_PER_S  # a 2 h window keeps the test fast
CODES = [3.0, 3.0, 3.0, 1.0, 4.0, 5.0, 0.0, 99.0]


def random_machine(rng: random.Random, machine: tuple[str, str, str], bits: int) -> list[Sample]:
    out = []
    t = START - 15 * 60 * NS_PER_S
    total = rng.randrange(0, 2**bits)
    reject = rng.randrange(0, 2**bits)
    code = 3.0
    while t < END + 10 * 60 * NS_PER_S:
        r = rng.random()
        if r < 0.003:
            t += rng.choice([5, 29, 30, 31, 45, 600, 1800]) * NS_PER_S  # silence
            continue
        if r < 0.02:
            code = rng.choice(CODES)
        if code == 3.0 and rng.random() < 0.3:
            total += 1
            reject += rng.random() < 0.05
        if rng.random() < 0.0005:
            total = reject = 0  # reset
        if rng.random() < 0.0003:
            total = max(0, total - 5000)  # backwards jump
        out.append(Sample(*machine, "state", code, t))
        value = -1.0 if rng.random() < 0.001 else float(total % 2**bits)
        out.append(Sample(*machine, "part_count_total", value, t))
        out.append(Sample(*machine, "part_count_reject", float(reject % 2**bits), t))
        t += rng.choice([1, 1, 1, 2]) * NS_PER_S
    return out


@pytest.mark.parametrize("seed", range(16))
def test_live_and_frame_paths_agree(seed, config):
    rng = random.Random(seed)
    key, bits = rng.choice([(("s1", "l1", "m1"), 32), (("s1", "p1", "press"), 16)])
    samples = random_machine(rng, key, bits)
    eng = Engine(config, clock=None)
    step = rng.choice([50, 700, 5000])
    for i in range(0, len(samples), step):
        eng.on_samples(samples[i:i + step])
    live = eng._result(eng.runs[key], START, END, END + eng.timeout_ns)
    lookback = eng.timeout_ns + int(eng.startup_window_s * NS_PER_S)
    window = [s for s in samples if START - lookback <= s.ts < END + eng.timeout_ns]
    frame = pl.DataFrame({"signal": [s.signal for s in window], "ts": [s.ts for s in window],
                          "value": [s.value for s in window]}, schema={"signal": pl.String, "ts": pl.Int64,
                                                                        "value": pl.Float64})
    hist = Engine(config, clock=None).frame_oee(config.machine(*key), frame, [], START, END)
    assert hist.to_dict() == live.to_dict()
    assert live.planned_s + live.unknown_s + live.planned_stop_s == pytest.approx(2 * 3600)
