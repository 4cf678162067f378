"""Benchmark: how fast the stores take samples, in pipeline-sized batches — the per-Sample
path (a list of Samples, as before issue 11) against the columnar path (a SampleBatch, what the
pipeline hands over now), interleaved in one run so the machine's load hits both alike.

    python -m bench.store_write [--n 200000] [--batch 5000] [--runs 3] [--no-influx]

Data: --n samples of 36 machines x 10 signals (one a LOT text), like the demo plant: every
360 samples share a time, values repeat (i % 997 * 0.25). "unique" data: the same series, but
every value a random float and every time distinct (the batch encoder's formatting memo does
not pay there and is skipped).
  encode       line protocol only: encode_samples(list) vs encode_batch(batch), and
               as_batch(list) + encode_batch (what converting a list costs)
  spool        storage.spool encode (list: per-Sample walk; batch: from the columns, same
               bytes) and decode (to Samples: the previous decoder's work; to a batch)
  gzip         the influx body compression: gzip.compress level 1 vs the same with mtime=0
  embedded     EmbeddedStore.write_samples on a DuckDB file (fresh per run): the list path
               with INSERT OR REPLACE on every write (the previous code) vs the batch path
               (a plain INSERT first, INSERT OR REPLACE only after a conflict)
  influxdb     InfluxStore against a real influxd 1.x it starts itself (fresh database per
               run), gzip on (the shipped default): list vs batch
Prints the median of --runs runs each, the new/old ratio, the machine and load averages.
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gwanje.batch import SampleBatch, as_batch  # noqa: E402
from gwanje.model import Quality, Sample  # noqa: E402
from storage.embedded import EmbeddedStore  # noqa: E402
from storage.influx import InfluxStore  # noqa: E402
from storage.lineprotocol import encode_batch, encode_samples  # noqa: E402
from storage.spool import decode_batch, encode_batch as spool_encode  # noqa: E402

SIGNALS = ["spindle_speed", "spindle_load", "feed_rate", "vibration", "cycle_time",
           "part_count_total", "part_count_good", "part_count_reject", "state", "lot"]


def make_samples(n: int) -> list[Sample]:
    t0 = time.time_ns() - 3_600 * 1_000_000_000  # an hour ago: one InfluxDB shard
    series = [("changwon-1", f"line-{m % 8}", f"m-{m:02d}", sig) for m in range(36) for sig in SIGNALS]
    out = []
    for i in range(n):
        site, line, machine, sig = series[i % len(series)]
        value = f"LOT-{i // 1000:05d}" if sig == "lot" else float(i % 997) * 0.25
        out.append(Sample(site, line, machine, sig, value, t0 + (i // len(series)) * 1_000_000,
                          Quality.GOOD))
    return out


def unique_samples(samples: list[Sample], seed: int = 1) -> list[Sample]:
    r = random.Random(seed)
    return [Sample(s.site, s.line, s.machine, s.signal,
                   s.value if type(s.value) is str else r.uniform(-1e4, 1e4), s.ts + i,
                   r.choice((Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN))) for i, s in enumerate(samples)]


def batches(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def timed(fn, chunks) -> float:
    t = time.perf_counter()
    for c in chunks:
        fn(c)
    return time.perf_counter() - t


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(label: str, n: int, old: list[float], new: list[float], unit: str = "us") -> None:
    """Median per-sample cost (or rate) of old and new, and new/old."""
    mo, mn = statistics.median(old), statistics.median(new)
    if unit == "us":
        print(f"  {label:<40} old {mo / n * 1e6:7.3f} us/sample   new {mn / n * 1e6:7.3f} us/sample   "
              f"new/old {mn / mo:5.2f}   (runs old {', '.join(f'{s:.3f}' for s in old)} s; "
              f"new {', '.join(f'{s:.3f}' for s in new)} s)")
    else:
        print(f"  {label:<40} old {n / mo:>10,.0f} samples/s   new {n / mn:>10,.0f} samples/s   "
              f"new/old speed {mo / mn:5.2f}   (runs old {', '.join(f'{s:.3f}' for s in old)} s; "
              f"new {', '.join(f'{s:.3f}' for s in new)} s)")


def interleaved(runs: int, old, new) -> tuple[list[float], list[float]]:
    """old and new alternately, runs times each (old first on even runs, new first on odd)."""
    a: list[float] = []
    b: list[float] = []
    for r in range(runs):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            (a if which == 0 else b).append(old() if which == 0 else new())
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-influx", action="store_true", help="skip the influxd writes")
    args = ap.parse_args()
    n = args.n
    print(f"{n:,} samples in batches of {args.batch:,}, {args.runs} runs each, old/new interleaved")
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}  load average at start: {load()}")

    data = {"plant": make_samples(n)}
    data["unique"] = unique_samples(data["plant"])
    lists = {k: batches(v, args.batch) for k, v in data.items()}
    cols = {k: [SampleBatch.of(c) for c in v] for k, v in lists.items()}
    for k in data:  # byte-identical, or the numbers mean nothing
        assert all(encode_batch(b).points == encode_samples(c).points for b, c in zip(cols[k], lists[k]))

    print("encode (line protocol only)")
    for k in data:
        old, new = interleaved(args.runs, lambda: timed(encode_samples, lists[k]),
                               lambda: timed(encode_batch, cols[k]))
        report(f"{k}: list vs batch", n, old, new)
        old, new = interleaved(args.runs, lambda: timed(encode_samples, lists[k]),
                               lambda: timed(lambda c: encode_batch(as_batch(c)), lists[k]))
        report(f"{k}: list vs as_batch(list) + batch", n, old, new)

    print("spool (storage.spool)")
    for k in data:
        assert all(spool_encode(b) == spool_encode(c) for b, c in zip(cols[k], lists[k]))
        old, new = interleaved(args.runs, lambda: timed(spool_encode, lists[k]), lambda: timed(spool_encode, cols[k]))
        report(f"{k}: encode list vs batch", n, old, new)
        payloads = [spool_encode(b) for b in cols[k]]
        old, new = interleaved(args.runs, lambda: timed(lambda p: list(decode_batch(p)), payloads),
                               lambda: timed(decode_batch, payloads))
        report(f"{k}: decode to Samples vs to a batch", n, old, new)

    print("gzip (influx /write bodies, level 1)")
    bodies = [body for b in cols["plant"] for body in encode_batch(b).bodies(10_000)]
    old, new = interleaved(args.runs, lambda: timed(lambda x: gzip.compress(x, compresslevel=1), bodies),
                           lambda: timed(lambda x: gzip.compress(x, compresslevel=1, mtime=0), bodies))
    report("plant: gzip.compress vs mtime=0", n, old, new)

    samples = data["plant"]
    first, last = samples[0].ts, samples[-1].ts + 1

    def write_run(open_store, chunks, previous: bool = False) -> float:
        store = open_store()
        if previous:
            store._replace_next = 1 << 60  # INSERT OR REPLACE on every write, as before
        t = timed(store.write_samples, chunks)
        assert store.count_samples(first, last) == n
        store.close()
        return t

    print("embedded (DuckDB file, fresh per run)")
    with tempfile.TemporaryDirectory(prefix="gwanje-bench-") as d:
        def duck() -> EmbeddedStore:
            return EmbeddedStore(Path(d) / f"{uuid.uuid4().hex[:8]}.duckdb")

        warm = duck()  # imports (pyarrow.compute) and per-series arrays: not part of a run
        warm.write_samples(lists["plant"][0])
        warm.write_samples(cols["plant"][1])
        warm.close()

        old, new = interleaved(args.runs, lambda: write_run(duck, lists["plant"], previous=True),
                               lambda: write_run(duck, cols["plant"]))
        report("plant: list (previous) vs batch", n, old, new, unit="rate")
        old, new = interleaved(args.runs, lambda: write_run(duck, lists["plant"]),
                               lambda: write_run(duck, cols["plant"]))
        report("plant: list (plain INSERT) vs batch", n, old, new, unit="rate")

        if not args.no_influx:
            from tests.fixtures.common import find_binary
            from tests.fixtures.influxd import Influxd

            print("influxdb 1.x (real influxd, fresh database per run, gzip on)")
            (Path(d) / "influxd").mkdir()
            server = Influxd(find_binary("influxd"), Path(d) / "influxd").start()
            try:
                def influx() -> InfluxStore:
                    return InfluxStore(server.url, f"bench_{uuid.uuid4().hex[:8]}", gzip=True).start()

                old, new = interleaved(args.runs, lambda: write_run(influx, lists["plant"]),
                                       lambda: write_run(influx, cols["plant"]))
                report("plant: list vs batch", n, old, new, unit="rate")
            finally:
                server.stop()

    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
