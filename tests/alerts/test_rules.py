"""Rule evaluation on synthetic signals, with hand-worked expectations."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from alerts.rules import AlarmRules, Evaluator, load_rules
from gwanje.config import ConfigError
from gwanje.model import Quality, Sample
from tests.alerts.helpers import S

T0 = 1_790_000_000 * S
CNC = ("changwon-1", "cnc-1", "cnc-101")
MSG = {"ko": "{machine_name} {level} {value}", "en": "{machine_name} {level} {value}"}


def ev(config, *rules):
    return Evaluator(config, AlarmRules.model_validate({"rules": list(rules)}))


def vib(t_s: float, v: float, machine=CNC, q=Quality.GOOD) -> Sample:
    return Sample(*machine, "vibration", v, T0 + int(t_s * S), q)


def state(t_s: float, code: float, machine=CNC) -> Sample:
    return Sample(*machine, "state", code, T0 + int(t_s * S))


def run(e: Evaluator, samples):
    """Feed one sample at a time; return [(t_s, action, alarm level)]."""
    out = []
    for s in samples:
        for t in e.feed([s]):
            out.append(((t.ts - T0) / S, t.action, t.rule.split(".")[-1]))
    return out


VIB = {"id": "vib", "type": "analog", "scope": {"machine": ["cnc-101"]}, "signal": "vibration",
       "h": {"limit": 7.0, "priority": "high"}, "hh": {"limit": 9.0, "priority": "critical"},
       "deadband": 0.5, "on_delay_s": 3, "off_delay_s": 2, "message": MSG}


def test_shipped_rules_load_and_cover_the_plant(config):
    rules = load_rules(config)
    assert {r.type for r in rules.rules} == {"analog", "rate", "state", "stale", "oee"}
    ids = Evaluator(config, rules).alarm_ids()
    assert "cnc-vibration.hh:changwon-1/cnc-1/cnc-101/vibration" in ids
    assert "comm-lost:changwon-2/forge-2/forge-203/comm" in ids
    assert "oee-low:changwon-2/press-2/oee" in ids


def test_on_delay_deadband_off_delay(config):
    e = ev(config, VIB)
    # on-delay 3 s counts time beyond the limit; once raised, the value must fall below
    # limit - deadband and stay there for the off-delay 2 s.
    # t  value   H (> 7 to raise, < 6.5 to return)       HH (> 9)
    # 0  6.0     -
    # 1  7.5     beyond since 1
    # 2  6.9     not beyond: delay restarts
    # 3  7.2     beyond since 3
    # 4  9.5     1 s                                     beyond since 4
    # 5  8.7     2 s                                     not beyond
    # 6  8.0     3 s -> H raised
    # 7  9.2     raised; 9.2 > 6.5 holds                 beyond since 7
    # 8  6.4     below 6.5 since 8                        not beyond
    # 9  6.6     inside the deadband: return delay restarts
    # 10 6.0     below since 10
    # 11 6.2     1 s
    # 12 6.1     2 s -> H returns
    sig = [(0, 6.0), (1, 7.5), (2, 6.9), (3, 7.2), (4, 9.5), (5, 8.7), (6, 8.0), (7, 9.2), (8, 6.4), (9, 6.6),
           (10, 6.0), (11, 6.2), (12, 6.1)]
    assert run(e, [vib(t, v) for t, v in sig]) == [(6.0, "activate", "h"), (12.0, "clear", "h")]


def test_hh_raised_after_delay_and_message(config):
    e = ev(config, VIB)
    got = []
    for t, v in [(0, 9.5), (1, 9.6), (2, 9.7), (3, 9.8)]:
        got += e.feed([vib(t, v)])
    assert [(t.action, t.rule, (t.ts - T0) // S) for t in got] == [("activate", "vib.hh", 3), ("activate", "vib.h", 3)]
    hh = got[0]
    assert hh.alarm_id == "vib.hh:changwon-1/cnc-1/cnc-101/vibration"
    assert hh.priority == "critical" and hh.value == 9.8
    assert hh.message_ko == "MC 1호기 HH 9.8" and hh.message_en == "Machining center 1 HH 9.8"


def test_tick_completes_a_delay_without_a_new_sample(config):
    e = ev(config, VIB)
    assert e.feed([vib(0, 7.5)]) == []
    assert e.tick(T0 + 2 * S) == []
    assert [t.action for t in e.tick(T0 + 3 * S)] == ["activate"]


def test_bad_quality_and_late_samples_are_ignored(config):
    e = ev(config, {**VIB, "on_delay_s": 0})
    assert run(e, [vib(0, 6.0), vib(1, 12.0, q=Quality.BAD), vib(2, 6.1)]) == []
    # a late sample (older than the newest) must not re-decide the condition
    assert run(e, [vib(3, 7.5), vib(2.5, 5.0)]) == [(3.0, "activate", "h")]


def test_suppressed_in_planned_stop(config):
    e = ev(config, {**VIB, "on_delay_s": 0, "off_delay_s": 0})
    seq = [state(0, 3), vib(1, 7.5),  # running: H raised
           state(2, 0),               # planned stop (code 0): the active alarm is suppressed
           vib(3, 5.0), vib(4, 9.5),  # changes are still tracked; HH is new: suppressed first
           state(5, 3)]               # back to running: unsuppressed (the lifecycle re-annunciates)
    assert run(e, seq) == [(1.0, "activate", "h"), (2.0, "suppress", "h"), (3.0, "clear", "h"),
                           (4.0, "suppress", "hh"), (4.0, "activate", "hh"), (4.0, "activate", "h"),
                           (5.0, "unsuppress", "hh"), (5.0, "unsuppress", "h")]


def test_new_condition_during_planned_stop_is_suppressed_first(config):
    e = ev(config, {**VIB, "on_delay_s": 0})
    assert run(e, [state(0, 0), vib(1, 7.5)]) == [(1.0, "suppress", "h"), (1.0, "activate", "h")]


DOWN = {"id": "down", "type": "state", "state": "down", "max_s": 300, "priority": "high",
        "message": {"ko": "{machine_name} 비가동 {duration_min:.0f}분", "en": "{machine_name} down {duration_min:.0f} min"}}


def test_machine_down_longer_than_limit(config):
    e = ev(config, DOWN)
    assert e.feed([state(0, 3), state(10, 4)]) == []  # running, then down (code 4) at t=10
    assert e.tick(T0 + 309 * S) == []
    got = e.tick(T0 + 310 * S)
    assert [(t.action, t.alarm_id) for t in got] == [("activate", "down:changwon-1/cnc-1/cnc-101/state")]
    assert got[0].message_en == "Machining center 1 down 5 min"
    assert [t.action for t in e.feed([state(400, 3)])] == ["clear"]


def test_down_for_a_short_while_raises_nothing(config):
    e = ev(config, DOWN)
    assert e.feed([state(0, 4), state(299, 3)]) == [] and e.tick(T0 + 1000 * S) == []


STALE = {"id": "comm", "type": "stale", "scope": {"machine": ["cnc-101"]}, "max_age_s": 30, "priority": "high",
         "message": {"ko": "{machine_name} 통신 두절 {age_s}초", "en": "{machine_name} no data for {age_s} s"}}


def test_stale_data_raises_a_communication_alarm(config):
    e = ev(config, STALE)
    e.feed([vib(0, 1.0)])
    assert e.tick(T0 + 30 * S) == []
    got = e.tick(T0 + 31 * S)
    assert [(t.action, t.signal) for t in got] == [("activate", "comm")]
    assert got[0].message_en == "Machining center 1 no data for 31 s"
    assert [t.action for t in e.feed([vib(40, 1.0)])] == ["clear"]


def test_machine_never_heard_from_is_stale_from_start(config):
    e = ev(config, STALE)
    assert e.tick(T0) == [] and e.tick(T0 + 30 * S) == []
    assert [t.action for t in e.tick(T0 + 31 * S)] == ["activate"]


def test_rate_of_change(config):
    rule = {"id": "roc", "type": "rate", "scope": {"machine": ["cnc-101"]}, "signal": "vibration",
            "max_per_s": 1.0, "priority": "medium", "message": {"ko": "{rate:.1f}", "en": "{rate:.1f}/s"}}
    e = ev(config, rule)
    # 0->1 s: +0.5/s, 1->2 s: +2/s (alarm), 2->4 s: -0.25/s (back)
    got = []
    for t, v in [(0, 1.0), (1, 1.5), (2, 3.5), (4, 3.0)]:
        got += e.feed([vib(t, v)])
    assert [(t.action, (t.ts - T0) // S, t.message_en) for t in got] == [("activate", 2, "2.0/s"), ("clear", 4, "0.2/s")]


def test_oee_below_target_for_the_shift(config):
    rule = {"id": "oee", "type": "oee", "scope": {"line": ["cnc-1"]}, "target": 0.65, "priority": "low",
            "on_delay_s": 60, "message": {"ko": "{oee:.0%} < {target:.0%}", "en": "{line_name} {oee:.0%} < {target:.0%}"}}
    e = ev(config, rule)
    oee = {"v": 0.5}
    assert e.tick(T0, lambda s, ln: oee["v"]) == []
    got = e.tick(T0 + 60 * S, lambda s, ln: oee["v"])
    assert [(t.alarm_id, t.message_en) for t in got] == [("oee:changwon-1/cnc-1/oee", "CNC machining line 1 50% < 65%")]
    # an OEE source that fails holds the alarm as it is, never a crash
    assert e.tick(T0 + 61 * S, lambda s, ln: 1 / 0) == []
    oee["v"] = 0.7
    assert [t.action for t in e.tick(T0 + 62 * S, lambda s, ln: oee["v"])] == ["clear"]


@pytest.mark.parametrize("bad,why", [
    ({**VIB, "colour": "red"}, "Extra inputs"),
    ({**VIB, "h": {"limit": 10.0, "priority": "high"}}, "limits must increase"),
    ({**VIB, "h": {"limit": 7.0, "priority": "urgent"}}, "priority"),
    ({**VIB, "message": {"ko": "{valeu}", "en": "x"}}, "unknown field"),
    ({**VIB, "type": "fuzzy"}, "type"),
])
def test_bad_rules_are_rejected_with_a_reason(bad, why):
    with pytest.raises(ValidationError, match=why):
        AlarmRules.model_validate({"rules": [bad]})


def test_rule_on_a_signal_the_machines_lack_is_rejected(config):
    with pytest.raises(ConfigError, match="alarms.yaml: rule vib: signal 'vibration' does not exist"):
        load_rules(config, {"rules": [{**VIB, "scope": {"class": ["press"]}}]})
    with pytest.raises(ConfigError, match="selects no machine"):
        load_rules(config, {"rules": [{**VIB, "scope": {"machine": ["nope"]}}]})
    # a typo names the file and the key path
    with pytest.raises(ConfigError, match=r"alarms.yaml: rules.0.analog.hh.limt: Extra inputs are not permitted"):
        load_rules(config, {"rules": [{**VIB, "hh": {"limt": 9, "priority": "high"}}]})


def test_shipped_config_has_no_problems(config):
    from alerts.service import check_config

    assert check_config(config) == []



@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(min_value=0, max_value=12, allow_nan=False), min_size=1, max_size=60),
       on=st.integers(0, 3), off=st.integers(0, 3))
def test_any_signal_gives_alternating_transitions_that_respect_the_limits(config, values, on, off):
    e = ev(config, {**VIB, "on_delay_s": on, "off_delay_s": off})
    got = []
    for t, v in enumerate(values):
        got += e.feed([vib(t, v)])
    for level, lim in (("h", 7.0), ("hh", 9.0)):
        mine = [x for x in got if x.rule == f"vib.{level}"]
        # raised, returned, raised, ... never twice the same in a row
        assert [x.action for x in mine] == ["activate", "clear"] * (len(mine) // 2) + ["activate"] * (len(mine) % 2)
        for x in mine:
            k = (x.ts - T0) // S
            window = values[k - on:k + 1] if x.action == "activate" else values[k - off:k + 1]
            if x.action == "activate":  # beyond the limit for the whole on-delay
                assert k >= on and all(w > lim for w in window)
            else:  # back below limit - deadband for the whole off-delay
                assert k >= off and all(w <= lim - 0.5 for w in window)
        # and it is raised when it should be: beyond the limit for the on-delay at the end
        if len(values) > on and all(v > lim for v in values[-(on + 1):]):
            assert mine and mine[-1].action == "activate"


def test_suppressed_while_the_line_is_not_scheduled(config):
    sched = {"cnc-1": True}
    e = Evaluator(config, AlarmRules.model_validate({"rules": [{**VIB, "on_delay_s": 0}]}),
                  scheduled=lambda site, line, now: sched.get(line, True))
    got = run(e, [vib(1, 7.5)])
    sched["cnc-1"] = False  # the shift ends
    got += [((t.ts - T0) / S, t.action, t.rule.split(".")[-1]) for t in e.tick(T0 + 2 * S)]
    got += run(e, [vib(3, 9.5)])  # HH during the unscheduled time: suppressed first
    sched["cnc-1"] = True
    got += [((t.ts - T0) / S, t.action, t.rule.split(".")[-1]) for t in e.tick(T0 + 4 * S)]
    assert got == [(1.0, "activate", "h"), (2.0, "suppress", "h"), (3.0, "suppress", "hh"), (3.0, "activate", "hh"),
                   (4.0, "unsuppress", "hh"), (4.0, "unsuppress", "h")]


def test_while_state_gates_a_rule(config):
    # a forging pyrometer reads ambient between billets: only a running press can have a cold billet
    rule = {"id": "billet", "type": "analog", "scope": {"machine": ["forge-101"]}, "signal": "billet_temp",
            "while_state": ["running"], "l": {"limit": 1050.0, "priority": "high"}, "message": MSG}
    e = ev(config, rule)
    forge = ("changwon-1", "forge-1", "forge-101")

    def billet(t, v):
        return Sample(*forge, "billet_temp", v, T0 + t * S)

    def fstate(t, code):
        return Sample(*forge, "state", code, T0 + t * S)

    got = []
    # idle (code 2) at 25 °C: nothing; running (1) at 1000 °C: raised; idle again: returned
    for smp in [fstate(0, 2), billet(1, 25.0), fstate(2, 1), billet(3, 1000.0), fstate(4, 2), billet(5, 30.0)]:
        got += [((t.ts - T0) // S, t.action) for t in e.feed([smp])]
    assert got == [(3, "activate"), (5, "clear")]


def test_a_restored_comm_alarm_stays_until_the_machine_is_heard_from(config):
    e = ev(config, STALE)
    aid = "comm:changwon-1/cnc-1/cnc-101/comm"
    e.seed(aid, active=True, suppressed=False)  # what the lifecycle had before the restart
    assert e.tick(T0) == [] and e.tick(T0 + 5 * S) == []
    assert [(t.alarm_id, t.action) for t in e.feed([vib(6, 1.0)])] == [(aid, "clear")]


def test_a_message_renders_whatever_the_values_are():
    """A restored alarm unsuppressed before any reading has no value: its message still
    renders (the field shown plainly), it does not raise out of the evaluator."""
    from alerts.rules import render

    assert render("{machine_name} {value:.1f} {unit} (limit {limit})", {"machine_name": "M1", "value": None,
                                                                          "unit": "mm/s", "limit": 9.0}) == \
        "M1 None mm/s (limit 9.0)"
    assert render("{value:.1f} over {limit:.0f}", {"value": "x", "limit": 9.0}) == "x over 9"
    assert render("{value:.1f} {missing}", {"value": 9.25}) == "9.2 ?"
