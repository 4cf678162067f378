"""Benchmark: samples and messages per second through MqttCollector (paho 2.x, QoS 1).

    python -m bench.mqtt_ingest [--single 30000] [--batched 10000] [--batch-size 50] [--runs 3] [--store]

Starts its own mosquitto (tests/fixtures/mosquitto.Mosquitto: raised queue limits, temp dir,
free port). For each mode a separate publisher process sends its messages at QoS 1 as fast as
paho lets it, while MqttCollector (persistent session, QoS 1) decodes them into a counting
sink in this process:
  single   one sample per message on a signal topic: {"value": .., "ts": ..}
  batched  batch-size samples per message on a machine topic: [{"signal", "value", "ts"}, ..]
With --store, both modes run once more through runtime.pipeline into an in-memory
storage.embedded.EmbeddedStore, timed until the last sample is written; the collector then
acknowledges each message only after the pipeline stored its samples (ack after store).
Printed: the machine, then per run the publisher's send rate, the sustained rate at the sink
(first to last sample received) and the collector process's CPU time per sample (a figure
that depends little on other load on the machine), and the medians of the runs. Messages published but not
received within the deadline are printed as lost. Field notes: paho alone ~25k msg/s at QoS 1,
~600k samples/s with 50 samples per message.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SITE, LINE, MACHINE = "changwon-1", "cnc-1", "cnc-101"
SIGNALS = ["spindle_speed", "spindle_load", "feed_rate", "vibration", "cycle_time",
           "part_count_total", "part_count_good", "part_count_reject", "state"]


def payloads(mode: str, n: int, batch_size: int) -> list[tuple[str, bytes]]:
    """Distinct (signal, ts) per sample, so every sample is a different point in a store."""
    t0 = int(time.time() * 1000) - 3_600_000  # an hour ago: inside the accepted window
    base = f"gwanje/{SITE}/{LINE}/{MACHINE}"
    if mode == "single":
        return [(f"{base}/{SIGNALS[i % len(SIGNALS)]}",
                 json.dumps({"value": float(i % 1000), "ts": t0 + i // len(SIGNALS)}).encode())
                for i in range(n)]
    out = []
    for m in range(n):
        k0 = m * batch_size
        out.append((base, json.dumps([
            {"signal": SIGNALS[k % len(SIGNALS)], "value": float(k % 1000) + 0.5, "ts": t0 + k // len(SIGNALS)}
            for k in range(k0, k0 + batch_size)]).encode()))
    return out


def publish_all(port: int, mode: str, n: int, batch_size: int, ready: "mp.Event", go: "mp.Event",
                result: "mp.Queue") -> None:
    """Publisher process: build the payloads, wait for the go, send them all at QoS 1."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    msgs = payloads(mode, n, batch_size)
    acked = threading.Event()
    count = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        count[0] += 1
        if count[0] == len(msgs):
            acked.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    # no loop thread: publish() then writes to the socket at once instead of waking a thread
    # per message; loop() every few hundred messages reads the PUBACKs
    while not c.is_connected():
        c.loop(0.1)
    ready.set()
    while not go.wait(0.1):
        c.loop(0)  # keep the connection alive while the collector gets ready
    t0 = time.perf_counter()
    for i, (topic, payload) in enumerate(msgs):
        c.publish(topic, payload, qos=1)
        if i % 200 == 199:
            c.loop(0)
    deadline = time.monotonic() + 300
    while not acked.is_set() and time.monotonic() < deadline:
        c.loop(0.05)
    result.put((count[0], time.perf_counter() - t0))
    c.disconnect()


