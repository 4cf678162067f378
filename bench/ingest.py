"""Benchmark: ingest end to end — MQTT / OPC UA -> collector -> Pipeline (with spool) -> store.

    python -m bench.ingest [--store embedded|influxdb|both] [--mode single|batched|opcua|all]
                           [--seconds N] [--runs 3] [--listeners on|off] [--ceilings on|off]

The issue 5 targets (2-core machine): >= 200,000 samples/s from 50-sample MQTT messages into
InfluxDB, >= 10,000 msg/s of single-sample QoS 1 messages, >= 5,000 OPC UA data changes/s per
collector process, p99 publish -> queryable < 1 s at half the maximum rate.

It starts its own mosquitto (tests/fixtures/mosquitto: the test config, persistence on),
influxd (tests/fixtures/influxd) and, for --mode opcua, the asyncua server of
bench/opcua_ingest (a separate process rewriting all its variables). The collector runs in
its own process, built as `app.py collect` builds it: MqttCollector (QoS 1, persistent
session, ack after store) or OpcuaCollector -> runtime.pipeline.Pipeline (system.yaml batch
size, flush interval and queue, the disk spool) -> storage.open_store; with --listeners on
(default) the engine and alarm service listen to every batch, as in `collect`.

Per store and mode:
  max      the publisher offers as much as it can for --seconds (QoS 1, a separate process);
           sustained rate = samples stored / (last write - first write) once all of them are
           stored (the broker queue and the spool absorb what the collector cannot take at once);
  latency  the publisher offers half of that maximum for --seconds; each sample's timestamp is
           its publish time (MQTT: time.time_ns() when the message is built; OPC UA: the server's
           source timestamp), and latency = the time the store's write_samples() returned for
           the batch holding it minus that timestamp. InfluxDB 1.x answers 204 to /write once
           the points are in its WAL and queryable; DuckDB once the transaction committed — so
           "write returned" is "queryable" (a poll loop would only add its own period).
           Median and p99 over every 10th sample.
Also printed: the collector process's CPU seconds (user + system) and peak RSS, and samples
lost (published - stored; must be 0). Median of --runs runs per figure (default 1, the
default run takes about 3 minutes; --runs 3 for the figures in docs/performance.md).
--inflight N overrides the broker's max_inflight_messages, to measure what that limit costs.
Each stopped collector's persistent session is ended (a clean connect with its client id):
left behind, the broker would queue every later message for it and slow the next runs.
OPC UA has no broker to queue for it: "max" there is the server writing as fast as it can
and the rate the collector stores while it does (the field notes: the asyncua server is the
bottleneck near 22k changes/s); "latency" paces the server at half that. --publishing-ms sets
the subscription's publishing interval (default 100 ms; before issue 11 the bench said 100 ms
but left the config default, 1,000 ms, in force). --opcua-path item|batch|both: the collector's
per-item path, its batch path (the default), or both interleaved in one run (A/B).
--stages prints, per OPC UA measurement, where the latency goes (bench/opcua_stages.py).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PER_MSG = 50
LAT_STRIDE = 10


def machine_line() -> str:
    return (f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.platform()}, load average {os.getloadavg()[0]:.1f}")


# ------------------------------------------------------------------ publisher process
def mqtt_targets(mode: str) -> list[tuple[str, list[str]]]:
    """(topic, signals) for the demo plant's MQTT machines (numeric signals): machine topics
    for batched messages, one signal topic per signal for single-sample messages."""
    from bench.soak import mqtt_machines

    base = mqtt_machines()
    if mode == "batched":
        return base
    return [(f"{topic}/{sig}", [sig]) for topic, sigs in base for sig in sigs]


def publisher(port: int, mode: str, rate: float, seconds: float, sent: "mp.Value", ready: "mp.Event",
              go: "mp.Event") -> None:
    """Offer `rate` samples/s (0 = as fast as paho can) for `seconds` at QoS 1. Every sample's
    ts is the publish time in ns (+ its index in the message, so points stay distinct)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    targets = mqtt_targets(mode)
    per_msg = PER_MSG if mode == "batched" else 1
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ingest-pub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(2000)
    acked = [0]

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        acked[0] += 1

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    while not c.is_connected():
        c.loop(0.1)
    ready.set()
    while not go.wait(0.05):
        c.loop(0)
    # no loop thread: publish() writes to the socket at once; loop(0) every few messages reads PUBACKs
    t_start = time.monotonic()
    k = 0
    while True:
        now = time.monotonic()
        if now - t_start >= seconds:
            break
        if rate and k * per_msg > rate * (now - t_start):
            c.loop(0.001)
            continue
        topic, sigs = targets[k % len(targets)]
        t = time.time_ns()
        if per_msg == 1:
            body = '{"value":%d.5,"ts":%d}' % (k % 1000, t)
        else:
            n = len(sigs)
            body = "[" + ",".join('{"signal":"%s","value":%d.5,"ts":%d}' % (sigs[j % n], j, t + j)
                                  for j in range(per_msg)) + "]"
        while c.publish(topic, body, qos=1).rc == paho.MQTT_ERR_QUEUE_SIZE:
            c.loop(0.001)
        k += 1
        if k % 50 == 0:
            c.loop(0)
            sent.value = k * per_msg
    sent.value = k * per_msg
    # paho queues what exceeds its inflight window: only PUBACKed messages are surely at the broker
    deadline = time.monotonic() + 120
    while acked[0] < k and time.monotonic() < deadline:
        c.loop(0.01)
    sent.value = acked[0] * per_msg
    c.disconnect()


