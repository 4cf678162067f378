"""gwanje/bus.py: signing, verification and authorization of control-bus messages (pure)."""
from __future__ import annotations

import json
import logging

import pytest

from gwanje import bus
from gwanje.bus import Refused, Verifier
from gwanje.config import ControlConfig, Secrets, load_config
from gwanje.rejects import Rejects
from gwanje.roles import ROLES, role_allows
from gwanje.security import security_problems
from tests.alerts.helpers import REPO

KEY = "k3y-for-the-tests-0123456789"
T = 1_790_000_000_000  # ms
PREFIX = "gwanje-sys"
REPLY = f"{PREFIX}/reply/serve-a"
ALARM = "vib.h:changwon-1/cnc-1/cnc-101/vibration"


def cmd(key=KEY, now=T, **kw):
    args = dict(user="kim", role="operator", action="alarm.acknowledge", target=ALARM, site="changwon-1",
                line="cnc-1", reply_to=REPLY, args={"comment": "seen"}, now_ms=now)
    args.update(kw)
    return bus.new_command(key, **args)


def verifier(**kw):
    return Verifier(KEY, 30, prefix=PREFIX, rejects=Rejects("test-bus", log_interval_s=0), **kw)


TOPIC = bus.cmd_topic(PREFIX, "changwon-1", "cnc-1")


def refused(v, raw, now=T, topic=TOPIC):
    with pytest.raises(Refused) as e:
        v.verify(raw, now, topic=topic)
    return e.value


def test_a_signed_command_verifies_with_every_field():
    rid, raw = cmd()
    c = verifier().verify(raw, T + 500, topic=TOPIC)
    assert (c.id, c.user, c.role, c.action, c.target, c.site, c.line, c.args, c.reply_to, c.ts_ms) == (
        rid, "kim", "operator", "alarm.acknowledge", ALARM, "changwon-1", "cnc-1", {"comment": "seen"}, REPLY, T)
    assert c.method == "acknowledge" and c.permission == "alarm.acknowledge"
    assert len(rid) == 32 and json.loads(raw)["sig"]


def test_every_bus_action_maps_to_a_role_permission_and_a_service_method():
    from alerts.service import AlarmService

    for action, (perm, method) in bus.ACTIONS.items():
        assert role_allows("admin", perm)
        assert callable(getattr(AlarmService, method))
        assert action in bus.PAST


def test_wrong_key_is_bad_signature_and_counted():
    v = verifier()
    _, raw = cmd(key="another-key-of-16-chars")
    e = refused(v, raw)
    assert e.reason == "bad_signature" and e.message is None  # never answered
    assert v.rejects.counts() == {"bad_signature": 1}


def test_any_change_to_a_signed_field_breaks_the_signature():
    _, raw = cmd()
    msg = json.loads(raw)
    for field, value in [("role", "admin"), ("user", "lee"), ("target", ALARM + "x"), ("ts_ms", T + 1),
                         ("args", {"comment": "other"}), ("reply_to", f"{PREFIX}/reply/evil"), ("kind", "reply")]:
        forged = dict(msg, **{field: value})
        assert refused(verifier(), json.dumps(forged).encode()).reason == "bad_signature", field
    stripped = {k: v for k, v in msg.items() if k != "sig"}
    assert refused(verifier(), json.dumps(stripped).encode()).reason == "malformed"


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"not json", b"[1,2]", b"null", b'{"sig": 5}',
                                 b'{"a": NaN, "sig": "00"}', b"[" * 100_000, b"x" * 70_000])
def test_garbage_is_malformed_never_a_crash(raw):
    v = verifier()
    assert refused(v, raw).reason == "malformed"
    assert v.rejects.counts() == {"malformed": 1}


@pytest.mark.parametrize("field,value", [("id", ""), ("id", 7), ("ts_ms", "now"), ("ts_ms", True), ("user", 1),
                                         ("action", ""), ("args", [1]), ("reply_to", "gwanje/x"),
                                         ("reply_to", f"{PREFIX}/reply/#"), ("role", "x" * 40)])
def test_correctly_signed_but_ill_formed_fields_are_malformed(field, value):
    _, raw = cmd()
    body = {k: v for k, v in json.loads(raw).items() if k != "sig"}
    body[field] = value
    assert refused(verifier(), bus.sign(KEY, body)).reason == "malformed"


def test_a_kind_other_than_cmd_is_not_a_command():
    raw = bus.reply(KEY, "abc", instance="c1", ok=True, message="", now_ms=T)
    assert refused(verifier(), raw).reason == "malformed"
    assert refused(verifier(), bus.snapshot(KEY, "status", "c1", T, {"online": True})).reason == "malformed"


