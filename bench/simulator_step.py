"""Benchmark: the simulator's plant model and its OPC UA servers on this machine.

    python -m bench.simulator_step [--machines-x 1] [--steps 3600]

Printed: the machine; the time of one real-time step of the whole demo plant (36 machines,
steps of 1 s, values of every signal); a simulated day fast-forwarded in one call (events
jumped through, no outputs in between); the start-up of the two sites' asyncua servers and
how many OPC UA value writes per second they take. --machines-x N repeats the plant's
machines N times (as more seeds) to see how a step scales with machines.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gwanje.config import load_config  # noqa: E402
from simulator.machines import Plant  # noqa: E402

S = 1_000_000_000
T0 = 1_795_474_800 * S  # 2026-11-24 06:00 Asia/Seoul, a Tuesday


def bench_steps(config, copies: int, steps: int) -> None:
    plants = [Plant(config, seed=7 + i) for i in range(copies)]
    for p in plants:
        p.step(T0)
    per_step = []
    for i in range(1, steps + 1):
        t = time.perf_counter()
        for p in plants:
            p.step(T0 + i * S)
        per_step.append(time.perf_counter() - t)
    n = 36 * copies
    print(f"real-time step, {n} machines: median {statistics.median(per_step) * 1e3:.2f} ms, "
          f"p99 {sorted(per_step)[int(len(per_step) * 0.99)] * 1e3:.2f} ms "
          f"({statistics.median(per_step) / n * 1e6:.1f} us per machine)")


def bench_day(config) -> None:
    p = Plant(config, seed=7)
    p.step(T0)
    t = time.perf_counter()
    p.step(T0 + 86_400 * S)
    dt = time.perf_counter() - t
    parts = sum(m.total for m in p.models)
    print(f"fast-forward one simulated day, 36 machines: {dt:.2f} s (parts made since last shift start: {parts})")


async def bench_opcua(config) -> None:
    from simulator.opcua_server import site_servers

    t = time.perf_counter()
    servers = site_servers(config)
    for s in servers:
        await s.start()
    start_s = time.perf_counter() - t
    plant = Plant(config, seed=7)
    rounds, writes = 200, 0
    results = [plant.step(T0 + i * S) for i in range(rounds)]
    t = time.perf_counter()
    for i, res in enumerate(results):
        for s in servers:
            writes += await s.write(T0 + i * S, res)
    dt = time.perf_counter() - t
    for s in servers:
        await s.stop()
    nvars = sum(len(s.vars) for s in servers)
    print(f"OPC UA: {len(servers)} servers with {nvars} variables start in {start_s:.2f} s; "
          f"{writes / dt:,.0f} value writes/s ({dt / rounds * 1e3:.2f} ms per plant step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines-x", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3600)
    args = ap.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its security notes are not results
    print(f"machine: {platform.node()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    from tests.fixtures.common import free_port

    env = {f"GWANJE_OPCUA_URL_{n}": f"opc.tcp://127.0.0.1:{free_port()}/gwanje/bench"
           for n in ("CHANGWON_1", "CHANGWON_2")}
    config = load_config(ROOT / "config", env=env)
    bench_steps(config, args.machines_x, args.steps)
    bench_day(config)
    asyncio.run(bench_opcua(config))


if __name__ == "__main__":
    main()
