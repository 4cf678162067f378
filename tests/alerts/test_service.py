"""AlarmService on the real embedded store: lifecycle through samples and operator actions,
suppression during planned stop, and restore after a restart from the stored events."""
from __future__ import annotations


import pytest

from alerts.rules import AlarmRules
from alerts.service import AlarmService
from gwanje.model import Sample
from storage.embedded import EmbeddedStore
from tests.alerts.helpers import S, Clock

T0 = 1_790_000_000 * S
CNC1 = ("changwon-1", "cnc-1", "cnc-101")
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
MSG = {"ko": "{machine_name} 진동 {level} {value}", "en": "{machine_name} vibration {level} {value}"}
RULES = AlarmRules.model_validate({"rules": [
    {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
     "h": {"limit": 7.0, "priority": "high"}, "hh": {"limit": 9.0, "priority": "critical"},
     "deadband": 0.5, "message": MSG},
]})
H1 = "vib.h:changwon-1/cnc-1/cnc-101/vibration"
HH1 = "vib.hh:changwon-1/cnc-1/cnc-101/vibration"
H2 = "vib.h:changwon-1/cnc-1/cnc-102/vibration"


@pytest.fixture
def db(tmp_path):
    return tmp_path / "alarms.duckdb"


def svc(config, path, clock):
    store = EmbeddedStore(path)
    return AlarmService(config, store, clock=clock, rules=RULES), store


def feed(service, store, *samples):
    # what the pipeline does with a listener's events
    evs = service.on_samples(list(samples))
    store.write_events(evs)
    return evs


def vib(m, t_s, v):
    return Sample(*m, "vibration", v, T0 + int(t_s * S))


def test_lifecycle_through_samples_and_acknowledgement(config, db):
    clock = Clock(T0)
    s, store = svc(config, db, clock)
    evs = feed(s, store, vib(CNC1, 1, 7.5))
    assert [(e.key, e.data["event"], e.data["state"]) for e in evs] == [(H1, "raised", "unack_active")]
    assert evs[0].data["message_en"] == "Machining center 1 vibration H 7.5"
    top, n = s.banner()
    assert top.id == H1 and n == 1
    clock.t = T0 + 5 * S
    ack = s.acknowledge(H1, "kim", "tool worn")
    assert ack.data["state"] == "ack_active" and ack.data["user"] == "kim"
    assert s.acknowledge(H1, "kim") is None  # nothing left to acknowledge
    assert s.banner() == (None, 0)
    evs = feed(s, store, vib(CNC1, 6, 6.0))  # below 7 - 0.5: returns, already acknowledged -> normal
    assert [(e.data["event"], e.data["state"]) for e in evs] == [("returned", "normal")]
    assert s.active() == []
    hist = s.history(T0, T0 + 10 * S)
    assert [e.data["event"] for e in hist] == ["returned", "acknowledged", "raised"]
    assert [e.data["event"] for e in s.history(T0, T0 + 10 * S, text="tool worn")] == ["acknowledged"]


def test_suppression_during_planned_stop(config, db):
    s, store = svc(config, db, Clock(T0))
    feed(s, store, Sample(*CNC1, "state", 0.0, T0), vib(CNC1, 1, 9.5))  # planned stop (code 0), then HH
    assert {(a.id, a.status.value, a.active) for a in s.active()} == {
        (HH1, "suppressed", True), (H1, "suppressed", True)}
    assert s.banner() == (None, 0)  # suppressed alarms do not call for the operator
    feed(s, store, Sample(*CNC1, "state", 3.0, T0 + 2 * S))  # running again: annunciated now
    assert [(a.id, a.status.value) for a in s.active()] == [(HH1, "unack_active"), (H1, "unack_active")]


def test_acknowledge_a_whole_line(config, db):
    s, store = svc(config, db, Clock(T0 + 10 * S))
    feed(s, store, vib(CNC1, 1, 7.5), vib(CNC2, 1, 8.0))
    evs = s.acknowledge_line("changwon-1", "cnc-1", "lee")
    assert sorted(e.key for e in evs) == [H1, H2]
    assert all(a.status.value == "ack_active" for a in s.active())


