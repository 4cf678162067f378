"""Benchmark: ingest end to end — MQTT / OPC UA -> collector -> Pipeline (with spool) -> store.

    python -m bench.ingest [--store embedded|influxdb|both] [--mode single|batched|opcua|all]
                           [--load demo|40x50] [--count 16000] [--collector bench|app|bench,app]
                           [--processes N|1,2] [--seconds N] [--runs 3] [--half on|off]
                           [--listeners on|off] [--ceilings on|off]

The issue 5 targets (2-core machine): >= 200,000 samples/s from 50-sample MQTT messages into
InfluxDB, >= 10,000 msg/s of single-sample QoS 1 messages, >= 5,000 OPC UA data changes/s per
collector process, p99 publish -> queryable < 1 s at half the maximum rate. Issue 11: 5x
today's rate on its load (--load 40x50), with the ratio to this machine's ceiling lines.

It starts its own mosquitto (tests/fixtures/mosquitto: the test config, persistence on),
influxd (tests/fixtures/influxd) and, for --mode opcua, the asyncua server of
bench/opcua_ingest (a separate process rewriting all its variables).

Loads (--load):
  demo     the demo plant's MQTT machines and numeric signals (config/), --seconds of
           publishing per measurement
  40x50    the issue's load: a generated config dir (bench/bigplant.py: config/ with 40 real
           MQTT machines x 50 numeric signals in 8 lines of 2 sites) and a publisher sending
           --count (16,000) QoS 1 messages of 50 samples, one machine's 50 signals at one
           current time each (time.time_ns(), 800,000 samples); batched mode only

Collectors (--collector), each in processes of their own:
  bench    built as `app.py collect` builds it: MqttCollector (QoS 1, persistent session, ack
           after store) or OpcuaCollector -> runtime.pipeline.Pipeline (system.yaml batch size,
           flush interval and queue, the disk spool) -> storage.open_store; with --listeners on
           (default) the engine and alarm service listen to every batch, as in `collect`
  app      the real `python app.py collect --config DIR --data-dir DIR [--instance pN]`
           (GWANJE_MQTT_URL, GWANJE_STORAGE, GWANJE_INFLUX_URL/_DB from the bench; the demo
           config's OPC UA endpoints point at closed ports), with bench/apphook loaded through
           PYTHONPATH (bench/_hook/sitecustomize.py): it wraps the store for the same latency
           and write-time figures as the bench wiring, names threads, and tells when the
           collector is subscribed and the warm start done — the product code runs unchanged
           (the hook costs a 50 ms file poll and the latency note per 10th sample). MQTT only.
--processes N: N collect instances on this host (system.yaml collect.instances p1..pN in the
generated config, owning the lines round robin, gwanje.partition; each process subscribes to
its own lines' topics with its own session), with the total rate. 40x50 load only.
Lists (--collector bench,app --processes 1,2) measure every combination, interleaved within
each run, so their ratios come from one run on the same servers.

Per store and mode:
  max      the publisher offers as much as it can (--seconds, or --count messages for 40x50),
           QoS 1, a separate process; once all of it is stored:
             stored      InfluxDB: SELECT count(value) FROM sample on the bench's database (minus
                         its count before the run), polled until it stops short of or reaches
                         what the publisher had acknowledged; DuckDB: the pipelines' written count
             rate        stored / (last write - first write), the write times being when the
                         store's write_samples() returned (= queryable, see latency), the first
                         over all processes to the last; the rate from publish start to "all
                         stored seen" is printed beside it (it adds the first batch's latency
                         and up to one poll, 0.2 s)
  latency  the publisher offers half of that maximum for --seconds; each sample's timestamp is
           its publish time (MQTT: time.time_ns() when the message is built; OPC UA: the server's
           source timestamp), and latency = the time the store's write_samples() returned for
           the batch holding it minus that timestamp. InfluxDB 1.x answers 204 to /write once
           the points are in its WAL and queryable; DuckDB once the transaction committed — so
           "write returned" is "queryable" (a poll loop would only add its own period).
           Median and p99 over every 10th sample.
Also printed per measurement: CPU µs per stored sample and peak RSS of the collector
process(es), samples lost (published - stored; must be 0), and who used the two cores over the
measurement (bench/procstat.py): each process's CPU % of one core — collector(s), mosquitto,
influxd, publisher — with the collector's threads (paho's network thread, the writer thread,
...), their total and the whole machine's. Median of --runs runs per figure (default 1).
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
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
PER_MSG = 50
LAT_STRIDE = 10
POLL_S = 0.2


def machine_line() -> str:
    return (f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.platform()}, load average {os.getloadavg()[0]:.1f}")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ------------------------------------------------------------------ publisher process
def mqtt_targets(mode: str, load: str = "demo", config_dir: Optional[str] = None) -> list[tuple[str, list[str]]]:
    """(topic, signals): for the demo load the demo plant's MQTT machines (numeric signals),
    machine topics for batched messages, one signal topic per signal for single-sample
    messages; for 40x50 the generated config's machines (bench.bigplant)."""
    if load == "40x50":
        from bench.bigplant import targets

        return targets(Path(config_dir))
    from bench.soak import mqtt_machines

    base = mqtt_machines()
    if mode == "batched":
        return base
    return [(f"{topic}/{sig}", [sig]) for topic, sigs in base for sig in sigs]


