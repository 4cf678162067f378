"""Notifications over real protocols to servers started here: SMTP (aiosmtpd) and HTTP webhooks.
Escalation after the timeout, nothing after an acknowledgement, and a channel that is down or
hung delays nobody else."""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from alerts.lifecycle import new_alarm
from alerts.notify import NotifyConfig, Notifier, alarm_link
from alerts.oncall import Rotation, next_up, on_duty
from alerts.rules import AlarmRules
from alerts.service import AlarmService
from gwanje.model import Sample
from storage.embedded import EmbeddedStore
from tests.alerts.helpers import REPO, S, Clock
from tests.alerts.servers import HungEndpoint, SmtpSink, WebhookSink
from tests.fixtures.common import wait_for
from tests.fixtures.common import free_port, missing

# Wednesday 2026-01-07 12:00 in Seoul (03:00 UTC): week 0 of a rotation that starts Monday
# 2026-01-05 08:30, so kim is on duty and lee is next
T = int(datetime(2026, 1, 7, 3, 0, tzinfo=timezone.utc).timestamp()) * S
CNC1 = ("changwon-1", "cnc-1", "cnc-101")
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
H1 = "vib.h:changwon-1/cnc-1/cnc-101/vibration"
H2 = "vib.h:changwon-1/cnc-1/cnc-102/vibration"
HH1 = "vib.hh:changwon-1/cnc-1/cnc-101/vibration"
RULES = AlarmRules.model_validate({"rules": [
    {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
     "h": {"limit": 7.0, "priority": "high"}, "hh": {"limit": 9.0, "priority": "critical"},
     "message": {"ko": "{machine_name} 진동 {level} {value}", "en": "{machine_name} vibration {level} {value}"}},
]})
ROTATION = {"members": ["kim", "lee"], "handover_day": "mon", "handover_time": "08:30", "start": "2026-01-05"}
SECRET = "s3cret-token"

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def smtp():
    try:
        s = SmtpSink()
    except ImportError:
        missing("aiosmtpd (pip install aiosmtpd)")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def web():
    w = WebhookSink()
    yield w
    w.stop()


def notify_config(smtp, web, **over):
    raw = {
        "public_url": "http://gwanje.test",
        "channels": {"kim-mail": {"url_env": "T_KIM_MAIL"}, "lee-hook": {"url_env": "T_LEE_HOOK"},
                     "ops-hook": {"url": web.url("ops")}},
        "people": {"kim": {"name": "김민준", "channels": ["kim-mail"]}, "lee": {"name": "이서연", "channels": ["lee-hook"]}},
        "rotations": {"maint": ROTATION},
        "routes": [{"priority": ["critical", "high"], "notify": ["oncall:maint", "channel:ops-hook"],
                    "escalate": [{"after_min": 1, "notify": ["oncall:maint+1"]}]}],
        "retries": 2, "backoff_s": 0.1,
    }
    raw.update(over)
    return NotifyConfig.model_validate(raw)


def env(smtp, web):
    return {"T_KIM_MAIL": smtp.url("kim@plant.local"), "T_LEE_HOOK": web.url("lee", auth=f"gwanje:{SECRET}")}


def vib(m, t, v):
    return Sample(*m, "vibration", v, t)


def posts(web, path, alarm_id=None):
    q = f"alarm={alarm_id.replace(':', '%3A').replace('/', '%2F')}" if alarm_id else ""
    return [p for p in web.posts if p["path"] == path and q in p.get("message", "")]


