"""Soak: the real `collect` process (app.py collect) under a steady MQTT load for a long time —
does its memory stay flat and do its queues stay empty?

    python -m bench.soak [--minutes 30] [--rate auto|SAMPLES_PER_S] [--store embedded|influxdb]

Starts its own mosquitto (the test fixture's config: raised queue limits, persistence) and, for
--store influxdb, its own influxd; then `app.py collect` on the demo plant (MQTT collector,
pipeline with the disk spool, engine and alarm listeners, store) with a health port. A publisher
process sends 50-sample JSON messages at QoS 1 on the demo plant's MQTT machines at a fixed
rate. --rate auto (default) first offers as much as the publisher can send for 10 s, takes
the rate at which the collect process stored all of it as the maximum, and soaks at half of it (the issue's "half the
measured maximum").

Every 10 s it scrapes /metrics and prints RSS, queue depth, spool backlog and samples written.
At the end: RSS trend (least-squares slope over the second half, after warm-up), the largest
queue depth, and published vs stored.
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
    return f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"


def mqtt_machines() -> list[tuple[str, list[str]]]:
    from gwanje.config import load_config

    cfg = load_config(REPO / "config", env={})
    return [(f"gwanje/{m.site}/{m.line}/{m.machine}", [s.id for s in m.signals if s.kind in ("analog", "counter")])
            for m in cfg.machines() if m.definition.source == "mqtt"]


def publisher(port: int, rate: float, seconds: float, sent: "mp.Value") -> None:
    """Separate process: `rate` samples/s (0 = as fast as possible) for `seconds`."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    machines = mqtt_machines()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{os.getpid()}", clean_session=True)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(20_000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t_start = time.monotonic()
    ts = time.time_ns() - 3600 * 10**9
    k = 0
    while True:
        now = time.monotonic()
        if now - t_start >= seconds:
            break
        if rate and k * PER_MSG > rate * (now - t_start):
            time.sleep(0.002)
            continue
        topic, signals = machines[k % len(machines)]
        payload = []
        for j in range(PER_MSG):
            ts += 1000
            payload.append({"signal": signals[j % len(signals)], "value": float(j), "ts": ts})
        body = json.dumps(payload)
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
    def __init__(self, tmp: Path, store: str) -> None:
        from tests.fixtures.common import find_binary, free_port
        from tests.fixtures.mosquitto import Mosquitto

        (tmp / "mosquitto").mkdir()
        self.broker = Mosquitto(find_binary("mosquitto"), tmp / "mosquitto").start()
        self.influxd = None
        env = {**os.environ, "GWANJE_MQTT_URL": self.broker.url, "GWANJE_STORAGE": store,
               "GWANJE_DATA_DIR": str(tmp / "data"), "GWANJE_LOG_LEVEL": "WARNING",
               "GWANJE_OPCUA_URL_CHANGWON_1": f"opc.tcp://127.0.0.1:{free_port()}/none",
               "GWANJE_OPCUA_URL_CHANGWON_2": f"opc.tcp://127.0.0.1:{free_port()}/none"}
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

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.broker.stop()
        if self.influxd:
            self.influxd.stop()


def run_load(stack: Stack, rate: float, seconds: float, every: float, label: str) -> list[tuple]:
    sent = mp.Value("q", 0)
    base = scrape(stack.health).get("gwanje_pipeline_samples_written_total", 0.0)
    p = mp.Process(target=publisher, args=(stack.broker.port, rate, seconds, sent), daemon=True)
    t0 = time.monotonic()
    p.start()
    rows = []
    while True:
        time.sleep(every)
        m = scrape(stack.health)
        t = time.monotonic() - t0
        row = (t, m.get("gwanje_process_resident_memory_bytes", 0) / 1e6, m.get("gwanje_pipeline_queue_depth_samples", 0),
               m.get("gwanje_spool_samples", 0), m.get("gwanje_pipeline_samples_written_total", 0) - base, sent.value)
        rows.append(row)
        print(f"{label} t={t:6.0f}s rss={row[1]:7.1f} MB queue={row[2]:8.0f} spool={row[3]:8.0f} "
              f"written={row[4]:12,.0f} published={row[5]:12,}", flush=True)
        if not p.is_alive() and row[4] >= row[5]:
            break
        if t > seconds + 300:
            print(f"{label}: {row[5] - row[4]:,.0f} samples not stored 5 min after the load ended", flush=True)
            break
    p.join()
    return rows


def slope_per_min(rows: list[tuple], col: int) -> float:
    xs = [r[0] / 60 for r in rows]
    ys = [r[col] for r in rows]
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", default="auto", help="samples/s, or auto = half the measured maximum")
    ap.add_argument("--store", choices=["embedded", "influxdb"], default="embedded")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples of RSS and queues")
    a = ap.parse_args(argv)
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="gwanje-soak-") as tmp:
        stack = Stack(Path(tmp), a.store)
        try:
            if a.rate == "auto":
                # 10 s as fast as the publisher can: the maximum is what the process stored per
                # second until it had caught up with all of it (the spool absorbs the excess)
                probe = run_load(stack, 0, PROBE_S, 2, "max-probe")
                last = probe[-1]
                maximum = last[4] / last[0] if last[0] else 0.0
                rate = maximum / 2
                print(f"measured maximum: {maximum:,.0f} samples/s stored (publisher sent {last[5]:,} in "
                      f"{PROBE_S} s, all stored after {last[0]:.0f} s); soaking at {rate:,.0f} samples/s", flush=True)
            else:
                rate = float(a.rate)
            rows = run_load(stack, rate, a.minutes * 60, a.every, "soak")
        finally:
            stack.close()
    second_half = rows[len(rows) // 2:]
    rss_slope = slope_per_min(second_half, 1)
    print(f"RESULT store={a.store} rate={rate:,.0f} samples/s minutes={a.minutes:g}: rss first={rows[0][1]:.1f} MB "
          f"last={rows[-1][1]:.1f} MB max={max(r[1] for r in rows):.1f} MB, slope over the second half "
          f"{rss_slope:+.2f} MB/min; queue max={max(r[2] for r in rows):,.0f} last={rows[-1][2]:,.0f}; "
          f"spool max={max(r[3] for r in rows):,.0f}; published={rows[-1][5]:,} stored={rows[-1][4]:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
