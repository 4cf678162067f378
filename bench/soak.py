"""Soak: the real `collect` process (app.py collect) under a steady MQTT load for a long time —
does its memory stay flat and do its queues stay empty?

    python -m bench.soak [--minutes 30] [--rate auto|SAMPLES_PER_S] [--store embedded|influxdb]
                         [--every 10] [--probe off|memory] [--tracemalloc FRAMES]
                         [--duckdb-memory-limit 256MB]

Starts its own mosquitto (the test fixture's config: raised queue limits, persistence) and, for
--store influxdb, its own influxd; then `app.py collect` on the demo plant (MQTT collector,
pipeline with the disk spool, engine and alarm listeners, store) with a health port, and with
bench/apphook loaded (PYTHONPATH=bench/_hook: the store's write times and latencies, thread
names, memory reports; the product code runs unchanged). A publisher process sends 50-sample
JSON messages at QoS 1 on the demo plant's MQTT machines at a fixed rate, every sample's ts its
publish time (ns). --rate auto (default) first offers as much as the publisher can send for
10 s, takes the rate at which the collect process stored all of it as the maximum, and soaks
at half of it (the issue's "half the measured maximum").

Every --every s it scrapes /metrics and prints RSS, queue depth, spool backlog and samples
written; with --probe memory also the process's memory as seen from inside (bench/apphook):
glibc malloc's in-use and free bytes, DuckDB's own accounting (duckdb_memory() by tag, PRAGMA
database_size, memory_limit, rows), Python's object count and, with --tracemalloc N, the bytes
Python allocations hold and, at the end, where they grew since the soak began — to tell data
in DuckDB's buffer pool and index from Python objects that grow.

At the end (RESULT line): the soak's stored samples/s, the collect process's CPU µs per sample,
RSS first / last / max and its least-squares slope (second half, after warm-up; and over all),
latency p50 / p99 (store write returned - publish time, every 10th sample, as bench.ingest),
the largest queue depth, published vs stored, and the machine line; then who used the cores
over the soak (bench/procstat: collect with its threads, mosquitto, influxd, publisher).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PER_MSG = 50
PROBE_S = 10


def machine_line() -> str:
    return (f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.platform()}, load average {os.getloadavg()[0]:.1f}")


def mqtt_machines() -> list[tuple[str, list[str]]]:
    from gwanje.config import load_config

    cfg = load_config(REPO / "config", env={})
    return [(f"gwanje/{m.site}/{m.line}/{m.machine}", [s.id for s in m.signals if s.kind in ("analog", "counter")])
            for m in cfg.machines() if m.definition.source == "mqtt"]


def publisher(port: int, rate: float, seconds: float, sent: "mp.Value") -> None:
    """Separate process: `rate` samples/s (0 = as fast as possible) for `seconds`; each
    sample's ts is the publish time in ns (+ its index in the message, to keep points distinct)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    machines = mqtt_machines()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{os.getpid()}", clean_session=True)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(20_000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t_start = time.monotonic()
    k = 0
    while True:
        now = time.monotonic()
        if now - t_start >= seconds:
            break
        if rate and k * PER_MSG > rate * (now - t_start):
            time.sleep(0.002)
            continue
        topic, signals = machines[k % len(machines)]
        ts = time.time_ns()
        body = json.dumps([{"signal": signals[j % len(signals)], "value": float(j), "ts": ts + j}
                           for j in range(PER_MSG)])
        # a bounded client queue: at full speed, wait for the broker instead of buffering GBs
        while c.publish(topic, body, qos=1).rc == paho.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
        k += 1
        with sent.get_lock():
            sent.value = k * PER_MSG
    c.loop_stop()
    c.disconnect()