def test_raise_escalate_and_nothing_after_acknowledgement(config, smtp, web, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock(T)
    store = EmbeddedStore(tmp_path / "a.duckdb")
    n = Notifier(notify_config(smtp, web), "Asia/Seoul", sink=lambda e: store.write_events([e]),
                 env=env(smtp, web), clock=clock)
    svc = AlarmService(config, store, notifier=n, clock=clock, rules=RULES)
    try:
        store.write_events(svc.on_samples([vib(CNC1, T, 7.5)]))  # H1 raised, priority high
        mail = wait_for(lambda: [m for m in smtp.messages if "MC 1호기 진동 H 7.5" in m["subject"]])
        assert len(mail) == 1 and mail[0]["to"] == ["kim@plant.local"]  # kim is on duty
        assert mail[0]["subject"].startswith("[높음/HIGH]")
        link = "http://gwanje.test/alarms?alarm=vib.h%3Achangwon-1%2Fcnc-1%2Fcnc-101%2Fvibration"
        assert link == alarm_link("http://gwanje.test", H1) and link in mail[0]["body"]
        assert "Machining center 1 vibration H 7.5" in mail[0]["body"]
        assert wait_for(lambda: posts(web, "/ops", H1))

        svc.tick(T + 59 * S)  # not yet a minute unacknowledged
        svc.tick(T + 60 * S)  # now: escalate to the next one up (lee)
        esc = wait_for(lambda: posts(web, "/lee", H1))
        assert len(esc) == 1 and esc[0]["title"].startswith("[에스컬레이션 1/escalation 1] [높음/HIGH]")
        svc.tick(T + 120 * S)  # an escalation level goes out once
        # H2 raised and acknowledged before its minute is up: no escalation for it
        clock.t = T + 61 * S
        store.write_events(svc.on_samples([vib(CNC2, T + 61 * S, 8.0)]))
        assert wait_for(lambda: [m for m in smtp.messages if "MC 2호기" in m["subject"]])
        clock.t = T + 70 * S
        svc.acknowledge(H2, "kim", "checking")
        svc.tick(T + 200 * S)
        # a later alarm's escalation on the same (first-in first-out) channel is the marker:
        # once it has arrived, anything queued for H2 before it would have arrived too
        clock.t = T + 201 * S
        store.write_events(svc.on_samples([vib(CNC1, T + 201 * S, 9.5)]))  # HH1 raised
        svc.tick(T + 262 * S)
        assert wait_for(lambda: posts(web, "/lee", HH1))
        assert posts(web, "/lee", H2) == []
        assert len(posts(web, "/lee", H1)) == 1

        def sent_records():
            return {(e.key, e.data["channel"], e.data["level"])
                    for e in store.events("notification", T - S, T + 1000 * S) if e.data["outcome"] == "sent"}

        # the record is written once the endpoint has answered, just after the post arrived
        assert wait_for(lambda: (HH1, "lee-hook", 1) in sent_records())
        stored = store.events("notification", T - S, T + 1000 * S)
        sent = sent_records()
        assert {(H1, "kim-mail", 0), (H1, "ops-hook", 0), (H1, "lee-hook", 1), (H2, "kim-mail", 0),
                (HH1, "lee-hook", 1)} <= sent
        assert not any(k == H2 and lv == 1 for k, _, lv in sent)
        assert all(e.data["link"] == alarm_link("http://gwanje.test", e.key) for e in stored)
        # the channel URL carries a token: it is never logged nor recorded
        assert SECRET not in caplog.text
        assert SECRET not in repr(stored) and SECRET not in repr(n.attempts())

        # a restart remembers what was sent: no escalation is repeated
        n2 = Notifier(notify_config(smtp, web), "Asia/Seoul", env=env(smtp, web), clock=clock)
        try:
            svc2 = AlarmService(config, store, notifier=n2, clock=clock, rules=RULES)
            assert {a.id for a in svc2.active() if a.unacknowledged} == {H1, HH1}
            assert n2.escalate(svc2.active(), T + 400 * S) == []
        finally:
            n2.close()
    finally:
        n.close()
        store.close()


def test_a_down_or_hung_channel_delays_nothing_else(config, smtp, web, tmp_path):
    hung = HungEndpoint()
    dead = f"json://127.0.0.1:{free_port()}/dead"  # nothing listens there
    cfg = notify_config(smtp, web, channels={
        "kim-mail": {"url_env": "T_KIM_MAIL"}, "lee-hook": {"url_env": "T_LEE_HOOK"},
        "ops-hook": {"url": web.url("ops2")}, "dead": {"url": dead}, "hung": {"url": hung.url()}},
        routes=[{"notify": ["channel:hung", "channel:dead", "person:kim", "channel:ops-hook"]}])
    clock = Clock(T)
    store = EmbeddedStore(tmp_path / "b.duckdb")
    n = Notifier(cfg, "Asia/Seoul", sink=lambda e: store.write_events([e]), env=env(smtp, web), clock=clock)
    svc = AlarmService(config, store, notifier=n, clock=clock, rules=RULES)
    try:
        result = {}
        worker = threading.Thread(target=lambda: result.setdefault("evs", svc.on_samples([vib(CNC2, T, 7.6)])))
        worker.start()
        worker.join(5)
        assert not worker.is_alive() and [e.key for e in result["evs"]] == [H2]
        # alarm processing went on while the hung endpoint holds its request unanswered
        assert wait_for(lambda: hung.requests == 1)
        assert wait_for(lambda: posts(web, "/ops2", H2))
        assert wait_for(lambda: [m for m in smtp.messages if "MC 2호기 진동 H 7.6" in m["subject"]])
        # the dead channel was retried with backoff (0.1 s, 0.2 s) and then given up, every attempt recorded
        assert wait_for(lambda: [r for r in n.attempts() if r["channel"] == "dead" and r["outcome"] == "failed"])
        outcomes = sorted((r["attempt"], r["outcome"]) for r in n.attempts() if r["channel"] == "dead")
        assert outcomes == [(1, "retrying"), (2, "retrying"), (3, "failed")]
        assert svc.acknowledge(H2, "kim").data["state"] == "ack_active"
        assert not hung.release.is_set()
    finally:
        hung.stop()
        n.close()
        store.close()


def test_dedup_rate_limit_and_missing_url(smtp, web):
    cfg = notify_config(smtp, web, routes=[{"notify": ["channel:ops-hook", "person:lee"]}],
                        rate_limit_per_min=2, dedup_window_s=300)
    clock = Clock(T)
    n = Notifier(cfg, "Asia/Seoul", env={}, clock=clock)  # T_LEE_HOOK not set: lee's channel disabled
    try:
        a = replace(new_alarm("x:changwon-1/cnc-1/cnc-101/vibration", "x", "changwon-1", "cnc-1", "cnc-101",
                              "vibration", "high"), raised_ts=T, message_ko="가", message_en="a")
        assert n.notify(a, 0, T) == ["ops-hook"]
        # the same alarm raised again 10 s later (a new episode): deduplicated on the channel
        assert n.notify(replace(a, raised_ts=T + 10 * S), 0, T + 10 * S) == []
        b = replace(a, id="y:changwon-1/cnc-1/cnc-101/vibration")
        c = replace(a, id="z:changwon-1/cnc-1/cnc-101/vibration")
        assert n.notify(b, 0, T + 20 * S) == ["ops-hook"]
        assert n.notify(c, 0, T + 30 * S) == []  # a third message within a minute: rate limited
        got = [(r["alarm_id"][0], r["channel"], r["outcome"]) for r in n.attempts() if r["outcome"] != "sent"]
        assert sorted(got) == sorted([("x", "lee-hook", "no_url"), ("x", "ops-hook", "deduplicated"),
                                      ("x", "lee-hook", "no_url"), ("y", "lee-hook", "no_url"),
                                      ("z", "ops-hook", "rate_limited"), ("z", "lee-hook", "no_url")])
    finally:
        n.close()


def test_oncall_rotation_handover_and_override():
    r = Rotation.model_validate({**ROTATION, "members": ["kim", "lee", "park"], "overrides": [
        {"member": "choi", "start": "2026-01-14T18:00", "end": "2026-01-15T08:30"}]})

    def at(local: str) -> int:  # Seoul is UTC+9 all year
        return int(datetime.fromisoformat(local + "+09:00").timestamp()) * S

    assert on_duty(r, at("2026-01-05T08:29"), "Asia/Seoul") == "park"  # before the first handover: last member
    assert on_duty(r, at("2026-01-05T08:30"), "Asia/Seoul") == "kim"
    assert on_duty(r, at("2026-01-12T08:29"), "Asia/Seoul") == "kim"
    assert on_duty(r, at("2026-01-12T08:30"), "Asia/Seoul") == "lee"
    assert on_duty(r, at("2026-01-14T20:00"), "Asia/Seoul") == "choi"  # override
    assert next_up(r, at("2026-01-14T20:00"), "Asia/Seoul") == "park"  # after lee, whose week it is
    assert on_duty(r, at("2026-01-26T09:00"), "Asia/Seoul") == "kim"  # week 3 wraps around
    with pytest.raises(ValueError, match="not the handover day"):
        Rotation.model_validate({**ROTATION, "start": "2026-01-06"})


def test_shipped_notify_config_is_valid():
    import yaml

    from alerts.notify import load_notify

    cfg = load_notify(yaml.safe_load((REPO / "config" / "notify.yaml").read_text(encoding="utf-8")))
    assert cfg.routes and "maintenance" in cfg.rotations
    with pytest.raises(ValueError, match="unknown target"):
        NotifyConfig.model_validate({"channels": {"a": {"url": "json://x"}}, "routes": [{"notify": ["person:ghost"]}]})


def test_service_from_config_records_undeliverable_channels(config, tmp_path):
    # the shipped notify.yaml with none of its channel variables set: nothing can be sent, and
    # the UI's delivery log says so for every channel the route chose
    store = EmbeddedStore(tmp_path / "c.duckdb")
    clock = Clock(T)
    svc = AlarmService.from_config(config, store, clock=clock, env={})
    try:
        evs = svc.on_samples([Sample(*CNC1, "vibration", 9.5, T + k * S) for k in range(6)])  # HH after 5 s
        assert [e.key for e in evs] == ["cnc-vibration.hh:changwon-1/cnc-1/cnc-101/vibration",
                                        "cnc-vibration.h:changwon-1/cnc-1/cnc-101/vibration"]
        # critical and high both take route 1: ops-slack + whoever is on call (the shipped
        # rotation starts Monday 2026-01-05 with kim); route 2 is for changwon-2 only
        got = {(r["alarm_id"].split(":")[0], r["channel"], r["outcome"]) for r in svc.notifications()}
        assert got == {("cnc-vibration.hh", "ops-slack", "no_url"), ("cnc-vibration.hh", "kim-mail", "no_url"),
                       ("cnc-vibration.h", "ops-slack", "no_url"), ("cnc-vibration.h", "kim-mail", "no_url")}
        assert len(store.events("notification", T - S, T + 3600 * S)) == 4
    finally:
        svc.close()
        store.close()
