"""The ISA-18.2 alarm lifecycle as a pure state machine, and its event-sourced restore.

An alarm is one rule applied to one place (machine signal, machine, or line). Its state is
changed only by `apply(state, action, ...)`, which returns the new state and the lifecycle
Event to store (gwanje.model.Event kind="alarm", key=alarm id). Every event carries the full
resulting state, so both replaying all events (`restore`) and reading the newest event of each
alarm (`from_event`) rebuild the exact state after a restart.

The process condition (`active`) is tracked separately from the annunciation status, because
ISA-18.2 keeps evaluating an alarm while it is shelved, suppressed by design or out of service:
when the mask is lifted the alarm comes back as unacknowledged-active if its condition still
holds, or as normal if it does not. No I/O here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Iterable, Optional

from gwanje.model import Event

KIND = "alarm"

PRIORITIES = ("critical", "high", "medium", "low")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}  # lower is more severe


class Status(str, Enum):
    NORMAL = "normal"
    UNACK_ACTIVE = "unack_active"
    ACK_ACTIVE = "ack_active"
    RTN_UNACK = "rtn_unack"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"


class Action(str, Enum):
    """What can happen to an alarm; the value is the event name stored in data["event"]."""

    ACTIVATE = "raised"
    CLEAR = "returned"
    ACKNOWLEDGE = "acknowledged"
    SHELVE = "shelved"
    UNSHELVE = "unshelved"
    EXPIRE_SHELVE = "shelve_expired"
    SUPPRESS = "suppressed"
    UNSUPPRESS = "unsuppressed"
    REMOVE_FROM_SERVICE = "removed_from_service"
    RETURN_TO_SERVICE = "returned_to_service"
    COMMENT = "commented"


# annunciation states an operator works with (the masks shelved/suppressed/oos sit above them)
_ANNUNCIATED = (Status.NORMAL, Status.UNACK_ACTIVE, Status.ACK_ACTIVE, Status.RTN_UNACK)


@dataclass(frozen=True)
class AlarmState:
    id: str
    rule: str
    site: str
    line: str = ""
    machine: str = ""
    signal: str = ""
    priority: str = "medium"
    status: Status = Status.NORMAL
    active: bool = False  # the process condition, evaluated even while masked
    value: Optional[float] = None
    message_ko: str = ""
    message_en: str = ""
    raised_ts: Optional[int] = None  # start of the current episode (first annunciation)
    changed_ts: int = 0
    acked_by: str = ""
    acked_ts: Optional[int] = None
    shelved: bool = False
    shelved_by: str = ""
    shelved_until: Optional[int] = None
    shelve_reason: str = ""
    suppressed: bool = False
    out_of_service: bool = False
    last_comment: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unacknowledged(self) -> bool:
        return self.status in (Status.UNACK_ACTIVE, Status.RTN_UNACK)

    @property
    def is_normal(self) -> bool:
        return self.status == Status.NORMAL

    @property
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.priority, len(PRIORITIES))


def _masked_status(s: AlarmState) -> Optional[Status]:
    """The mask that hides the alarm, most binding first, or None."""
    if s.out_of_service:
        return Status.OUT_OF_SERVICE
    if s.shelved:
        return Status.SHELVED
    if s.suppressed:
        return Status.SUPPRESSED
    return None


def _unmasked(s: AlarmState, ts: int) -> AlarmState:
    """After lifting a mask: another mask, or re-annunciate if the condition still holds."""
    mask = _masked_status(s)
    if mask is not None:
        return replace(s, status=mask)
    if s.active:
        return replace(s, status=Status.UNACK_ACTIVE, raised_ts=ts, acked_by="", acked_ts=None)
    return replace(s, status=Status.NORMAL, raised_ts=None, acked_by="", acked_ts=None)


def transition(s: AlarmState, action: Action, ts: int, *, user: str = "", comment: str = "",
               until: Optional[int] = None) -> Optional[AlarmState]:
    """The state after `action`, or None when the action does not apply in this state
    (acknowledging a normal alarm, unshelving one that is not shelved, a repeated activate)."""
    st = s.status
    if action is Action.ACTIVATE:
        if s.active:
            return None
        if st in _ANNUNCIATED:
            if st == Status.NORMAL:
                return replace(s, status=Status.UNACK_ACTIVE, active=True, raised_ts=ts, acked_by="", acked_ts=None)
            # rtn_unack: the condition came back before anyone acknowledged
            return replace(s, status=Status.UNACK_ACTIVE, active=True)
        return replace(s, active=True)
    if action is Action.CLEAR:
        if not s.active:
            return None
        if st == Status.UNACK_ACTIVE:
            return replace(s, status=Status.RTN_UNACK, active=False)
        if st == Status.ACK_ACTIVE:
            return replace(s, status=Status.NORMAL, active=False, raised_ts=None)
        return replace(s, active=False)
    if action is Action.ACKNOWLEDGE:
        if st == Status.UNACK_ACTIVE:
            return replace(s, status=Status.ACK_ACTIVE, acked_by=user, acked_ts=ts)
        if st == Status.RTN_UNACK:
            return replace(s, status=Status.NORMAL, acked_by=user, acked_ts=ts, raised_ts=None)
        return None
    if action is Action.SHELVE:
        if s.out_of_service or until is None or until <= ts:
            return None
        # shelving again extends or shortens the shelf (new reason, new expiry)
        return replace(s, status=Status.SHELVED, shelved=True, shelved_by=user, shelved_until=until,
                       shelve_reason=comment)
    if action in (Action.UNSHELVE, Action.EXPIRE_SHELVE):
        if not s.shelved:
            return None
        return _unmasked(replace(s, shelved=False, shelved_by="", shelved_until=None, shelve_reason=""), ts)
    if action is Action.SUPPRESS:
        if s.suppressed:
            return None
        s2 = replace(s, suppressed=True)
        return replace(s2, status=_masked_status(s2))
    if action is Action.UNSUPPRESS:
        if not s.suppressed:
            return None
        return _unmasked(replace(s, suppressed=False), ts)
    if action is Action.REMOVE_FROM_SERVICE:
        if s.out_of_service:
            return None
        return replace(s, status=Status.OUT_OF_SERVICE, out_of_service=True)
    if action is Action.RETURN_TO_SERVICE:
        if not s.out_of_service:
            return None
        return _unmasked(replace(s, out_of_service=False), ts)
    if action is Action.COMMENT:
        return replace(s, last_comment=comment) if comment else None
    raise ValueError(f"unknown action {action!r}")


def new_alarm(alarm_id: str, rule: str, site: str, line: str = "", machine: str = "", signal: str = "",
              priority: str = "medium") -> AlarmState:
    return AlarmState(id=alarm_id, rule=rule, site=site, line=line, machine=machine, signal=signal,
                      priority=priority)


def apply(s: AlarmState, action: Action, ts: int, *, user: str = "", comment: str = "",
          until: Optional[int] = None, value: Optional[float] = None, priority: Optional[str] = None,
          message_ko: Optional[str] = None, message_en: Optional[str] = None,
          extra: Optional[dict[str, Any]] = None) -> Optional[tuple[AlarmState, Event]]:
    """Apply one action: (new state, the Event to store), or None when nothing changes.

    value/priority/messages describe the process condition at activation; they are kept so
    that the alarm list and notifications show what was seen when the alarm was raised."""
    new = transition(s, action, ts, user=user, comment=comment, until=until)
    if new is None:
        return None
    upd: dict[str, Any] = {"changed_ts": ts}
    if value is not None:
        upd["value"] = value
    if priority is not None:
        upd["priority"] = priority
    if message_ko is not None:
        upd["message_ko"] = message_ko
    if message_en is not None:
        upd["message_en"] = message_en
    if extra:
        upd["extra"] = {**new.extra, **extra}
    if comment and action is not Action.COMMENT:
        upd["last_comment"] = comment
    new = replace(new, **upd)
    return new, to_event(new, action, ts, user=user, comment=comment)


def to_event(s: AlarmState, action: Action, ts: int, user: str = "", comment: str = "") -> Event:
    data = asdict(s)
    data["status"] = s.status.value
    data.update(event=action.value, state=s.status.value, user=user, comment=comment)
    return Event(kind=KIND, ts=ts, site=s.site, line=s.line, machine=s.machine, key=s.id, data=data)


_FIELDS = set(AlarmState.__dataclass_fields__)


def from_event(e: Event) -> AlarmState:
    """The state recorded in an event (every event carries the full resulting state)."""
    d = {k: v for k, v in e.data.items() if k in _FIELDS}
    d["status"] = Status(d.get("status", e.data.get("state", "normal")))
    d.setdefault("id", e.key)
    d.setdefault("site", e.site)
    d.setdefault("rule", e.key.split(":", 1)[0])
    return AlarmState(**d)


_ACTION_BY_NAME = {a.value: a for a in Action}


def restore(events: Iterable[Event], trust_recorded: bool = True) -> dict[str, AlarmState]:
    """Replay stored alarm events (any order; sorted here by time) into the current state of
    every alarm that is not normal. Each event is re-applied through `apply`, and the result is
    checked against the state the event recorded: a disagreement (a lost event, a store that
    kept only part of the history) falls back to the recorded state, which is authoritative.
    trust_recorded=False replays the actions alone (the first event of an alarm excepted)."""
    states: dict[str, AlarmState] = {}
    for e in sorted((e for e in events if e.kind == KIND), key=lambda e: (e.ts, e.key)):
        recorded = from_event(e)
        action = _ACTION_BY_NAME.get(e.data.get("event", ""))
        cur = states.get(e.key)
        if cur is None or action is None:
            states[e.key] = recorded
            continue
        out = apply(cur, action, e.ts, user=e.data.get("user", ""), comment=e.data.get("comment", ""),
                    until=e.data.get("shelved_until"), value=recorded.value, priority=recorded.priority,
                    message_ko=recorded.message_ko, message_en=recorded.message_en, extra=recorded.extra)
        if not trust_recorded:
            states[e.key] = out[0] if out is not None else cur
        else:
            states[e.key] = out[0] if out is not None and out[0] == recorded else recorded
    return {k: v for k, v in states.items() if not v.is_normal}