class CountingSink:
    """Counts samples and notes when the first and the latest arrived; cheap per call."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def submit(self, samples) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += len(samples)
        self.last = now

    def done(self) -> int:
        return self.count

    def close(self) -> None:
        pass


class StoreSink(CountingSink):
    """Through the pipeline into an in-memory EmbeddedStore (DuckDB): done when written."""

    def __init__(self) -> None:
        super().__init__()
        from runtime.pipeline import Pipeline
        from storage.embedded import EmbeddedStore

        self.store = EmbeddedStore(":memory:")
        self.pipeline = Pipeline(self.store)
        self.pipeline.start()

    def submit(self, samples, on_done=None) -> None:
        # on_done in the signature: the collector then acks each message only once the
        # pipeline has stored its samples (its at-least-once mode), which is what is measured
        if not self.count:
            self.first = time.perf_counter()
        self.count += len(samples)
        self.pipeline.submit(samples, on_done)

    def done(self) -> int:
        written = self.pipeline.stats()["samples_written"]
        if written and written != getattr(self, "_seen", 0):
            self._seen, self.last = written, time.perf_counter()
        return written

    def close(self) -> None:
        self.pipeline.stop()
        self.store.close()


def run_once(broker, config, mode: str, n: int, batch_size: int, store: bool) -> dict[str, float]:
    from collectors.mqtt import MqttCollector
    from gwanje.config import Secrets

    per_msg = 1 if mode == "single" else batch_size
    sink = StoreSink() if store else CountingSink()
    coll = MqttCollector(config, sink, Secrets.from_env({}), url=broker.url,
                         client_id=f"bench-coll-{uuid.uuid4().hex[:8]}")
    coll.start()
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=publish_all, args=(broker.port, mode, n, batch_size, ready, go, result))
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not (ready.is_set() and coll.status().connected) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the SUBACK come back before the first message
        cpu0 = time.process_time()
        go.set()
        try:
            sent, send_s = result.get(timeout=600)
        except queue.Empty:
            raise RuntimeError("the publisher did not finish within 10 minutes (machine overloaded?)") from None
        want = sent * per_msg
        # the sink may still be draining the broker's queue after the publisher finished
        deadline, last_seen, last_change = time.monotonic() + 120, -1, time.monotonic()
        while (got := sink.done()) < want and time.monotonic() < deadline:
            if got != last_seen:
                last_seen, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > 10:
                break  # nothing new for 10 s: the rest is lost
            time.sleep(0.01)
        cpu_s = time.process_time() - cpu0
        status = coll.status()
    finally:
        coll.stop()
        sink.close()
        proc.join(10)
    span = max(sink.last - sink.first, 1e-9)
    return {
        "sent_msgs": sent, "send_msgs_s": sent / send_s,
        "samples": got, "lost_samples": want - got,
        "samples_s": got / span, "msgs_s": got / per_msg / span,
        "rejects": sum(status.rejects.values()),
        # CPU of this process (paho's loop thread: read, decode, ack) per sample: unlike the
        # rates, it hardly depends on what else the machine is running
        "cpu_us_per_sample": cpu_s / max(sink.count, 1) * 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=30_000, help="messages in single-sample mode")
    ap.add_argument("--batched", type=int, default=10_000, help="messages in batched mode")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", action="store_true",
                    help="also run both modes through the pipeline into an in-memory EmbeddedStore")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from gwanje.config import load_config
    from tests.fixtures.common import find_binary
    from tests.fixtures.mosquitto import Mosquitto

    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}")
    config = load_config(REPO / "config", env={})
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        broker = Mosquitto(find_binary("mosquitto"), Path(d)).start()
        try:
            modes = [("single", args.single, False), ("batched", args.batched, False)]
            if args.store:
                modes += [("single", args.single, True), ("batched", args.batched, True)]
            for mode, n, store in modes:
                per_msg = 1 if mode == "single" else args.batch_size
                into = "pipeline -> EmbeddedStore (DuckDB, in memory)" if store else "a counting sink"
                print(f"\n{mode}: {n} messages x {per_msg} sample(s), QoS 1, publisher in its own process, into {into}")
                runs = []
                for i in range(args.runs):
                    r = run_once(broker, config, mode, n, args.batch_size, store)
                    runs.append(r)
                    print(f"  run {i + 1}: sent {r['sent_msgs']} msgs at {r['send_msgs_s']:,.0f} msg/s; "
                          f"received {r['samples']:,} samples at {r['samples_s']:,.0f} samples/s "
                          f"({r['msgs_s']:,.0f} msg/s); lost {r['lost_samples']}; rejects {r['rejects']}; "
                          f"collector CPU {r['cpu_us_per_sample']:.2f} us/sample")
                cpu = statistics.median(r["cpu_us_per_sample"] for r in runs)
                print(f"  median: {statistics.median(r['samples_s'] for r in runs):,.0f} samples/s, "
                      f"{statistics.median(r['msgs_s'] for r in runs):,.0f} msg/s; collector CPU "
                      f"{cpu:.2f} us/sample (= {1e6 / cpu:,.0f} samples/s per core)")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
