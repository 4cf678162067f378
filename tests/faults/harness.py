"""What the fault tests share: a QoS 1 publisher of numbered samples (a persistent session, so
it too survives a broker restart), a store that records the order of its writes, and polling.

Sample i of a run has value float(i) and source time t0 + i µs, on one counter signal of a
demo-plant MQTT machine; so "every sample stored exactly once" is a count of distinct source
times in the store and a check that each value matches its time."""
from __future__ import annotations

import json
import threading
import time
from typing import Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gwanje.model import Sample
from storage.influx import InfluxStore

SITE, LINE, MACHINE, SIGNAL = "changwon-1", "cnc-1", "cnc-101", "part_count_total"
TOPIC = f"gwanje/{SITE}/{LINE}/{MACHINE}"
US = 1000



class Publisher:
    """A plant device: publishes numbered samples at QoS 1, keeps what the broker has not
    acknowledged and sends it again after a reconnect."""

    def __init__(self, port: int, client_id: str) -> None:
        self.acked = 0
        self.sent = 0
        self.published = 0  # samples, by stream()
        self._lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.1, 1)
        c.max_queued_messages_set(0)  # unlimited: a device buffers while the broker is away
        c.on_publish = self._on_publish
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acked += 1

    def publish(self, t0: int, start: int, n: int, per_msg: int = 10) -> None:
        for i in range(start, start + n, per_msg):
            payload = [{"signal": SIGNAL, "value": j, "ts": t0 + j * US} for j in range(i, min(i + per_msg, start + n))]
            self.client.publish(TOPIC, json.dumps(payload), qos=1)
            self.sent += 1

    def stream(self, t0: int, msgs_per_s: int, per_msg: int, seconds: float) -> threading.Event:
        """Publish at a steady rate from a background thread; `published` counts the samples
        sent so far. Returns an Event set when the stream is done."""
        done = threading.Event()

        def run() -> None:
            start = time.monotonic()
            for k in range(int(msgs_per_s * seconds)):
                self.publish(t0, k * per_msg, per_msg)
                self.published = (k + 1) * per_msg
                time.sleep(max(0.0, start + (k + 1) / msgs_per_s - time.monotonic()))
            done.set()

        threading.Thread(target=run, name="publisher", daemon=True).start()
        return done

    def all_acked(self) -> bool:
        with self._lock:
            return self.acked >= self.sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RecordingInflux(InfluxStore):
    """The real InfluxDB store; additionally remembers the source times it wrote, in order."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.written_ts: list[int] = []

    def write_samples(self, samples: Sequence[Sample]) -> None:
        super().write_samples(samples)
        self.written_ts.extend(s.ts for s in samples)


def stored(store: InfluxStore, t0: int, n: int) -> int:
    """Distinct samples of the run in the store (InfluxDB keys points by series + time)."""
    try:
        return store.count_samples(t0, t0 + n * US + 1, machine=MACHINE, signal=SIGNAL)
    except Exception:  # the store may be down right now
        return -1


def check_values(store: InfluxStore, t0: int, n: int) -> None:
    """Every stored value is the one published with its time (nothing mixed up or invented)."""
    df = store.series(SITE, LINE, MACHINE, SIGNAL, t0, t0 + n * US + 1, max_points=n + 1)
    assert df.height == n
    assert df["ts"].to_list() == [t0 + i * US for i in range(n)]
    assert df["value"].to_list() == [float(i) for i in range(n)]
