"""gwanje.batch: columns stand for exactly the samples they were built from."""
from __future__ import annotations

import random

from gwanje.batch import SERIES, SampleBatch
from gwanje.model import Quality, Sample


def _samples(n: int, seed: int = 1) -> list[Sample]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        q = r.choice([Quality.GOOD] * 4 + [Quality.UNCERTAIN, Quality.BAD])
        v = r.choice([float(r.randint(0, 99)), f"LOT-{i}"])
        out.append(Sample("s", r.choice(["l1", "l2"]), f"m{r.randint(1, 3)}", f"g{r.randint(1, 4)}", v,
                          1_700_000_000_000_000_000 + i, q))
    return out


def test_a_batch_reads_back_as_the_samples_it_was_built_from():
    samples = _samples(200)
    b = SampleBatch.of(samples)
    assert len(b) == 200
    assert list(b) == samples
    assert [b[i] for i in range(len(b))] == samples
    assert b == samples and b[10:20] == samples[10:20]
    assert b.keys()[5] == samples[5].series


def test_all_good_batches_carry_no_quality_column():
    b = SampleBatch.of([Sample("s", "l", "m", "g", 1.0, 1)] * 3)
    assert b.quality is None and b.qualities() == [0, 0, 0]
    assert all(s.quality is Quality.GOOD for s in b)


def test_concat_take_and_without_keep_order_and_quality():
    a, c = _samples(50, 1), _samples(70, 2)
    all_good = [Sample("s", "l", "m", "g", float(i), i) for i in range(5)]
    b = SampleBatch.concat([SampleBatch.of(all_good), SampleBatch.of(a), c])
    assert list(b) == all_good + a + c
    assert list(b.take([0, 7, 60])) == [(all_good + a + c)[i] for i in (0, 7, 60)]
    assert list(b.without([0, 1])) == (all_good + a + c)[2:]


def test_one_series_one_id_and_garbage_kept_as_it_is():
    i = SERIES.id("s", "l", "m", "g")
    assert SERIES.id("s", "l", "m", "g") == i and SERIES.keys[i] == ("s", "l", "m", "g")
    odd = [Sample(["not", "hashable"], "l", "m", "g", 1.0, 1), Sample("s", "l", "m", "g", float("nan"), "x", "weird")]
    b = SampleBatch.of(odd)
    back = list(b)
    assert back[0].site == ["not", "hashable"]
    assert back[1].ts == "x" and back[1].quality == "weird" and back[1].value != back[1].value
