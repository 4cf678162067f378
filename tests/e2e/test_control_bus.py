"""The control bus as deployed: `app.py collect` and `app.py serve` as separate processes over a
real mosquitto and a real InfluxDB. An alarm raised in collect is acknowledged through serve's
Dash callback (the HTTP request a browser sends) and collect's retained snapshot says so within
2 s, with the audit entry in the store; forged and under-privileged commands straight to the
broker are refused and counted; serve's /status lists collect's sources; with collect gone,
serve refuses the action at once with a message naming the offline collect."""
from __future__ import annotations

import json
import shutil
import threading
import time

import paho.mqtt.client as paho
import pytest
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gwanje import bus
from gwanje.model import NS_PER_S, now_ns
from storage.influx import InfluxStore
from tests.dashboards.helpers import dash_call
from tests.e2e.stack import Proc, make_config
from tests.fixtures.common import wait_for, wait_port

KEY = "e2e-control-bus-key-0123456789"
INSTANCE = "north"
PREFIX = "gwanje-sys"
ALARM = "vib.h:changwon-1/cnc-1/cnc-101/vibration"
ROW = {"id": ALARM, "site_id": "changwon-1", "line_id": "cnc-1"}
RULES = {"rules": [{"id": "vib", "type": "analog", "scope": {"machine": ["cnc-101"]}, "signal": "vibration",
                    "h": {"limit": 7.0, "priority": "high"},
                    "message": {"ko": "진동 {value:.1f}", "en": "vibration {value:.1f}"}}]}


