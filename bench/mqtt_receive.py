"""Benchmark: paho's receive path, stock client vs the collector's buffered one
(collectors.mqtt.GwanjeMqttClient), interleaved in one run.

    python -m bench.mqtt_receive [--messages 20000] [--rounds 2]

For each client: a persistent QoS 1 session is made and left, 20,000 messages of 50 samples
(bench.ingest's batched JSON shape) are queued for it at the broker, then the client connects
and drains them; printed: msg/s and CPU µs per message of this process (the publisher has
finished before the drain starts, so the figure is the subscriber's alone), machine and load.
"""
import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from tests.fixtures.common import find_binary
from tests.fixtures.mosquitto import Mosquitto
from collectors.mqtt import GwanjeMqttClient
ap = argparse.ArgumentParser()
ap.add_argument("--messages", type=int, default=20000)
ap.add_argument("--rounds", type=int, default=2)
A = ap.parse_args()
N = A.messages
print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}")
t = time.time_ns()
body = "[" + ",".join('{"signal":"s%d","value":%d.5,"ts":%d}' % (j, j, t + j) for j in range(50)) + "]"
def session(port, cid, cls, count):
    got = [0]; done = threading.Event()
    c = cls(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False, protocol=paho.MQTTv311)
    def on_message(cl, u, m):
        got[0] += 1
        if got[0] >= count: done.set()
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("ab/#", qos=1)
    c.connect("127.0.0.1", port)
    return c, got, done
with tempfile.TemporaryDirectory() as d:
    b = Mosquitto(find_binary("mosquitto"), Path(d)).start()
    res = {}
    for rnd in range(A.rounds):
        for name, cls in (("stock", paho.Client), ("buffered", GwanjeMqttClient)):
            cid = f"ab-{name}-{rnd}"
            c, got, done = session(b.port, cid, cls, 0)
            c.loop_start(); time.sleep(0.5); c.disconnect(); c.loop_stop()
            p = paho.Client(CallbackAPIVersion.VERSION2, client_id="pub" + cid, protocol=paho.MQTTv311)
            p.max_inflight_messages_set(1000)
            p.connect("127.0.0.1", b.port); p.loop_start()
            infos = [p.publish("ab/x", body, qos=1) for _ in range(N)]
            for i in infos: i.wait_for_publish(60)
            p.disconnect(); p.loop_stop()
            time.sleep(1.0)
            c, got, done = session(b.port, cid, cls, N)
            cpu0 = time.process_time(); t0 = time.monotonic()
            c.loop_start(); ok = done.wait(120); dt = time.monotonic() - t0; cpu = time.process_time() - cpu0
            c.disconnect(); c.loop_stop()
            res.setdefault(name, []).append((got[0] / dt, cpu / got[0] * 1e6))
            print(f"{name}: {got[0]} msgs in {dt:.2f} s = {got[0]/dt:,.0f} msg/s, CPU {cpu/got[0]*1e6:.1f} us/msg, load {os.getloadavg()[0]:.1f}", flush=True)
    b.stop()