def test_a_command_on_another_lines_topic_is_malformed():
    _, raw = cmd()
    assert refused(verifier(), raw, topic=bus.cmd_topic(PREFIX, "changwon-2", "press-1")).reason == "malformed"


def test_age_window_both_ways():
    v = verifier()
    _, raw = cmd(now=T)
    assert v.verify(raw, T + 30_000, topic=TOPIC).ts_ms == T
    _, old = cmd(now=T)
    e = refused(v, old, now=T + 30_001)
    assert e.reason == "expired" and e.message["id"]  # authentic: collect may answer it
    _, ahead = cmd(now=T + 30_001)
    assert refused(v, ahead, now=T).reason == "expired"
    assert v.rejects.counts() == {"expired": 2}


def test_a_request_id_is_accepted_once():
    v = verifier()
    _, raw = cmd()
    v.verify(raw, T, topic=TOPIC)
    assert refused(v, raw, now=T + 1000).reason == "replayed"
    # a new command reusing the id (a serve bug or a replay with a fresh time) is refused too
    rid = json.loads(raw)["id"]
    _, again = cmd(request_id=rid, now=T + 2000)
    assert refused(v, again, now=T + 2000).reason == "replayed"


def test_replay_memory_is_bounded_yet_no_id_inside_the_window_is_forgotten():
    v = verifier(memory=10)
    raws = [cmd(now=T + i)[1] for i in range(10)]
    for r in raws:
        v.verify(r, T + 10, topic=TOPIC)
    assert refused(v, raws[0], now=T + 10).reason == "replayed"
    # once the window has passed, the memory forgets (an old id would be expired anyway)
    v.verify(cmd(now=T + 40_000)[1], T + 40_000, topic=TOPIC)
    assert len(v._seen) == 1
    assert refused(v, raws[0], now=T + 40_000).reason == "expired"


@pytest.mark.parametrize("action", ["alarm.delete", "shift.recompute", "", "audit.view"])
def test_unknown_actions_are_refused(action):
    _, raw = cmd(action=action, role="admin")
    e = refused(verifier(), raw)
    assert e.reason == ("malformed" if action == "" else "unknown_action")


@pytest.mark.parametrize("role", ROLES + ("", "root", "Admin"))
@pytest.mark.parametrize("action", sorted(bus.ACTIONS))
def test_collect_authorizes_by_the_role_table(role, action):
    _, raw = cmd(role=role, action=action)
    v = verifier()
    if role_allows(role, bus.ACTIONS[action][0]):
        assert v.verify(raw, T, topic=TOPIC).action == action
    else:
        e = refused(v, raw)
        assert e.reason == "not_allowed" and e.message["role"] == role
        assert v.rejects.counts() == {"not_allowed": 1}


def test_a_viewer_may_not_acknowledge_nor_an_operator_shelve():
    assert refused(verifier(), cmd(role="viewer")[1]).reason == "not_allowed"
    assert refused(verifier(), cmd(role="operator", action="alarm.shelve")[1]).reason == "not_allowed"
    assert verifier().verify(cmd(role="supervisor", action="alarm.unshelve")[1], T, topic=TOPIC)


def test_refusals_are_logged_without_key_or_signature(caplog):
    v = verifier()
    _, good = cmd()
    sig = json.loads(good)["sig"]
    with caplog.at_level(logging.WARNING, logger="gwanje.rejects"):
        refused(v, cmd(key="wrong-key-but-long-enough")[1])
        v.verify(good, T, topic=TOPIC)
        refused(v, good)
        refused(v, cmd(role="viewer")[1])
    text = caplog.text
    assert "bad_signature" in text and "replayed" in text and "not_allowed" in text
    assert KEY not in text and sig not in text and "wrong-key-but-long-enough" not in text


def test_unknown_alarm_is_a_reason_the_server_counts_with_the_verifier():
    v = verifier()
    e = v.refuse("unknown_alarm", "target=x")
    assert e.reason == "unknown_alarm" and v.rejects.counts() == {"unknown_alarm": 1}
    assert set(bus.REASONS) == {"bad_signature", "expired", "replayed", "not_allowed", "unknown_action",
                                "unknown_alarm", "malformed"}


