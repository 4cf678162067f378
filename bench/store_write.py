"""Benchmark: how fast the stores take samples, in pipeline-sized batches.

    python -m bench.store_write [--n 200000] [--batch 5000] [--runs 3]

Writes --n samples (36 machines x 10 signals, distinct timestamps, like the demo plant) in
--batch-sample batches into:
  embedded   EmbeddedStore on a DuckDB file in a temp dir (fresh file per run)
  influxdb   InfluxStore against a real influxd 1.x it starts itself (fresh database per
             run), with gzip (the shipped default) and without
and times line-protocol encoding alone (storage.lineprotocol.encode_samples). Prints the
median samples/s of --runs runs each, and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gwanje.model import Quality, Sample  # noqa: E402
from storage.embedded import EmbeddedStore  # noqa: E402
from storage.influx import InfluxStore  # noqa: E402
from storage.lineprotocol import encode_samples  # noqa: E402

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


def batches(samples: list[Sample], size: int) -> list[list[Sample]]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def timed(write, chunks) -> float:
    t = time.perf_counter()
    for c in chunks:
        write(c)
    return time.perf_counter() - t


def median_rate(n: int, seconds: list[float]) -> str:
    med = statistics.median(seconds)
    return f"{n / med:>12,.0f} samples/s   (median {med:.3f} s of {len(seconds)}: " + \
        ", ".join(f"{s:.3f}" for s in seconds) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    samples = make_samples(args.n)
    chunks = batches(samples, args.batch)
    print(f"{args.n:,} samples in batches of {args.batch:,}, {args.runs} runs each")

    enc = [timed(encode_samples, chunks) for _ in range(args.runs)]
    print(f"{'line protocol encode only':<28}{median_rate(args.n, enc)}")

    def write_runs(label: str, open_store) -> None:
        """--runs writes of all batches, each into a fresh store, checked to hold them all."""
        runs = []
        for r in range(args.runs):
            store = open_store(r)
            runs.append(timed(store.write_samples, chunks))
            assert store.count_samples(samples[0].ts, samples[-1].ts + 1) == args.n
            store.close()
        print(f"{label:<28}{median_rate(args.n, runs)}")

    with tempfile.TemporaryDirectory(prefix="gwanje-bench-") as d:
        write_runs("embedded (DuckDB file)", lambda r: EmbeddedStore(Path(d) / f"run{r}.duckdb"))

        from tests.fixtures.common import find_binary
        from tests.fixtures.influxd import Influxd

        (Path(d) / "influxd").mkdir()
        server = Influxd(find_binary("influxd"), Path(d) / "influxd").start()
        try:
            for gz in (True, False):
                write_runs(f"influxdb 1.x, gzip {'on' if gz else 'off'}", lambda r: InfluxStore(
                    server.url, f"bench_{uuid.uuid4().hex[:8]}", gzip=gz).start())
        finally:
            server.stop()

    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
