"""Scale-out (docs/deploy.md "Scale-out"): two `collect` processes, each owning one site of the
demo plant (system.yaml collect.instances), over one broker and one InfluxDB. A device stream
of numbered QoS 1 samples for machines of both instances runs while instance a is killed with
kill -9 and restarted: every sample is stored exactly once, instance b never wrote a sample of
a's site (its per-site written counter in /metrics), and a's machines resume after the restart
(its persistent session <client_id>-a kept their messages at the broker meanwhile)."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from storage.influx import InfluxStore
from tests.faults.test_collector_kill import CollectProcess
from tests.fixtures.common import wait_for
from tests.fixtures.prom import by_label, metric_value

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
HOUR_NS = 3600 * 10**9
US = 1000
SIGNAL = "part_count_total"
# (site, line, machine): two machines per instance
MACHINES = {
    "a": [("changwon-1", "cnc-1", "cnc-101"), ("changwon-1", "cnc-2", "cnc-201")],
    "b": [("changwon-2", "injection-1", "imm-101"), ("changwon-2", "press-2", "press-201")],
}
ALL = [m for ms in MACHINES.values() for m in ms]


def two_site_config(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    p = d / "system.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["collect"] = {"instances": [{"name": "a", "sites": ["changwon-1"]}, {"name": "b", "sites": ["changwon-2"]}]}
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d


class Instance(CollectProcess):
    """One `collect --instance name` of the two-site config."""

    def __init__(self, name: str, config: Path, tmp_path: Path, mqtt_url: str, influx_url: str, db: str) -> None:
        super().__init__(tmp_path, mqtt_url, influx_url, db, name=name, config=config)

    def metrics(self) -> str:
        try:
            return requests.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        except requests.RequestException:
            return ""

    def written_by_site(self) -> dict[str, int]:
        return {site: int(n) for site, n in by_label(self.metrics(), "gwanje_samples_written_total", "site").items()}


class Devices:
    """The plant's devices: one QoS 1 publisher (a persistent session) that sends, in turn for
    each machine, numbered samples: sample i of a machine has value i and time t0 + i µs."""

    def __init__(self, port: int, t0: int) -> None:
        self.t0 = t0
        self.published = {m: 0 for m in ALL}  # samples handed to the client, per machine
        self.acked = 0
        self.sent = 0
        self._lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="scale-out-devices", clean_session=False)
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(1000)
        c.on_publish = self._on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acked += 1

    def stream(self, msgs_per_s: int, per_msg: int, stop: threading.Event) -> threading.Event:
        """Publish at a steady rate from a background thread until `stop` is set; returns an
        Event set when the stream has ended."""
        done = threading.Event()

        def run() -> None:
            start = time.monotonic()
            k = 0
            while not stop.is_set():
                m = ALL[k % len(ALL)]
                i0 = self.published[m]
                payload = [{"signal": SIGNAL, "value": i, "ts": self.t0 + i * US} for i in range(i0, i0 + per_msg)]
                self.client.publish("gwanje/{}/{}/{}".format(*m), json.dumps(payload), qos=1)
                self.published[m] = i0 + per_msg
                self.sent += 1
                k += 1
                time.sleep(max(0.0, start + k / msgs_per_s - time.monotonic()))
            done.set()

        threading.Thread(target=run, name="devices", daemon=True).start()
        return done

    def all_acked(self) -> bool:
        with self._lock:
            return self.acked >= self.sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored(reader: InfluxStore, t0: int, m: tuple[str, str, str], n: int) -> int:
    """Distinct samples of machine m in the store (InfluxDB keys a point by series and time)."""
    try:
        return reader.count_samples(t0, t0 + n * US + 1, site=m[0], machine=m[2], signal=SIGNAL)
    except Exception:
        return -1


def test_two_collectors_one_killed_under_load_lose_and_duplicate_nothing(mosquitto, influxd, tmp_path):
    db = "fault_scale_out"
    reader = InfluxStore(influxd.url, db).start()  # creates the database
    config = two_site_config(tmp_path)
    inst = {n: Instance(n, config, tmp_path, mosquitto.url, influxd.url, db) for n in ("a", "b")}
    for i in inst.values():
        i.start()
    devices = None
    try:
        for i in inst.values():
            assert wait_for(i.mqtt_connected, timeout=60), i.log.read_text()[-3000:]
        t0 = time.time_ns() - HOUR_NS
        devices = Devices(mosquitto.port, t0)
        # 300 messages/s of 5 samples: 1,500 samples/s over 4 machines, until told to stop
        stop = threading.Event()
        done = devices.stream(msgs_per_s=300, per_msg=5, stop=stop)
        a_machine = MACHINES["a"][0]
        assert wait_for(lambda: stored(reader, t0, a_machine, 10**6) > 500, timeout=30)  # mid-stream
        inst["a"].kill9()
        at_kill = dict(devices.published)
        time.sleep(1.5)  # dead while the devices keep publishing (not an assertion)
        inst["a"].start()
        assert wait_for(inst["a"].mqtt_connected, timeout=60), inst["a"].log.read_text()[-3000:]
        at_restart = dict(devices.published)
        # a's machines resume: what the devices publish after the restart reaches the store
        a_after = MACHINES["a"][1]
        assert wait_for(lambda: stored(reader, t0, a_after, 10**6) > at_restart[a_after] + 500, timeout=60)
        stop.set()
        assert done.wait(10)
        assert wait_for(devices.all_acked, timeout=30)
        n = devices.published
        assert all(n[m] > at_kill[m] for m in ALL)  # samples of every machine came after the kill

        def complete() -> bool:
            return all(stored(reader, t0, m, n[m]) == n[m] for m in ALL)

        assert wait_for(complete, timeout=60, interval=0.5), (
            {m[2]: (stored(reader, t0, m, n[m]), n[m]) for m in ALL}, inst["a"].log.read_text()[-3000:])
        for m in ALL:  # each point once (the count above) with its own value, nothing mixed up
            df = reader.series(*m, SIGNAL, t0, t0 + n[m] * US + 1, max_points=n[m] + 1)
            assert df["ts"].to_list() == [t0 + i * US for i in range(n[m])]
            assert df["value"].to_list() == [float(i) for i in range(n[m])]
        # the partition held: b wrote only its own site, the restarted a only its own and
        # resumed its machines (it wrote samples after the restart)
        b_sites = inst["b"].written_by_site()
        assert set(b_sites) == {"changwon-2"} and b_sites["changwon-2"] >= sum(n[m] for m in MACHINES["b"])
        a_sites = inst["a"].written_by_site()
        assert set(a_sites) == {"changwon-1"} and a_sites["changwon-1"] > 0
        assert "other_instance" not in inst["b"].metrics()  # nothing of a's even reached b
        assert metric_value(inst["b"].metrics(), "gwanje_instance_info", instance="b") == 1
    finally:
        if devices is not None:
            devices.close()
        for i in inst.values():
            i.stop()
