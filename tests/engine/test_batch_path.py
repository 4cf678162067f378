"""The engine's columnar path (Engine.on_samples of a gwanje.batch.SampleBatch) against its
per-Sample path (on_samples of a list of Samples): random sample streams of several machines —
state codes (mapped, unmapped, text, NaN, bad quality), counters with resets, wraps, faults and
garbage readings, LOT text, signals the engine does not read (numbers, text, wrong types),
stragglers, silences longer than the comm timeout, a fast PLC clock, times in the future and
decades old, unknown machines, odd qualities, names that are not text and times that are not
ints — fed batch by batch once as lists and once as SampleBatch.of(the same list) into two
fresh engines: the same events in the same order after every batch, the same exception where
the per-Sample path raises one, the same rejection counts, the same state of every machine
and the same snapshot."""
from __future__ import annotations

import random
from typing import Any

import pytest

from gwanje.batch import SampleBatch
from gwanje.engine import Engine
from gwanje.model import NS_PER_S, Quality, Sample
from tests.engine.conftest import SHIFTS_8H, kst, make_config

M1, M2, PRESS = ("s1", "l1", "m1"), ("s1", "l1", "m2"), ("s1", "p1", "press")
UNKNOWN = [("s1", "l1", "m9"), ("s2", "x", "y")]
# each machine's PLC clock against the wall clock: m2 runs 4 minutes fast (inside the 300 s
# the engine accepts from the future), the press 10 s slow
OFFSET = {M1: 0, M2: 240 * NS_PER_S, PRESS: -10 * NS_PER_S}
CODES = [3.0] * 12 + [1.0, 2.0, 4.0, 5.0, 0.0, 9.0, "3", " 4 ", float("nan"), 3, None, "idle?"]
ODD_QUALITY = ["bad", "good", None, 7, False]  # kept as they are by SampleBatch.of (see the note below)


class Plant:
    """Random PLC traffic: one message = one machine's signals at one time."""

    def __init__(self, rng: random.Random, t0: int) -> None:
        self.rng = rng
        self.now = t0
        self.code = {m: 3.0 for m in OFFSET}
        self.count = {m: [rng.randrange(0, 2**16) if m == PRESS else rng.randrange(0, 10**6)] * 3 for m in OFFSET}
        self.silent_until = {m: 0 for m in OFFSET}
        self.held: list[list[Sample]] = []  # messages delivered late

    def quality(self) -> Any:
        r = self.rng.random()
        if r < 0.9:
            return Quality.GOOD
        if r < 0.95:
            return self.rng.choice([Quality.UNCERTAIN, Quality.BAD])
        return self.rng.choice(ODD_QUALITY)

    def message(self) -> list[Sample]:
        rng = self.rng
        self.now += rng.randrange(50, 1500) * 1_000_000
        m = rng.choice(list(OFFSET) + UNKNOWN[:1] * (rng.random() < 0.03))
        if m in UNKNOWN or rng.random() < 0.01:
            m = rng.choice(UNKNOWN) if m in UNKNOWN or rng.random() < 0.5 else m
        if m in OFFSET and self.now < self.silent_until[m]:
            return []
        if m in OFFSET and rng.random() < 0.003:  # communication loss longer than the timeout
            self.silent_until[m] = self.now + rng.randrange(31, 200) * NS_PER_S
        ts = self.now + OFFSET.get(m, 0)
        r = rng.random()
        if r < 0.004:
            ts = self.now + 400 * NS_PER_S  # beyond what the engine accepts from the future
        elif r < 0.008:
            ts = self.now - 27 * 3600 * NS_PER_S  # a PLC clock reset
        elif r < 0.03:
            ts -= rng.randrange(1, 20) * NS_PER_S  # a straggler
        out = []
        if rng.random() < 0.05:
            self.code[m] = rng.choice(CODES)
        if rng.random() < 0.8:
            out.append(Sample(*m, "state", self.code.get(m, 3.0), ts, self.quality()))
        c = self.count.setdefault(m, [0, 0, 0])
        if self.code.get(m) == 3.0:
            made = rng.choice([0, 0, 1, 1, 2])
            rej = 1 if made and rng.random() < 0.1 else 0
            c[0] += made
            c[1] += made - rej
            c[2] += rej
        r = rng.random()
        if r < 0.003:
            c[:] = [0, 0, 0]  # reset
        elif r < 0.005:
            c[0] += 10**5  # a jump the machine cannot make
        bits = 16 if m == PRESS else 32
        for name, v in zip(("part_count_total", "part_count_good", "part_count_reject"), c):
            if rng.random() < 0.85:
                val: Any = float(v % 2**bits)
                if rng.random() < 0.01:
                    val = rng.choice([float("nan"), -1.0, 1.5, "12", None, float(2**bits), 7])
                out.append(Sample(*m, name, val, ts, self.quality()))
        if rng.random() < 0.05:
            out.append(Sample(*m, "lot", rng.choice(["BA-0001", "BB-0002", "ZZ-9", "BA-0001", 5.0]), ts,
                              self.quality()))
        for name in ("temp", "vibration", "spindle_load", "undeclared"):
            if rng.random() < 0.9:
                v = rng.gauss(50, 10)
                if rng.random() < 0.01:
                    v = rng.choice([float("nan"), float("inf"), 3, None, "x"])
                out.append(Sample(*m, name, v, ts + rng.choice([0, 0, 0, 1, -1]), self.quality()))
        if rng.random() < 0.1:
            out.append(Sample(*m, "program", rng.choice(["O1234", "O5678"]), ts, self.quality()))
        rng.shuffle(out) if rng.random() < 0.2 else None
        if rng.random() < 0.02:
            self.held.append(out)
            return []
        if self.held and rng.random() < 0.05:
            out = out + self.held.pop(0)
        return out

    def batch(self, odd: bool) -> list[Sample]:
        out: list[Sample] = []
        want = self.rng.choice([1, 3, 10, 30, 100, 300])
        while len(out) < want:
            out += self.message()
        if self.rng.random() < 0.1:
            self.rng.shuffle(out)
        if odd and self.rng.random() < 0.03:
            # garbage a caller may hand over: names that are not text, times that are not ints
            s = self.rng.choice(out) if out else Sample(*M1, "temp", 1.0, self.now)
            bad = self.rng.choice([
                Sample(s.site, s.line, 7, s.signal, s.value, s.ts),  # type: ignore[arg-type]
                Sample(s.site, s.line, s.machine, None, s.value, s.ts),  # type: ignore[arg-type]
                Sample(s.site, ["l1"], s.machine, s.signal, s.value, s.ts),  # type: ignore[arg-type]
                Sample(s.site, s.line, s.machine, s.signal, s.value, None),  # type: ignore[arg-type]
                Sample(s.site, s.line, s.machine, s.signal, s.value, "x"),  # type: ignore[arg-type]
                Sample(*M1, "temp", 1.0, float(s.ts)),  # type: ignore[arg-type]
            ])
            out.insert(self.rng.randrange(len(out) + 1), bad)
        return out


