"""Alarm notifications through Apprise (email, Slack, Teams, Telegram, ntfy, webhooks, ...).

config/notify.yaml routes alarms by site, line and priority to targets: channels, people, or
whoever is on call in a rotation (and the next one up, for escalation). Each route may escalate
when the alarm is still unacknowledged N minutes after it was raised.

Delivery never blocks alarm processing: `notify()` only queues. Each channel has its own
worker thread and bounded queue, so a channel that is down or slow (retries with exponential
backoff) delays nobody but itself. An acknowledgement cancels what is still queued for that
alarm. De-duplication (one message per alarm, channel and level per episode, and no repeat of
the same alarm on a channel within dedup_window_s) and a per-channel rate limit keep a flood
from becoming a message storm. Every attempt and every decision not to send is recorded:
in memory for the UI (`attempts()`), and as Event kind="notification" through `sink`.

Channel URLs carry credentials, so they come from environment variables named in the YAML
(`url_env`) and are never logged or recorded; only the channel id is.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Literal, Optional
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.lifecycle import AlarmState
from alerts.oncall import Rotation, who
from gwanje.model import NS_PER_S, Event

log = logging.getLogger("gwanje.notify")

Priority = Literal["critical", "high", "medium", "low"]
PRIORITY_KO = {"critical": "긴급", "high": "높음", "medium": "보통", "low": "낮음"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelDef(_Strict):
    # an Apprise URL; secrets belong in url_env (the name of an environment variable)
    url: Optional[str] = None
    url_env: Optional[str] = None

    @model_validator(mode="after")
    def _one(self) -> "ChannelDef":
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url (no secrets in it) or url_env")
        return self


class Person(_Strict):
    name: str
    channels: list[str] = Field(min_length=1)


class Escalation(_Strict):
    after_min: float = Field(gt=0)
    notify: list[str] = Field(min_length=1)


class Route(_Strict):
    site: list[str] = []
    line: list[str] = []
    priority: list[Priority] = []
    notify: list[str] = Field(min_length=1)
    escalate: list[Escalation] = []

    def matches(self, a: AlarmState) -> bool:
        return ((not self.site or a.site in self.site) and (not self.line or a.line in self.line)
                and (not self.priority or a.priority in self.priority))


class NotifyConfig(_Strict):
    public_url: str = "http://127.0.0.1:8050"
    channels: dict[str, ChannelDef] = {}
    people: dict[str, Person] = {}
    rotations: dict[str, Rotation] = {}
    routes: list[Route] = []
    dedup_window_s: float = Field(300.0, ge=0)
    rate_limit_per_min: int = Field(30, gt=0)  # per channel
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(2.0, ge=0)  # doubled after each failed attempt
    queue_per_channel: int = Field(200, gt=0)

    @model_validator(mode="after")
    def _refs(self) -> "NotifyConfig":
        for pid, p in self.people.items():
            for c in p.channels:
                if c not in self.channels:
                    raise ValueError(f"people.{pid}: unknown channel {c!r}")
        for rid, r in self.rotations.items():
            for m in r.members + [o.member for o in r.overrides]:
                if m not in self.people:
                    raise ValueError(f"rotations.{rid}: unknown person {m!r}")
        for i, r in enumerate(self.routes):
            for t in r.notify + [t for e in r.escalate for t in e.notify]:
                self._check_target(t, f"routes[{i}]")
        return self

    def _check_target(self, t: str, where: str) -> None:
        kind, _, name = t.partition(":")
        if kind == "channel" and name in self.channels:
            return
        if kind == "person" and name in self.people:
            return
        if kind == "oncall" and name.split("+")[0] in self.rotations:
            return
        raise ValueError(f"{where}: unknown target {t!r} (channel:<id>, person:<id>, oncall:<rotation>[+N])")


def alarm_link(public_url: str, alarm_id: str) -> str:
    return f"{public_url.rstrip('/')}/alarms?alarm={quote(alarm_id, safe='')}"


@dataclass
class _Job:
    alarm: AlarmState
    channel: str
    target: str
    level: int
    title: str
    body: str
    link: str


class Notifier:
    def __init__(self, cfg: NotifyConfig, timezone: str = "Asia/Seoul",
                 sink: Optional[Callable[[Event], None]] = None, env: Optional[dict[str, str]] = None,
                 clock: Callable[[], int] = time.time_ns, history: int = 2000) -> None:
        self.cfg = cfg
        self.tz = timezone
        self.sink = sink
        self.clock = clock
        env = os.environ if env is None else env
        self._urls: dict[str, Optional[str]] = {}
        for cid, ch in cfg.channels.items():
            self._urls[cid] = ch.url if ch.url is not None else env.get(ch.url_env or "")
            if not self._urls[cid]:
                log.warning("notification channel %s: environment variable %s is not set; channel disabled",
                            cid, ch.url_env)
        self._lock = threading.Lock()
        self._records: deque[dict[str, Any]] = deque(maxlen=history)
        self._sent_levels: dict[tuple[str, Optional[int]], set[int]] = {}
        self._last_sent: dict[tuple[str, str], int] = {}
        self._window: dict[str, deque[int]] = {c: deque() for c in cfg.channels}
        self._acked: dict[str, int] = {}  # alarm id -> raised_ts of the acknowledged episode
        self._last_ts = 0
        self._stop = threading.Event()
        self._queues: dict[str, queue.Queue[_Job]] = {}
        self._threads: list[threading.Thread] = []
        for cid in cfg.channels:
            q: queue.Queue[_Job] = queue.Queue(maxsize=cfg.queue_per_channel)
            self._queues[cid] = q
            t = threading.Thread(target=self._worker, args=(cid, q), name=f"gwanje-notify-{cid}", daemon=True)
            t.start()
            self._threads.append(t)

    # ---------------------------------------------------------------- routing
    def _levels(self, a: AlarmState) -> list[tuple[int, float, list[str]]]:
        """(level, after minutes, targets); level 0 is the first notification."""
        out: list[tuple[int, float, list[str]]] = []
        for r in self.cfg.routes:
            if not r.matches(a):
                continue
            out.append((0, 0.0, r.notify))
            for i, e in enumerate(r.escalate, start=1):
                out.append((i, e.after_min, e.notify))
        return out

    def _resolve(self, target: str, now: int) -> list[tuple[str, str]]:
        """(channel, who) pairs for a target at this time."""
        kind, _, name = target.partition(":")
        if kind == "channel":
            return [(name, name)]
        person: Optional[str] = name
        if kind == "oncall":
            rot, _, steps = name.partition("+")
            person = who(self.cfg.rotations.get(rot), now, self.tz, int(steps or 0))
        p = self.cfg.people.get(person or "")
        return [(c, person or "") for c in p.channels] if p else []

    # ---------------------------------------------------------------- public API
    def notify(self, a: AlarmState, level: int = 0, now: Optional[int] = None) -> list[str]:
        """Queue the messages of one level for an alarm; returns the channels queued. Never blocks."""
        now = self.clock() if now is None else now
        key = (a.id, a.raised_ts)
        with self._lock:
            sent = self._sent_levels.setdefault(key, set())
            if level in sent:
                return []
            sent.add(level)
        chans: dict[str, str] = {}
        for lv, _, targets in self._levels(a):
            if lv == level:
                for t in targets:
                    for c, person in self._resolve(t, now):
                        chans.setdefault(c, person)
        queued = []
        link = alarm_link(self.cfg.public_url, a.id)
        title, body = self._message(a, level, link)
        for c, person in chans.items():
            why = self._gate(a, c, level, now)
            if why:
                self._record(a, c, person, level, 0, why, "", link)
                continue
            try:
                self._queues[c].put_nowait(_Job(a, c, person, level, title, body, link))
                queued.append(c)
            except queue.Full:
                self._record(a, c, person, level, 0, "dropped", "channel queue full", link)
        return queued

    def escalate(self, alarms: list[AlarmState], now: Optional[int] = None) -> list[tuple[str, int]]:
        """Send every escalation level that is due for unacknowledged alarms; (alarm id, level)."""
        now = self.clock() if now is None else now
        out = []
        for a in alarms:
            if not a.unacknowledged or a.raised_ts is None:
                continue
            for lv, after, _ in self._levels(a):
                if lv and now - a.raised_ts >= after * 60 * NS_PER_S and self.notify(a, lv, now):
                    out.append((a.id, lv))
        return out

    def acknowledged(self, a: AlarmState) -> None:
        """Nothing more for this episode: queued messages and escalations are cancelled."""
        with self._lock:
            self._acked[a.id] = a.raised_ts or 0
            levels = self._sent_levels.setdefault((a.id, a.raised_ts), set())
            levels.update(lv for lv, _, _ in self._levels(a))

    def seed(self, records: list[Event]) -> None:
        """After a restart: the levels already sent per episode (from stored notification
        events), so a restart neither repeats an escalation nor forgets an acknowledgement."""
        with self._lock:
            for e in records:
                d = e.data
                if isinstance(d.get("level"), int):
                    self._sent_levels.setdefault((e.key, d.get("raised_ts")), set()).add(d["level"])
                if d.get("outcome") == "sent" and d.get("level") == 0:
                    self._last_sent[(e.key, str(d.get("channel")))] = e.ts

    def attempts(self, limit: int = 200) -> list[dict[str, Any]]:
        """Most recent first, for the UI."""
        with self._lock:
            return list(self._records)[-limit:][::-1]

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    # ---------------------------------------------------------------- internals
    def _message(self, a: AlarmState, level: int, link: str) -> tuple[str, str]:
        esc = f"[에스컬레이션 {level}/escalation {level}] " if level else ""
        title = f"{esc}[{PRIORITY_KO.get(a.priority, a.priority)}/{a.priority.upper()}] {a.message_ko or a.id}"
        when = datetime.fromtimestamp((a.raised_ts or a.changed_ts) / NS_PER_S, ZoneInfo(self.tz))
        place = "/".join(p for p in (a.site, a.line, a.machine) if p)
        body = "\n".join([a.message_ko, a.message_en, f"{place} · {when:%Y-%m-%d %H:%M:%S %Z}", link])
        return title, body

    def _gate(self, a: AlarmState, channel: str, level: int, now: int) -> str:
        """Why not to send now ('' = send)."""
        if not self._urls.get(channel):
            return "no_url"
        with self._lock:
            if self._acked.get(a.id) == (a.raised_ts or 0):
                return "cancelled"
            if level == 0:
                last = self._last_sent.get((a.id, channel))
                if last is not None and now - last < self.cfg.dedup_window_s * NS_PER_S:
                    return "deduplicated"
                self._last_sent[(a.id, channel)] = now
            w = self._window[channel]
            while w and now - w[0] >= 60 * NS_PER_S:
                w.popleft()
            if len(w) >= self.cfg.rate_limit_per_min:
                return "rate_limited"
            w.append(now)
        return ""

    def _worker(self, channel: str, q: "queue.Queue[_Job]") -> None:
        import apprise  # imported here: the domain modules stay importable without it

        url = self._urls.get(channel)
        usable = bool(url) and apprise.Apprise().add(url)
        while not self._stop.is_set():
            try:
                job = q.get(timeout=0.2)
            except queue.Empty:
                continue
            a = job.alarm
            for attempt in range(1, self.cfg.retries + 2):
                with self._lock:
                    cancelled = self._acked.get(a.id) == (a.raised_ts or 0)
                if cancelled:
                    self._record(a, channel, job.target, job.level, attempt, "cancelled", "acknowledged", job.link)
                    break
                if not usable:
                    self._record(a, channel, job.target, job.level, attempt, "failed", "invalid channel url", job.link)
                    break
                try:
                    # a fresh Apprise per attempt: a reused one stalls ~5 s on its second email
                    ap = apprise.Apprise()
                    ap.add(url)
                    ok = bool(ap.notify(title=job.title, body=job.body))
                    err = "" if ok else "delivery failed"
                except Exception as e:  # a plugin bug is one failed attempt, not a dead worker
                    ok, err = False, type(e).__name__
                last = attempt == self.cfg.retries + 1
                self._record(a, channel, job.target, job.level, attempt,
                             "sent" if ok else ("failed" if last else "retrying"), err, job.link)
                if ok or last:
                    break
                if self._stop.wait(self.cfg.backoff_s * 2 ** (attempt - 1)):
                    return

    def _record(self, a: AlarmState, channel: str, target: str, level: int, attempt: int, outcome: str,
                error: str, link: str) -> None:
        with self._lock:
            ts = max(self.clock(), self._last_ts + 1)  # unique: the store keys events by time
            self._last_ts = ts
            rec = {"ts": ts, "alarm_id": a.id, "raised_ts": a.raised_ts, "priority": a.priority,
                   "channel": channel, "target": target, "level": level, "attempt": attempt, "outcome": outcome,
                   "error": error, "link": link, "message_ko": a.message_ko, "message_en": a.message_en}
            self._records.append(rec)
        if outcome in ("failed", "retrying"):
            log.warning("notification %s for %s via %s attempt %d: %s", outcome, a.id, channel, attempt, error)
        if self.sink is not None:
            try:
                self.sink(Event("notification", ts, a.site, a.line, a.machine, a.id,
                                {k: v for k, v in rec.items() if k != "ts"}))
            except Exception:  # the audit store being down must not stop deliveries
                log.exception("could not record notification attempt")


def load_notify(raw: Optional[dict[str, Any]], fname: str = "notify.yaml") -> NotifyConfig:
    """notify.yaml (as loaded) validated; ConfigError names the file, key path and problem."""
    from alerts.rules import config_errors
    from gwanje.config import ConfigError

    try:
        return NotifyConfig.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(config_errors(fname, e)) from None