def publisher(port: int, mode: str, rate: float, seconds: float, sent: "mp.Value", ready: "mp.Event",
              go: "mp.Event", load: str = "demo", config_dir: Optional[str] = None, count: int = 0,
              finished: "Optional[mp.Event]" = None, release: "Optional[mp.Event]" = None) -> None:
    """Offer `rate` samples/s (0 = as fast as paho can) for `seconds` (or `count` messages, when
    given) at QoS 1. Demo load: every sample's ts is the publish time in ns (+ its index in the
    message, so points stay distinct); 40x50: one machine's signals at one current time.
    finished/release: set `finished` when all is acknowledged, then stay alive until `release`
    (so the bench's CPU sampler sees this process's CPU time up to the end of the measurement)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    sys.path.insert(0, str(REPO))
    targets = mqtt_targets(mode, load, config_dir)
    per_msg = PER_MSG if mode == "batched" else 1
    if load == "40x50":
        from bench.bigplant import message

        last_ts = [0] * len(targets)
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
        if (count and k >= count) or (not count and now - t_start >= seconds):
            break
        if rate and k * per_msg > rate * (now - t_start):
            c.loop(0.001)
            continue
        m = k % len(targets)
        topic, sigs = targets[m]
        t = time.time_ns()
        if load == "40x50":
            t = last_ts[m] = max(t, last_ts[m] + 1)
            body = message(k, len(targets), sigs, t)
        elif per_msg == 1:
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
    if finished is not None:
        finished.set()
        release.wait(900)


# ------------------------------------------------------------------ collector process (bench wiring)
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
        ts = samples.ts if hasattr(samples, "sid") else [s.ts for s in samples]  # SampleBatch or Samples
        self.lat_ns.extend(done - t for t in ts[::LAT_STRIDE])
        self.last_write = time.monotonic()
        if not self.first_write:
            self.first_write = self.last_write

    def __getattr__(self, name):
        return getattr(self._inner, name)


def collector_main(conn, kind: str, store_kind: str, env: dict, config_dir: str, data_dir: str,
                   listeners_on: bool, client_id: str, instance: Optional[str] = None, columnar: bool = True,
                   stages_on: bool = False, flush_ms: float = 0.0) -> None:
    """Collector process: build the collect path (of one collect instance, if given), then
    answer "stats" / "reset" / "lat" / "stop".
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
    if instance:
        from gwanje.partition import for_instance

        config = for_instance(config, instance)
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
        ps = pipeline.stats()
        status = collector.status()
        conn.send({"ready": status.connected and status.subscribed, "written": ps["samples_written"],
                   "spooled": ps.get("samples_spooled", 0), "dropped": ps["samples_dropped"],
                   "write_errors": ps["write_errors"], "rejects": sum(status.rejects.values()),
                   "first": store.first_write, "last": store.last_write,
                   "threads": {t.native_id: t.name for t in threading.enumerate()},
                   "lat": store.lat_ns if cmd == "lat" else None,
                   "stages": stages.summary() if stages is not None and cmd == "lat" else None})


