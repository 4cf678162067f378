"""ISA-18.2 lifecycle: the (state, event) -> state table, and event-sourced restore."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from alerts.lifecycle import Action as A
from alerts.lifecycle import AlarmState, Status as S, apply, from_event, new_alarm, restore, transition

T0 = 1_700_000_000_000_000_000
LATER = T0 + 3_600 * 10**9

BASE = new_alarm("cnc-vibration.hh:changwon-1/cnc-1/cnc-101/vibration", "cnc-vibration.hh",
                 "changwon-1", "cnc-1", "cnc-101", "vibration", "critical")


def st(status: S, active: bool = False, **kw) -> AlarmState:
    return replace(BASE, status=status, active=active, **kw)


SH = dict(shelved=True, shelved_until=LATER, shelved_by="kim", shelve_reason="sensor fault")

# (state before, action) -> (status after, active after) ; None = the action does not apply
TABLE = [
    # the four annunciation states
    (st(S.NORMAL), A.ACTIVATE, (S.UNACK_ACTIVE, True)),
    (st(S.NORMAL), A.CLEAR, None),
    (st(S.NORMAL), A.ACKNOWLEDGE, None),
    (st(S.UNACK_ACTIVE, True), A.ACTIVATE, None),
    (st(S.UNACK_ACTIVE, True), A.ACKNOWLEDGE, (S.ACK_ACTIVE, True)),
    (st(S.UNACK_ACTIVE, True), A.CLEAR, (S.RTN_UNACK, False)),
    (st(S.ACK_ACTIVE, True), A.CLEAR, (S.NORMAL, False)),
    (st(S.ACK_ACTIVE, True), A.ACKNOWLEDGE, None),
    (st(S.ACK_ACTIVE, True), A.ACTIVATE, None),
    (st(S.RTN_UNACK), A.ACKNOWLEDGE, (S.NORMAL, False)),
    (st(S.RTN_UNACK), A.ACTIVATE, (S.UNACK_ACTIVE, True)),
    (st(S.RTN_UNACK), A.CLEAR, None),
    # shelving: from any annunciation state; the condition keeps being tracked
    (st(S.NORMAL), A.SHELVE, (S.SHELVED, False)),
    (st(S.UNACK_ACTIVE, True), A.SHELVE, (S.SHELVED, True)),
    (st(S.ACK_ACTIVE, True), A.SHELVE, (S.SHELVED, True)),
    (st(S.RTN_UNACK), A.SHELVE, (S.SHELVED, False)),
    (st(S.SHELVED, True, **SH), A.ACKNOWLEDGE, None),
    (st(S.SHELVED, False, **SH), A.ACTIVATE, (S.SHELVED, True)),
    (st(S.SHELVED, True, **SH), A.CLEAR, (S.SHELVED, False)),
    (st(S.SHELVED, True, **SH), A.UNSHELVE, (S.UNACK_ACTIVE, True)),
    (st(S.SHELVED, False, **SH), A.UNSHELVE, (S.NORMAL, False)),
    (st(S.SHELVED, True, **SH), A.EXPIRE_SHELVE, (S.UNACK_ACTIVE, True)),
    (st(S.SHELVED, False, **SH), A.EXPIRE_SHELVE, (S.NORMAL, False)),
    (st(S.NORMAL), A.UNSHELVE, None),
    (st(S.UNACK_ACTIVE, True), A.EXPIRE_SHELVE, None),
    # suppression by design (planned stop)
    (st(S.UNACK_ACTIVE, True), A.SUPPRESS, (S.SUPPRESSED, True)),
    (st(S.NORMAL), A.SUPPRESS, (S.SUPPRESSED, False)),
    (st(S.SUPPRESSED, False, suppressed=True), A.ACTIVATE, (S.SUPPRESSED, True)),
    (st(S.SUPPRESSED, True, suppressed=True), A.ACKNOWLEDGE, None),
    (st(S.SUPPRESSED, True, suppressed=True), A.UNSUPPRESS, (S.UNACK_ACTIVE, True)),
    (st(S.SUPPRESSED, False, suppressed=True), A.UNSUPPRESS, (S.NORMAL, False)),
    (st(S.SUPPRESSED, True, suppressed=True), A.SUPPRESS, None),
    (st(S.NORMAL), A.UNSUPPRESS, None),
    # shelved and suppressed at once: the shelf shows; lifting one leaves the other
    (st(S.SHELVED, True, suppressed=True, **SH), A.UNSHELVE, (S.SUPPRESSED, True)),
    (st(S.SHELVED, True, suppressed=True, **SH), A.UNSUPPRESS, (S.SHELVED, True)),
    # out of service
    (st(S.UNACK_ACTIVE, True), A.REMOVE_FROM_SERVICE, (S.OUT_OF_SERVICE, True)),
    (st(S.SHELVED, True, **SH), A.REMOVE_FROM_SERVICE, (S.OUT_OF_SERVICE, True)),
    (st(S.OUT_OF_SERVICE, False, out_of_service=True), A.SHELVE, None),
    (st(S.OUT_OF_SERVICE, False, out_of_service=True), A.ACKNOWLEDGE, None),
    (st(S.OUT_OF_SERVICE, False, out_of_service=True), A.ACTIVATE, (S.OUT_OF_SERVICE, True)),
    (st(S.OUT_OF_SERVICE, True, out_of_service=True), A.RETURN_TO_SERVICE, (S.UNACK_ACTIVE, True)),
    (st(S.OUT_OF_SERVICE, False, out_of_service=True), A.RETURN_TO_SERVICE, (S.NORMAL, False)),
    (st(S.OUT_OF_SERVICE, True, out_of_service=True), A.REMOVE_FROM_SERVICE, None),
    (st(S.NORMAL), A.RETURN_TO_SERVICE, None),
]


@pytest.mark.parametrize("before,action,expected", TABLE,
                         ids=[f"{b.status.value}{'+' if b.active else ''}-{a.name.lower()}" for b, a, _ in TABLE])
def test_lifecycle_table(before, action, expected):
    after = transition(before, action, T0 + 1, user="kim", comment="why", until=LATER)
    if expected is None:
        assert after is None
    else:
        assert after is not None
        assert (after.status, after.active) == expected


def test_shelve_needs_a_future_expiry():
    assert transition(st(S.UNACK_ACTIVE, True), A.SHELVE, T0, until=T0) is None
    assert transition(st(S.UNACK_ACTIVE, True), A.SHELVE, T0, until=None) is None


def test_event_records_who_when_and_why():
    s1, e1 = apply(BASE, A.ACTIVATE, T0, value=9.4, message_ko="진동 HH", message_en="Vibration HH")
    s2, e2 = apply(s1, A.ACKNOWLEDGE, T0 + 5, user="kim", comment="checking the tool")
    assert e1.kind == "alarm" and e1.key == BASE.id and e1.ts == T0
    assert (e1.site, e1.line, e1.machine) == ("changwon-1", "cnc-1", "cnc-101")
    assert e1.data["event"] == "raised" and e1.data["state"] == "unack_active"
    assert e1.data["value"] == 9.4 and e1.data["priority"] == "critical"
    assert e1.data["message_ko"] == "진동 HH"
    assert e2.data["event"] == "acknowledged" and e2.data["user"] == "kim"
    assert e2.data["comment"] == "checking the tool" and e2.data["state"] == "ack_active"
    assert s2.acked_by == "kim" and s2.acked_ts == T0 + 5 and s2.raised_ts == T0
    assert from_event(e2) == s2


def _random_history(seed: int, n_alarms: int = 5, n_steps: int = 300):
    rnd = random.Random(seed)
    live = {f"r{i}:s/l/m{i}/x": new_alarm(f"r{i}:s/l/m{i}/x", f"r{i}", "s", "l", f"m{i}", "x") for i in range(n_alarms)}
    events = []
    ts = T0
    for _ in range(n_steps):
        ts += rnd.randint(1, 10**9)
        aid = rnd.choice(sorted(live))
        action = rnd.choice(list(A))
        out = apply(live[aid], action, ts, user=rnd.choice(["kim", "lee"]), comment=rnd.choice(["", "c"]),
                    until=ts + rnd.randint(1, 10**10), value=rnd.random())
        if out is not None:
            live[aid], ev = out
            events.append(ev)
    return live, events


@pytest.mark.parametrize("seed", range(5))
def test_replaying_events_rebuilds_exact_state(seed):
    live, events = _random_history(seed)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    restored = restore(shuffled)
    assert restored == {k: v for k, v in live.items() if not v.is_normal}
    # the actions alone, without the recorded snapshots, give the same states
    assert restore(shuffled, trust_recorded=False) == restored
    # the newest event of each alarm alone is enough as well (the store's latest_events)
    newest = {}
    for e in events:
        newest[e.key] = e
    assert {k: from_event(e) for k, e in newest.items() if not from_event(e).is_normal} == restored