# ------------------------------------------------------------------ collector process
class LatencyStore:
    """The real store, plus: when write_samples returns, note (now - ts) for every
    LAT_STRIDE-th sample, and the first/last write times. Everything else is delegated."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.lat_ns: list[int] = []
        self.first_write = 0.0
        self.last_write = 0.0

    def write_samples(self, samples) -> None:
        self._inner.write_samples(samples)
        done = time.time_ns()
        self.lat_ns.extend(done - s.ts for s in samples[::LAT_STRIDE])
        self.last_write = time.monotonic()
        if not self.first_write:
            self.first_write = self.last_write

    def __getattr__(self, name):
        return getattr(self._inner, name)


def collector_main(conn, kind: str, store_kind: str, env: dict, config_dir: str, data_dir: str,
                   listeners_on: bool, client_id: str, columnar: bool = True, stages_on: bool = False,
                   flush_ms: float = 0.0) -> None:
    """Collector process: build the collect path, then answer "stats" / "reset" / "stop".
    columnar: the OPC UA collector's batch path (False: its per-item path); stages_on: time
    stamps along the OPC UA path (bench.opcua_stages), returned with "lat"; flush_ms > 0
    overrides system.yaml storage.flush_interval_ms."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("gwanje.notify").setLevel(logging.ERROR)  # no channels configured here
    sys.path.insert(0, str(REPO))
    from gwanje.config import Secrets, load_config
    from runtime.pipeline import Pipeline
    from storage import open_store
    from storage.spool import open_spool

    config = load_config(config_dir, env={**env, "GWANJE_STORAGE": store_kind})
    secrets = Secrets.from_env({})
    store = LatencyStore(open_store(config, Path(data_dir), secrets))
    listeners = []
    if listeners_on:
        from alerts.service import AlarmService, engine_oee
        from gwanje.engine import Engine

        engine = Engine(config)
        alarms = AlarmService.from_config(config, store, oee=engine_oee(engine), env={})
        listeners = [engine.on_samples, alarms.on_samples]
    st = config.system.storage
    pipeline = Pipeline(store, batch_size=st.batch_size, flush_interval_s=(flush_ms or st.flush_interval_ms) / 1000,
                        queue_size=st.queue_size, listeners=listeners, backpressure_s=st.backpressure_ms / 1000,
                        spool=open_spool(config.system.spool, data_dir))
    stages = None
    if stages_on:
        from bench.opcua_stages import Stages

        stages = Stages()
        stages.install(pipeline, store)
    pipeline.start()
    if kind == "mqtt":
        from collectors.mqtt import MqttCollector

        collector = MqttCollector(config, pipeline, secrets, client_id=client_id)
    else:
        from collectors.opcua import OpcuaCollector

        collector = OpcuaCollector(config, config.endpoint("bench"), pipeline, secrets, columnar=columnar)
    collector.start()
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            collector.stop()
            pipeline.stop()
            conn.send(True)
            return
        if cmd == "reset":
            store.lat_ns, store.first_write, store.last_write = [], 0.0, 0.0
            pipeline.samples_written = 0
            if stages is not None:
                stages.reset()
        t = os.times()
        ps = pipeline.stats()
        conn.send({"connected": collector.status().connected, "written": ps["samples_written"],
                   "spooled": ps.get("samples_spooled", 0), "dropped": ps["samples_dropped"],
                   "write_errors": ps["write_errors"],
                   "rejects": sum(collector.status().rejects.values()),
                   "first": store.first_write, "last": store.last_write,
                   "cpu": t.user + t.system, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "lat": store.lat_ns if cmd == "lat" else None,
                   "stages": stages.summary() if stages is not None and cmd == "lat" else None})


