"""runtime/control.py in one process against a real mosquitto: CommandServer over a real
AlarmService, RemoteAlarms as a serve process uses it; and the audit entries of alarm actions."""
from __future__ import annotations

import dataclasses

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.service import AlarmService
from gwanje import bus
from gwanje.bus import CommandFailed
from gwanje.config import ControlConfig, Secrets
from gwanje.model import NS_PER_S, Sample, now_ns
from runtime.control import CommandServer, RemoteAlarms, now_ms
from storage.embedded import EmbeddedStore
from tests.alerts.test_ui import H1, RULES
from tests.fixtures.common import wait_for

KEY = "unit-control-key-0123456789"


@pytest.fixture
def bus_env(config, mosquitto, tmp_path):
    cfg = dataclasses.replace(config, system=config.system.model_copy(update={
        "control": ControlConfig(instance="c1", reply_timeout_s=1.0),
        "mqtt": config.system.mqtt.model_copy(update={"url": mosquitto.url})}))
    store = EmbeddedStore(tmp_path / "bus.duckdb")
    svc = AlarmService(cfg, store, rules=RULES)
    server = CommandServer(cfg, Secrets.from_env({}), svc, lambda: {"sources": [{"name": "mqtt x", "connected": True}]},
                           "c1", mosquitto.url, KEY).start()
    remote = RemoteAlarms(cfg, Secrets.from_env({}), store, mosquitto.url, KEY).start()
    yield dataclasses.make_dataclass("E", ["cfg", "store", "svc", "server", "remote", "mosquitto"])(
        cfg, store, svc, server, remote, mosquitto)
    remote.stop()
    server.stop()
    store.close()


def raise_h1(svc):
    t = now_ns()
    svc.on_samples([Sample("changwon-1", "cnc-1", "cnc-101", "vibration", 8.0, t)])
    assert svc.get(H1).status.value == "unack_active"


def audits(store):
    return [e.data for e in store.events("audit", now_ns() - 60 * NS_PER_S, now_ns() + NS_PER_S)]


def test_local_actions_write_audit_entries_done_and_refused(config, tmp_path):
    store = EmbeddedStore(tmp_path / "a.duckdb")
    svc = AlarmService(config, store, rules=RULES)
    raise_h1(svc)
    svc.acknowledge(H1, "kim", role="operator", request_id="r1", client="10.0.0.5")
    svc.acknowledge(H1, "kim", role="operator")  # nothing to do: recorded as such
    with pytest.raises(ValueError):
        svc.shelve(H1, "kim", "", 3600, role="supervisor")  # no reason given
    with pytest.raises(ValueError):
        svc.comment("no-such:alarm", "kim", "x")
    got = sorted(audits(store), key=lambda a: (a["action"], a["ok"], a["detail"]))
    rows = [(a["action"], a["ok"], a["before"], a["after"], a["detail"], a["request_id"], a["client"]) for a in got]
    assert rows == [
        ("alarm.acknowledge", True, "unack_active", "ack_active", "", "r1", "10.0.0.5"),
        ("alarm.acknowledge", True, "ack_active", "ack_active", "(nothing changed)", "", ""),
        ("alarm.comment", False, None, None, "unknown_alarm", "", ""),
        ("alarm.shelve", False, "ack_active", "ack_active", "comment_missing", "", ""),  # refused: unchanged
    ]
    assert {a["user"] for a in got} == {"kim"}
    store.close()


@pytest.mark.services
def test_remote_actions_reach_the_service_and_refusals_say_why(bus_env):
    e = bus_env
    raise_h1(e.svc)
    r = e.remote
    assert wait_for(lambda: [s.id for s in r.active()] == [H1], 5), r.active()
    assert r.banner()[1] == 1 and r.get(H1).status.value == "unack_active"
    # an operator may not shelve: collect says so (its own check, whatever serve thinks)
    with pytest.raises(CommandFailed, match="refused by collect c1: not_allowed"):
        r.shelve(H1, "kim", "sensor fault", 3600, role="operator")
    assert e.svc.get(H1).status.value == "unack_active"
    s = r.shelve(H1, "lee", "sensor fault", 3600, role="supervisor", client="10.0.0.9")
    assert s.status.value == "shelved" and s.shelved_by == "lee"
    assert e.svc.get(H1).status.value == "shelved"
    assert r.get(H1).status.value == "shelved"  # at once here, before the next snapshot
    # the service's input checks come back as the same ValueError reasons as locally
    with pytest.raises(ValueError, match="comment_missing"):
        r.remove_from_service(H1, "lee", "", role="supervisor")
    with pytest.raises(ValueError, match="user_missing"):
        r.unshelve(H1, "", role="supervisor")
    with pytest.raises(ValueError, match="unknown_alarm"):
        r.acknowledge("vib.h:changwon-1/cnc-1/no-such/vibration", "kim", role="operator")
    assert r.unshelve(H1, "lee", role="supervisor").status.value == "unack_active"
    assert r.acknowledge_line("changwon-1", "cnc-1", "kim", role="operator") == [True]
    assert e.svc.get(H1).status.value == "ack_active"
    a = [x for x in audits(e.store) if x["action"] == "alarm.shelve" and x["ok"]]
    assert a and a[0]["role"] == "supervisor" and a[0]["client"].startswith("10.0.0.9 via gwanje-sys-serve-")
    assert e.server.rejects.counts() == {"not_allowed": 1, "unknown_alarm": 1}
    st = wait_for(lambda: r.statuses().get("c1", {}).get("control_rejects", {}).get("unknown_alarm"), 5)
    assert st == 1 and r.statuses()["c1"]["sources"] == [{"name": "mqtt x", "connected": True}]


@pytest.mark.services
def test_no_answer_in_time_is_a_clear_error_and_a_forged_status_is_ignored(bus_env):
    e = bus_env
    r = e.remote
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="ghost")
    c.connect("127.0.0.1", e.mosquitto.port)
    c.loop_start()
    try:
        # a collect that says it is online for a line but never answers (hung)
        body = {"online": True, "lines": ["changwon-2/press-1"]}
        c.publish(bus.status_topic("gwanje-sys", "ghost"), bus.snapshot(KEY, "status", "ghost", now_ms(), body),
                  qos=1, retain=True).wait_for_publish(5)
        forged = bus.snapshot("forged-key-0123456789", "status", "evil", now_ms(), body)
        c.publish(bus.status_topic("gwanje-sys", "evil"), forged, qos=1, retain=True).wait_for_publish(5)
        assert wait_for(lambda: "ghost" in r.statuses(), 5)
        with pytest.raises(CommandFailed, match=r"no answer from collect ghost within 1 s"):
            r.acknowledge("x.h:changwon-2/press-1/m/s", "kim", role="operator")
        assert "evil" not in r.statuses() and r.rejects.counts().get("bad_signature") == 1
        # a line no collect owns
        with pytest.raises(CommandFailed, match="no collect for nowhere/x on the control bus: not acknowledged"):
            r.acknowledge("x.h:nowhere/x/m/s", "kim", role="operator")
    finally:
        c.disconnect()
        c.loop_stop()