class Collector:
    """bench.ingest's own wiring of the collect path, in a process of its own."""

    def __init__(self, kind: str, store_kind: str, env: dict, config_dir: Path, data_dir: Path,
                 listeners_on: bool, broker_port: int = 0, instance: Optional[str] = None,
                 columnar: bool = True, stages: bool = False, flush_ms: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.client_id = f"ingest-{uuid.uuid4().hex[:8]}"
        self.broker_port = broker_port
        self.instance = instance
        self.proc = ctx.Process(target=collector_main, daemon=True, args=(
            child, kind, store_kind, env, str(config_dir), str(data_dir), listeners_on, self.client_id),
            kwargs=dict(instance=instance, columnar=columnar, stages_on=stages, flush_ms=flush_ms))
        self.proc.start()
        self.pid = self.proc.pid

    def ask(self, cmd: str = "stats") -> dict:
        self.conn.send(cmd)
        if not self.conn.poll(120):
            raise RuntimeError("collector process does not answer")
        return self.conn.recv()

    def threads(self) -> dict[int, str]:
        return self.ask()["threads"]

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


class AppCollector:
    """The real `python app.py collect` in a subprocess, probed by bench/apphook. ask() answers
    like Collector.ask (written, first, last, lat, ...)."""

    def __init__(self, store_kind: str, env: dict, config_dir: Path, data_dir: Path, broker_port: int,
                 instance: Optional[str] = None) -> None:
        from bench.apphook import HookClient, hook_env
        from gwanje.config import load_config
        from tests.fixtures.common import free_port

        self.instance = instance
        hook_dir = Path(data_dir).parent / f"hook-{Path(data_dir).name}"
        hook_dir.mkdir(parents=True)
        self.hook = HookClient(hook_dir)
        penv = {**os.environ, **env, **hook_env(hook_dir, REPO), "GWANJE_STORAGE": store_kind,
                "GWANJE_LOG_LEVEL": "WARNING"}
        penv.pop("GWANJE_INSTANCE", None)
        cfg = load_config(config_dir, env=penv)
        for ep in cfg.system.opcua.endpoints:  # the demo config's OPC UA servers are not run here
            penv[f"GWANJE_OPCUA_URL_{ep.name.upper().replace('-', '_')}"] = f"opc.tcp://127.0.0.1:{free_port()}/none"
        self.client_id = cfg.system.mqtt.client_id + (f"-{instance}" if instance else "")
        self.broker_port = broker_port
        cmd = [sys.executable, "app.py", "collect", "--config", str(config_dir), "--data-dir", str(data_dir)]
        if instance:
            cmd += ["--instance", instance]
        self.log = open(Path(data_dir).parent / f"collect-{Path(data_dir).name}.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=penv, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        self._base_written = 0

    def ask(self, cmd: str = "stats") -> dict:
        if self.proc.poll() is not None:
            raise RuntimeError(f"app.py collect exited with {self.proc.returncode}; see {self.log.name}")
        r = self.hook.ask(cmd)
        if "error" in r:
            raise RuntimeError(f"bench hook: {r['error']}")
        p = r.get("pipeline") or {}
        if cmd == "reset":
            self._base_written = p.get("samples_written", 0)
        mqtt = [s for s in r.get("sources") or [] if s["kind"] == "mqtt"]
        return {"ready": bool(mqtt) and all(s["connected"] and s["subscribed"] for s in mqtt)
                and not r.get("restore_pending"),
                "written": p.get("samples_written", 0) - self._base_written,
                "spooled": p.get("samples_spooled", 0), "dropped": p.get("samples_dropped", 0),
                "write_errors": p.get("write_errors", 0), "rejects": sum(s["rejects"] for s in mqtt),
                "first": r["first"], "last": r["last"], "threads": r["threads"], "lat": r.get("lat")}

    def threads(self) -> dict[int, str]:
        return self.hook.threads()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
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


class Collectors:
    """One or several collector processes (collect instances) measured together."""

    def __init__(self, procs: list, influx: Optional[tuple[str, str]] = None) -> None:
        self.procs = procs
        self.influx = influx  # (url, database): stored = count(value) there

    def labels(self) -> list[tuple[str, object]]:
        if len(self.procs) == 1:
            return [("collector", self.procs[0])]
        return [(f"collect {getattr(p, 'instance', None) or i + 1}", p) for i, p in enumerate(self.procs)]

    def ask(self, cmd: str = "stats") -> dict:
        rs = [p.ask(cmd) for p in self.procs]
        firsts = [r["first"] for r in rs if r["first"]]
        out = {k: sum(r[k] for r in rs) for k in ("written", "spooled", "dropped", "write_errors", "rejects")}
        out.update(ready=all(r["ready"] for r in rs), first=min(firsts) if firsts else 0.0,
                   last=max(r["last"] for r in rs),
                   lat=[x for r in rs for x in (r["lat"] or [])] if cmd == "lat" else None,
                   stages=rs[0].get("stages") if len(rs) == 1 else None)  # OPC UA: one process
        return out

    def influx_count(self) -> int:
        import requests

        url, db = self.influx
        r = requests.get(f"{url}/query", params={"q": 'SELECT count("value") FROM "sample"', "db": db}, timeout=30)
        r.raise_for_status()
        for res in r.json().get("results", []):
            for ser in res.get("series", []) or []:
                return int(ser["values"][0][1])
        return 0

    def stored(self, s: dict) -> int:
        return self.influx_count() if self.influx else s["written"]

    def peak_rss_mb(self) -> float:
        return max(peak_rss_mb(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def start_collectors(a, kind: str, store: str, env: dict, tmp: Path, tag: str, collector: str = "bench",
                     processes: int = 1) -> Collectors:
    """`processes` collectors of kind `collector` (bench|app); each group writes to an InfluxDB
    database of its own."""
    env = dict(env)
    influx = None
    if store == "influxdb":
        env["GWANJE_INFLUX_DB"] = f"bench_{tag}"
        influx = (env["GWANJE_INFLUX_URL"], env["GWANJE_INFLUX_DB"])
    instances = [f"p{i + 1}" for i in range(processes)] if processes > 1 else [None]
    cfg = a.config_dirs[processes if processes > 1 else 0]
    procs = []
    for inst in instances:
        data = tmp / f"data-{tag}-{inst or 'all'}"
        if collector == "app":
            procs.append(AppCollector(store, env, cfg, data, a.port, inst))
        else:
            procs.append(Collector(kind, store, env, cfg, data, a.listeners == "on", a.port, inst))
    return Collectors(procs, influx)


# ------------------------------------------------------------------ runs
def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def watch_collectors(watch, coll: Collectors) -> None:
    for label, p in coll.labels():
        watch.add(label, p.pid, threads=p.threads)


def mqtt_run(coll: Collectors, a, mode: str, rate: float, seconds: float, count: int = 0) -> dict:
    ctx = mp.get_context("spawn")
    sent, ready, go, finished, release = ctx.Value("q", 0), ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    cfg = str(a.config_dirs[0])
    p = ctx.Process(target=publisher, daemon=True,
                    args=(a.port, mode, rate, seconds, sent, ready, go, a.load, cfg, count, finished, release))
    p.start()
    wait_for(ready.is_set, 60, "the publisher")
    base = coll.ask("reset")
    base_stored = coll.stored(base)
    a.watch.add("publisher", p.pid)
    mark = a.watch.mark()
    go.set()
    t0 = time.monotonic()
    finished.wait((seconds or 600) + 120)
    pub_s = time.monotonic() - t0
    want = sent.value
    try:
        return settle(coll, want, base_stored, t0, pub_s, a.watch, mark, base["spooled"])
    finally:
        release.set()
        p.join(30)
        a.watch.remove("publisher")


def settle(coll: Collectors, want: int, base_stored: int, t0: float, pub_s: float, watch, mark,
           base_spooled: int = 0) -> dict:
    """Wait until `want` samples are stored (or nothing moved for 15 s), then the figures."""
    last, last_change = -1, time.monotonic()
    while True:
        s = coll.ask()
        if s["written"] >= want:
            stored = coll.stored(s) - base_stored
            if stored >= want:
                break
        else:
            stored = s["written"]
        if stored != last:
            last, last_change = stored, time.monotonic()
        elif time.monotonic() - last_change > 15:
            break
        time.sleep(POLL_S)
    t_all = time.monotonic()
    end = watch.mark()
    s = coll.ask("lat")
    s["spooled"] -= base_spooled  # the pipeline's counter is cumulative
    stored = coll.stored(s) - base_stored
    return figures(s, stored, want, want / pub_s, t_all - t0, watch, mark, end, coll)


def figures(s: dict, stored: int, offered: int, offered_per_s: float, e2e_s: float, watch, mark, end,
            coll: Collectors) -> dict:
    span = max(s["last"] - s["first"], 1e-9)
    lat = sorted(s["lat"] or [0])
    cpu = watch.figures(mark, end)
    coll_pct = sum(cpu["procs"].get(label, 0.0) for label, _ in coll.labels())
    return {"offered": offered, "offered_per_s": offered_per_s, "stored": stored,
            "lost": offered - stored if offered else 0, "per_s": stored / span,
            "e2e_per_s": stored / e2e_s if e2e_s else 0.0,
            "cpu_s": coll_pct / 100 * cpu["window_s"], "rss_mb": coll.peak_rss_mb(),
            "lat_med": lat[len(lat) // 2] / 1e9, "lat_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e9,
            "lat_n": len(s["lat"] or []),
            "spooled": s["spooled"], "rejects": s["rejects"], "write_errors": s["write_errors"],
            "cpu_line": watch.report(mark, end, indent="    "), "cpu": cpu, "stages": s.get("stages")}


def opcua_run(coll: Collectors, a, server_rates: list, seconds: float) -> dict:
    """The server is already writing (at its rate); measure what is stored over `seconds`."""
    coll.ask("reset")
    time.sleep(1.0)  # let the reset land between batches; the next window is the measurement
    coll.ask("reset")
    r0 = len(server_rates)
    mark = a.watch.mark()
    t0 = time.monotonic()
    time.sleep(seconds)
    end = a.watch.mark()
    s = coll.ask("lat")
    return figures(s, s["written"], 0, statistics.mean(server_rates[r0:] or [0.0]),
                   time.monotonic() - t0, a.watch, mark, end, coll)


def show(label: str, r: dict, unit_per_msg: int) -> None:
    msgs = f" ({r['per_s'] / unit_per_msg:,.0f} msg/s)" if unit_per_msg > 1 else ""
    lat = (f"latency median {r['lat_med'] * 1000:,.0f} ms p99 {r['lat_p99'] * 1000:,.0f} ms"
           if r["lat_n"] else "latency not measured")
    print(f"  {label}: offered {r['offered_per_s']:,.0f}/s, stored {r['stored']:,} at {r['per_s']:,.0f} samples/s"
          f"{msgs} (first to last write; {r['e2e_per_s']:,.0f}/s publish start to all stored); {lat}; "
          f"lost {r['lost']:,}; spooled {r['spooled']:,}; write errors {r['write_errors']}; rejects {r['rejects']}; "
          f"collector CPU {r['cpu_s']:.1f} s = {r['cpu_s'] / max(r['stored'], 1) * 1e6:.1f} us/sample, "
          f"peak RSS {r['rss_mb']:.0f} MB", flush=True)
    print(r["cpu_line"], flush=True)
    if r.get("stages"):
        from bench.opcua_stages import show as show_stages

        print(f"    {show_stages(r['stages'])}", flush=True)


def summary(store: str, mode: str, maxes: list[dict], lats: list[dict], per_msg: int, what: str,
            ceilings: dict) -> None:
    med = statistics.median(r["per_s"] for r in maxes)
    cpu_us = statistics.median(r["cpu_s"] / max(r["stored"], 1) * 1e6 for r in maxes)
    line = (f"RESULT store={store} mode={mode} {what}: max {med:,.0f} samples/s"
            + (f" ({med / per_msg:,.0f} msg/s)" if per_msg > 1 else "")
            + f", collector CPU {cpu_us:.1f} us/sample")
    for name, c in ceilings.items():
        line += f"; {med / c:.0%} of the {name} ceiling ({c:,.0f})"
    if lats:
        line += (f"; at half ({statistics.median(r['offered_per_s'] for r in lats):,.0f}/s) latency median "
                 f"{statistics.median(r['lat_med'] for r in lats) * 1000:,.0f} ms, p99 "
                 f"{statistics.median(r['lat_p99'] for r in lats) * 1000:,.0f} ms")
    line += (f"; lost {sum(r['lost'] for r in maxes + lats)}; peak RSS "
             f"{max(r['rss_mb'] for r in maxes + lats):.0f} MB; load average {os.getloadavg()[0]:.1f}")
    print(line, flush=True)


def run_mqtt(store: str, mode: str, a, env: dict, tmp: Path) -> None:
    """Every --collector x --processes combination, interleaved within each run (A/B in one run)."""
    per_msg = PER_MSG if mode == "batched" else 1
    combos = [(c, n) for c in a.collectors for n in a.process_counts]
    maxes: dict[tuple, list] = {k: [] for k in combos}
    lats: dict[tuple, list] = {k: [] for k in combos}
    count = a.count if a.load == "40x50" else 0
    for i in range(a.runs):
        for collector, n in combos:
            what = f"load={a.load} collector={collector} processes={n}"
            print(f"\n{store} / {mode} ({per_msg} sample(s) per message, QoS 1, ack after store; {what}; "
                  f"run {i + 1})", flush=True)
            tag = f"{store}_{mode}_{collector}_{n}_{i}"
            coll = start_collectors(a, "mqtt", store, env, tmp, tag, collector, n)
            try:
                wait_for(lambda: coll.ask()["ready"], 90, "the collector(s) to subscribe (and finish the warm start)")
                time.sleep(0.5)
                watch_collectors(a.watch, coll)
                r = mqtt_run(coll, a, mode, 0, a.seconds, count)
                show(f"run {i + 1} max" + (f" ({count:,} messages)" if count else ""), r, per_msg)
                maxes[collector, n].append(r)
                if a.half == "on":
                    r = mqtt_run(coll, a, mode, r["per_s"] / 2, a.seconds)
                    show(f"run {i + 1} at half", r, per_msg)
                    lats[collector, n].append(r)
            finally:
                for label, _ in coll.labels():
                    a.watch.remove(label)
                coll.stop()
    ceilings = {k: v for k, v in a.ceilings_found.get(mode, {}).items() if k == "subscriber" or store == "influxdb"}
    print()
    for collector, n in combos:
        summary(store, mode, maxes[collector, n], lats[collector, n], per_msg,
                f"load={a.load} collector={collector} processes={n}", ceilings)


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
                maxes[columnar], lats[columnar], 1, "collector=bench", {})
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def opcua_once(store: str, a, env: dict, tmp: Path, tag: str, rate: float, columnar: bool,
               write_config, free_port) -> dict:
    """One measurement: a fresh bench server writing at `rate` (0: as fast as it can) and a
    fresh collector process, both watched by a.watch (bench.procstat) while they run."""
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
        a.watch.add("opcua server", server.pid)
        coll = Collectors([Collector("opcua", store, env, cfg, tmp / f"data-{store}-opcua-{tag}",
                                     a.listeners == "on", columnar=columnar, stages=a.stages,
                                     flush_ms=a.flush_ms or 0.0)])
        watch_collectors(a.watch, coll)
        wait_for(lambda: coll.ask()["written"] > 0, 60, "the first OPC UA samples stored")
        return opcua_run(coll, a, rates, a.seconds)
    finally:
        a.watch.remove("opcua server")
        if coll:
            for label, _ in coll.labels():
                a.watch.remove(label)
            coll.stop()
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["embedded", "influxdb", "both"], default="influxdb")
    ap.add_argument("--mode", choices=["single", "batched", "opcua", "all"], default="all")
    ap.add_argument("--load", choices=["demo", "40x50"], default="demo",
                    help="demo plant (default) or the issue's 40 machines x 50 signals (batched only)")
    ap.add_argument("--count", type=int, default=16_000, help="--load 40x50: messages of the max measurement")
    ap.add_argument("--collector", default="bench",
                    help="bench: this module's wiring of the collect path; app: the real `app.py collect`; "
                         "bench,app: both, interleaved in each run")
    ap.add_argument("--processes", default="1",
                    help="collect instances on this host (collect.instances p1..pN; --load 40x50); "
                         "a list (1,2) measures each, interleaved in each run")
    ap.add_argument("--seconds", type=float, default=8.0, help="publishing time per measurement")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--half", choices=["on", "off"], default="on", help="also the latency run at half the maximum")
    ap.add_argument("--listeners", choices=["on", "off"], default="on",
                    help="engine + alarm listeners on the writer thread, as in `app.py collect` (bench collector)")
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
    from bench import bigplant
    from bench.procstat import Watch
    from tests.fixtures.common import find_binary
    from tests.fixtures.influxd import Influxd
    from tests.fixtures import mosquitto as mosquitto_fixture
    from tests.fixtures.mosquitto import Mosquitto

    if a.load == "40x50":
        if a.mode == "all":
            a.mode = "batched"
        if a.mode != "batched":
            ap.error("--load 40x50 is 50-sample messages: --mode batched")
    a.collectors = [c.strip() for c in a.collector.split(",")]
    a.process_counts = [int(n) for n in a.processes.split(",")]
    if set(a.collectors) - {"bench", "app"}:
        ap.error("--collector: bench, app or bench,app")
    if max(a.process_counts) > 1 and a.load != "40x50":
        ap.error("--processes N partitions the generated 40x50 plant by lines: use --load 40x50")
    if "app" in a.collectors and a.mode in ("opcua", "all"):
        a.mode = "batched" if a.mode == "all" else ap.error("--collector app: MQTT modes only")
    if a.inflight is not None:  # to measure what the inflight limit costs
        mosquitto_fixture.BROKER_CONF = re.sub(r"(?m)^max_inflight_messages \d+$",
                                               f"max_inflight_messages {a.inflight}", mosquitto_fixture.BROKER_CONF)
    BROKER_CONF = mosquitto_fixture.BROKER_CONF
    print(machine_line())
    inflight = [ln for ln in BROKER_CONF.splitlines() if ln.startswith("max_inflight_messages")]
    print(f"broker: mosquitto, tests/fixtures/mosquitto config ({', '.join(inflight)}); listeners "
          f"{a.listeners} (bench collector; always on in app.py collect); load {a.load}"
          + (f" ({a.count:,} messages x 50 samples in the max run)" if a.load == "40x50" else "")
          + f"; collector {a.collector}, processes {a.processes}; {a.seconds:g} s per measurement, "
            f"{a.runs} run(s)", flush=True)
    stores = ["embedded", "influxdb"] if a.store == "both" else [a.store]
    modes = ["batched", "single", "opcua"] if a.mode == "all" else [a.mode]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
        tmp = Path(d)
        # config dirs by process count: 0 = the one every collector of a single process reads
        a.config_dirs = {0: REPO / "config"}
        if a.load == "40x50":
            a.config_dirs[0] = bigplant.write_config(tmp / "config-40x50")
            for n in (n for n in a.process_counts if n > 1):
                a.config_dirs[n] = bigplant.write_config(tmp / f"config-40x50-{n}p", instances=n)
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(find_binary("mosquitto"), tmp / "mosquitto").start()
        influxd = None
        a.watch = Watch().start()
        a.watch.add("mosquitto", broker.proc.pid)
        try:
            a.port = broker.port
            env = {"GWANJE_MQTT_URL": broker.url}
            if "influxdb" in stores:
                (tmp / "influxd").mkdir()
                influxd = Influxd(find_binary("influxd"), tmp / "influxd").start()
                env.update(GWANJE_INFLUX_URL=influxd.url, GWANJE_INFLUX_DB="bench")
                a.watch.add("influxd", influxd.proc.pid)
            a.ceilings_found = {}
            if a.ceilings == "on":  # this machine's limits, in the same run (bench/ceiling.py)
                from bench import ceiling

                print("\nceilings (same broker and influxd; the publisher is one process, so the subscriber line "
                      "is also the publisher's limit)", flush=True)
                for mode in (m for m in modes if m != "opcua"):
                    c = ceiling.subscriber_ceiling(a.port, mode, a.seconds, load=a.load,
                                                   config_dir=str(a.config_dirs[0]),
                                                   count=a.count if a.load == "40x50" else 0, watch=a.watch)
                    ceiling.show(f"bare paho subscriber, {mode}", c)
                    a.ceilings_found.setdefault(mode, {})["subscriber"] = c["per_s"]
                if influxd is not None:
                    c = ceiling.writer_ceiling(influxd.url, a.seconds, watch=a.watch,
                                              config_dir=str(a.config_dirs[0]) if a.load == "40x50" else None)
                    ceiling.show("bare line-protocol writer -> influxd /write", c)
                    for mode in modes:
                        a.ceilings_found.setdefault(mode, {})["writer"] = c["per_s"]
            for store in stores:
                for mode in modes:
                    if mode == "opcua":
                        run_opcua(store, a, env, tmp)
                    else:
                        run_mqtt(store, mode, a, env, tmp)
        finally:
            a.watch.stop()
            broker.stop()
            if influxd:
                influxd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
