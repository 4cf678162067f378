"""Benchmark: how long `python app.py collect` takes from start to ready on the demo config.

    python -m bench.collect_start [--runs 5] [--store embedded,influxdb] [--history-hours 4] [--profile]

Starts its own mosquitto (the test fixture's config, free port), the simulated sites as a real
`app.py simulate` process (its MQTT publisher and the two OPC UA servers on free ports, the
demo config otherwise), and for --store influxdb its own influxd. Each store first gets
--history-hours of the demo plant's 1 Hz samples (the simulator's own plant model, fast-forwarded,
written straight into the store up to the bench's start), as a collect restarted in the middle
of a shift finds them: the engine's warm start reads the running shift. Then, --runs times, spawns
`app.py collect --health-port P` on the demo config (a temp data dir kept across the runs of
one store, so every run after the first is a restart: the engine's warm start reads the
stored shift and the broker holds a persistent session) and polls its health port every
10 ms, measuring wall time from the spawn to:

  health   the health port answers (/healthz)
  sources  every source in /readyz's details is connected and subscribed
  ready    /readyz answers 200 (store reachable, every source connected and subscribed)
  stored   /metrics counts a sample written to the store
  warm     /readyz no longer warns "restore from the store pending" (the engine's warm start
           of the running shift and the alarm restore are done)

Printed: the machine, then per store the median and the maximum of each phase. --profile
also runs one collect under `python -X importtime` and cProfile (the ten slowest imports and
the functions with the most cumulative time until ready).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHASES = ("health", "sources", "ready", "stored", "warm")
TIMEOUT_S = 240.0


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.platform()}, load {load:.2f}")


def subscribed(src: dict) -> bool:
    """A source that says it is subscribed: the status field where there is one, else (older
    code) connected plus, for MQTT, a granted subscription in its detail."""
    if "subscribed" in src:
        return bool(src["subscribed"])
    if not src.get("connected"):
        return False
    return src.get("kind") != "mqtt" or "subscribed to" in (src.get("detail") or "")


def _written(metrics_text: str) -> float:
    m = re.search(r"^gwanje_pipeline_samples_written_total\s+(\S+)", metrics_text, re.M)
    return float(m.group(1)) if m else 0.0


def measure(cmd: list[str], env: dict, port: int, log_path: Path) -> dict[str, float]:
    """Spawn collect, poll its health port until every phase was seen, stop it (SIGTERM)."""
    url = f"http://127.0.0.1:{port}"
    seen: dict[str, float] = {}
    s = requests.Session()
    with open(log_path, "ab") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while len(seen) < len(PHASES):
                now = time.monotonic() - t0
                if now > TIMEOUT_S:
                    raise TimeoutError(f"collect not ready after {TIMEOUT_S}s (seen {seen}); log {log_path}")
                if proc.poll() is not None:
                    raise RuntimeError(f"collect exited with {proc.returncode}; log {log_path}")
                try:
                    r = s.get(url + "/readyz", timeout=1)
                except requests.RequestException:
                    time.sleep(0.01)
                    continue
                now = time.monotonic() - t0
                seen.setdefault("health", now)
                body = r.json()
                srcs = body.get("sources") or []
                if srcs and all(subscribed(x) for x in srcs):
                    seen.setdefault("sources", now)
                if r.status_code == 200:
                    seen.setdefault("ready", now)
                if r.status_code == 200 and not any("restore from the store pending" in w
                                                    for w in body.get("warnings") or []):
                    seen.setdefault("warm", now)
                if "stored" not in seen and _written(s.get(url + "/metrics", timeout=1).text) > 0:
                    seen["stored"] = time.monotonic() - t0
                time.sleep(0.01 if len(seen) < 4 else 0.2)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return seen


class Servers:
    """mosquitto, the simulate process and (optionally) influxd, on free ports in tmp."""

    def __init__(self, tmp: Path, influx: bool) -> None:
        from tests.fixtures.common import find_binary, free_port, wait_port
        from tests.fixtures.mosquitto import Mosquitto

        (tmp / "mosquitto").mkdir()
        self.mosquitto = Mosquitto(find_binary("mosquitto"), tmp / "mosquitto").start()
        self.env = dict(os.environ)
        self.env.update({
            "GWANJE_CONFIG_DIR": str(REPO / "config"), "GWANJE_MQTT_URL": self.mosquitto.url,
            "GWANJE_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
        })
        self.opcua_ports = [free_port(), free_port()]
        for name, port in zip(("CHANGWON_1", "CHANGWON_2"), self.opcua_ports):
            self.env[f"GWANJE_OPCUA_URL_{name}"] = f"opc.tcp://127.0.0.1:{port}/gwanje/{name.lower().replace('_', '-')}"
        self.influxd = None
        if influx:
            from tests.fixtures.influxd import Influxd

            (tmp / "influxd").mkdir()
            self.influxd = Influxd(find_binary("influxd"), tmp / "influxd").start()
        sim_env = dict(self.env, GWANJE_DATA_DIR=str(tmp / "sim-data"))
        self.sim_log = open(tmp / "simulate.log", "wb")
        self.sim = subprocess.Popen([sys.executable, str(REPO / "app.py"), "simulate"], cwd=str(REPO),
                                    env=sim_env, stdout=self.sim_log, stderr=subprocess.STDOUT)
        for port in self.opcua_ports:
            wait_port(port, timeout=60, proc=self.sim)
        time.sleep(1.0)  # the servers listen before their address space is complete

    def collect_env(self, store: str, data_dir: Path) -> dict:
        env = dict(self.env, GWANJE_DATA_DIR=str(data_dir), GWANJE_STORAGE=store)
        if store == "influxdb":
            assert self.influxd is not None
            env.update(GWANJE_INFLUX_URL=self.influxd.url, GWANJE_INFLUX_DB=f"start{os.getpid()}")
        return env

    def stop(self) -> None:
        from tests.fixtures.common import stop_process

        stop_process(self.sim, timeout=15)
        self.sim_log.close()
        if self.influxd:
            self.influxd.stop()
        self.mosquitto.stop()


def fill_history(env: dict, data_dir: Path, hours: float) -> int:
    """hours of 1 Hz demo plant samples, ending now, written into the store collect will open."""
    from gwanje.config import Secrets, load_config
    from gwanje.model import NS_PER_S, Sample, now_ns
    from simulator.machines import Plant
    from storage import open_store

    if hours <= 0:
        return 0
    config = load_config(REPO / "config", env=env)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config, data_dir, Secrets.from_env(env))
    plant = Plant(config, seed=config.system.simulator.seed)
    end = now_ns() // NS_PER_S * NS_PER_S
    t = end - int(hours * 3600) * NS_PER_S
    batch: list[Sample] = []
    n = 0
    try:
        while t < end:
            for spec, values in plant.step(t):
                for sig, v in values.items():
                    if v is not None:  # what a collector's normalizer hands on: float or text
                        batch.append(Sample(spec.site, spec.line, spec.machine, sig,
                                            v if isinstance(v, str) else float(v), t))
            if len(batch) >= 50_000:
                store.write_samples(batch)
                n += len(batch)
                batch = []
            t += NS_PER_S
        if batch:
            store.write_samples(batch)
            n += len(batch)
    finally:
        store.close()
    return n


def run_store(servers: Servers, store: str, runs: int, tmp: Path, hours: float) -> dict[str, list[float]]:
    from tests.fixtures.common import free_port

    data = tmp / f"data-{store}"
    env = servers.collect_env(store, data)
    t = time.monotonic()
    n = fill_history(env, data, hours)
    print(f"  {store}: {n:,} samples of history ({hours:g} h) written in {time.monotonic() - t:.0f} s", flush=True)
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for i in range(runs):
        port = free_port()
        cmd = [sys.executable, str(REPO / "app.py"), "collect", "--health-port", str(port)]
        seen = measure(cmd, env, port, tmp / f"collect-{store}.log")
        print(f"  {store} run {i + 1}: " + "  ".join(f"{p} {seen[p]:.2f}s" for p in PHASES), flush=True)
        for p in PHASES:
            out[p].append(seen[p])
    return out


def profile(servers: Servers, tmp: Path) -> None:
    """One collect under -X importtime and cProfile (embedded store), until ready."""
    from tests.fixtures.common import free_port

    data = tmp / "data-embedded"  # the history the runs used
    env = servers.collect_env("embedded", data)
    port = free_port()
    prof = tmp / "collect.prof"
    log = tmp / "collect-profile.log"
    cmd = [sys.executable, "-X", "importtime", "-m", "cProfile", "-o", str(prof),
           str(REPO / "app.py"), "collect", "--health-port", str(port)]
    seen = measure(cmd, env, port, log)
    print("profiled run: " + "  ".join(f"{p} {seen[p]:.2f}s" for p in PHASES))
    imports = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 2:  # top-level imports only (cumulative time)
            imports.append((int(m.group(2)), m.group(4)))
    imports.sort(reverse=True)
    print("slowest top-level imports (cumulative ms): " +
          ", ".join(f"{name} {us / 1000:.0f}" for us, name in imports[:10]))
    if prof.exists():
        import pstats

        print("cProfile, main thread, by cumulative time (top 15):")
        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(15)


def summary(store: str, r: dict[str, list[float]]) -> None:
    print(f"{store:9s} " + "  ".join(f"{p} median {statistics.median(v):.2f}s max {max(v):.2f}s"
                                      for p, v in r.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--store", default="embedded,influxdb", help="embedded, influxdb or both (comma)")
    ap.add_argument("--history-hours", type=float, default=4.0,
                    help="hours of stored samples before the first start (the running shift's warm start)")
    ap.add_argument("--profile", action="store_true", help="also profile one start (importtime, cProfile)")
    a = ap.parse_args(argv)
    stores = [s for s in a.store.split(",") if s]
    from tests.fixtures.common import find_binary

    if "influxdb" in stores:
        try:
            find_binary("influxd")
        except BaseException:  # pytest's skip outside pytest: no influxd here
            print("influxd not installed: embedded store only")
            stores = [s for s in stores if s != "influxdb"]
    print(machine_line())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the servers
    with tempfile.TemporaryDirectory(prefix="gwanje-start-") as tmp:
        tmp_p = Path(tmp)
        servers = Servers(tmp_p, "influxdb" in stores)
        try:
            results = {s: run_store(servers, s, a.runs, tmp_p, a.history_hours) for s in stores}
            if a.profile:
                profile(servers, tmp_p)
        finally:
            servers.stop()
    print(f"collect start-up, {a.runs} runs, {a.history_hours:g} h of history, seconds from spawn:")
    for s, r in results.items():
        summary(s, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
