"""The control bus over the plant's MQTT broker (messages: gwanje/bus.py; topics under
system.yaml control.prefix, default "gwanje-sys", outside gwanje/ so no telemetry
subscription sees them).

  collect: CommandServer — subscribes QoS 1 to <prefix>/cmd/<site>/<line> for every line it
           owns, verifies and authorizes each command (gwanje.bus.Verifier), executes it on
           its AlarmService (which writes the audit entry) and publishes a signed reply to the
           command's reply_to. Publishes, retained and signed, <prefix>/status/<instance>
           every 2 s (will: {"online": false}) and <prefix>/alarms/<instance>, the active
           alarms, within ~200 ms of every change and at least every 5 s.
  serve:   RemoteAlarms — the alarm source of a UI process without an AlarmService: the
           read interface of the service (active, get, banner; history, health, flood and
           notifications from the store), fed by the retained snapshots of every collect
           instance, and its action methods, which send a command to the owning line's
           topic and wait for the answer (control.reply_timeout_s). An owner that is offline
           (its will, or no status for 10 s) refuses at once; no answer in time is an error
           naming the wait. One MQTT client per process (each gunicorn worker makes its own
           after a fork).
"""
from __future__ import annotations

import logging
import math
import os
import queue
import secrets as pysecrets
import socket
import threading
import time
from typing import Any, Callable, Mapping, Optional

from collectors.mqtt import make_client, parse_broker_url
from gwanje import bus
from gwanje.bus import CommandFailed, Refused
from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.control")

STATUS_EVERY_S = 2.0
ALARMS_EVERY_S = 5.0
DEBOUNCE_S = 0.2
QUEUE_MAX = 1000
# collect's refusals that are the service's own input checks: serve raises them as ValueError,
# so the page words them as it does for a local service
INPUT_REASONS = ("user_", "comment_", "bad_shelve_duration", "alarm_id_", "unknown_alarm")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def command_key(config: Any, secrets: Any) -> Optional[str]:
    """GWANJE_COMMAND_KEY; in demo mode without it, the fixed demo key (gwanje.bus.DEMO_KEY).
    None outside demo mode without a key (gwanje.security refuses to start then)."""
    key = getattr(secrets, "command_key", None)
    if key:
        return key
    return bus.DEMO_KEY if config.system.demo else None


def jsonable(v: Any) -> Any:
    """Status values as plain JSON (string keys, no NaN/inf, no objects)."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def status_essentials(st: Mapping[str, Any]) -> dict[str, Any]:
    """What another process's status page needs of Runtime.status()."""
    p = dict(st.get("pipeline") or {})
    for k in ("write_latency_buckets", "samples_written_by_site"):
        p.pop(k, None)
    return jsonable({"sources": st.get("sources") or [], "pipeline": p, "store": st.get("store") or {},
                     "started_ns": st.get("started_ns"), "restore_pending": st.get("restore_pending") or [],
                     "simulator": st.get("simulator") or {}})