class Collector:
    def __init__(self, kind: str, store_kind: str, env: dict, config_dir: Path, data_dir: Path,
                 listeners_on: bool, broker_port: int = 0, columnar: bool = True, stages: bool = False,
                 flush_ms: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.client_id = f"ingest-{uuid.uuid4().hex[:8]}"
        self.broker_port = broker_port
        self.proc = ctx.Process(target=collector_main, daemon=True, args=(
            child, kind, store_kind, env, str(config_dir), str(data_dir), listeners_on, self.client_id,
            columnar, stages, flush_ms))
        self.proc.start()

    def ask(self, cmd: str = "stats") -> dict:
        self.conn.send(cmd)
        if not self.conn.poll(120):
            raise RuntimeError("collector process does not answer")
        return self.conn.recv()

    def stop(self) -> None:
        try:
            self.ask("stop")
        except Exception:
            pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
        if self.broker_port:
            drop_session(self.broker_port, self.client_id)


def drop_session(port: int, client_id: str) -> None:
    """A stopped collector's persistent session would make the broker queue (and persist)
    every later message for it, slowing the next runs: end it with a clean connect."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not c.is_connected() and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()


# ------------------------------------------------------------------ runs
def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mqtt_run(coll: Collector, port: int, mode: str, rate: float, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    sent, ready, go = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    p = ctx.Process(target=publisher, args=(port, mode, rate, seconds, sent, ready, go), daemon=True)
    p.start()
    wait_for(ready.is_set, 60, "the publisher")
    base = coll.ask("reset")
    go.set()
    t0 = time.monotonic()
    p.join(seconds + 120)
    pub_s = time.monotonic() - t0
    want = sent.value
    return settle(coll, want, base, pub_s)


def settle(coll: Collector, want: int, base: dict, pub_s: float) -> dict:
    """Wait until `want` samples are stored (or nothing moved for 15 s), then the figures."""
    last, last_change = -1, time.monotonic()
    while True:
        s = coll.ask()
        if s["written"] >= want:
            break
        if s["written"] != last:
            last, last_change = s["written"], time.monotonic()
        elif time.monotonic() - last_change > 15:
            break
        time.sleep(0.2)
    return figures(coll.ask("lat"), base, want, want / pub_s)


def figures(s: dict, base: dict, offered: int, offered_per_s: float) -> dict:
    span = max(s["last"] - s["first"], 1e-9)
    lat = sorted(s["lat"] or [0])
    return {"offered": offered, "offered_per_s": offered_per_s, "stored": s["written"],
            "lost": offered - s["written"] if offered else 0,
            "per_s": s["written"] / span, "cpu_s": s["cpu"] - base["cpu"], "rss_mb": s["rss_mb"],
            "lat_med": lat[len(lat) // 2] / 1e9, "lat_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e9,
            "spooled": s["spooled"], "rejects": s["rejects"], "write_errors": s["write_errors"],
            "stages": s.get("stages")}


def opcua_run(coll: Collector, server_rates: list, seconds: float) -> dict:
    """The server is already writing (at its rate); measure what is stored over `seconds`."""
    coll.ask("reset")
    time.sleep(1.0)  # let the reset land between batches; the next window is the measurement
    base = coll.ask("reset")
    r0 = len(server_rates)
    time.sleep(seconds)
    return figures(coll.ask("lat"), base, 0, statistics.mean(server_rates[r0:] or [0.0]))


def show(label: str, r: dict, unit_per_msg: int) -> None:
    msgs = f" ({r['per_s'] / unit_per_msg:,.0f} msg/s)" if unit_per_msg > 1 else ""
    print(f"  {label}: offered {r['offered_per_s']:,.0f}/s, stored {r['stored']:,} at {r['per_s']:,.0f} samples/s"
          f"{msgs}; latency median {r['lat_med'] * 1000:,.0f} ms p99 {r['lat_p99'] * 1000:,.0f} ms; "
          f"lost {r['lost']:,}; spooled {r['spooled']:,}; write errors {r['write_errors']}; rejects {r['rejects']}; "
          f"collector CPU {r['cpu_s']:.1f} s, peak RSS {r['rss_mb']:.0f} MB", flush=True)
    if r.get("stages"):
        from bench.opcua_stages import show as show_stages

        print(f"    {show_stages(r['stages'])}", flush=True)


def summary(store: str, mode: str, maxes: list[dict], lats: list[dict], per_msg: int) -> None:
    med = statistics.median(r["per_s"] for r in maxes)
    cpu_us = statistics.median(r["cpu_s"] / max(r["stored"], 1) * 1e6 for r in maxes)
    line = (f"RESULT store={store} mode={mode}: max {med:,.0f} samples/s"
            + (f" ({med / per_msg:,.0f} msg/s)" if per_msg > 1 else "")
            + f", collector CPU {cpu_us:.1f} us/sample")
    if lats:
        line += (f"; at half ({statistics.median(r['offered_per_s'] for r in lats):,.0f}/s) latency median "
                 f"{statistics.median(r['lat_med'] for r in lats) * 1000:,.0f} ms, p99 "
                 f"{statistics.median(r['lat_p99'] for r in lats) * 1000:,.0f} ms")
    line += (f"; lost {sum(r['lost'] for r in maxes + lats)}; peak RSS "
             f"{max(r['rss_mb'] for r in maxes + lats):.0f} MB")
    print(line, flush=True)


def run_mqtt(store: str, mode: str, a, env: dict, tmp: Path) -> None:
    per_msg = PER_MSG if mode == "batched" else 1
    print(f"\n{store} / {mode} ({per_msg} sample(s) per message, QoS 1, ack after store)", flush=True)
    maxes, lats = [], []
    for i in range(a.runs):
        data = tmp / f"data-{store}-{mode}-{i}"
        coll = Collector("mqtt", store, env, REPO / "config", data, a.listeners == "on", a.port)
        try:
            wait_for(lambda: coll.ask()["connected"], 60, "the collector to connect")
            time.sleep(0.5)  # SUBACK
            r = mqtt_run(coll, a.port, mode, 0, a.seconds)
            show(f"run {i + 1} max", r, per_msg)
            maxes.append(r)
            r = mqtt_run(coll, a.port, mode, r["per_s"] / 2, a.seconds)
            show(f"run {i + 1} at half", r, per_msg)
            lats.append(r)
        finally:
            coll.stop()
    summary(store, mode, maxes, lats, per_msg)


OPCUA_PATHS = {"batch": [True], "item": [False], "both": [False, True]}


def run_opcua(store: str, a, env: dict, tmp: Path) -> None:
    """Per run and collector path (--opcua-path both: the per-item and the batch path
    interleaved): max, then half. With both paths, each run's half rate is half the median of
    that run's maxima, the same offered load for both."""
    from bench.opcua_ingest import write_config
    from tests.fixtures.common import free_port

    paths = OPCUA_PATHS[a.opcua_path]
    print(f"\n{store} / opcua ({a.variables} variables, publishing interval {a.publishing_ms:g} ms, "
          f"collector path {a.opcua_path}{', stages' if a.stages else ''}"
          f"{f', flush {a.flush_ms:g} ms' if a.flush_ms else ''})", flush=True)
    maxes: dict[bool, list] = {p: [] for p in paths}
    lats: dict[bool, list] = {p: [] for p in paths}
    for i in range(a.runs):
        for rate_kind in ("max", "half"):
            for columnar in paths:
                rate = 0.0 if rate_kind == "max" else statistics.median(
                    maxes[p][-1]["per_s"] for p in paths) / 2
                label = f"run {i + 1} {rate_kind}" + (f" [{'batch' if columnar else 'item'}]" if len(paths) > 1 else "")
                r = opcua_once(store, a, env, tmp, f"{i}-{rate_kind}-{int(columnar)}", rate, columnar,
                               write_config, free_port)
                show(label, r, 1)
                (maxes if rate_kind == "max" else lats)[columnar].append(r)
    for columnar in paths:
        summary(store, "opcua" + (f" [{'batch' if columnar else 'item'} path]" if len(paths) > 1 else ""),
                maxes[columnar], lats[columnar], 1)
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def opcua_once(store: str, a, env: dict, tmp: Path, tag: str, rate: float, columnar: bool,
               write_config, free_port) -> dict:
    """One measurement: a fresh bench server writing at `rate` (0: as fast as it can) and a
    fresh collector process."""
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/bench"
    cfg = tmp / f"opcua-cfg-{store}-{tag}"
    cfg.mkdir()
    write_config(cfg, a.variables, url, a.publishing_ms)
    cmd = [sys.executable, "-m", "bench.opcua_ingest", "--serve", str(port),
           "--variables", str(a.variables), "--rate", str(rate)]
    if a.stages:
        cmd.append("--stamp-write")
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    rates: list[float] = []

    def read(proc=server, out=rates) -> None:
        for line in proc.stdout:
            if line.startswith("WRITES"):
                out.append(float(line.split()[1]))

    coll = None
    try:
        if server.stdout.readline().strip() != "READY":
            raise RuntimeError("bench OPC UA server did not start")
        threading.Thread(target=read, daemon=True).start()
        coll = Collector("opcua", store, env, cfg, tmp / f"data-{store}-opcua-{tag}",
                         a.listeners == "on", columnar=columnar, stages=a.stages, flush_ms=a.flush_ms or 0.0)
        wait_for(lambda: coll.ask()["written"] > 0, 60, "the first OPC UA samples stored")
        return opcua_run(coll, rates, a.seconds)
    finally:
        if coll:
            coll.stop()
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["embedded", "influxdb", "both"], default="influxdb")
    ap.add_argument("--mode", choices=["single", "batched", "opcua", "all"], default="all")
    ap.add_argument("--seconds", type=float, default=8.0, help="publishing time per measurement")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--listeners", choices=["on", "off"], default="on",
                    help="engine + alarm listeners on the writer thread, as in `app.py collect`")
    ap.add_argument("--ceilings", choices=["on", "off"], default="on",
                    help="also measure the two ceiling lines of bench.ceiling in this run (bare subscriber, bare writer)")
    ap.add_argument("--inflight", type=int, help="override the fixture's mosquitto max_inflight_messages")
    ap.add_argument("--variables", type=int, default=1000, help="OPC UA variables (--mode opcua)")
    ap.add_argument("--publishing-ms", type=float, default=100.0,
                    help="the OPC UA subscription's publishing interval (--mode opcua)")
    ap.add_argument("--opcua-path", choices=sorted(OPCUA_PATHS), default="batch",
                    help="the OPC UA collector's batch path, its per-item path, or both interleaved")
    ap.add_argument("--flush-ms", type=float, help="override system.yaml storage.flush_interval_ms (--mode opcua)")
    ap.add_argument("--stages", action="store_true",
                    help="OPC UA: time stamps along the path, source time -> stored (bench.opcua_stages)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.fixtures.common import find_binary
    from tests.fixtures.influxd import Influxd
    from tests.fixtures import mosquitto as mosquitto_fixture
    from tests.fixtures.mosquitto import Mosquitto

    if a.inflight is not None:  # to measure what the inflight limit costs
        mosquitto_fixture.BROKER_CONF = re.sub(r"(?m)^max_inflight_messages \d+$",
                                               f"max_inflight_messages {a.inflight}", mosquitto_fixture.BROKER_CONF)
    BROKER_CONF = mosquitto_fixture.BROKER_CONF
    print(machine_line())
    inflight = [ln for ln in BROKER_CONF.splitlines() if ln.startswith("max_inflight_messages")]
    print(f"broker: mosquitto, tests/fixtures/mosquitto config ({', '.join(inflight)}); listeners {a.listeners}; "
          f"{a.seconds:g} s per measurement, {a.runs} run(s)", flush=True)
    stores = ["embedded", "influxdb"] if a.store == "both" else [a.store]
    modes = ["batched", "single", "opcua"] if a.mode == "all" else [a.mode]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
        tmp = Path(d)
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(find_binary("mosquitto"), tmp / "mosquitto").start()
        influxd = None
        try:
            a.port = broker.port
            env = {"GWANJE_MQTT_URL": broker.url}
            if "influxdb" in stores:
                (tmp / "influxd").mkdir()
                influxd = Influxd(find_binary("influxd"), tmp / "influxd").start()
                env.update(GWANJE_INFLUX_URL=influxd.url, GWANJE_INFLUX_DB="bench")
            if a.ceilings == "on":  # this machine's limits, in the same run (bench/ceiling.py)
                from bench import ceiling

                print("\nceilings (same broker and influxd; the publisher is one process, so the subscriber line "
                      "is also the publisher's limit)", flush=True)
                for mode in (m for m in modes if m != "opcua"):
                    ceiling.show(f"bare paho subscriber, {mode}", ceiling.subscriber_ceiling(a.port, mode, a.seconds))
                if influxd is not None:
                    ceiling.show("bare line-protocol writer -> influxd /write",
                                 ceiling.writer_ceiling(influxd.url, a.seconds))
            for store in stores:
                for mode in modes:
                    if mode == "opcua":
                        run_opcua(store, a, env, tmp)
                    else:
                        run_mqtt(store, mode, a, env, tmp)
        finally:
            broker.stop()
            if influxd:
                influxd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
