"""The live path (samples fed in batches, the shift record it writes at close) and the rebuild
from a real store (Engine.recompute paging raw samples out of DuckDB through the same
MachineRun) agree on randomised machines: gaps of every length, unmapped and text codes,
counter resets, 16-bit wraps, forward and backwards jumps and garbage readings. One
implementation of the rules; this guards the I/O around it (paging, order, look-back, close
time)."""
from __future__ import annotations

import random

import pytest

from gwanje.engine import Engine
from gwanje.model import NS_PER_S, Sample
from storage.embedded import EmbeddedStore
from tests.engine.conftest import kst

START = kst(2026, 11, 24, 6)
END = kst(2026, 11, 24, 14)  # the test plant's day shift
KEY = "2026-11-24/day"
CODES = [3.0, 3.0, 3.0, 1.0, 2.0, 4.0, 5.0, 0.0, 99.0, "3", "4"]


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
        if rng.random() < 0.0002:
            total += 100_000  # forward jump: a counter fault
        out.append(Sample(*machine, "state", code, t))
        value = -1.0 if rng.random() < 0.001 else float(total % 2**bits)
        out.append(Sample(*machine, "part_count_total", value, t))
        out.append(Sample(*machine, "part_count_reject", float(reject % 2**bits), t))
        t += rng.choice([1, 1, 1, 2]) * NS_PER_S
    return out


@pytest.mark.parametrize("seed", range(12))
def test_live_and_rebuild_agree(seed, config):
    rng = random.Random(seed)
    key, bits = rng.choice([(("s1", "l1", "m1"), 32), (("s1", "p1", "press"), 16)])
    samples = random_machine(rng, key, bits)
    eng = Engine(config, clock=None)
    step = rng.choice([50, 700, 5000])
    events = []
    for i in range(0, len(samples), step):
        events += eng.on_samples(samples[i:i + step])
    events += eng.tick(END + 3600 * NS_PER_S)  # a machine silent at the end closes by the clock
    live = [e.data for e in events if e.kind == "oee_shift" and e.key == KEY and (e.site, e.line, e.machine) == key]
    assert len(live) == 1, "the live path closed the shift once"
    store = EmbeddedStore(":memory:")
    store.write_samples(samples)
    import gwanje.engine as engine_mod
    engine_mod.PAGE_SIZE, page = rng.choice([97, 1000, 50_000]), engine_mod.PAGE_SIZE
    try:
        rebuilt = Engine(config, clock=None).recompute(store, key[0], key[1], key[2], START)
    finally:
        engine_mod.PAGE_SIZE = page
    (hist,) = [e.data for e in rebuilt if (e.site, e.line, e.machine) == key]
    assert hist == live[0]
    assert live[0]["planned_s"] + live[0]["unknown_s"] + live[0]["planned_stop_s"] == pytest.approx(8 * 3600)
