"""Data the store will never accept (InfluxDB 400/422 partial writes, DuckDB constraint errors,
points beyond the retention) must cost only itself: the good samples around it are stored, the
refused ones land in the dead-letter file with their reason, are counted, and raise one system
alarm — and a refusal is never mistaken for an outage (spooled and retried forever).

As deployed (`app.py collect` subprocess, real mosquitto, real influxd) and in process (MQTT
collector -> pipeline -> real influxd / DuckDB file) for the cases the subprocess cannot stage."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from gwanje.model import Event, Sample
from storage.influx import InfluxStore
from tests.faults.harness import LINE, MACHINE, SIGNAL, SITE, TOPIC, US, Publisher, check_values, stored
from tests.faults.test_collector_kill import CollectProcess
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services

PLC_RESET_NS = 978_307_200 * 10**9  # 2001-01-01: a PLC whose clock battery died
REFUSED_ALARM = "system:data_refused"


def dead_letters(data_dir: Path) -> list[dict]:
    out = []
    for p in sorted((data_dir / "deadletter").glob("deadletter*.jsonl*")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def metric(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_sample_beyond_the_retention_costs_only_itself(mosquitto, influxd, tmp_path):
    db = "refused_retention"
    influxd.query(f'CREATE DATABASE "{db}" WITH DURATION 2d', db)
    reader = InfluxStore(influxd.url, db).start()
    collect = CollectProcess(tmp_path, mosquitto.url, influxd.url, db)
    collect.start()
    pub = None
    try:
        assert wait_for(collect.mqtt_connected, timeout=30), collect.log.read_text()[-3000:]
        pub = Publisher(mosquitto.port, "device-refused")
        pub.client.publish(TOPIC, json.dumps([{"signal": SIGNAL, "value": 7, "ts": PLC_RESET_NS}]), qos=1)
        t0 = time.time_ns() - 60 * 10**9
        n = 40
        pub.publish(t0, 0, n, per_msg=1)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=20), stored(reader, t0, n)
        check_values(reader, t0, n)

        letters = wait_for(lambda: [d for d in dead_letters(tmp_path / "data") if d["kind"] == "sample"])
        assert [(d["reason"], d["record"]["ts"], d["record"]["value"]) for d in letters] == [
            ("timestamp_too_old", PLC_RESET_NS, 7.0)]
        assert letters[0]["record"]["machine"] == MACHINE
        # what the engine derived from it (a state change in 2001) cannot be stored either
        events = [d for d in dead_letters(tmp_path / "data") if d["kind"] == "event"]
        assert {(d["reason"], d["record"]["ts"]) for d in events} <= {("timestamp_too_old", PLC_RESET_NS)}
        text = requests.get(f"http://127.0.0.1:{collect.health_port}/metrics", timeout=2).text
        assert metric(text, 'gwanje_store_refused_total{kind="sample",reason="timestamp_too_old"}') == 1
        alarms = wait_for(lambda: reader.events("alarm", 0, 2**62, key=REFUSED_ALARM))
        assert [(a.data["event"], a.data["status"]) for a in alarms] == [("raised", "unack_active")]
        # nothing waits in the spool for a store that will never take it
        ready = requests.get(f"http://127.0.0.1:{collect.health_port}/readyz", timeout=2).json()
        assert ready["spool_samples"] == 0
        assert collect.proc.poll() is None
    finally:
        if pub is not None:
            pub.close()
        collect.stop()
