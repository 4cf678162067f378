"""Benchmark: what the alarm service costs the pipeline, for the demo plant.

    python bench/alarms_eval.py [--minutes 30] [--period 1] [--batch 5000]

Builds `--minutes` of history of every signal of the 36 demo machines (dashboards.sample_data,
one sample per `--period` s), then feeds it in pipeline-sized batches through
AlarmService.on_samples with the shipped config/alarms.yaml (209 alarm points), storing the
alarm events in an in-memory EmbeddedStore, and ticks once per simulated second. Prints:
  samples/s through on_samples (rules + lifecycle, no store)
  one tick of the whole plant (ms, median)
  restore of the alarm state at start-up from the store (ms)
and the machine. on_samples is measured A/B in the same run: two services fed the same batches
in turn (which goes first alternates), one as lists of Samples (the per-Sample path), one as
gwanje.batch.SampleBatch (the columnar path the pipeline uses), with the load average before
and after; both must give the same alarm events.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alerts.service import AlarmService  # noqa: E402
from dashboards.sample_data import plant_history  # noqa: E402
from gwanje.batch import SampleBatch  # noqa: E402
from gwanje.config import load_config  # noqa: E402
from gwanje.model import NS_PER_S, now_ns  # noqa: E402
from storage.embedded import EmbeddedStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=5000)
    a = ap.parse_args()
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}")
    cfg = load_config(REPO / "config", env={})
    end = now_ns()
    samples = sorted(plant_history(cfg, end, duration_s=int(a.minutes * 60), period_s=a.period), key=lambda s: s.ts)
    store = EmbeddedStore()
    clock = {"t": samples[0].ts}
    svc = AlarmService(cfg, store, clock=lambda: clock["t"])
    # the same rules fed the same batches as SampleBatch (its own store: the same events land there)
    col_store = EmbeddedStore()
    col = AlarmService(cfg, col_store, clock=lambda: clock["t"])
    print(f"input: {len(samples):,} samples ({a.minutes} min of 36 machines, every {a.period} s); "
          f"{len(svc.evaluator.alarm_ids())} alarm points")

    load0 = os.getloadavg()
    eval_s = {"list": 0.0, "batch": 0.0}
    events, col_events = 0, 0
    ticks: list[float] = []
    next_tick = samples[0].ts + NS_PER_S
    for k, i in enumerate(range(0, len(samples), a.batch)):
        batch = samples[i:i + a.batch]
        columns = SampleBatch.of(batch)  # what the pipeline hands over (decoded as columns)
        got = {}
        for path in (("list", "batch") if k % 2 == 0 else ("batch", "list")):
            service, arg = (svc, batch) if path == "list" else (col, columns)
            t0 = time.perf_counter()
            got[path] = service.on_samples(arg)
            eval_s[path] += time.perf_counter() - t0
        if repr(got["list"]) != repr(got["batch"]):
            raise SystemExit(f"the two paths disagree on batch {k}")
        events += len(got["list"])
        col_events += len(got["batch"])
        store.write_events(got["list"])
        col_store.write_events(got["batch"])
        while next_tick <= batch[-1].ts:
            clock["t"] = next_tick
            t0 = time.perf_counter()
            events += len(svc.tick(next_tick))
            ticks.append((time.perf_counter() - t0) * 1000)
            col_events += len(col.tick(next_tick))
            next_tick += NS_PER_S
    load1 = os.getloadavg()
    rate = {p: len(samples) / eval_s[p] for p in eval_s}
    print(f"on_samples, lists of Samples: {rate['list']:,.0f} samples/s  ({eval_s['list'] * 1000:.0f} ms for all, "
          f"batches of {a.batch})")
    print(f"on_samples, SampleBatch:      {rate['batch']:,.0f} samples/s  ({eval_s['batch'] * 1000:.0f} ms; "
          f"x{rate['batch'] / rate['list']:.2f}; events {col_events:,} vs {events:,})")
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} before, {load1[0]:.2f} {load1[1]:.2f} after "
          f"({os.cpu_count()} cpus)")
    if ticks:
        ticks.sort()
        print(f"tick (whole plant): median {statistics.median(ticks):.2f} ms  p90 {ticks[int(len(ticks) * 0.9)]:.2f} ms "
              f"over {len(ticks)} ticks")
    print(f"alarm events: {events:,}; not normal at the end: {len(svc.active())}")
    t0 = time.perf_counter()
    n = AlarmService(cfg, store, clock=lambda: clock["t"]).restore()
    print(f"restore at start-up: {(time.perf_counter() - t0) * 1000:.0f} ms ({n} alarms not normal)")


if __name__ == "__main__":
    main()