def scrape(port: int) -> dict[str, float]:
    import requests

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(gwanje_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m and not m.group(2):
            out[m.group(1)] = float(m.group(3))
    return out


class Stack:
    def __init__(self, tmp: Path, store: str, tracemalloc_frames: int = 0,
                 duckdb_memory_limit: str | None = None) -> None:
        from bench.apphook import HookClient, hook_env
        from tests.fixtures.common import find_binary, free_port
        from tests.fixtures.mosquitto import Mosquitto

        (tmp / "mosquitto").mkdir()
        self.broker = Mosquitto(find_binary("mosquitto"), tmp / "mosquitto").start()
        self.influxd = None
        self.hook = HookClient(tmp / "hook")
        env = {**os.environ, "GWANJE_MQTT_URL": self.broker.url, "GWANJE_STORAGE": store,
               "GWANJE_DATA_DIR": str(tmp / "data"), "GWANJE_LOG_LEVEL": "WARNING",
               "GWANJE_OPCUA_URL_CHANGWON_1": f"opc.tcp://127.0.0.1:{free_port()}/none",
               "GWANJE_OPCUA_URL_CHANGWON_2": f"opc.tcp://127.0.0.1:{free_port()}/none",
               **hook_env(tmp / "hook", REPO)}
        if tracemalloc_frames:
            env["GWANJE_BENCH_TRACEMALLOC"] = str(tracemalloc_frames)
        if duckdb_memory_limit:
            env["GWANJE_BENCH_DUCKDB_MEMORY_LIMIT"] = duckdb_memory_limit
        if store == "influxdb":
            from tests.fixtures.influxd import Influxd

            (tmp / "influxd").mkdir()
            self.influxd = Influxd(find_binary("influxd"), tmp / "influxd").start()
            env.update(GWANJE_INFLUX_URL=self.influxd.url, GWANJE_INFLUX_DB="soak")
        self.health = free_port()
        env["GWANJE_HEALTH_PORT"] = str(self.health)
        self.log = open(tmp / "collect.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "app.py", "collect"], cwd=REPO, env=env,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if scrape(self.health).get("gwanje_up"):
                    return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("collect did not come up; see collect.log")

    def watch(self):
        from bench.procstat import Watch

        w = Watch(period=1.0)
        w.add("collect", self.proc.pid, threads=self.hook.threads)
        w.add("mosquitto", self.broker.proc.pid)
        if self.influxd:
            w.add("influxd", self.influxd.proc.pid)
        return w.start()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.broker.stop()
        if self.influxd:
            self.influxd.stop()


def _mb(x: float) -> str:
    return f"{x / 1e6:.1f}"


def memory_line(m: dict) -> str:
    """One line of the collect process's memory report (bench/apphook memory_report)."""
    mal = m.get("malloc") or {}
    s = (f"    mem: rss {_mb(m['rss'])} MB (anon {_mb(m.get('anon', 0))}, file {_mb(m.get('file', 0))}); "
         f"pymalloc blocks {m.get('pymalloc_blocks', 0):,}; arrow pool {_mb(m.get('arrow_pool', 0))} MB; malloc in use {_mb(mal.get('in_use', 0))} free {_mb(mal.get('free', 0))} "
         f"(heap {_mb(mal.get('arena', 0))} + mmap {_mb(mal.get('mmap', 0))}); gc objects {m['gc_objects']:,}")
    if "traced" in m:
        s += f"; python traced {_mb(m['traced'])} MB"
    db = m.get("duckdb")
    if db:
        size = db["database_size"][0] if db["database_size"] else {}
        s += (f"; duckdb {_mb(sum(db['memory'].values()))} MB ["
              + ", ".join(f"{k} {_mb(v)}" for k, v in sorted(db["memory"].items(), key=lambda kv: -kv[1]))
              + f"] limit {db['memory_limit']}, file {size.get('database_size')}, wal {size.get('wal_size')}, "
                f"rows {db['rows']:,}")
    return s


def run_load(stack: Stack, rate: float, seconds: float, every: float, label: str, probe: bool = False,
             lat: list | None = None) -> tuple[list[tuple], list[dict]]:
    sent = mp.Value("q", 0)
    base = scrape(stack.health).get("gwanje_pipeline_samples_written_total", 0.0)
    p = mp.Process(target=publisher, args=(stack.broker.port, rate, seconds, sent), daemon=True)
    t0 = time.monotonic()
    p.start()
    rows, mems = [], []
    while True:
        time.sleep(every)
        m = scrape(stack.health)
        t = time.monotonic() - t0
        row = (t, m.get("gwanje_process_resident_memory_bytes", 0) / 1e6, m.get("gwanje_pipeline_queue_depth_samples", 0),
               m.get("gwanje_spool_samples", 0), m.get("gwanje_pipeline_samples_written_total", 0) - base, sent.value)
        rows.append(row)
        print(f"{label} t={t:6.0f}s rss={row[1]:7.1f} MB queue={row[2]:8.0f} spool={row[3]:8.0f} "
              f"written={row[4]:12,.0f} published={row[5]:12,}", flush=True)
        if lat is not None:
            lat.extend(stack.hook.ask("drain")["lat"])
        if probe:
            mem = stack.hook.ask("memory", timeout=600)["memory"]
            mem["t"] = t
            mems.append(mem)
            print(memory_line(mem), flush=True)
        if not p.is_alive() and row[4] >= row[5]:
            break
        if t > seconds + 300:
            print(f"{label}: {row[5] - row[4]:,.0f} samples not stored 5 min after the load ended", flush=True)
            break
    p.join()
    return rows, mems


def slope_per_min(rows: list, col) -> float:
    """Least-squares slope per minute of column `col` (index or key) against t (seconds)."""
    xs = [r[0] / 60 if isinstance(r, tuple) else r["t"] / 60 for r in rows]
    ys = [r[col] for r in rows]
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def memory_summary(mems: list[dict], rows: list[tuple]) -> None:
    """Slopes of each memory figure over the second half, and per stored row."""
    half = mems[len(mems) // 2:]
    if len(half) < 2:
        return
    flat = []
    for m in half:
        mal, db = m.get("malloc") or {}, m.get("duckdb") or {}
        flat.append({"t": m["t"], "rss": m["rss"], "rss anon": m.get("anon", 0), "rss file": m.get("file", 0),
                     "pymalloc_blocks": m.get("pymalloc_blocks", 0), "arrow_pool": m.get("arrow_pool", 0),
                     "malloc_in_use": mal.get("in_use", 0),
                     "malloc_free": mal.get("free", 0), "traced": m.get("traced", 0),
                     "duckdb": sum((db.get("memory") or {}).values()), "rows": db.get("rows", 0),
                     "gc_objects": m["gc_objects"],
                     **{f"duckdb {k}": v for k, v in (db.get("memory") or {}).items()}})
    keys = sorted({k for f in flat for k in f} - {"t"})
    rows_per_min = slope_per_min([{**f, "rows": f.get("rows", 0)} for f in flat], "rows")
    print("memory slopes over the second half (per minute):", flush=True)
    for k in keys:
        sl = slope_per_min([{**f, k: f.get(k, 0)} for f in flat], k)
        counts = ("rows", "gc_objects", "pymalloc_blocks")
        per_row = f", {sl / rows_per_min:.1f} B per stored row" if rows_per_min and k not in counts else ""
        unit = f"{sl:+,.0f}/min" if k in counts else f"{sl / 1e6:+.2f} MB/min{per_row}"
        print(f"  {k}: {unit}", flush=True)
    last = mems[-1]
    for g in last.get("growth") or []:
        print(f"  python growth {g['size_diff'] / 1e6:+.2f} MB ({g['count_diff']:+,} blocks) at "
              + " <- ".join(reversed(g["where"])), flush=True)


def pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] / 1e9 if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", default="auto", help="samples/s, or auto = half the measured maximum")
    ap.add_argument("--store", choices=["embedded", "influxdb"], default="embedded")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples of RSS and queues")
    ap.add_argument("--probe", choices=["off", "memory"], default="off",
                    help="memory: every --every s, the collect process's memory from inside (DuckDB, malloc, Python)")
    ap.add_argument("--duckdb-memory-limit", default=None,
                    help="e.g. 256MB: SET memory_limit on the embedded store's connection (bench/apphook)")
    ap.add_argument("--tracemalloc", type=int, default=0,
                    help="frames: run tracemalloc in collect (slows it: to find growth, not to measure rates)")
    a = ap.parse_args(argv)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="gwanje-soak-") as tmp:
        stack = Stack(Path(tmp), a.store, a.tracemalloc, a.duckdb_memory_limit)
        watch = stack.watch()
        try:
            if a.rate == "auto":
                # 10 s as fast as the publisher can: the maximum is what the process stored per
                # second until it had caught up with all of it (the spool absorbs the excess)
                probe, _ = run_load(stack, 0, PROBE_S, 2, "max-probe")
                last = probe[-1]
                maximum = last[4] / last[0] if last[0] else 0.0
                rate = maximum / 2
                print(f"measured maximum: {maximum:,.0f} samples/s stored (publisher sent {last[5]:,} in "
                      f"{PROBE_S} s, all stored after {last[0]:.0f} s); soaking at {rate:,.0f} samples/s", flush=True)
            else:
                rate = float(a.rate)
            stack.hook.ask("drain")
            stack.hook.ask("baseline", timeout=600)
            lat: list[int] = []
            mark = watch.mark()
            rows, mems = run_load(stack, rate, a.minutes * 60, a.every, "soak", probe=a.probe == "memory", lat=lat)
            end = watch.mark()
        finally:
            watch.stop()
            stack.close()
    cpu = watch.figures(mark, end)
    stored = rows[-1][4]
    span = rows[-1][0]
    cpu_s = cpu["procs"].get("collect", 0.0) / 100 * cpu["window_s"]
    second_half = rows[len(rows) // 2:]
    print(f"RESULT store={a.store} rate={rate:,.0f} samples/s minutes={a.minutes:g}: stored {stored / span:,.0f} "
          f"samples/s, collect CPU {cpu_s / max(stored, 1) * 1e6:.1f} us/sample; rss first={rows[0][1]:.1f} MB "
          f"last={rows[-1][1]:.1f} MB max={max(r[1] for r in rows):.1f} MB, slope {slope_per_min(second_half, 1):+.2f} "
          f"MB/min over the second half ({slope_per_min(rows, 1):+.2f} over all); latency p50 {pct(lat, 0.5) * 1000:,.0f} "
          f"ms p99 {pct(lat, 0.99) * 1000:,.0f} ms ({len(lat):,} samples); queue max={max(r[2] for r in rows):,.0f} "
          f"last={rows[-1][2]:,.0f}; spool max={max(r[3] for r in rows):,.0f}; published={rows[-1][5]:,} "
          f"stored={stored:,.0f}; {machine_line()}")
    print(watch.report(mark, end))
    if mems:
        memory_summary(mems, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
