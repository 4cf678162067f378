"""`app.py collect` started while InfluxDB is down (as deployed: a subprocess, real mosquitto,
real influxd started later on the port the collector was given): it collects into the spool,
stores every sample exactly once when the server comes, and the alarm raised during the outage
is stored once and not raised again after the alarm service's late restore."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from storage.influx import InfluxStore
from tests.faults.harness import LINE, MACHINE, SITE, TOPIC, US, Publisher, check_values, stored
from tests.fixtures.common import wait_for
from tests.faults.test_collector_kill import ROOT, CollectProcess
from tests.fixtures.common import find_binary
from tests.fixtures.influxd import Influxd

pytestmark = pytest.mark.services

ALARM = f"vib.hh:{SITE}/{LINE}/{MACHINE}/vibration"
# one rule that fires on the first value (no delay); without shifts.yaml no line is ever
# "not scheduled", so the test does not depend on the hour it runs at
ALARMS_YAML = """\
rules:
  - id: vib
    type: analog
    scope: {machine: [cnc-101]}
    signal: vibration
    hh: {limit: 9.0, priority: critical}
    suppress_in_planned_stop: false
    message: {ko: "진동 {value}", en: "vibration {value}"}
"""


class LateStoreCollect(CollectProcess):
    """The collect role over a copy of the demo config with only the rule above."""

    def __init__(self, tmp_path: Path, mqtt_url: str, influx_url: str, db: str) -> None:
        super().__init__(tmp_path, mqtt_url, influx_url, db)
        self.config = tmp_path / "config"
        shutil.copytree(ROOT / "config", self.config)
        (self.config / "shifts.yaml").unlink()
        (self.config / "notify.yaml").unlink()
        (self.config / "alarms.yaml").write_text(ALARMS_YAML)

    def readyz(self) -> tuple[int, dict]:
        try:
            r = requests.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1)
        except requests.RequestException:
            return 0, {}
        return r.status_code, r.json()


def alarm_events(store: InfluxStore, since: int) -> list:
    return store.events("alarm", since, time.time_ns() + 60 * 10**9, key=ALARM)


def test_collect_starts_without_store_and_loses_nothing_when_it_comes(mosquitto, tmp_path):
    influxd = Influxd(find_binary("influxd"), tmp_path / "influxd")  # its port is free: nobody answers
    influxd.dir.mkdir()
    db = "fault_start_without_store"
    collect = LateStoreCollect(tmp_path, mosquitto.url, influxd.url, db)
    collect.start()
    pub = None
    try:
        assert wait_for(collect.mqtt_connected, timeout=20), collect.log.read_text()[-3000:]
        code, ready = collect.readyz()
        assert code == 503
        assert "store influxdb unreachable" in ready["problems"]
        assert "restore from the store pending: engine, alarms" in ready["warnings"]

        pub = Publisher(mosquitto.port, "device-late-store")
        t0 = time.time_ns() - 60 * 10**9  # a minute ago: inside any retention, before the alarm
        n = 500
        pub.publish(t0, 0, n)
        t_alarm = time.time_ns() - 10 * 10**9
        pub.client.publish(TOPIC, json.dumps([{"signal": "vibration", "value": 12.5, "ts": t_alarm}]), qos=1)
        # everything is in the collector's spool before the server exists (500 counter + 1)
        assert wait_for(lambda: (collect.readyz()[1].get("spool_samples") or 0) >= n + 1, timeout=15), \
            collect.readyz()
        assert collect.proc.poll() is None

        influxd.start()
        reader = InfluxStore(influxd.url, db)
        assert wait_for(lambda: stored(reader, t0, n) == n, timeout=15), stored(reader, t0, n)
        check_values(reader, t0, n)  # 500 distinct points, each with its own value: none twice
        # the OPC UA sources point nowhere (not ready for that); the store part is settled
        assert wait_for(lambda: collect.readyz()[1].get("warnings") == [], timeout=10), collect.readyz()
        assert collect.readyz()[1]["store"] == {"name": "influxdb", "ok": True}
        # the units and names held since the start reach the store too (docs/schema.md signal_meta)
        assert wait_for(lambda: reader.events("signal_meta", 0, 2**62, limit=1), timeout=10)

        raised = alarm_events(reader, t_alarm - 1)
        assert [(e.ts, e.data["status"]) for e in raised] == [(t_alarm, "unack_active")]
        # after the restore, the condition still holds: the alarm stays raised, not raised again
        pub.client.publish(TOPIC, json.dumps([{"signal": "vibration", "value": 13.0, "ts": t_alarm + 1},
                                              {"signal": "part_count_total", "value": n, "ts": t0 + n * US}]),
                           qos=1)
        assert wait_for(lambda: stored(reader, t0, n + 1) == n + 1, timeout=10)
        assert [e.ts for e in alarm_events(reader, t_alarm - 1)] == [t_alarm]
        assert collect.proc.poll() is None, collect.log.read_text()[-3000:]
    finally:
        if pub is not None:
            pub.close()
        collect.stop()
        influxd.stop()


def late_store(real, up: dict):
    """The store as the runtime holds one that was down at start (storage.spool.DeferredStore):
    `real` answers once up["ok"] is set."""
    from storage import StoreUnavailable
    from storage.spool import DeferredStore

    def opener():
        if not up.get("ok"):
            raise StoreUnavailable("down")
        return real

    return DeferredStore(opener, name="embedded")


# ---------------------------------------------------------------- the restore merge, in process
def test_late_alarm_restore_merges_with_what_was_raised_meanwhile(tmp_path):
    """The order the subprocess test cannot force: the restore reads the store before the
    pipeline has written the alarm raised during the outage."""
    from alerts.rules import AlarmRules
    from alerts.service import AlarmService
    from gwanje.config import load_config
    from gwanje.model import Sample
    from storage.embedded import EmbeddedStore

    cfg = load_config(ROOT / "config", env={})
    rules = AlarmRules.model_validate({"rules": [
        {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
         "hh": {"limit": 9.0, "priority": "critical"}, "message": {"ko": "{value}", "en": "{value}"}}]})
    a101, a102 = "vib.hh:changwon-1/cnc-1/cnc-101/vibration", "vib.hh:changwon-1/cnc-1/cnc-102/vibration"

    def vib(machine: str, value: float, ts: int) -> list[Sample]:
        return [Sample(SITE, LINE, machine, "vibration", value, ts)]

    real = EmbeddedStore(tmp_path / "s.duckdb")
    t = time.time_ns() - 100 * 10**9
    before = AlarmService(cfg, real, rules=rules)  # the previous run: cnc-102 raised and stored
    real.write_events(before.on_samples(vib("cnc-102", 11.0, t)))

    up: dict = {}
    svc = AlarmService(cfg, late_store(real, up), rules=rules)
    assert not svc.restored and svc.active() == []
    meanwhile = svc.on_samples(vib("cnc-101", 12.0, t + 10 * 10**9))  # held by the pipeline, unwritten
    assert [(e.key, e.ts) for e in meanwhile] == [(a101, t + 10 * 10**9)]
    svc.tick(t + 11 * 10**9)
    assert not svc.restored  # still down

    up["ok"] = True  # the store answers from now on
    svc.tick(t + 12 * 10**9)
    assert svc.restored
    # both: the one raised meanwhile (not yet in the store) and the one only the store knew
    assert {s.id: s.raised_ts for s in svc.active()} == {a101: t + 10 * 10**9, a102: t}
    # still high after the restore: neither is raised a second time
    assert svc.on_samples(vib("cnc-101", 12.5, t + 13 * 10**9) + vib("cnc-102", 11.5, t + 13 * 10**9)) == []
    # the restored one clears on its next normal value (the evaluator was seeded)
    cleared = svc.on_samples(vib("cnc-102", 1.0, t + 14 * 10**9))
    assert [(e.key, e.data["status"]) for e in cleared] == [(a102, "rtn_unack")]
    real.close()


# ---------------------------------------------------------------- the late warm start, in process
def test_late_engine_warm_start_counts_the_shift_like_an_uninterrupted_engine(tmp_path):
    """What runtime.Runtime relies on when it warm-starts the engine only once the spool is
    drained: an engine that saw only the outage live, then warm-started from a store holding
    the earlier run and the outage, counts the shift as one that never restarted."""
    from gwanje.config import load_config
    from gwanje.engine import Engine
    from gwanje.model import Sample
    from storage.embedded import EmbeddedStore

    conf = tmp_path / "config"
    shutil.copytree(ROOT / "config", conf)
    (conf / "shifts.yaml").unlink()  # the default calendar: one all-day shift, every day
    cfg = load_config(conf, env={})
    # half an hour into today's shift, whatever the hour the test runs at
    now = Engine(cfg).calendar.shift_at(time.time_ns()).start_ns + 30 * 60 * 10**9
    t = now - 20 * 60 * 10**9  # 40 readings 30 s apart, up to `now`

    def readings(i0: int, i1: int) -> list[Sample]:
        out = []
        for i in range(i0, i1):
            ts = t + i * 30 * 10**9
            out += [Sample(SITE, LINE, MACHINE, "state", 3.0, ts),  # 3 = running for cnc
                    Sample(SITE, LINE, MACHINE, "part_count_total", float(100 + i), ts),
                    Sample(SITE, LINE, MACHINE, "part_count_good", float(90 + i), ts)]
        return out

    before, outage, after = readings(0, 20), readings(20, 35), readings(35, 40)
    store = EmbeddedStore(tmp_path / "w.duckdb")
    store.write_samples(before)  # the previous run
    late = Engine(cfg)
    late.on_samples(outage)  # live, while the store was down
    store.write_samples(outage)  # the spool drained
    late.warm_start(store, now)
    late.on_samples(after)
    r = late.snapshot(now).machines[(SITE, LINE, MACHINE)]
    # the counters went 100 -> 139 and 90 -> 129: 39 parts, all good, none lost or counted twice
    assert (r.total, r.good) == (39, 39)
    store.close()


# ---------------------------------------------------------------- engine records during the outage
def test_engine_records_wait_for_the_store_and_gate_the_warm_start(tmp_path):
    """An engine record (a shift close, a minute) made while the store is down is kept and
    written once it answers, and the late warm start waits until then."""
    from gwanje.config import load_config
    from gwanje.model import Event
    from runtime.pipeline import Pipeline
    from runtime.process import Runtime
    from storage.embedded import EmbeddedStore

    real = EmbeddedStore(tmp_path / "e.duckdb")
    up: dict = {}
    rt = Runtime(load_config(ROOT / "config", env={}), tmp_path / "data")
    rt.store = late_store(real, up)
    rt.pipeline = Pipeline(rt.store)
    t = time.time_ns()
    record = Event(kind="shift_oee", ts=t, site=SITE, line=LINE, key="day", data={"oee": 0.5})
    rt._write_engine_events([record])  # the store is down: kept, not lost
    assert not rt._ready_for_warm_start()
    up["ok"] = True  # the store answers from now on
    assert not rt._ready_for_warm_start()  # the store answers, but the record is not in it yet
    rt._write_engine_events([])  # the next engine tick
    assert real.events("shift_oee", t, t + 1) == [record]
    assert rt._ready_for_warm_start()
    real.close()