def test_restart_restores_every_alarm_exactly(config, db):
    clock = Clock(T0)
    s, store = svc(config, db, clock)
    feed(s, store, vib(CNC1, 1, 9.5), vib(CNC2, 1, 7.5))  # HH1, H1, H2 raised
    clock.t = T0 + 2 * S
    s.acknowledge(HH1, "kim", "on my way")
    s.shelve(H2, "lee", "sensor loose, maintenance ordered", 3600)
    feed(s, store, vib(CNC1, 3, 8.0))  # HH1 returns (acked -> normal), H1 still active
    before = {a.id: a for a in s.active()}
    assert {k: v.status.value for k, v in before.items()} == {H1: "unack_active", H2: "shelved"}
    store.close()

    clock.t = T0 + 60 * S
    s2, store2 = svc(config, db, clock)
    assert {a.id: a for a in s2.active()} == before
    # with a rule removed from the config, its alarms are not brought back (nothing would clear them)
    hh_only = AlarmRules.model_validate({"rules": [{**RULES.rules[0].model_dump(by_alias=True), "h": None}]})
    s3 = AlarmService(config, store2, clock=clock, rules=hh_only)
    assert s3.active() == [] and s3.rejects.counts() == {"stored_alarm_without_rule": 2}
    # the restored alarm keeps living: the next normal value returns it, the shelf still expires
    evs = feed(s2, store2, vib(CNC1, 61, 6.0))
    assert [(e.key, e.data["state"]) for e in evs] == [(H1, "rtn_unack")]
    clock.t = T0 + 2 * S + 3600 * S
    evs = s2.tick()
    assert [(e.key, e.data["event"], e.data["state"]) for e in evs] == [(H2, "shelve_expired", "unack_active")]
    store2.close()


def test_shelve_and_operator_input_checks(config, db):
    s, store = svc(config, db, Clock(T0))
    feed(s, store, vib(CNC1, 1, 7.5))
    with pytest.raises(ValueError, match="comment_missing"):
        s.shelve(H1, "kim", "", 600)
    with pytest.raises(ValueError, match="bad_shelve_duration"):
        s.shelve(H1, "kim", "why", 10 * 24 * 3600)
    with pytest.raises(ValueError, match="user_missing"):
        s.acknowledge(H1, "  ")
    with pytest.raises(ValueError, match="user_has_control_chars"):
        s.acknowledge(H1, "kim\nFAKE LOG LINE")
    with pytest.raises(ValueError, match="comment_too_long"):
        s.comment(H1, "kim", "x" * 501)
    with pytest.raises(ValueError, match="unknown_alarm"):
        s.acknowledge("nope:a/b/c/d", "kim")
    assert s.rejects.counts() == {"comment_missing": 1, "bad_shelve_duration": 1, "user_missing": 1,
                                  "user_has_control_chars": 1, "comment_too_long": 1, "unknown_alarm": 1}
    # good input around the bad is kept
    assert s.comment(H1, "kim", "checked bearing").data["comment"] == "checked bearing"
    assert s.get(H1).status.value == "unack_active"
    # a normal alarm point may be taken out of service (a known-bad sensor) and back
    assert s.remove_from_service(H2, "lee", "sensor replaced").data["state"] == "out_of_service"
    assert s.return_to_service(H2, "lee").data["state"] == "normal"


def test_alarm_events_flow_through_the_real_pipeline(config, db):
    from runtime.pipeline import Pipeline
    from tests.fixtures.common import wait_for

    store = EmbeddedStore(db)
    svc = AlarmService(config, store, rules=RULES)
    p = Pipeline(store, flush_interval_s=0.05, listeners=[svc.on_samples])
    p.start()
    try:
        p.submit([vib(CNC1, 1, 6.0), vib(CNC1, 2, 9.5)])
        got = wait_for(lambda: store.events("alarm", T0, T0 + 10 * S))
        assert sorted((e.key, e.data["event"]) for e in got) == [(H1, "raised"), (HH1, "raised")]
        # the pipeline hands the batch to its listeners, then writes it
        assert wait_for(lambda: store.count_samples(T0, T0 + 10 * S) == 2)
    finally:
        p.stop()
        store.close()


