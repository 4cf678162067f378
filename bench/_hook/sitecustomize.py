"""Loaded by Python at start-up when this directory is on PYTHONPATH (bench.ingest --collector
app, bench.soak): installs bench/apphook.py's probe if GWANJE_BENCH_HOOK names its directory.
Never on the path of a deployment."""
import os

if os.environ.get("GWANJE_BENCH_HOOK"):
    from bench.apphook import install

    install(os.environ["GWANJE_BENCH_HOOK"])
