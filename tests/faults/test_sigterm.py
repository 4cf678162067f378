"""SIGTERM to `app.py collect` (as deployed: a subprocess, real mosquitto, real influxd) in every
state it can be in — store stopped mid-retry, store hung (SIGSTOP: requests wait for their
timeout), spool replaying a backlog, data being refused, broker down — ends it within 5 s (a
supervisor's usual grace before SIGKILL), and nothing it acknowledged is lost: started again
with everything up, it stores every sample exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests

from storage.influx import InfluxStore
from tests.faults.harness import LINE, MACHINE, SITE, TOPIC, US, Publisher, check_values, stored
from tests.faults.test_collector_kill import CollectProcess
from tests.fixtures.common import find_binary, wait_for
from tests.fixtures.influxd import Influxd

pytestmark = pytest.mark.services

GRACE_S = 5.0


def metrics(collect: CollectProcess) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{collect.health_port}/metrics", timeout=2).text
    except requests.RequestException:
        return ""


def gauge(collect: CollectProcess, name: str) -> float:
    for line in metrics(collect).splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def sigterm_exit_s(collect: CollectProcess) -> float:
    t = time.monotonic()
    collect.proc.send_signal(signal.SIGTERM)
    try:
        collect.proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        collect.proc.kill()
        collect.proc.wait()
        pytest.fail(f"collect still running {GRACE_S} s after SIGTERM:\n{collect.log.read_text()[-3000:]}")
    return time.monotonic() - t


@pytest.mark.parametrize("state", ["store_stopped", "store_hung", "spool_replaying", "refused", "broker_down"])
def test_sigterm_ends_collect_within_5s_and_loses_nothing_acknowledged(state, mosquitto, tmp_path):
    influxd = Influxd(find_binary("influxd"), tmp_path / "influxd")
    influxd.dir.mkdir()
    influxd.start()
    db = f"sigterm_{state}"
    reader = InfluxStore(influxd.url, db).start()
    t0 = time.time_ns() - 60 * 10**9
    n = 200_000 if state == "spool_replaying" else 2000
    if state == "refused":  # another tool made `text` a float field: every LOT sample is refused
        requests.post(influxd.url + "/write", params={"db": db, "precision": "ns"},
                      data=f"sample,site={SITE},line={LINE},machine={MACHINE},signal=lot text=1.0,q=0i {t0}")
    collect = CollectProcess(tmp_path, mosquitto.url, influxd.url, db)
    collect.env["GWANJE_LOG_LEVEL"] = "INFO"
    collect.start()
    pub = None
    stopped_influxd = False
    try:
        assert wait_for(collect.mqtt_connected, timeout=30), collect.log.read_text()[-3000:]
        pub = Publisher(mosquitto.port, f"device-sigterm-{state}")
        if state == "store_stopped":
            influxd.stop()
            stopped_influxd = True
            pub.publish(t0, 0, n, per_msg=50)
            assert wait_for(lambda: gauge(collect, "gwanje_spool_samples") >= n, timeout=20)
        elif state == "store_hung":
            os.kill(influxd.proc.pid, signal.SIGSTOP)
            pub.publish(t0, 0, n, per_msg=50)
            assert wait_for(pub.all_acked, timeout=10)
            time.sleep(0.5)  # the collector holds them; its writer waits on the hung server (not an assertion)
        elif state == "spool_replaying":
            influxd.stop()
            pub.publish(t0, 0, n, per_msg=500)
            assert wait_for(lambda: gauge(collect, "gwanje_spool_samples") >= n, timeout=60)
            influxd.start()
            assert wait_for(lambda: 0 < gauge(collect, "gwanje_pipeline_samples_replayed_total") < n, timeout=20)
        elif state == "refused":
            for k in range(0, n, 50):
                pub.publish(t0, k, 50, per_msg=50)
                pub.client.publish(TOPIC, json.dumps([{"signal": "lot", "value": f"LOT-{k}", "ts": t0 + k * US}]),
                                   qos=1)
            assert wait_for(lambda: gauge(collect, "gwanje_pipeline_samples_refused_total") > 0, timeout=20)
        elif state == "broker_down":
            pub.publish(t0, 0, n, per_msg=50)
            assert wait_for(lambda: stored(reader, t0, n) == n, timeout=20)
            mosquitto.stop()
            assert wait_for(lambda: not collect.mqtt_connected(), timeout=10)

        took = sigterm_exit_s(collect)
        assert collect.proc.returncode == 0, collect.log.read_text()[-3000:]
        print(f"{state}: collect exited {took:.2f} s after SIGTERM")

        # everything up again: what it acknowledged is in the spool, the rest the broker redelivers
        if state == "store_hung":
            os.kill(influxd.proc.pid, signal.SIGCONT)
        if stopped_influxd or state == "spool_replaying":
            if influxd.proc is None or influxd.proc.poll() is not None:
                influxd.start()
        if state == "broker_down":
            mosquitto.start()
        collect.start()
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=60), (stored(reader, t0, n),
                                                                           collect.log.read_text()[-3000:])
        check_values(reader, t0, n)
    finally:
        if pub is not None:
            pub.close()
        collect.stop()
        if influxd.proc is not None and influxd.proc.poll() is None:
            os.kill(influxd.proc.pid, signal.SIGCONT)
        influxd.stop()
        if mosquitto.proc is None or mosquitto.proc.poll() is not None:
            mosquitto.start()