def engine_state(e: Engine) -> str:
    out: dict[Any, Any] = {}
    for k, r in e.runs.items():
        t = r.tracker
        out[k] = (t.state, t.code, t.since_ns, t.last_seen_ns, t.late, t.unmapped,
                  {s: (c.prev, c.prev_ts, c.resets, c.wraps, c.jumps, c.faults, c.rejected)
                   for s, c in r.counters.items()},
                  r.watermark, r.offset_ns, r.next_due_ns, r.lot, r.product, r.cycle_s, r.intervals,
                  sorted(r.minutes.items()), sorted(r.dirty), r.opened_ns, r.opened_prev)
    out["rejects"] = e.rejects.counts()
    out["closing"] = e._closing
    return repr(out)


def call(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "ok", repr(fn(arg))
    except Exception as exc:  # the per-Sample path raises on some garbage: so must the other
        return "raised", f"{type(exc).__name__}: {exc}"


class Counting:
    """Counts how often the engine took which path (so the test knows the columnar one ran)."""

    def __init__(self, eng: Engine) -> None:
        self.batches = self.whole_batches = self.machine_batches = self.one_by_one = 0
        on_batch, on_samples, feed_run_batch, feed_item = eng._on_batch, eng._on_samples, eng._feed_run_batch, \
            eng._feed_item

        def _on_batch(*a: Any) -> Any:
            self.batches += 1
            return on_batch(*a)

        def _on_samples(*a: Any) -> Any:
            self.whole_batches += 1
            return on_samples(*a)

        def _feed_run_batch(*a: Any) -> Any:
            self.machine_batches += 1
            return feed_run_batch(*a)

        def _feed_item(*a: Any) -> Any:
            self.one_by_one += 1
            return feed_item(*a)

        eng._on_batch, eng._on_samples = _on_batch, _on_samples  # type: ignore[method-assign]
        eng._feed_run_batch, eng._feed_item = _feed_run_batch, _feed_item  # type: ignore[method-assign]


@pytest.mark.parametrize("seed", range(8))
def test_columnar_and_per_sample_paths_agree(tmp_path, seed):
    rng = random.Random(seed)
    products = seed % 2 == 1  # LOT tracking on: the LOT is a sample the engine reads
    with_clock = seed % 4 != 2  # no wall clock: nothing is refused for its time
    shifts = dict(SHIFTS_8H)
    if products:
        shifts["products"] = [{"id": "bracket-a", "lot_prefix": "BA-", "ideal_cycle_s": {"m2": 30, "m1": 20}},
                              {"id": "bracket-b", "lot_prefix": "BB-", "ideal_cycle_s": {"m2": 60}}]
    config = make_config(tmp_path, shifts=shifts)
    # across the day shift's end (14:00) and its close (14:05)
    plant = Plant(rng, kst(2026, 11, 24, 13, 40) + rng.randrange(0, 300) * NS_PER_S)
    clock = (lambda: plant.now) if with_clock else None
    per_sample, columnar = Engine(config, clock=clock), Engine(config, clock=clock)
    paths = Counting(columnar)
    n = 0
    kinds: set[str] = set()
    end = kst(2026, 11, 24, 14, 25)
    while plant.now < end:
        samples = plant.batch(odd=True)
        n += len(samples)
        a = call(per_sample.on_samples, samples)
        b = call(columnar.on_samples, SampleBatch.of(samples))
        assert a == b, f"batch of {len(samples)} samples at {plant.now}"
        kinds |= {k for k in ("oee_shift", "state", "counts", "lot") if f"kind='{k}'" in a[1]}
        if rng.random() < 0.05:
            assert repr(per_sample.tick(plant.now)) == repr(columnar.tick(plant.now))
        if rng.random() < 0.02:
            assert engine_state(per_sample) == engine_state(columnar)
    assert n > 10_000
    assert engine_state(per_sample) == engine_state(columnar)
    assert repr(per_sample.snapshot(plant.now)) == repr(columnar.snapshot(plant.now))
    assert per_sample.rejects.counts() == columnar.rejects.counts()
    counts = per_sample.rejects.counts()
    assert counts.get("unknown_machine", 0) > 0
    if with_clock:
        assert counts.get("timestamp_in_future", 0) > 0 and counts.get("timestamp_too_old", 0) > 0
    # the comparison is not vacuous: most machine batches went the columnar way, and the
    # stream made every kind of record (the shift closed)
    print(f"{n} samples, {paths.batches} batches, {paths.whole_batches} of them per Sample, "
          f"{paths.machine_batches} machine batches, {paths.one_by_one} samples one by one")
    assert paths.machine_batches > 300 and paths.whole_batches < paths.batches / 10
    assert paths.one_by_one < n / 2
    assert kinds == {"oee_shift", "state", "counts"} | ({"lot"} if products else set())


def test_an_odd_quality_is_read_as_the_batch_hands_it_over(tmp_path):
    """SampleBatch.of keeps a quality that is not a Quality as it is (an int that looks like
    a code included: gwanje.batch.Garbage): the columnar path sees what the Samples say."""
    config = make_config(tmp_path)
    t = kst(2026, 11, 24, 8)
    warm = [Sample(*M1, "state", 3.0, t - NS_PER_S), Sample(*M1, "part_count_total", 1.0, t - NS_PER_S)]
    samples = [Sample(*M1, "state", 4.0, t, 2), Sample(*M1, "part_count_total", 5.0, t, "bad")]  # type: ignore
    a, b = Engine(config, clock=None), Engine(config, clock=None)
    a.on_samples(warm)
    b.on_samples(SampleBatch.of(warm))
    batch = SampleBatch.of(samples)
    assert repr(a.on_samples(list(batch))) == repr(b.on_samples(batch))
    assert engine_state(a) == engine_state(b)
    # the int 2 is no Quality.BAD: the state code is read as the list path reads it; the
    # "bad" counter reading is not counted
    assert b.runs[M1].tracker.state.value == a.runs[M1].tracker.state.value == "down"
    assert b.runs[M1].counters["part_count_total"].prev == 1


def test_a_text_sample_past_the_shift_close_closes_the_shift(tmp_path):
    """Text is no liveness, but _feed_run closes a due shift before any sample past it: a
    batch holding only the machine's program name after 14:05 closes the day shift."""
    config = make_config(tmp_path)
    a, b = Engine(config, clock=None), Engine(config, clock=None)
    t = kst(2026, 11, 24, 13, 59)
    batches = [[Sample(*M1, "state", 3.0, t + k * NS_PER_S), Sample(*M1, "temp", 50.0, t + k * NS_PER_S)]
               for k in range(0, 120, 10)]
    batches.append([Sample(*M1, "program", "O1234", kst(2026, 11, 24, 14, 6)),
                    Sample(*M1, "temp", 51.0, t + 115 * NS_PER_S)])
    for samples in batches:
        ea, eb = a.on_samples(samples), b.on_samples(SampleBatch.of(samples))
        assert repr(ea) == repr(eb)
    assert [e.machine for e in ea if e.kind == "oee_shift"] == ["m1"]
    assert engine_state(a) == engine_state(b)