class CommandServer:
    """collect's end of the bus (see the module doc)."""

    def __init__(self, config: Any, secrets: Any, alarms: Any, status: Callable[[], Mapping[str, Any]],
                 instance: str, url: str, key: str, lines: Optional[list[tuple[str, str]]] = None) -> None:
        ctl = config.system.control
        self.config = config
        self.alarms = alarms
        self.status_fn = status
        self.instance = instance
        self.prefix = ctl.prefix
        self.key = key
        self.lines = lines if lines is not None else [(s.id, ln.id) for s in config.plant.sites for ln in s.lines]
        self.rejects = Rejects(f"control-bus {instance}")
        self.verifier = bus.Verifier(key, ctl.max_age_s, prefix=self.prefix, rejects=self.rejects)
        self.commands_done = 0
        host, port, tls = parse_broker_url(url)
        self.host, self.port = host, port
        self.client_id = f"{self.prefix}-collect-{instance}-{socket.gethostname()}-{os.getpid()}"[:200]
        c = make_client(config.system.mqtt, secrets, self.client_id, tls=tls, clean_session=True,
                        strict=not config.system.demo)
        c.reconnect_delay_set(config.system.mqtt.reconnect_min_s, config.system.mqtt.reconnect_max_s)
        c.will_set(bus.status_topic(self.prefix, instance), self._offline(), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self.client = c
        self.connected = False
        self._queue: "queue.Queue[tuple[str, bytes]]" = queue.Queue(QUEUE_MAX)
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._threads: list[threading.Thread] = []

    def _offline(self) -> bytes:
        # with its lines, so serve can name the collect that is away
        return bus.snapshot(self.key, "status", self.instance, now_ms(),
                            {"online": False, "lines": [f"{s}/{ln}" for s, ln in self.lines]})

    # ------------------------------------------------------------------ life
    def start(self) -> "CommandServer":
        self.client.connect_async(self.host, self.port, keepalive=self.config.system.mqtt.keepalive_s)
        self.client.loop_start()
        for target, name in ((self._work, "gwanje-bus-cmd"), (self._publish_loop, "gwanje-bus-pub")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("control bus: collect %s takes commands for %d line(s) on %s/cmd/...", self.instance,
                 len(self.lines), self.prefix)
        return self

    def stop(self, timeout: float = 0.5) -> None:
        self._stop.set()
        if self.connected:
            # a clean disconnect sends no will: say offline ourselves
            info = self.client.publish(bus.status_topic(self.prefix, self.instance), self._offline(), qos=1,
                                       retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        t = threading.Thread(target=self.client.loop_stop, name="bus-stop", daemon=True)
        t.start()
        t.join(timeout)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("control bus: broker refused the connection: %s", reason_code)
            return
        self.connected = True
        client.subscribe([(bus.cmd_topic(self.prefix, s, ln), 1) for s, ln in self.lines])
        self._changed.set()  # status and alarms at once

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected = False
        if not self._stop.is_set():
            log.warning("control bus disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # paho's network thread: only queue (executing writes to the store)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self.rejects.reject("malformed", "topic not UTF-8")
            return
        try:
            self._queue.put_nowait((topic, bytes(msg.payload)))
        except queue.Full:
            self.rejects.reject("overloaded", topic)

    # ------------------------------------------------------------------ commands
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                topic, payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.handle(topic, payload)
            except Exception:  # a bug must not end command handling
                log.exception("control bus: command handling failed")

    def handle(self, topic: str, payload: bytes) -> Optional[dict[str, Any]]:
        """Verify, execute, answer one command; returns the reply body (None: no answer)."""
        try:
            cmd = self.verifier.verify(payload, now_ms(), topic=topic)
        except Refused as e:
            m = e.message
            if m is None or e.reason == "replayed":
                return None  # not authentic (no answer to a forger), or answered already
            self._audit_refused(m, e.reason)
            return self._reply(m.get("id", ""), m.get("reply_to", ""), False, e.reason,
                               f"refused by collect {self.instance}: {e.reason}")
        args = cmd.args
        via = f"via {cmd.reply_to.rsplit('/', 1)[-1]}"
        who = {"role": cmd.role, "request_id": cmd.id,
               "client": (f"{args['client']} {via}" if isinstance(args.get("client"), str) else via)[:200]}
        comment = args.get("comment", "")
        svc = self.alarms
        try:
            if cmd.method == "acknowledge_line":
                if (cmd.site, cmd.line) not in self.lines:
                    raise ValueError("unknown_alarm")
                done = svc.acknowledge_line(cmd.site, cmd.line, cmd.user, comment, **who)
                self.commands_done += 1
                self._changed.set()
                n = len(done)
                return self._reply(cmd.id, cmd.reply_to, True, "", f"{n} {bus.PAST[cmd.action]}" if n else
                                   "nothing changed", changed=n)
            st = svc.get(cmd.target)
            info = svc.evaluator.info(cmd.target) if st is None else {"site": st.site, "line": st.line}
            if info is None or (info["site"], info["line"]) != (cmd.site, cmd.line):
                raise ValueError("unknown_alarm")
            if cmd.method == "shelve":
                ev = svc.shelve(cmd.target, cmd.user, comment, args.get("duration_s"), **who)
            else:
                ev = getattr(svc, cmd.method)(cmd.target, cmd.user, comment, **who)
        except ValueError as e:
            reason = str(e)
            if reason == "unknown_alarm":
                self.verifier.refuse("unknown_alarm", f"id={cmd.id} target={cmd.target[:100]!r}")
            return self._reply(cmd.id, cmd.reply_to, False, reason, f"refused by collect {self.instance}: {reason}")
        self.commands_done += 1
        self._changed.set()
        after = svc.get(cmd.target)
        return self._reply(cmd.id, cmd.reply_to, True, "", bus.PAST[cmd.action] if ev is not None else
                           "nothing changed", changed=1 if ev is not None else 0, alarm=bus.state_dict(after)
                           if after is not None else ({"id": cmd.target, "status": "normal"} if ev is not None
                                                      else None))

    def _audit_refused(self, m: Mapping[str, Any], reason: str) -> None:
        from gwanje.audit import AUDIT_ACTIONS

        action = str(m.get("action", ""))
        action = {"alarm.acknowledge_line": "alarm.acknowledge"}.get(action, action)
        if action not in AUDIT_ACTIONS:
            action = "command.refused"
        target = m.get("target") if isinstance(m.get("target"), str) else ""
        if not target and m.get("action") == "alarm.acknowledge_line":
            target = f"{m.get('site')}/{m.get('line')}"
        try:
            self.alarms.audit(action, str(m.get("user", ""))[:64], str(m.get("role", ""))[:32], target[:300],
                              ok=False, detail=f"refused by collect: {reason}", request_id=str(m.get("id", ""))[:64],
                              client=f"bus {str(m.get('reply_to', '')).rsplit('/', 1)[-1]}"[:100])
        except Exception:
            log.exception("control bus: could not write the audit entry of a refused command")

    def _reply(self, cmd_id: str, reply_to: str, ok: bool, reason: str, message: str, changed: int = 0,
               alarm: Optional[dict] = None) -> dict[str, Any]:
        body = {"id": cmd_id, "ok": ok, "reason": reason, "message": message, "changed": changed, "alarm": alarm}
        if reply_to:
            self.client.publish(reply_to, bus.reply(self.key, cmd_id, instance=self.instance, ok=ok, message=message,
                                                    now_ms=now_ms(), reason=reason, changed=changed,
                                                    alarm=jsonable(alarm) if alarm else None), qos=1)
        return body

    def summary(self) -> dict[str, Any]:
        return {"instance": self.instance, "connected": self.connected, "commands_done": self.commands_done,
                "rejects": self.rejects.counts()}

    # ------------------------------------------------------------------ snapshots
    def status_body(self) -> dict[str, Any]:
        try:
            st = status_essentials(self.status_fn())
        except Exception:
            log.exception("control bus: status failed")
            st = {}
        self._add_rates(st.get("sources") or [], time.monotonic())
        return {**st, "online": True, "lines": [f"{s}/{ln}" for s, ln in self.lines],
                "control_rejects": self.rejects.counts(), "commands_done": self.commands_done}

    def _add_rates(self, sources: list, t: float) -> None:
        """Each source's data rate (samples/s) since the previous status, measured here: a
        status page that read our counters at its own refreshes would see the same retained
        status twice as often as not (0.0, then twice the rate), as it is published every 2 s."""
        prev_t, prev = getattr(self, "_rate_prev", (None, {}))
        now = {}
        for src in sources:
            if isinstance(src, dict) and isinstance(src.get("samples_in"), int):
                name = str(src.get("name", ""))
                now[name] = src["samples_in"]
                before = prev.get(name)
                if prev_t is not None and before is not None and t > prev_t and now[name] >= before:
                    src["rate"] = round((now[name] - before) / (t - prev_t), 1)
        self._rate_prev = (t, now)

    def alarms_body(self) -> dict[str, Any]:
        return {"alarms": [jsonable(bus.state_dict(s)) for s in self.alarms.active()]}

    def _publish_loop(self) -> None:
        last_status = last_alarms = -1e9
        last_sig: Any = None
        while not self._stop.is_set():
            self._changed.wait(DEBOUNCE_S)
            forced = self._changed.is_set()
            self._changed.clear()
            if not self.connected:
                continue
            try:
                t = time.monotonic()
                active = self.alarms.active()
                sig = [(s.id, s.changed_ts, s.status.value) for s in active]
                if forced or sig != last_sig or t - last_alarms >= ALARMS_EVERY_S:
                    body = {"alarms": [jsonable(bus.state_dict(s)) for s in active]}
                    self.client.publish(bus.alarms_topic(self.prefix, self.instance),
                                        bus.snapshot(self.key, "alarms", self.instance, now_ms(), body), qos=1,
                                        retain=True)
                    last_sig, last_alarms = sig, t
                if forced or t - last_status >= STATUS_EVERY_S:
                    self.client.publish(bus.status_topic(self.prefix, self.instance),
                                        bus.snapshot(self.key, "status", self.instance, now_ms(), self.status_body()),
                                        qos=1, retain=True)
                    last_status = t
            except Exception:
                log.exception("control bus: publishing the snapshots failed")


def _state(d: Mapping[str, Any]) -> Any:
    from alerts.lifecycle import AlarmState, Status

    fields = set(AlarmState.__dataclass_fields__)
    kw = {k: v for k, v in d.items() if k in fields}
    kw["status"] = Status(kw.get("status", "normal"))
    return AlarmState(**kw)


class RemoteAlarms:
    """serve's alarm source over the bus (see the module doc)."""

    can_act = True

    def __init__(self, config: Any, secrets: Any, store: Any, url: str, key: str,
                 clock: Callable[[], int] = time.time_ns) -> None:
        from dashboards.alarm_banner import StoreAlarms

        self.config = config
        self.secrets = secrets
        self.url = url
        self.key = key
        self.prefix = config.system.control.prefix
        self.timeout_s = config.system.control.reply_timeout_s
        self.stored = StoreAlarms(store, config, clock)
        self.rejects = Rejects("control-bus serve")
        self._lock = threading.Lock()
        self._statuses: dict[str, dict[str, Any]] = {}
        self._alarms: dict[str, dict[str, Any]] = {}  # instance -> alarm id -> AlarmState
        self._pending: dict[str, list[Any]] = {}  # request id -> [Event, reply]
        self._pid: Optional[int] = None
        self.client: Any = None
        self.client_id = ""
        self.connected = threading.Event()

    # ------------------------------------------------------------------ connection
    def start(self) -> "RemoteAlarms":
        self._ensure()
        return self

    def _ensure(self) -> None:
        """One client per process: a gunicorn worker forked from a parent that had one makes its own."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._statuses.clear()
            self._alarms.clear()
            self._pending.clear()
            self.connected = threading.Event()
            host, port, tls = parse_broker_url(self.url)
            self.client_id = f"{self.prefix}-serve-{socket.gethostname()}-{os.getpid()}-{pysecrets.token_hex(4)}"[:200]
            c = make_client(self.config.system.mqtt, self.secrets, self.client_id, tls=tls, clean_session=True,
                            strict=not self.config.system.demo)
            m = self.config.system.mqtt
            c.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
            c.on_connect = self._on_connect
            c.on_message = self._on_message
            c.on_disconnect = lambda *a: self.connected.clear()
            c.connect_async(host, port, keepalive=m.keepalive_s)
            c.loop_start()
            self.client = c
            self._pid = os.getpid()

    def stop(self) -> None:
        if self.client is not None and self._pid == os.getpid():
            self.client.disconnect()
            t = threading.Thread(target=self.client.loop_stop, daemon=True)
            t.start()
            t.join(2.0)

    @property
    def reply_topic(self) -> str:
        return bus.reply_prefix(self.prefix) + self.client_id

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("control bus: broker refused the connection: %s", reason_code)
            return
        client.subscribe([(f"{self.prefix}/status/+", 1), (f"{self.prefix}/alarms/+", 1), (self.reply_topic, 1)])
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self.rejects.reject("malformed", "topic not UTF-8")
            return
        kind = topic[len(self.prefix) + 1:].split("/", 1)[0]
        try:
            if kind == "reply":
                body = bus.decode_signed(self.key, msg.payload, "reply")
                with self._lock:
                    p = self._pending.get(body.get("id"))
                if p is not None:
                    p[1] = body
                    p[0].set()
                return
            inst = topic.rsplit("/", 1)[-1]
            if not msg.payload:  # a retained snapshot deleted
                with self._lock:
                    (self._statuses if kind == "status" else self._alarms).pop(inst, None)
                return
            body = bus.decode_signed(self.key, msg.payload, kind)
            if body.get("instance") != inst:
                raise Refused("malformed", f"{kind} of {str(body.get('instance'))[:64]!r} on {inst!r}'s topic")
            if kind == "status":
                with self._lock:
                    self._statuses[inst] = body
            elif kind == "alarms":
                states = {}
                for d in body.get("alarms") or []:
                    s = _state(d)
                    states[s.id] = s
                with self._lock:
                    self._alarms[inst] = states
        except Refused as e:
            self.rejects.reject(e.reason, f"{topic[:200]} {e.detail}")
        except (TypeError, ValueError, KeyError) as e:
            self.rejects.reject("malformed", f"{topic[:200]} {type(e).__name__}")

    # ------------------------------------------------------------------ reads
    def statuses(self) -> dict[str, dict[str, Any]]:
        self._ensure()
        with self._lock:
            return dict(self._statuses)

    def active(self) -> list[Any]:
        self._ensure()
        with self._lock:
            merged: dict[str, Any] = {}
            for states in self._alarms.values():
                for s in states.values():
                    old = merged.get(s.id)
                    if old is None or s.changed_ts > old.changed_ts:
                        merged[s.id] = s
        return bus.sorted_states(s for s in merged.values() if not s.is_normal)

    def get(self, alarm_id: str) -> Any:
        return next((s for s in self.active() if s.id == alarm_id), None)

    def banner(self) -> tuple[Any, int]:
        un = [s for s in self.active() if s.unacknowledged]
        return (un[0] if un else None), len(un)

    def history(self, *a: Any, **kw: Any) -> Any:
        return self.stored.history(*a, **kw)

    def health(self, now_ns: Optional[int] = None) -> Any:
        return self.stored.health(now_ns)

    def flood(self, now_ns: Optional[int] = None) -> Any:
        return self.stored.flood(now_ns)

    def notifications(self, limit: int = 200) -> Any:
        return self.stored.notifications(limit)

    # ------------------------------------------------------------------ actions
    def _where(self, alarm_id: Any) -> tuple[str, str]:
        s = self.get(alarm_id) if isinstance(alarm_id, str) else None
        if s is not None:
            return s.site, s.line
        # not active: the id names its place (<rule>:<site>/<line>/<machine>/<signal>)
        parts = alarm_id.split(":", 1)[-1].split("/") if isinstance(alarm_id, str) else []
        if len(parts) >= 2:
            return parts[0], parts[1]
        raise ValueError("unknown_alarm")

    def send(self, action: str, target: str, site: str, line: str, user: Any, args: Mapping[str, Any], *,
             role: str = "", client: str = "", request_id: Optional[str] = None) -> dict[str, Any]:
        """Send one command and wait for collect's answer (its reply body, ok or not); raises
        CommandFailed when the owning collect is offline or does not answer in time."""
        self._ensure()
        verb = bus.PAST.get(action, "done")
        now = now_ms()
        with self._lock:
            statuses = dict(self._statuses)
        inst = bus.owner(statuses, site, line)
        if inst is None:
            raise CommandFailed(f"no collect for {site}/{line} on the control bus: not {verb}", "offline")
        if not bus.instance_online(statuses[inst], now):
            raise CommandFailed(f"collect {inst} for {site}/{line} is offline: not {verb}", "offline")
        if not self.connected.is_set():
            raise CommandFailed(f"this process is not connected to the control bus: not {verb}", "offline")
        args = {**args, "client": client} if client else dict(args)
        rid, payload = bus.new_command(self.key, user=user if isinstance(user, str) else "", role=role or "",
                                       action=action, target=target, site=site, line=line,
                                       reply_to=self.reply_topic, args=args, now_ms=now, request_id=request_id)
        waiter = [threading.Event(), None]
        with self._lock:
            self._pending[rid] = waiter
        try:
            self.client.publish(bus.cmd_topic(self.prefix, site, line), payload, qos=1)
            if not waiter[0].wait(self.timeout_s):
                raise CommandFailed(f"no answer from collect {inst} within {self.timeout_s:g} s: {verb}? "
                                    f"check the alarm list before trying again", "timeout")
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        body = waiter[1]
        if body.get("ok") and isinstance(body.get("alarm"), dict):
            s = _state(body["alarm"]) if body["alarm"].get("rule") else None
            with self._lock:  # the new state shows here before the next snapshot comes
                states = self._alarms.setdefault(body.get("instance") or inst, {})
                if s is not None and not s.is_normal:
                    states[s.id] = s
                else:
                    states.pop(target, None)
        return body

    def _act(self, action: str, alarm_id: Any, user: Any, comment: Any, args: Optional[dict] = None,
             **who: Any) -> Any:
        site, line = self._where(alarm_id)
        body = self.send(action, alarm_id, site, line, user, {"comment": comment, **(args or {})},
                         role=who.get("role", ""), client=who.get("client", ""), request_id=who.get("request_id"))
        return self._outcome(body)

    @staticmethod
    def _outcome(body: Mapping[str, Any]) -> Any:
        if not body.get("ok"):
            reason = str(body.get("reason") or "")
            if reason.startswith(INPUT_REASONS):
                raise ValueError(reason)
            raise CommandFailed(str(body.get("message") or reason), reason)
        if not body.get("changed"):
            return None
        a = body.get("alarm")
        return _state(a) if isinstance(a, dict) and a.get("rule") else True

    def acknowledge(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Any:
        return self._act("alarm.acknowledge", alarm_id, user, comment, **who)

    def acknowledge_line(self, site: str, line: str, user: str, comment: str = "", **who: Any) -> list[Any]:
        body = self.send("alarm.acknowledge_line", f"{site}/{line}", site, line, user, {"comment": comment},
                         role=who.get("role", ""), client=who.get("client", ""), request_id=who.get("request_id"))
        self._outcome({**body, "changed": 0} if body.get("ok") else body)
        return [True] * int(body.get("changed") or 0)

    def shelve(self, alarm_id: str, user: str, reason: str, duration_s: float, **who: Any) -> Any:
        return self._act("alarm.shelve", alarm_id, user, reason, {"duration_s": duration_s}, **who)

    def unshelve(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Any:
        return self._act("alarm.unshelve", alarm_id, user, comment, **who)

    def comment(self, alarm_id: str, user: str, text: str, **who: Any) -> Any:
        return self._act("alarm.comment", alarm_id, user, text, **who)

    def remove_from_service(self, alarm_id: str, user: str, reason: str, **who: Any) -> Any:
        return self._act("alarm.out_of_service", alarm_id, user, reason, **who)

    def return_to_service(self, alarm_id: str, user: str, comment: str = "", **who: Any) -> Any:
        return self._act("alarm.return_to_service", alarm_id, user, comment, **who)
