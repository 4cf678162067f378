"""The alarm service: rules -> lifecycle -> store and notifier, and the operator's actions.

Wiring: the pipeline calls `on_samples` (a pipeline listener: it returns the alarm events and
the pipeline writes them); a timer calls `tick` every second or so (delays, stale data, state
durations, shelve expiry, escalation); the UI calls `acknowledge`, `shelve`, `comment`, ...
which write their events at once. On start the service restores every alarm that is not
normal from the newest stored event of each alarm (each event holds the full state); while
the store is down it evaluates from an empty state and tick() retries the restore, which then
merges with what happened meanwhile (see restore()).

Operator input is checked here (user names, comments, durations): bad input is a counted,
rate-logged rejection and a ValueError with the reason for the UI, never a crash.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from alerts import health
from alerts.lifecycle import KIND, Action, AlarmState, apply, from_event, new_alarm
from alerts.notify import Notifier, load_notify
from alerts.rules import AlarmRules, Evaluator, Transition, load_rules
from gwanje.config import Config
from gwanje.model import NS_PER_S, Event, Sample
from gwanje.rejects import Rejects
from storage.base import Store

log = logging.getLogger("gwanje.alarms")

MAX_USER = 64
MAX_COMMENT = 500
MIN_SHELVE_S = 60
MAX_SHELVE_S = 24 * 3600  # a shelf nobody renews must come back within a day
MAX_UNWRITTEN = 10_000
NOTIFY_MEMORY_NS = 2 * 86_400 * NS_PER_S  # escalations older than this are not remembered

# the audit log's name of each operator action (gwanje.audit.AUDIT_ACTIONS)
_AUDIT_ACTION = {Action.ACKNOWLEDGE: "alarm.acknowledge", Action.SHELVE: "alarm.shelve",
                 Action.UNSHELVE: "alarm.unshelve", Action.COMMENT: "alarm.comment",
                 Action.REMOVE_FROM_SERVICE: "alarm.out_of_service",
                 Action.RETURN_TO_SERVICE: "alarm.return_to_service"}

_TR_ACTION = {"activate": Action.ACTIVATE, "clear": Action.CLEAR, "suppress": Action.SUPPRESS,
              "unsuppress": Action.UNSUPPRESS}


def _clean(text: Any, what: str, max_len: int, required: bool) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError(f"{what}_wrong_type")
    text = text.strip()
    if required and not text:
        raise ValueError(f"{what}_missing")
    if len(text) > max_len:
        raise ValueError(f"{what}_too_long")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text) or (what == "user" and "\n" in text):
        raise ValueError(f"{what}_has_control_chars")
    return text


class AlarmService:
    def __init__(self, config: Config, store: Store, notifier: Optional[Notifier] = None,
                 clock: Callable[[], int] = time.time_ns, rules: Optional[AlarmRules] = None,
                 oee: Optional[Callable[[str, str], Optional[float]]] = None,
                 scheduled: Optional[Callable[[str, str, int], bool]] = None) -> None:
        self.config = config
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.oee = oee
        self.evaluator = Evaluator(config, rules if rules is not None else load_rules(config), scheduled)
        self.rejects = Rejects("alarms")
        self._lock = threading.RLock()
        self._states: dict[str, AlarmState] = {}
        self._last_ts: dict[str, int] = {}
        self._unwritten: list[Event] = []
        # how the service's own events (tick, operator actions) reach the store: the store by
        # default; in `collect` the pipeline's write_events, which dead-letters events the store
        # refuses for good, so one such event never blocks the retry of the others
        self.write_events: Callable[[Sequence[Event]], None] = store.write_events
        self.restored = False
        self.restore_failures = 0
        self._try_restore()

    def _try_restore(self) -> None:
        # the store may be down at start: run on, and retry from tick() until it answers
        try:
            self.restore()
            self.restored = True
        except Exception as e:
            # tick() retries every second: say it once per outage, not every second
            if not self.restore_failures:
                log.error("cannot restore alarm state from the store (%s); will retry", type(e).__name__)
            self.restore_failures += 1
            return
        if self.restore_failures:
            log.warning("alarm state restored from the store after %d failed attempts", self.restore_failures)

    @classmethod
    def from_config(cls, config: Config, store: Store, clock: Callable[[], int] = time.time_ns,
                    oee: Optional[Callable[[str, str], Optional[float]]] = None,
                    env: Optional[dict[str, str]] = None,
                    scheduled: Optional[Callable[[str, str, int], bool]] = None) -> "AlarmService":
        """The service as the runtime runs it: rules from alarms.yaml, the notifier from
        notify.yaml (when present), delivery attempts recorded in the store; with shifts.yaml,
        alarms are suppressed while no shift is scheduled (`shift_schedule`)."""
        if scheduled is None and "shifts" in config.raw_extra:
            from gwanje.shifts import load_shifts  # the engine's calendar: one idea of "scheduled"

            scheduled = shift_schedule(load_shifts(config))
        notifier = None
        raw = config.raw_extra.get("notify")
        if raw:
            def sink(e: Event) -> None:
                store.write_events([e])

            notifier = Notifier(load_notify(raw, str(config.directory / "notify.yaml")), config.plant.timezone,
                                sink=sink, env=env, clock=clock)
        return cls(config, store, notifier=notifier, clock=clock, oee=oee, scheduled=scheduled)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()

    # ------------------------------------------------------------------ restart
    def restore(self) -> int:
        """Rebuild the non-normal alarms from the store (and what the notifier already sent);
        returns how many alarms are not normal.

        Merge rule (the restore may run late, when the store was down at start and this
        service has already raised, acknowledged or cleared alarms from live data whose events
        may not be stored yet): per alarm, the newest event wins by time; on a tie the state
        in memory wins (it is that same event). So the result is what a restore would give
        after every pending event had been written — an alarm raised meanwhile is neither lost
        (the restore does not overwrite it) nor raised twice (the evaluator keeps its live
        condition for it), and an alarm only the store knows comes back."""
        events = self.store.latest_events(KIND)
        with self._lock:
            for e in events:
                if self._last_ts.get(e.key, -1) >= e.ts:
                    continue  # this process has seen the alarm since: memory is newer
                self._last_ts[e.key] = e.ts
                try:
                    s = from_event(e)
                except (TypeError, ValueError, KeyError):
                    self.rejects.reject("bad_stored_alarm_event", e.key)
                    continue
                if (s.site, s.line) in self.config.foreign_lines:
                    continue  # another collect instance's alarm (gwanje.partition): its state is there
                if self.evaluator.info(s.id) is None:
                    # its rule was removed from alarms.yaml: nothing would ever clear it
                    if not s.is_normal:
                        self.rejects.reject("stored_alarm_without_rule", s.id)
                    continue
                if s.is_normal:
                    self._states.pop(s.id, None)
                else:
                    self._states[s.id] = s
                self.evaluator.seed(s.id, s.active, s.suppressed)
            n = len(self._states)
        if self.notifier is not None:
            now = self.clock()
            try:
                self.notifier.seed(self.store.events("notification", now - NOTIFY_MEMORY_NS, now + NOTIFY_MEMORY_NS,
                                                       limit=100_000))
            except Exception:  # worst case an escalation is repeated: not a reason not to start
                log.exception("could not read past notifications")
        return n

    def run_ticker(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Call tick() every interval until stop is set (run it in a thread of its own)."""
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception:  # a bad tick must not end alarm processing for good
                log.exception("alarm tick failed")

    # ------------------------------------------------------------------ core
    def _apply(self, s: AlarmState, action: Action, ts: int, **kw: Any) -> Optional[Event]:
        # the store keys an event by (alarm, ts): two events of one alarm never share a ts
        ts = max(ts, self._last_ts.get(s.id, 0) + 1)
        out = apply(s, action, ts, **kw)
        if out is None:
            return None
        new, ev = out
        self._last_ts[s.id] = ts
        if new.is_normal:
            self._states.pop(s.id, None)
        else:
            self._states[s.id] = new
        if self.notifier is not None:
            try:
                if new.status.value == "unack_active" and s.status.value != "unack_active":
                    self.notifier.notify(new, 0, ts)
                elif s.unacknowledged and not new.unacknowledged:
                    self.notifier.acknowledged(s)
            except Exception:  # notifications are a side channel: never lose the alarm for them
                log.exception("notifier failed for %s", s.id)
        return ev

    def _from_transition(self, t: Transition) -> Optional[Event]:
        s = self._states.get(t.alarm_id) or new_alarm(t.alarm_id, t.rule, t.site, t.line, t.machine, t.signal,
                                                       t.priority)
        kw: dict[str, Any] = {}
        if t.action == "activate":
            kw = dict(value=t.value, priority=t.priority, message_ko=t.message_ko, message_en=t.message_en)
        elif not s.message_en:
            kw = dict(message_ko=t.message_ko, message_en=t.message_en)
        return self._apply(s, _TR_ACTION[t.action], t.ts, **kw)

    def _run(self, transitions: Sequence[Transition]) -> list[Event]:
        out = []
        for t in transitions:
            ev = self._from_transition(t)
            if ev is not None:
                out.append(ev)
        return out

    def _write(self, events: list[Event]) -> None:
        batch = self._unwritten + events
        if not batch:
            return
        try:
            self.write_events(batch)
            self._unwritten = []
        except Exception as e:  # keep them for the next write; the state in memory is right
            self._unwritten = batch[-MAX_UNWRITTEN:]
            log.warning("could not store %d alarm events (%s); will retry", len(batch), type(e).__name__)

    # ------------------------------------------------------------------ inputs
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        """Pipeline listener: evaluate, update the lifecycle, return the events to store."""
        with self._lock:
            return self._run(self.evaluator.feed(samples))

    def apply_calls(self, calls: Sequence[Any]) -> list[Event]:
        """Alarm conditions from another detector (gwanje.quality.AlarmCall: SPC rules, anomaly
        and reject-risk alarms) through the same lifecycle; returns the events to store."""
        if not calls:
            return []
        with self._lock:
            return self._run([Transition(c.alarm_id, c.action, c.ts, c.rule, c.site, c.line, c.machine, c.signal,
                                         c.priority, c.value, c.message_ko, c.message_en) for c in calls])

    def tick(self, now_ns: Optional[int] = None) -> list[Event]:
        """Time passes: delays, stale data, durations, shelve expiry, escalation. Writes its events."""
        now = self.clock() if now_ns is None else now_ns
        if not self.restored:
            with self._lock:
                self._write([])  # what happened meanwhile goes first, so the restore includes it
                flushed = not self._unwritten
            if flushed:
                self._try_restore()
        oee = self._oee_now()
        with self._lock:
            events = self._run(self.evaluator.tick(now, oee))
            for s in list(self._states.values()):
                if s.shelved and s.shelved_until is not None and s.shelved_until <= now:
                    ev = self._apply(s, Action.EXPIRE_SHELVE, now, user="system")
                    if ev is not None:
                        events.append(ev)
            self._write(events)
            unacked = [s for s in self._states.values() if s.unacknowledged]
        if self.notifier is not None:
            self.notifier.escalate(unacked, now)
        return events

    def _oee_now(self) -> Optional[Callable[[str, str], Optional[float]]]:
        """The OEE figures read before taking the lock: the engine's snapshot takes tens of ms,
        which must not hold up on_samples. A line whose figure failed raises again inside the
        evaluator, which then holds that line's alarm as it is."""
        if self.oee is None:
            return None
        got: dict[tuple[str, str], Any] = {}
        for site, line in self.evaluator.oee_lines():
            try:
                got[(site, line)] = self.oee(site, line)
            except Exception as e:
                got[(site, line)] = e

        def oee(site: str, line: str) -> Optional[float]:
            v = got.get((site, line))
            if isinstance(v, Exception):
                raise v
            return v

        return oee

    # ------------------------------------------------------------------ operator actions
    # Every operator action — from this process's UI or through the control bus, done or
    # refused — writes an audit entry (gwanje.audit, kind "audit") with the alarm's state
    # before and after, the user, role, request id and client, by the same path as the alarm
    # events (write_events, retried while the store is down).
    def _operator(self, alarm_id: Any, action: Action, user: Any, comment: Any = "", *,
                  comment_required: bool = False, until: Optional[int] = None, role: str = "",
                  request_id: str = "", client: str = "") -> Optional[Event]:
        audit = _AUDIT_ACTION[action]
        try:
            user = _clean(user, "user", MAX_USER, True)
            comment = _clean(comment, "comment", MAX_COMMENT, comment_required)
            if not isinstance(alarm_id, str):
                raise ValueError("alarm_id_wrong_type")
        except ValueError as e:
            self.rejects.reject(str(e), repr(alarm_id)[:100])
            self.audit(audit, user if isinstance(user, str) else "", role, alarm_id if isinstance(alarm_id, str) else "",
                       ok=False, detail=str(e), request_id=request_id, client=client)
            raise
        now = self.clock()
        with self._lock:
            s = self._states.get(alarm_id)
            if s is None:
                info = self.evaluator.info(alarm_id)
                if info is None:
                    self.rejects.reject("unknown_alarm", alarm_id[:100])
                    self.audit(audit, user, role, alarm_id, ok=False, detail="unknown_alarm", request_id=request_id,
                               client=client)
                    raise ValueError("unknown_alarm")
                s = new_alarm(alarm_id, info["rule"], info["site"], info["line"], info["machine"], info["signal"],
                              info["priority"])
            before = s.status.value
            ev = self._apply(s, action, now, user=user, comment=comment, until=until)
            after = ev.data.get("state", before) if ev is not None else before
            from gwanje.audit import audit_event

            entry = audit_event(audit, user, role, alarm_id, before=before, after=after, ok=True,
                                detail=comment if ev is not None else (comment + " (nothing changed)").strip(),
                                client=client, request_id=request_id, site=s.site, line=s.line, machine=s.machine,
                                ts_ns=now)
            self._write(([ev] if ev is not None else []) + [entry])
            return ev

    def audit(self, action: str, user: str, role: str = "", target: str = "", *, ok: bool, detail: str = "",
              request_id: str = "", client: str = "", before: Any = None, after: Any = None) -> None:
        """An audit entry for an action that did not reach the lifecycle (refused here or by
        the control bus: collect's authorization), written like the others."""
        from gwanje.audit import AUDIT_ACTIONS, audit_event

        info = self.evaluator.info(target) if target else None
        st = self._states.get(target) if target else None
        where = {"site": st.site, "line": st.line, "machine": st.machine} if st is not None else (
            {"site": info["site"], "line": info["line"], "machine": info["machine"]} if info else {})
        if before is None and st is not None:
            before = after = st.status.value
        entry = audit_event(action if action in AUDIT_ACTIONS else "command.refused", user, role, target,
                            before=before, after=after, ok=ok, detail=detail, client=client, request_id=request_id,
                            ts_ns=self.clock(), **where)
        with self._lock:
            self._write([entry])

    def acknowledge(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Optional[Event]:
        """None when there is nothing to acknowledge (already acknowledged, normal, masked).
        who: role=, request_id=, client= for the audit entry (every action takes them)."""
        return self._operator(alarm_id, Action.ACKNOWLEDGE, user, comment, **who)

    def acknowledge_line(self, site: str, line: str, user: str, comment: str = "", **who: Any) -> list[Event]:
        with self._lock:
            ids = [s.id for s in self._states.values() if s.site == site and s.line == line and s.unacknowledged]
        return [ev for ev in (self.acknowledge(i, user, comment, **who) for i in ids) if ev is not None]

    def shelve(self, alarm_id: str, user: str, reason: str, duration_s: float, **who: Any) -> Optional[Event]:
        if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or \
                not MIN_SHELVE_S <= duration_s <= MAX_SHELVE_S:
            self.rejects.reject("bad_shelve_duration", repr(duration_s)[:50])
            self.audit("alarm.shelve", user if isinstance(user, str) else "", who.get("role", ""),
                       alarm_id if isinstance(alarm_id, str) else "", ok=False, detail="bad_shelve_duration",
                       request_id=who.get("request_id", ""), client=who.get("client", ""))
            raise ValueError("bad_shelve_duration")
        until = self.clock() + int(duration_s * NS_PER_S)
        return self._operator(alarm_id, Action.SHELVE, user, reason, comment_required=True, until=until, **who)

    def unshelve(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Optional[Event]:
        return self._operator(alarm_id, Action.UNSHELVE, user, comment, **who)

    def comment(self, alarm_id: str, user: str, text: str, **who: Any) -> Optional[Event]:
        return self._operator(alarm_id, Action.COMMENT, user, text, comment_required=True, **who)

    def remove_from_service(self, alarm_id: str, user: str, reason: str, **who: Any) -> Optional[Event]:
        return self._operator(alarm_id, Action.REMOVE_FROM_SERVICE, user, reason, comment_required=True, **who)

    def return_to_service(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Optional[Event]:
        return self._operator(alarm_id, Action.RETURN_TO_SERVICE, user, comment, **who)

    # ------------------------------------------------------------------ queries
    def active(self) -> list[AlarmState]:
        """Every alarm that is not normal: most severe first, unacknowledged before acknowledged,
        newest first."""
        with self._lock:
            states = list(self._states.values())
        return sorted(states, key=lambda s: (s.rank, not s.unacknowledged, -(s.raised_ts or s.changed_ts)))

    def get(self, alarm_id: str) -> Optional[AlarmState]:
        with self._lock:
            return self._states.get(alarm_id)

    def banner(self) -> tuple[Optional[AlarmState], int]:
        """The most severe unacknowledged alarm (newest among equals) and how many are unacknowledged."""
        un = [s for s in self.active() if s.unacknowledged]
        return (un[0] if un else None), len(un)

    def history(self, start_ns: int, end_ns: int, text: str = "", site: Optional[str] = None,
                line: Optional[str] = None, limit: int = 2000) -> list[Event]:
        """Stored alarm events in the window, newest first, matching `text` in id, message,
        user or comment (case-insensitive)."""
        return health.search(self.store.events(KIND, start_ns, end_ns, site=site, line=line, limit=50_000),
                             text)[::-1][:limit]

    def health(self, now_ns: Optional[int] = None) -> dict[str, Any]:
        """EEMUA 191 figures of the plant's day so far (and floods in the last 10 minutes)."""
        now = self.clock() if now_ns is None else now_ns
        start = min(health.day_start_ns(now, self.config.plant.timezone), now - health.TEN_MIN)
        return health.day_summary(self.store.events(KIND, start, now + 1, limit=200_000), now,
                                  self.config.plant.timezone)

    def flood(self, now_ns: Optional[int] = None) -> dict[tuple[str, str], int]:
        now = self.clock() if now_ns is None else now_ns
        return health.flood_now(self.store.events(KIND, now - health.TEN_MIN, now + 1, limit=50_000), now)

    @property
    def unwritten(self) -> int:
        """Alarm events waiting for the store (it was down); written with the next write
        (audit entries of operator actions wait with them, not counted here)."""
        return sum(1 for e in self._unwritten if e.kind == KIND)

    def notifications(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.notifier.attempts(limit) if self.notifier is not None else []


def engine_oee(engine: Any, clock: Callable[[], int] = time.time_ns,
               every_s: float = 10.0) -> Callable[[str, str], Optional[float]]:
    """oee(site, line) for the OEE rules, from the engine's shift-so-far snapshot (gwanje.engine
    Engine.snapshot), recomputed at most every `every_s`. Outside a shift: None (no alarm).
    The engine is fed by the pipeline thread: call this from a thread that may read it."""
    cache: dict[str, Any] = {"t": None, "lines": {}}

    def oee(site: str, line: str) -> Optional[float]:
        now = clock()
        if cache["t"] is None or now - cache["t"] >= every_s * NS_PER_S:
            snap = engine.snapshot(now)
            cache["lines"] = {} if snap.shift is None else {
                k: (v.result.oee if v.result is not None else None) for k, v in snap.lines.items()}
            cache["t"] = now
        return cache["lines"].get((site, line))

    return oee


def shift_schedule(calendar: Any) -> Callable[[str, str, int], bool]:
    """scheduled(site, line, now) from a gwanje.shifts.ShiftCalendar: a line is scheduled while
    a shift is on (the calendar is plant-wide). Outside every shift, alarms are suppressed."""
    def scheduled(site: str, line: str, now_ns: int) -> bool:
        return calendar.shift_at(now_ns) is not None

    return scheduled


def check_config(config: Config) -> list[str]:
    """Problems in alarms.yaml and notify.yaml (for `app.py check-config`); [] when both are valid."""
    from gwanje.config import ConfigError

    problems = []
    try:
        load_rules(config)
    except ConfigError as e:
        problems.append(str(e))
    try:
        load_notify(config.raw_extra.get("notify"), str(config.directory / "notify.yaml"))
    except ConfigError as e:
        problems.append(str(e))
    return problems
