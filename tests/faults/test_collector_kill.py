"""kill -9 of the collector process (the app's `collect` role, as deployed) in the middle of a
stream, then a restart: nothing lost, nothing duplicated. The broker keeps the collector's
persistent session while it is dead; what the dead process had received but not yet stored
must come back too."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from storage.influx import InfluxStore
from tests.faults.harness import Publisher, check_values, stored
from tests.fixtures.common import wait_for
from tests.fixtures.common import free_port
from tests.fixtures.prom import samples

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
HOUR_NS = 3600 * 10**9


class CollectProcess:
    """`python app.py collect` as deployed (InfluxDB store, a health port): of the demo config,
    or of `config`; with `name`, one instance of a scaled-out plant (`--instance name`)."""

    def __init__(self, tmp_path: Path, mqtt_url: str, influx_url: str, db: str, name: str = "",
                 config: Path = ROOT / "config") -> None:
        self.name, self.config = name, config
        sfx = f"-{name}" if name else ""
        self.health_port = free_port()
        self.log = tmp_path / f"collect{sfx}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "GWANJE_INSTANCE"},
            "GWANJE_MQTT_URL": mqtt_url, "GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": influx_url,
            "GWANJE_INFLUX_DB": db, "GWANJE_DATA_DIR": str(tmp_path / f"data{sfx}"),
            "GWANJE_HEALTH_PORT": str(self.health_port), "GWANJE_LOG_LEVEL": "WARNING",
            # the demo plant's OPC UA endpoints point nowhere here: those collectors just retry
            "GWANJE_OPCUA_URL_CHANGWON_1": f"opc.tcp://127.0.0.1:{free_port()}/none",
            "GWANJE_OPCUA_URL_CHANGWON_2": f"opc.tcp://127.0.0.1:{free_port()}/none",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        instance = ["--instance", self.name] if self.name else []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py", "collect", *instance, "--config", str(self.config)],
                                         cwd=ROOT, env=self.env, stdout=log, stderr=log)

    def mqtt_connected(self) -> bool:
        try:
            text = requests.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=1).text
        except requests.RequestException:
            return False
        return any(name == "gwanje_source_connected" and dict(labels).get("kind") == "mqtt" and v == 1
                   for (name, labels), v in samples(text).items())

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_collector_killed_and_restarted_loses_and_duplicates_nothing(mosquitto, influxd, tmp_path):
    db = "fault_collector_kill"
    reader = InfluxStore(influxd.url, db).start()  # creates the database
    collect = CollectProcess(tmp_path, mosquitto.url, influxd.url, db)
    collect.start()
    pub = None
    try:
        assert wait_for(collect.mqtt_connected, timeout=30), collect.log.read_text()[-3000:]
        pub = Publisher(mosquitto.port, "device-kill")
        t0 = time.time_ns() - HOUR_NS
        n = 100 * 10 * 6
        done = pub.stream(t0, msgs_per_s=100, per_msg=10, seconds=6)  # 1,000 samples/s for 6 s
        assert wait_for(lambda: stored(reader, t0, n) > 500)  # mid-stream
        collect.kill9()
        dead_at = stored(reader, t0, n)
        time.sleep(1.0)  # dead for a second while the device keeps publishing (not an assertion)
        collect.start()
        assert wait_for(collect.mqtt_connected, timeout=30), collect.log.read_text()[-3000:]
        assert done.wait(20)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=30), (dead_at, stored(reader, t0, n))
        check_values(reader, t0, n)  # 6,000 distinct points, each with its own value
    finally:
        if pub is not None:
            pub.close()
        collect.stop()
