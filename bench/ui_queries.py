"""Benchmark: the store's query load from wall displays, with and without the shared cache.

    python -m bench.ui_queries [--seconds 20] [--workers 2,4] [--displays 1,20] [--ttl S]

Starts a real influxd (tests/fixtures/influxd) holding the demo plant's last --history
seconds (dashboards.sample_data, one sample of every signal per machine per --period s)
and a real redis-server (tests/fixtures/redis_server), then for each number of gunicorn
workers, of displays, and cache (in-process / Redis): the control room behind real gunicorn
(`gunicorn -w N runtime.wsgi:server`, the demo config, InfluxDB store, GWANJE_REDIS_URL set
or not), and that many wall displays, each an HTTP client doing what the kiosk overview
page (`/?kiosk=1`) does in a browser every ui.refresh_ms: every refresh callback of the
page, with the page's ids and values (bench/kiosk.py; tiles, line OEE, clock, alarm banner).
Displays start spread over one refresh period, as screens switched on at different times.
After a warm-up of one --seconds/4 the figure is measured over --seconds:

  store queries/s  influxd's own count of /query requests (/debug/vars httpd queryReq),
                   independent of our code, divided by the seconds
  refreshes/s      page refreshes the displays completed (20 displays every 2 s: 10/s when
                   the server keeps up)

and the machine. The cache TTL is system.yaml ui.cache.ttl_s (1 s) unless --ttl.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def machine_line() -> str:
    from bench.ingest import machine_line as line

    return line()


def load_plant(influxd_url: str, db: str, history_s: int, period_s: float) -> int:
    from dashboards.sample_data import plant_history
    from gwanje.config import load_config
    from storage.influx import InfluxStore

    cfg = load_config(REPO / "config", env={})
    samples = plant_history(cfg, time.time_ns(), history_s, period_s)
    store = InfluxStore(influxd_url, db, timeout_s=30).start()
    for i in range(0, len(samples), 20_000):
        store.write_samples(samples[i:i + 20_000])
    store.close()
    return len(samples)


def config_dir(tmp: Path, ttl: float | None) -> Path:
    d = tmp / "config"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(REPO / "config", d)
    if ttl is not None:
        text = (d / "system.yaml").read_text()
        new, n = re.subn(r"(?m)^(    ttl_s:) *[0-9.]+", rf"\g<1> {ttl}", text, count=1)
        assert n == 1, "system.yaml has no ui.cache.ttl_s"
        (d / "system.yaml").write_text(new)
    return d


class Gunicorn:
    def __init__(self, workers: int, env: dict[str, str], tmp: Path) -> None:
        from tests.fixtures.common import free_port, wait_port

        self.port = free_port()
        self.log = open(tmp / f"gunicorn-{self.port}.log", "wb")
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.proc = subprocess.Popen([gunicorn, "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
                                      "--timeout", "60", "runtime.wsgi:server"], cwd=REPO,
                                     env={**os.environ, **env}, stdout=self.log, stderr=self.log)
        wait_port(self.port, timeout=60, proc=self.proc)
        self.url = f"http://127.0.0.1:{self.port}"
        # every worker imported the app (and opened its store) before the measurement
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/_dash-dependencies", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        time.sleep(1.0 + 0.5 * workers)

    def stop(self) -> list[str]:
        """Stop it; the warnings and errors it logged."""
        from tests.fixtures.common import stop_process

        stop_process(self.proc, timeout=10)
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return [ln for ln in text if "WARNING" in ln or "ERROR" in ln or "Traceback" in ln]


def display(url: str, refresh_s: float, offset_s: float, stop: threading.Event, counts: list[int]) -> None:
    from bench.kiosk import Kiosk

    session = requests.Session()

    def post(path: str, body: dict):
        r = session.post(url + path, json=body, timeout=30)
        return r.status_code, (r.json() if r.status_code == 200 else None)

    kiosk = Kiosk(post, lambda p: session.get(url + p, timeout=30).json())
    if stop.wait(offset_s):
        return
    nxt = time.monotonic()
    while not stop.is_set():
        kiosk.tick()
        counts[0] += 1
        counts[1] = kiosk.errors
        nxt += refresh_s
        delay = nxt - time.monotonic()
        if delay > 0:
            if stop.wait(delay):
                break
        else:
            nxt = time.monotonic()  # behind: the next refresh at once, as a browser's interval would


def run_case(influxd, redis_url: str | None, workers: int, displays: int, a, tmp: Path, cfg_dir: Path,
             refresh_s: float) -> tuple[float, float, int]:
    env = {"GWANJE_CONFIG_DIR": str(cfg_dir), "GWANJE_DATA_DIR": str(tmp / "data"), "GWANJE_DEMO": "1",
           "GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": influxd.url, "GWANJE_INFLUX_DB": "bench",
           # every worker must sign the shared entries with the same key
           "GWANJE_SECRET_KEY": "bench-ui-queries"}
    os.environ.pop("GWANJE_REDIS_URL", None)
    if redis_url:
        env["GWANJE_REDIS_URL"] = redis_url
    server = Gunicorn(workers, env, tmp)
    stop = threading.Event()
    counts = [[0, 0] for _ in range(displays)]
    threads = [threading.Thread(target=display, args=(server.url, refresh_s, refresh_s * i / displays, stop, counts[i]),
                                daemon=True) for i in range(displays)]
    try:
        for th in threads:
            th.start()
        time.sleep(refresh_s + a.seconds / 4)  # all displays loaded and refreshing
        q0, r0, t0 = influxd.query_requests(), sum(c[0] for c in counts), time.monotonic()
        time.sleep(a.seconds)
        q1, r1, t1 = influxd.query_requests(), sum(c[0] for c in counts), time.monotonic()
    finally:
        stop.set()
        for th in threads:
            th.join(30)
        for line in server.stop()[:5]:
            print("   server log:", line[:200])
    return (q1 - q0) / (t1 - t0), (r1 - r0) / (t1 - t0), sum(c[1] for c in counts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement time per case")
    ap.add_argument("--workers", default="2,4", help="gunicorn worker counts, comma separated")
    ap.add_argument("--displays", default="1,20", help="wall display counts, comma separated")
    ap.add_argument("--cache", default="process,redis", help="process, redis or both")
    ap.add_argument("--ttl", type=float, help="ui.cache.ttl_s (default: system.yaml's)")
    ap.add_argument("--history", type=int, default=300, help="seconds of plant history in the store")
    ap.add_argument("--period", type=float, default=1.0, help="sample period of that history")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from gwanje.config import load_config
    from tests.fixtures.common import find_binary
    from tests.fixtures.influxd import Influxd
    from tests.fixtures.redis_server import RedisServer

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as d:
        tmp = Path(d)
        for sub in ("influxd", "redis", "data"):
            (tmp / sub).mkdir()
        influxd = Influxd(find_binary("influxd"), tmp / "influxd").start()
        redis = RedisServer(find_binary("redis-server"), tmp / "redis").start()
        try:
            n = load_plant(influxd.url, "bench", a.history, a.period)
            cfg_dir = config_dir(tmp, a.ttl)
            cfg = load_config(cfg_dir, env={})
            refresh_s = cfg.system.ui.refresh_ms / 1000
            version = requests.get(influxd.url + "/ping", timeout=5).headers.get("X-Influxdb-Version", "?")
            print(f"store: influxd {version}, {n:,} samples "
                  f"({a.history} s of the demo plant, 36 machines, every {a.period:g} s); page /?kiosk=1 "
                  f"refreshing every {refresh_s:g} s; cache ttl {cfg.system.ui.cache.ttl_s:g} s; "
                  f"{a.seconds:g} s per case", flush=True)
            print(f"{'workers':>7} {'displays':>8} {'cache':>8} {'store queries/s':>16} {'refreshes/s':>12} {'errors':>6}")
            for workers in [int(x) for x in a.workers.split(",")]:
                for displays in [int(x) for x in a.displays.split(",")]:
                    for cache in a.cache.split(","):
                        qps, rps, errors = run_case(influxd, redis.url if cache == "redis" else None, workers,
                                                    displays, a, tmp, cfg_dir, refresh_s)
                        print(f"{workers:>7} {displays:>8} {cache:>8} {qps:>16.1f} {rps:>12.1f} {errors:>6}",
                              flush=True)
        finally:
            redis.stop()
            influxd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