def test_replies_and_snapshots_round_trip_and_are_kind_bound():
    raw = bus.reply(KEY, "r1", instance="c1", ok=False, reason="not_allowed", message="refused", now_ms=T)
    body = bus.decode_signed(KEY, raw, "reply")
    assert (body["id"], body["ok"], body["reason"], body["instance"]) == ("r1", False, "not_allowed", "c1")
    with pytest.raises(Refused) as e:
        bus.decode_signed(KEY, raw, "status")
    assert e.value.reason == "malformed"
    with pytest.raises(Refused) as e:
        bus.decode_signed("other-key-0123456789", raw, "reply")
    assert e.value.reason == "bad_signature"
    snap = bus.snapshot(KEY, "alarms", "c1", T, {"alarms": [{"id": "a"}]})
    assert bus.decode_signed(KEY, snap, "alarms")["alarms"] == [{"id": "a"}]
    with pytest.raises(ValueError):
        bus.snapshot(KEY, "cmd", "c1", T, {})


def test_topics():
    assert bus.cmd_topic("p", "s", "l") == "p/cmd/s/l" and bus.cmd_topic("p", "s", "") == "p/cmd/s/_"
    assert bus.status_topic("p", "c1") == "p/status/c1" and bus.alarms_topic("p", "c1") == "p/alarms/c1"
    assert not ControlConfig().prefix.startswith("gwanje/")


def test_owner_online_and_merged_status():
    statuses = {"c1": {"online": True, "ts_ms": T, "lines": ["s/a"], "sources": [{"name": "mqtt x", "connected": True}]},
                "c2": {"online": False, "ts_ms": T - 60_000, "lines": ["s/b"], "sources": [{"name": "mqtt x"}]}}
    assert bus.owner(statuses, "s", "a") == "c1" and bus.owner(statuses, "s", "b") == "c2"
    assert bus.owner(statuses, "s", "c") is None
    assert bus.instance_online(statuses["c1"], T + 5_000)
    assert not bus.instance_online(statuses["c1"], T + 10_001)  # not renewed: gone without a will
    assert not bus.instance_online(statuses["c2"], T) and not bus.instance_online(None, T)
    m = bus.merge_status({"sources": [{"name": "opcua y"}], "store": {"ok": True}}, statuses, T + 1000, "local")
    assert [(s["instance"], s["name"], s["online"]) for s in m["sources"]] == [
        ("local", "opcua y", True), ("c1", "mqtt x", True), ("c2", "mqtt x", False)]
    assert [(i["instance"], i["online"], i["age_s"]) for i in m["instances"]] == [("c1", True, 1.0), ("c2", False, 61.0)]
    assert m["store"] == {"ok": True}


def test_control_config_defaults_env_and_validation(tmp_path):
    cfg = load_config(REPO / "config", env={})
    c = cfg.system.control
    assert (c.prefix, c.instance, c.reply_timeout_s, c.max_age_s) == ("gwanje-sys", "collect", 5.0, 30.0)
    assert load_config(REPO / "config", env={"GWANJE_INSTANCE": "north"}).system.control.instance == "north"
    for bad in ({"prefix": "a/+/b"}, {"instance": "a/b"}, {"max_age_s": 0}, {"unknown": 1}):
        with pytest.raises(ValueError):
            ControlConfig.model_validate(bad)


def test_outside_demo_collect_and_serve_need_a_command_key_of_16_chars():
    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0", "GWANJE_MQTT_URL": "mqtts://b:8883"})
    base = {"GWANJE_MQTT_USERNAME": "u", "GWANJE_MQTT_PASSWORD": "p", "GWANJE_SECRET_KEY": "s" * 32}

    def problems(key, roles):
        env = dict(base, **({"GWANJE_COMMAND_KEY": key} if key is not None else {}))
        return [p for p in security_problems(cfg, Secrets.from_env(env), roles) if "GWANJE_COMMAND_KEY" in p]

    for roles in (("collect",), ("serve",)):
        assert problems(None, roles) and problems("x" * 15, roles)
        assert not problems("x" * 16, roles)
    assert not problems(None, ("simulate",))
    demo = load_config(REPO / "config", env={})
    assert security_problems(demo, Secrets.from_env({}), ("collect", "serve")) == []
    assert "x" * 16 not in repr(Secrets.from_env({"GWANJE_COMMAND_KEY": "x" * 16}))


def test_demo_key_only_in_demo_mode():
    from runtime.control import command_key

    demo = load_config(REPO / "config", env={})
    prod = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    assert command_key(demo, Secrets.from_env({})) == bus.DEMO_KEY
    assert command_key(prod, Secrets.from_env({})) is None
    assert command_key(prod, Secrets.from_env({"GWANJE_COMMAND_KEY": KEY})) == KEY
