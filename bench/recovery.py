"""Benchmark: how long a 10-minute store outage takes to drain from the disk spool.

    python -m bench.recovery [--minutes 10] [--rates demo,20000] [--store influxdb|embedded]

For each rate (samples/s; "demo" = every signal of the demo plant once per second), the
outage is rebuilt the way the pipeline writes it: one spool record per flush interval
(rate × 0.2 s samples, at most batch_size 5000), fsync'ed, over `--minutes` of source time,
on all series of the demo plant. Then a Pipeline over the real store (its own influxd 1.x
from tests/fixtures/influxd.Influxd, or an EmbeddedStore DuckDB file) replays it, timed until
the spool is empty. Printed: the machine, then per rate the samples, spool size, time to
spool, time to drain and the drain rate, and how many times faster than real time the backlog
drains (so a 10-minute outage at that rate is caught up in 600 s / factor).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gwanje.config import load_config  # noqa: E402
from gwanje.model import Sample  # noqa: E402
from runtime.pipeline import Pipeline  # noqa: E402
from storage.spool import Spool  # noqa: E402

FLUSH_S = 0.2
BATCH = 5000


def machine_line() -> str:
    return f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"


def plant_series() -> list[tuple[str, str, str, str, bool]]:
    cfg = load_config(REPO / "config", env={})
    return [(m.site, m.line, m.machine, s.id, s.kind == "text") for m in cfg.machines() for s in m.signals]


def outage_batches(series, rate: float, seconds: float, t0: int):
    """The samples of the outage in source-time order, in spool records of one flush interval."""
    per_record = max(1, min(BATCH, int(rate * FLUSH_S)))
    total = int(rate * seconds)
    step_ns = int(1e9 / rate)
    s_n = len(series)
    for start in range(0, total, per_record):
        batch = []
        for k in range(start, min(total, start + per_record)):
            site, line, machine, signal, text = series[k % s_n]
            batch.append(Sample(site, line, machine, signal, f"L-{k % 97}" if text else float(k % 1000),
                                t0 + k * step_ns))
        yield batch


def open_store(kind: str, tmp: Path):
    if kind == "embedded":
        from storage.embedded import EmbeddedStore

        return EmbeddedStore(tmp / "bench.duckdb"), None
    from storage.influx import InfluxStore
    from tests.fixtures.common import find_binary
    from tests.fixtures.influxd import Influxd

    d = tmp / "influxd"
    d.mkdir()
    server = Influxd(find_binary("influxd"), d).start()
    return InfluxStore(server.url, "recovery").start(), server


def run(rate_name: str, series, minutes: float, store_kind: str) -> None:
    rate = float(len(series)) if rate_name == "demo" else float(rate_name)
    with tempfile.TemporaryDirectory(prefix="gwanje-recovery-") as tmp:
        tmp_p = Path(tmp)
        store, server = open_store(store_kind, tmp_p)
        try:
            spool = Spool(tmp_p / "spool", max_bytes=8 * 1024**3, fsync=True)
            t0 = time.time_ns() - int(minutes * 60e9) - 3600 * 10**9
            t_spool = time.perf_counter()
            n = 0
            for b in outage_batches(series, rate, minutes * 60, t0):
                spool.append(b)
                n += len(b)
            t_spool = time.perf_counter() - t_spool
            size, records = spool.bytes, spool.batches
            p = Pipeline(store, batch_size=BATCH, flush_interval_s=FLUSH_S, spool=spool)
            t = time.perf_counter()
            p.start()
            while p.stats()["spool_samples"] > 0:
                time.sleep(0.05)
            drain = time.perf_counter() - t
            p.stop()
            stored = store.count_samples(t0, t0 + int(minutes * 60e9) + 1)
            print(f"rate {rate:>9,.0f} samples/s ({rate_name}) | outage {minutes:g} min = {n:,} samples in "
                  f"{records:,} records, {size / 1e6:,.1f} MB spooled in {t_spool:.1f} s | drained to "
                  f"{store_kind} in {drain:.1f} s = {n / drain:,.0f} samples/s = {minutes * 60 / drain:,.0f}x "
                  f"real time | stored {stored:,}", flush=True)
        finally:
            store.close()
            if server is not None:
                server.stop()


def codec(series) -> None:
    """Spool record encode/decode cost per sample (5,000-sample records), best of 3."""
    from storage.spool import decode_batch, encode_batch

    batches = list(outage_batches(series, 5000 / FLUSH_S, 20 * FLUSH_S, time.time_ns() - 3600 * 10**9))
    n = sum(len(b) for b in batches)
    enc_t = dec_t = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        payloads = [encode_batch(b) for b in batches]
        enc_t = min(enc_t, time.perf_counter() - t)
        t = time.perf_counter()
        for p in payloads:
            decode_batch(p)
        dec_t = min(dec_t, time.perf_counter() - t)
    size = sum(len(p) for p in payloads)
    print(f"spool codec: encode {enc_t / n * 1e6:.2f} µs/sample, decode {dec_t / n * 1e6:.2f} µs/sample, "
          f"{size / n:.1f} bytes/sample ({n:,} samples in 5,000-sample records)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rates", default="demo,20000", help="comma list: demo or samples/s")
    ap.add_argument("--store", choices=["influxdb", "embedded"], default="influxdb")
    a = ap.parse_args(argv)
    print(machine_line())
    series = plant_series()
    print(f"demo plant: {len(series)} series (one sample each per second = the demo rate)")
    codec(series)
    for r in a.rates.split(","):
        run(r.strip(), series, a.minutes, a.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
