"""What the embedded store's memory grows by, per stored row, and what bounds it — A/B in one
run on storage.embedded.EmbeddedStore itself (the findings of issue 11's DuckDB soak).

    python -m bench.duckdb_memory [--rows 1500000] [--batch 1200] [--memory-limit 64MB] [--reopen-every 500]

Writes --rows samples (40 machines x 50 signals, current ns timestamps) in --batch sample
write_samples() calls — the batch size the pipeline forms at ~6,000 samples/s with its 200 ms
flush — into a fresh file-backed EmbeddedStore, in each of these variants, one after the other:

  as is        EmbeddedStore as storage/embedded.py builds it (DuckDB memory_limit: its
               default, 80 % of RAM)
  limit        the same, after SET memory_limit = --memory-limit on its connection
  reopen       the same, its DuckDB connection closed and opened again every --reopen-every
               writes (what the bench does from outside: storage/embedded.py has no such option)
  limit+reopen both

Printed per variant: glibc malloc's in-use bytes gained per stored row (mallinfo2: DuckDB's
heap outside its buffer manager; Python's own objects are not part of the growth — bench.soak
--tracemalloc shows them flat), DuckDB's own accounting (duckdb_memory()), RSS gained, rows/s,
and the longest reopen. Figures as ratios within the run (the machine is shared).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def batches(rows: int, batch: int):
    from gwanje.model import Sample

    sites = [("changwon-1", f"line-{i % 4 + 1}") for i in range(40)]
    sigs = [f"a{i:02d}" for i in range(50)]
    n, base = 0, time.time_ns()
    while n < rows:
        out = []
        for i in range(min(batch, rows - n)):
            k = n + i
            m = (k // 50) % 40
            site, line = sites[m]
            out.append(Sample(site, line, f"m{m + 1:03d}", sigs[k % 50], float(k % 1000), base + k // 2000))
        n += len(out)
        yield out


def run(variant: str, a, tmp: Path) -> str:
    import duckdb

    from bench.apphook import mallinfo, rss_bytes
    from storage.embedded import EmbeddedStore

    path = tmp / f"{variant.replace('+', '-')}.duckdb"
    store = EmbeddedStore(path)
    limit = a.memory_limit if "limit" in variant else None
    reopen = a.reopen_every if "reopen" in variant else 0

    def configure() -> None:
        if limit:
            store._con.execute(f"SET memory_limit = '{limit}'")

    configure()
    gc.collect()
    heap0, rss0 = mallinfo().get("in_use", 0), rss_bytes()
    t0 = time.perf_counter()
    longest = 0.0
    for i, b in enumerate(batches(a.rows, a.batch), 1):
        store.write_samples(b)
        if reopen and i % reopen == 0:
            r = time.perf_counter()
            with store._write_lock:
                store._con.close()
                store._con = duckdb.connect(str(path))
            configure()
            longest = max(longest, time.perf_counter() - r)
    el = time.perf_counter() - t0
    cur = store._con.cursor()
    mem = sum(r[1] for r in cur.execute("SELECT * FROM duckdb_memory()").fetchall())
    rows = cur.execute("SELECT count(*) FROM samples").fetchone()[0]
    cur.close()
    heap = mallinfo().get("in_use", 0) - heap0
    rss = rss_bytes() - rss0
    store.close()
    return (f"  {variant:13s} heap +{heap / 1e6:6.1f} MB = {heap / rows:5.1f} B/row; duckdb_memory() {mem / 1e6:6.1f} MB; "
            f"RSS +{rss / 1e6:6.1f} MB; {rows / el:9,.0f} rows/s" + (f"; longest reopen {longest * 1000:.0f} ms" if reopen else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--batch", type=int, default=1200)
    ap.add_argument("--memory-limit", default="64MB")
    ap.add_argument("--reopen-every", type=int, default=500)
    ap.add_argument("--variants", default="as is,limit,reopen,limit+reopen")
    a = ap.parse_args(argv)
    import duckdb

    from bench.ingest import machine_line

    print(machine_line())
    print(f"DuckDB {duckdb.__version__}; {a.rows:,} rows in write_samples() calls of {a.batch:,}; memory_limit "
          f"{a.memory_limit} in 'limit'; reopen every {a.reopen_every} writes in 'reopen'", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-mem-") as d:
        for v in [v.strip() for v in a.variants.split(",")]:
            print(run(v, a, Path(d)), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