class Http:
    """requests in the shape of Flask's test client, for tests.dashboards.helpers.dash_call."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.s = requests.Session()

    def get(self, path):
        r = self.s.get(self.base + path, timeout=30)
        r.get_json = r.json
        return r

    def post(self, path, json=None):
        r = self.s.post(self.base + path, json=json, timeout=30)
        r.get_json = r.json
        return r


class Watcher:
    """A plain MQTT client on the bus topics: the newest message per topic, and a device that
    publishes vibration samples."""

    def __init__(self, port: int) -> None:
        self.last: dict[str, bytes] = {}
        self.lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-watch-{port}")
        c.on_connect = lambda cl, *a: cl.subscribe([(f"{PREFIX}/#", 1)])
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.last[msg.topic] = bytes(msg.payload)

    def body(self, kind: str, instance: str = INSTANCE):
        with self.lock:
            raw = self.last.get(f"{PREFIX}/{kind}/{instance}")
        return bus.decode_signed(KEY, raw, kind) if raw else None

    def alarm(self):
        b = self.body("alarms")
        return next((a for a in (b or {}).get("alarms", []) if a["id"] == ALARM), None) if b else None

    def reply(self, rid: str):
        with self.lock:
            raw = self.last.get(f"{PREFIX}/reply/e2e-test")
        b = bus.decode_signed(KEY, raw, "reply") if raw else None
        return b if b and b["id"] == rid else None

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def act(http: Http, button: str, comment: str = "") -> str:
    r = dash_call(http, "alarm-feedback.children", {
        f"{button}.n_clicks": 1, "alarms-grid.selectedRows": [ROW], "alarm-user.value": "kim",
        "alarm-comment.value": comment, "alarm-shelve-for.value": 3600, "alarm-action-done.data": 0,
        "page-ctx.data": {"lang": "en", "kiosk": False}}, [f"{button}.n_clicks"])
    assert r.status_code == 200, r.text
    return r.json()["response"]["alarm-feedback"]["children"]


@pytest.mark.services
def test_alarm_actions_from_serve_reach_collect_over_the_bus(tmp_path, mosquitto, influxd):
    cfg_dir = make_config(tmp_path, mosquitto.url, {"kind": "influxdb",
                                                     "influxdb": {"url": influxd.url, "database": "bus"}})
    (cfg_dir / "alarms.yaml").write_text(yaml.safe_dump(RULES), encoding="utf-8")
    for name in ("shifts.yaml", "notify.yaml"):  # no shift calendar: the alarm is never suppressed
        (cfg_dir / name).unlink(missing_ok=True)
    sysd = yaml.safe_load((cfg_dir / "system.yaml").read_text(encoding="utf-8"))
    sysd["opcua"]["endpoints"] = []
    port = sysd["ui"]["port"]
    plant = yaml.safe_load((cfg_dir / "plant.yaml").read_text(encoding="utf-8"))
    for site in plant["sites"]:  # MQTT machines only: no OPC UA servers in this test
        site.pop("opcua_endpoint", None)
        for ln in site["lines"]:
            ln.pop("opcua_endpoint", None)
            ln["machines"] = [dict(m, source="mqtt", **({} if "opcua_endpoint" not in m else {"opcua_endpoint": None}))
                              for m in ln["machines"]]
    (cfg_dir / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    (cfg_dir / "system.yaml").write_text(yaml.safe_dump(sysd, allow_unicode=True), encoding="utf-8")
    env = {"GWANJE_COMMAND_KEY": KEY}
    collect = Proc("collect", cfg_dir, tmp_path / "collect-data", env={**env, "GWANJE_INSTANCE": INSTANCE})
    serve = Proc("serve", cfg_dir, tmp_path / "serve-data", env=env)
    watch = Watcher(mosquitto.port)
    device = paho.Client(CallbackAPIVersion.VERSION2, client_id="e2e-device")
    device.connect("127.0.0.1", mosquitto.port)
    device.loop_start()
    store = InfluxStore(influxd.url, "bus")
    t0 = now_ns()
    try:
        def logs():
            return "\n".join(f"--- {p.proc.args[2]}\n{p.output()[-4000:]}" for p in (collect, serve))

        online = wait_for(lambda: (watch.body("status") or {}).get("online"), 60, interval=0.2)
        assert online, logs()
        raised = None
        deadline = time.monotonic() + 60
        while raised is None and time.monotonic() < deadline:
            device.publish("gwanje/changwon-1/cnc-1/cnc-101", json.dumps({"values": {"vibration": 8.5}}), qos=1)
            raised = wait_for(lambda: (a := watch.alarm()) and a["status"] == "unack_active" and a, 1, interval=0.1)
        assert raised, (watch.body("alarms"), watch.body("status"), logs())
        wait_port(port, timeout=60, proc=serve.proc)
        http = Http(f"http://127.0.0.1:{port}")

        # (d) a command signed with another key changes nothing and is counted
        _, forged = bus.new_command("not-the-key-0123456789", user="mallory", role="admin",
                                    action="alarm.acknowledge", target=ALARM, site="changwon-1", line="cnc-1",
                                    reply_to=f"{PREFIX}/reply/e2e-test", now_ms=now_ns() // 1_000_000)
        device.publish(f"{PREFIX}/cmd/changwon-1/cnc-1", forged, qos=1)
        counted = wait_for(lambda: (watch.body("status") or {}).get("control_rejects", {}).get("bad_signature"), 10)
        assert counted == 1, watch.body("status")
        # a correctly signed command from a viewer: collect refuses it (not_allowed) and says so
        rid, viewer = bus.new_command(KEY, user="vera", role="viewer", action="alarm.acknowledge", target=ALARM,
                                      site="changwon-1", line="cnc-1", reply_to=f"{PREFIX}/reply/e2e-test",
                                      now_ms=now_ns() // 1_000_000)
        device.publish(f"{PREFIX}/cmd/changwon-1/cnc-1", viewer, qos=1)
        reply = wait_for(lambda: watch.reply(rid), 10)
        assert reply and reply["ok"] is False and reply["reason"] == "not_allowed", reply
        assert watch.alarm()["status"] == "unack_active"
        assert wait_for(lambda: (watch.body("status") or {}).get("control_rejects", {}).get("not_allowed"), 10) == 1

        # (e) serve's /status lists collect's sources, with the instance
        def status_text():
            r = dash_call(http, "status-body.children", {"page-ctx.data": {"lang": "en"}}, ["refresh.n_intervals"])
            return r.text if r.status_code == 200 else ""

        text = wait_for(lambda: (s := status_text()) and f"mqtt 127.0.0.1:{mosquitto.port}" in s and s, 30,
                        interval=0.5)
        assert text and INSTANCE in text and "Collect processes" in text, text[:2000]

        # (b) acknowledge through serve's callback: collect's snapshot says so within 2 s
        start = time.monotonic()
        feedback = act(http, "alarm-ack")
        acked = wait_for(lambda: (a := watch.alarm()) and a["status"] == "ack_active" and a, 2.0, interval=0.02)
        took = time.monotonic() - start
        assert feedback == "1 done", feedback
        assert acked and acked["acked_by"] == "kim", (watch.alarm(), logs())
        print(f"ack via serve -> collect snapshot: {took * 1000:.0f} ms")
        # serve's own alarm list shows it too
        rows = dash_call(http, "alarms-grid.rowData", {"alarm-group.value": "none", "page-ctx.data": {"lang": "en"}},
                         ["refresh.n_intervals"]).json()["response"]["alarms-grid"]["rowData"]
        assert [(r["id"], r["state"], r["acked_by"]) for r in rows] == [(ALARM, "ack_active", "kim")]

        def audits():
            try:
                return [e.data for e in store.events("audit", t0 - NS_PER_S, now_ns() + NS_PER_S)]
            except Exception:
                return []

        got = wait_for(lambda: [a for a in audits() if a["action"] == "alarm.acknowledge" and a["ok"]], 15,
                       interval=0.3)
        assert got, audits()
        a = got[0]
        assert (a["user"], a["role"], a["target"], a["before"], a["after"]) == (
            "kim", "admin", ALARM, "unack_active", "ack_active")
        assert len(a["request_id"]) == 32 and "via gwanje-sys-serve-" in a["client"]
        refused = [x for x in audits() if not x["ok"]]
        assert [(x["user"], x["role"], x["detail"]) for x in refused] == [
            ("vera", "viewer", "refused by collect: not_allowed")]

        # (c) collect stopped: the action is refused at once, naming the offline collect
        collect.stop()
        assert wait_for(lambda: (watch.body("status") or {"online": True}).get("online") is False, 10)
        start = time.monotonic()
        feedback = act(http, "alarm-add-comment", "checked the spindle")
        assert feedback == f"✗ collect {INSTANCE} for changwon-1/cnc-1 is offline: not commented", feedback
        assert time.monotonic() - start < 2.0  # at once, not after the reply timeout
        text = wait_for(lambda: (s := status_text()) and "offline" in s and s, 10, interval=0.5)
        assert text, status_text()[:2000]
        assert serve.alive(), serve.output()[-3000:]
    finally:
        device.disconnect()
        device.loop_stop()
        watch.close()
        for p in (collect, serve):
            if p.alive():
                p.stop()
        store.close()
        shutil.rmtree(tmp_path / "collect-data", ignore_errors=True)
