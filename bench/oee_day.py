"""Benchmark: OEE of one day of 1 Hz state + counter data for 500 machines.

    python -m bench.oee_day [--machines 50] [--live-machines 5] [--other-signals 0] [--seed 7]

A synthetic plant of --machines CNC machines (50 lines of 10, demo shift calendar) gets one day
of 1 Hz samples per machine: state code, total, good and reject counters (4 signals, 345,600
rows per machine, 172.8 M for 500), with random stops, setups, silences and counter wraps.
Measured, machine by machine so the whole day never sits in memory at once:
  history path   Engine.recompute_machine (what recompute() and warm_start() run: raw samples
                 paged through the live path's MachineRun) for the three shifts of the day of
                 every machine, from an in-memory page source (store reads are bench.ingest's
                 and the storage tests' business): seconds in total and per machine-day, and
                 the extrapolation to 500 machines
  live path      Engine.on_samples over --live-machines whole days in 5,000-sample batches
                 (what the pipeline listener costs): samples per second, A/B in the same run:
                 two engines fed the same batches in turn, one as lists of Samples (the
                 per-Sample path), one as gwanje.batch.SampleBatch (the columnar path the
                 pipeline uses), with the load average before and after; --other-signals N adds
                 N analog signals per machine at 1 Hz that the engine only reads as liveness
                 (temperatures, vibration...: most of a real machine's signals)
  generation     building the synthetic frames and their Sample pages, reported apart
  peak memory    ru_maxrss of the process (polars allocates outside tracemalloc's view)
and prints the machine: platform.node(), cpu count, python version.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402
import yaml  # noqa: E402

from gwanje.batch import SampleBatch  # noqa: E402
from gwanje.config import load_config  # noqa: E402
from gwanje.engine import Engine  # noqa: E402
from gwanje.model import NS_PER_S, Sample  # noqa: E402

DAY_S = 86_400
CODES = {"run": 3.0, "idle": 1.0, "down": 4.0, "setup": 5.0}


def plant(tmp: Path, machines: int) -> None:
    src = yaml.safe_load((REPO / "config" / "plant.yaml").read_text(encoding="utf-8"))
    lines = []
    for li in range(0, machines, 10):
        ms = [{"id": f"m-{i:04d}", "name": {"ko": f"{i}호기", "en": f"M{i}"}, "class": "cnc", "source": "mqtt",
               "ideal_cycle_s": 30, "counter_bits": 16 if i % 4 == 0 else 32}
              for i in range(li, min(li + 10, machines))]
        lines.append({"id": f"line-{li // 10:02d}", "name": {"ko": "라인", "en": "Line"}, "process": "cnc",
                      "machines": ms})
    src["sites"] = [{"id": "bench", "name": {"ko": "벤치", "en": "Bench"}, "lines": lines}]
    (tmp / "plant.yaml").write_text(yaml.safe_dump(src, allow_unicode=True), encoding="utf-8")
    (tmp / "shifts.yaml").write_text((REPO / "config" / "shifts.yaml").read_text(encoding="utf-8"), encoding="utf-8")


def day_frame(rng: random.Random, t0: int, seconds: int, bits: int) -> pl.DataFrame:
    """(signal, ts, value) rows of one machine: 1 Hz state + three counters."""
    lengths, codes, t = [], [], 0
    while t < seconds:
        kind = rng.choices(["run", "idle", "down", "setup"], [70, 20, 7, 3])[0]
        n = min(seconds - t, max(1, int(rng.expovariate(1 / (1800 if kind == "run" else 240)))))
        lengths.append(n)
        codes.append(CODES[kind])
        t += n
    code = pl.Series("code", codes).repeat_by(pl.Series(lengths, dtype=pl.UInt32)).explode()
    mod = 2**bits
    start_count = rng.randrange(0, mod)
    df = pl.DataFrame({"ts": pl.int_range(0, seconds, eager=True) * NS_PER_S + t0, "code": code})
    df = df.with_columns(total=((pl.col("code") == 3.0).cum_sum() // 33).cast(pl.Int64))
    df = df.with_columns(reject=pl.col("total") // 50).with_columns(good=pl.col("total") - pl.col("reject"))
    df = df.with_columns(((pl.col(c) + start_count) % mod).cast(pl.Float64) for c in ("total", "good", "reject"))
    # two silences of a few minutes (communication loss)
    for _ in range(2):
        a = rng.randrange(0, seconds - 600)
        df = df.filter((pl.col("ts") < t0 + a * NS_PER_S) | (pl.col("ts") >= t0 + (a + rng.randrange(40, 600)) * NS_PER_S))
    return pl.concat([
        df.select(pl.lit("state").alias("signal"), "ts", pl.col("code").alias("value")),
        df.select(pl.lit("part_count_total").alias("signal"), "ts", pl.col("total").alias("value")),
        df.select(pl.lit("part_count_good").alias("signal"), "ts", pl.col("good").alias("value")),
        df.select(pl.lit("part_count_reject").alias("signal"), "ts", pl.col("reject").alias("value")),
    ])


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PageSource:
    """The part of the Store interface a rebuild reads (samples, events) over samples held in
    memory, so the figure is the engine's, not a database's."""

    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples
        self._ts = [s.ts for s in samples]

    def samples(self, site, line, machine, start_ns, end_ns, page_size=50_000):
        import bisect
        a, b = bisect.bisect_left(self._ts, start_ns), bisect.bisect_left(self._ts, end_ns)
        for i in range(a, b, page_size):
            yield self._samples[i:min(b, i + page_size)]

    def events(self, *a, **kw):
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--live-machines", type=int, default=5)
    ap.add_argument("--other-signals", type=int, default=0)
    ap.add_argument("--skip-history", action="store_true", help="only the live path")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gwanje-bench-"))
    plant(tmp, args.machines)
    config = load_config(tmp, env={})
    eng = Engine(config, clock=None)
    tz = ZoneInfo(config.plant.timezone)
    day0 = int(datetime(2026, 11, 24, 6, tzinfo=tz).timestamp()) * NS_PER_S  # a Tuesday, 06:00
    shifts = eng.calendar.shifts_between(day0, day0 + DAY_S * NS_PER_S)
    lookback_s = int(eng.lookback_ns // NS_PER_S)
    t0 = day0 - lookback_s * NS_PER_S
    seconds = DAY_S + lookback_s + int(eng.close_delay_ns // NS_PER_S) + 60
    rng = random.Random(args.seed)
    rss0 = maxrss_mb()

    gen_s = oee_s = 0.0
    rows = 0
    oees = []
    specs = list(config.machines())
    for spec in ([] if args.skip_history else specs):
        g = time.perf_counter()
        frame = day_frame(rng, t0, seconds, spec.definition.counter_bits).sort("ts", "signal")
        source = PageSource([Sample(spec.site, spec.line, spec.machine, sig, v, ts) for sig, ts, v in frame.iter_rows()])
        gen_s += time.perf_counter() - g
        rows += frame.height
        c = time.perf_counter()
        for sh in shifts:
            oees.append(eng.recompute_machine(source, spec, sh.start_ns, sh.end_ns).oee)
        oee_s += time.perf_counter() - c
        del source
    rss_hist = maxrss_mb()

    live_samples = 0
    load0 = os.getloadavg()
    engines = {"list": Engine(config, clock=None), "batch": Engine(config, clock=None)}
    live_s = {"list": 0.0, "batch": 0.0}
    live_events = {"list": 0, "batch": 0}
    for spec in specs[:args.live_machines]:
        frame = day_frame(rng, t0, seconds, spec.definition.counter_bits).sort("ts")
        samples = [Sample(spec.site, spec.line, spec.machine, sig, v, ts) for sig, ts, v in frame.iter_rows()]
        if args.other_signals:
            names = [f"analog_{k}" for k in range(args.other_signals)]
            stamps = sorted({s.ts for s in samples})
            samples += [Sample(spec.site, spec.line, spec.machine, n, 50.0 + rng.random(), ts)
                        for ts in stamps for n in names]
            samples.sort(key=lambda s: s.ts)
        live_samples += len(samples)
        lists = [samples[i:i + 5000] for i in range(0, len(samples), 5000)]
        columns = [SampleBatch.of(b) for b in lists]  # what the pipeline hands over (decoded as columns)
        del samples
        for k, (lb, cb) in enumerate(zip(lists, columns)):
            # interleaved, and which goes first alternates: the machine's noise hits both alike
            for path in (("list", "batch") if k % 2 == 0 else ("batch", "list")):
                c = time.perf_counter()
                live_events[path] += len(engines[path].on_samples(lb if path == "list" else cb))
                live_s[path] += time.perf_counter() - c
        del lists, columns
    load1 = os.getloadavg()
    valid = [o for o in oees if o is not None]
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"polars: {pl.__version__}")
    if not args.skip_history:
        print(f"plant: {args.machines} machines, 1 day of 1 Hz state + 3 counters = {rows:,} rows "
              f"({len(shifts)} shifts per machine)")
        print(f"history path (recompute_machine, 3 shifts each): {oee_s:.2f} s for {args.machines} machine-days "
              f"({oee_s / args.machines * 1000:.1f} ms per machine-day, {rows / oee_s / 1e6:.2f} M rows/s; "
              f"500 machine-days ~{oee_s / args.machines * 500:.0f} s)")
        print(f"  synthetic data generation (not included above): {gen_s:.2f} s")
        print(f"  mean shift OEE {sum(valid) / max(1, len(valid)):.3f} over {len(valid)} machine-shifts")
    if live_samples:
        rate = {p: live_samples / live_s[p] for p in live_s}
        print(f"live path (Engine.on_samples): {live_samples:,} samples of {args.live_machines} machine-days "
              f"(state + 3 counters{f' + {args.other_signals} other signals' if args.other_signals else ''}), "
              f"A/B interleaved in 5,000-sample batches:")
        print(f"  lists of Samples   {live_s['list']:.2f} s = {rate['list']:,.0f} samples/s")
        print(f"  SampleBatch        {live_s['batch']:.2f} s = {rate['batch']:,.0f} samples/s "
              f"(x{rate['batch'] / rate['list']:.2f}; events {live_events['batch']:,} vs {live_events['list']:,})")
        print(f"  load average {load0[0]:.2f} {load0[1]:.2f} before, {load1[0]:.2f} {load1[1]:.2f} after "
              f"({os.cpu_count()} cpus)")
    print(f"peak RSS: {rss0:.0f} MB at start, {rss_hist:.0f} MB after history path, {maxrss_mb():.0f} MB at end")


if __name__ == "__main__":
    main()
