"""The two ceiling lines bench.ingest prints beside the collector's figures, measured in the
same run on the same servers, so that the collector's rate reads as a share of this machine's
limit (per-core speed differs ~2.5x between machines of this kind: compare ratios).

  subscriber  a bare paho client (QoS 1, one process) that only counts what bench.ingest's
              publisher sends: the most samples/s the broker and one Python MQTT client move
  writer      a bare line-protocol writer (one process): pre-built 5,000-point batches POSTed to
              the same influxd's /write as fast as it answers — the most points/s one Python
              process can store there, with none of our decoding, validation or encoding
For bench.ingest --load 40x50 both use that load: the subscriber receives its --count
messages on the generated plant's topics (gwanje/#), the writer writes that plant's series.
With a bench.procstat Watch, each line also prints who used the cores while it ran.

    python -m bench.ceiling      both, against servers of its own (the same fixtures)
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
BATCH = 5000


def _subscriber(port: int, got: "mp.Value", ready: "mp.Event", stop: "mp.Event") -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    n = [0]

    def on_message(client, userdata, msg) -> None:
        n[0] += 1
        if n[0] % 100 == 0:
            got.value = n[0]

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ceiling-sub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv311, clean_session=True)
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("gwanje/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port)
    while not stop.is_set():
        c.loop(0.05)
        got.value = n[0]  # the last messages too, so the bench sees "all received" at once
    got.value = n[0]
    c.disconnect()


def subscriber_ceiling(port: int, mode: str, seconds: float, load: str = "demo", config_dir: Optional[str] = None,
                       count: int = 0, watch=None) -> dict:
    """Samples/s a bare QoS 1 subscriber receives from bench.ingest's publisher at full rate."""
    from bench.ingest import PER_MSG, publisher, wait_for

    ctx = mp.get_context("spawn")
    got, ready, stop = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    sub = ctx.Process(target=_subscriber, args=(port, got, ready, stop), daemon=True)
    sub.start()
    wait_for(ready.is_set, 60, "the bare subscriber")
    sent, pready, go, finished, release = ctx.Value("q", 0), ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    pub = ctx.Process(target=publisher, daemon=True,
                      args=(port, mode, 0, seconds, sent, pready, go, load, config_dir, count, finished, release))
    pub.start()
    wait_for(pready.is_set, 60, "the publisher")
    if watch is not None:
        watch.add("bare subscriber", sub.pid)
        watch.add("publisher", pub.pid)
        mark = watch.mark()
    go.set()
    t0 = time.monotonic()
    last, last_change = -1, time.monotonic()
    while True:  # until the subscriber has everything, or nothing moved for 5 s
        time.sleep(0.1)
        per_msg = PER_MSG if mode == "batched" else 1
        if finished.is_set() and got.value * per_msg >= sent.value > 0:
            break
        if got.value != last:
            last, last_change = got.value, time.monotonic()
        elif time.monotonic() - last_change > 5 and finished.is_set():
            break
    span = last_change - t0 if got.value * per_msg < sent.value else time.monotonic() - t0
    cpu = None
    if watch is not None:
        cpu = watch.report(mark, watch.mark(), indent="    ")
        watch.remove("bare subscriber")
        watch.remove("publisher")
    stop.set()
    release.set()
    sub.join(10)
    pub.join(10)
    msgs = got.value
    return {"msgs": msgs, "samples": msgs * per_msg, "per_s": msgs * per_msg / max(span, 1e-9),
            "msg_per_s": msgs / max(span, 1e-9), "sent": sent.value, "cpu_line": cpu}


def _writer(url: str, db: str, seconds: float, out: "mp.Queue", config_dir: Optional[str] = None) -> None:
    import requests

    sys.path.insert(0, str(REPO))
    if config_dir:
        from bench.bigplant import targets
    else:
        from bench.soak import mqtt_machines

    machines = targets(Path(config_dir)) if config_dir else mqtt_machines()
    series = [(topic.split("/")[1:4], sig) for topic, sigs in machines for sig in sigs]
    s = requests.Session()
    s.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'}, timeout=10)
    t0 = time.monotonic()
    points = 0
    ts = time.time_ns()
    while time.monotonic() - t0 < seconds:
        lines = []
        for i in range(BATCH):
            (site, line, machine), sig = series[i % len(series)]
            ts += 1
            lines.append(f"sample,site={site},line={line},machine={machine},signal={sig},quality=good "
                         f"value={i % 1000}.5 {ts}")
        r = s.post(f"{url}/write", params={"db": db, "precision": "ns"}, data="\n".join(lines).encode(), timeout=30)
        r.raise_for_status()
        points += BATCH
    out.put({"points": points, "per_s": points / (time.monotonic() - t0)})


def writer_ceiling(url: str, seconds: float, config_dir: Optional[str] = None, watch=None) -> dict:
    """Points/s one bare Python process writes into influxd's /write, batches pre-built per loop;
    config_dir: the series of that config's MQTT machines (default: the demo plant's)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_writer, args=(url, f"ceiling_{uuid.uuid4().hex[:6]}", seconds, q, config_dir),
                    daemon=True)
    p.start()
    if watch is not None:
        watch.add("bare writer", p.pid)
        mark = watch.mark()
    r = q.get(timeout=seconds + 120)
    if watch is not None:
        r["cpu_line"] = watch.report(mark, watch.mark(), indent="    ")
        watch.remove("bare writer")
    p.join(10)
    return r


def show(what: str, r: dict) -> None:
    print(f"  ceiling {what}: {r['per_s']:,.0f} samples/s" +
          (f" ({r['msg_per_s']:,.0f} msg/s, {r['samples']:,} of {r['sent']:,} received)" if "msg_per_s" in r else
           f" ({r['points']:,} points)"), flush=True)
    if r.get("cpu_line"):
        print(r["cpu_line"], flush=True)


def main() -> int:
    import tempfile

    sys.path.insert(0, str(REPO))
    from bench.ingest import machine_line
    from tests.fixtures.common import find_binary
    from tests.fixtures.influxd import Influxd
    from tests.fixtures.mosquitto import Mosquitto

    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as d:
        (Path(d) / "m").mkdir()
        (Path(d) / "i").mkdir()
        broker = Mosquitto(find_binary("mosquitto"), Path(d) / "m").start()
        influxd = Influxd(find_binary("influxd"), Path(d) / "i").start()
        try:
            for mode in ("batched", "single"):
                show(f"bare paho subscriber, {mode}", subscriber_ceiling(broker.port, mode, 8))
            show("bare line-protocol writer -> influxd /write", writer_ceiling(influxd.url, 8))
        finally:
            broker.stop()
            influxd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