def test_a_store_down_at_start_delays_nothing_and_loses_nothing(config, db):
    down = EmbeddedStore(db)
    down.close()  # every call now fails, as a store that is not reachable
    clock = Clock(T0)
    s = AlarmService(config, down, clock=clock, rules=RULES)
    assert s.restored is False
    evs = s.on_samples([vib(CNC1, 1, 7.5)])  # alarms are evaluated all the same
    assert [e.data["event"] for e in evs] == ["raised"]
    clock.t = T0 + 2 * S
    ack = s.acknowledge(H1, "kim")  # the operator's action is kept for the next write
    assert ack.data["state"] == "ack_active" and s.unwritten == 1
    s.tick(T0 + 3 * S)  # retries the restore; still down: no exception
    assert s.restored is False and s.unwritten == 1


def test_oee_rule_with_the_real_engine(config, db):
    # the OEE engine (gwanje.engine) fed by the plant model for 30 min of a day shift; the OEE
    # alarm is raised exactly for the lines whose shift-so-far OEE is below the target
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from alerts.service import engine_oee
    from gwanje.engine import Engine
    from simulator.machines import Plant

    start = int(datetime(2026, 11, 24, 6, 0, tzinfo=ZoneInfo("Asia/Seoul")).timestamp()) * S
    clock = Clock(start)
    engine, plant = Engine(config, clock=clock), Plant(config, seed=7)
    for now in range(start, start + 1800 * S, 20 * S):
        clock.t = now
        engine.on_samples([Sample(m.site, m.line, m.machine, k, v if isinstance(v, str) else float(v), now)
                           for m, vals in plant.step(now) for k, v in vals.items()])
    oee = engine_oee(engine, clock=clock)
    figures = {(s.id, ln.id): oee(s.id, ln.id) for s in config.plant.sites for ln in s.lines}
    assert all(v is not None and 0 <= v <= 1 for v in figures.values())
    # the target between the lines (their median), so some are below it and some are not
    target = sorted(figures.values())[len(figures) // 2]
    rules = AlarmRules.model_validate({"rules": [
        {"id": "oee-low", "type": "oee", "target": target, "priority": "low", "on_delay_s": 0,
         "message": {"ko": "{line_name} {oee:.0%}", "en": "{line_name} {oee:.0%}"}}]})
    store = EmbeddedStore(db)
    svc = AlarmService(config, store, clock=clock, rules=rules, oee=oee)
    svc.tick(clock.t)
    low = {f"oee-low:{site}/{line}/oee" for (site, line), v in figures.items() if v < target}
    assert 0 < len(low) < len(figures), figures
    assert {a.id for a in svc.active()} == low
    for a in svc.active():
        assert a.message_en == f"{config.line(a.site, a.line).name.en} {figures[(a.site, a.line)]:.0%}"
    store.close()


def test_a_failing_oee_source_holds_the_oee_alarm(config, db):
    rules = AlarmRules.model_validate({"rules": [
        {"id": "oee-low", "type": "oee", "scope": {"line": ["cnc-1"]}, "target": 0.65, "priority": "low",
         "on_delay_s": 0, "message": {"ko": "{oee:.0%}", "en": "{oee:.0%}"}}]})
    figure = {"v": 0.5}

    def oee(site, line):
        if figure["v"] is None:
            raise RuntimeError("engine busy")
        return figure["v"]

    store = EmbeddedStore(db)
    s = AlarmService(config, store, clock=Clock(T0), rules=rules, oee=oee)
    assert [e.data["event"] for e in s.tick(T0)] == ["raised"]
    figure["v"] = None
    assert s.tick(T0 + S) == [] and [a.id for a in s.active()] == ["oee-low:changwon-1/cnc-1/oee"]
    figure["v"] = 0.7
    assert [e.data["event"] for e in s.tick(T0 + 2 * S)] == ["returned"]
    store.close()
