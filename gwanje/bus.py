"""The control bus between `collect` (which owns alarm state) and `serve` processes (which show
it and send operators' actions): message encoding, signing and verification. Pure: no I/O
(runtime/control.py moves the bytes over the plant's MQTT broker).

Every message is one JSON object signed with HMAC-SHA256 over its canonical form (sorted
keys, no spaces, UTF-8) with the shared key GWANJE_COMMAND_KEY; the signature is the field
"sig" (hex). "kind" is inside the signed body, so a reply or a status can never pass as a
command. Kinds:

  cmd     {v, kind, id (request id, uuid4 hex), ts_ms, user, role, action, target, site, line,
           args, reply_to}            serve -> <prefix>/cmd/<site>/<line>
  reply   {v, kind, id (the command's), ts_ms, instance, ok, reason, message, changed, alarm}
                                      collect -> the command's reply_to
  status  {v, kind, instance, ts_ms, online, ...}       collect -> <prefix>/status/<instance> (retained)
  alarms  {v, kind, instance, ts_ms, alarms: [state]}   collect -> <prefix>/alarms/<instance> (retained)

A command is accepted when its signature is right, it is at most control.max_age_s old (and
not more than that in the future), its request id was not seen before (bounded memory of the
ids inside the age window), its action is one of ACTIONS below and the role it carries may do
it (gwanje.roles: collect decides; what serve checked is not trusted). Every refusal has a
reason code of REASONS, counted with gwanje.rejects.Rejects and logged without the key or the
signature.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional

from gwanje.rejects import Rejects
from gwanje.roles import ACTIONS as ROLE_ACTIONS
from gwanje.roles import role_allows

VERSION = 1
DEFAULT_PREFIX = "gwanje-sys"
DEFAULT_MAX_AGE_S = 30.0
# demo mode only (gwanje.security refuses to start collect or serve without a real key
# outside demo mode): a fixed, public key, so the split demo works without set-up. It
# authenticates nothing: anyone who reads this file knows it.
DEMO_KEY = "gwanje-demo-command-key-NOT-SECRET"
MIN_KEY_LEN = 16

REASONS = ("bad_signature", "expired", "replayed", "not_allowed", "unknown_action", "unknown_alarm", "malformed")

# bus action -> the permission in gwanje.roles.ACTIONS it needs, and the AlarmService method
# that executes it. The action names are those of the audit log (gwanje.audit).
ACTIONS: dict[str, tuple[str, str]] = {
    "alarm.acknowledge": ("alarm.acknowledge", "acknowledge"),
    "alarm.acknowledge_line": ("alarm.acknowledge", "acknowledge_line"),
    "alarm.shelve": ("alarm.shelve", "shelve"),
    "alarm.unshelve": ("alarm.shelve", "unshelve"),
    "alarm.comment": ("alarm.comment", "comment"),
    "alarm.out_of_service": ("alarm.out_of_service", "remove_from_service"),
    "alarm.return_to_service": ("alarm.out_of_service", "return_to_service"),
}
# what the operator reads when the action did not happen ("... is offline: not acknowledged")
PAST = {"alarm.acknowledge": "acknowledged", "alarm.acknowledge_line": "acknowledged", "alarm.shelve": "shelved",
        "alarm.unshelve": "unshelved", "alarm.comment": "commented", "alarm.out_of_service": "taken out of service",
        "alarm.return_to_service": "returned to service"}

MAX_MESSAGE_BYTES = 64 * 1024  # a command; snapshots are not limited here
MAX_FIELD = 500
REPLAY_MEMORY = 50_000
_KINDS = ("cmd", "reply", "status", "alarms")


class Refused(Exception):
    """A message the bus does not accept; reason is one of REASONS."""

    def __init__(self, reason: str, detail: str = "", message: Optional[dict] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        # the decoded command when its signature was right (so collect may answer it)
        self.message = message


class CommandFailed(Exception):
    """An operator action through the bus that did not happen: str() is the text for the
    operator (offline collect, no answer in time, refused by collect and why)."""

    def __init__(self, text: str, reason: str = "") -> None:
        super().__init__(text)
        self.reason = reason


def key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8")


def topic_part(name: str) -> str:
    """One topic level for a site or line id (ids never hold / + #); "" (a site-wide alarm) is "_"."""
    return name or "_"


def cmd_topic(prefix: str, site: str, line: str) -> str:
    return f"{prefix}/cmd/{topic_part(site)}/{topic_part(line)}"


def status_topic(prefix: str, instance: str) -> str:
    return f"{prefix}/status/{instance}"


def alarms_topic(prefix: str, instance: str) -> str:
    return f"{prefix}/alarms/{instance}"


def reply_prefix(prefix: str) -> str:
    return f"{prefix}/reply/"


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def sign(key: str | bytes, body: Mapping[str, Any]) -> bytes:
    """The wire form of `body` (which must hold "kind"): canonical JSON with "sig"."""
    b = {k: v for k, v in body.items() if k != "sig"}
    if b.get("kind") not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}")
    b.setdefault("v", VERSION)
    return _canonical({**b, "sig": _mac(key_bytes(key), b)})


def decode_signed(key: str | bytes, raw: bytes | str, kind: str) -> dict[str, Any]:
    """The body of a signed message of this kind; Refused(malformed | bad_signature)."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("malformed", "not UTF-8") from None
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused("malformed", "not JSON") from None
    if not isinstance(msg, dict):
        raise Refused("malformed", "not a JSON object")
    sig = msg.pop("sig", None)
    if not isinstance(sig, str):
        raise Refused("malformed", "no signature")
    try:
        good = _mac(key_bytes(key), msg)
    except ValueError:  # NaN and the like: nothing we signed
        raise Refused("malformed", "not canonical JSON") from None
    if not hmac.compare_digest(good, sig):
        raise Refused("bad_signature", f"kind={str(msg.get('kind'))[:20]!r} id={str(msg.get('id'))[:40]!r}")
    if msg.get("kind") != kind:
        raise Refused("malformed", f"kind {str(msg.get('kind'))[:20]!r}, expected {kind!r}")
    if msg.get("v") != VERSION:
        raise Refused("malformed", f"version {str(msg.get('v'))[:10]!r}")
    return msg


# ----------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Command:
    id: str
    ts_ms: int
    user: str
    role: str
    action: str
    target: str
    site: str
    line: str
    args: dict[str, Any] = field(default_factory=dict)
    reply_to: str = ""

    @property
    def method(self) -> str:
        return ACTIONS[self.action][1]

    @property
    def permission(self) -> str:
        return ACTIONS[self.action][0]


def new_command(key: str | bytes, *, user: str, role: str, action: str, target: str, site: str, line: str,
                reply_to: str, args: Optional[Mapping[str, Any]] = None, now_ms: int,
                request_id: Optional[str] = None) -> tuple[str, bytes]:
    """(request id, wire bytes) of a signed command."""
    rid = request_id or uuid.uuid4().hex
    body = {"v": VERSION, "kind": "cmd", "id": rid, "ts_ms": int(now_ms), "user": user, "role": role,
            "action": action, "target": target, "site": site, "line": line, "args": dict(args or {}),
            "reply_to": reply_to}
    return rid, sign(key, body)


def _str_field(msg: Mapping[str, Any], name: str, required: bool = True, max_len: int = MAX_FIELD) -> str:
    v = msg.get(name, "" if not required else None)
    if not isinstance(v, str) or (required and not v) or len(v) > max_len:
        raise Refused("malformed", f"field {name}")
    return v


class Verifier:
    """collect's side: verify and authorize commands (and remember their ids for a while)."""

    def __init__(self, key: str | bytes, max_age_s: float = DEFAULT_MAX_AGE_S, *, prefix: str = DEFAULT_PREFIX,
                 rejects: Optional[Rejects] = None, memory: int = REPLAY_MEMORY) -> None:
        self.key = key_bytes(key)
        self.max_age_ms = int(max_age_s * 1000)
        self.prefix = prefix
        self.rejects = rejects or Rejects("control-bus")
        self.memory = memory
        self._seen: "OrderedDict[str, int]" = OrderedDict()  # request id -> ts_ms, oldest first

    def refuse(self, reason: str, detail: str = "", message: Optional[dict] = None) -> Refused:
        """Count and log a refusal (the detail never holds the key or a signature)."""
        self.rejects.reject(reason, detail)
        return Refused(reason, detail, message)

    def verify(self, raw: bytes | str, now_ms: int, topic: Optional[str] = None) -> Command:
        """The command, or Refused (already counted) with its reason. topic: the topic it came
        on, which must be the command topic of its signed site and line."""
        if len(raw) > MAX_MESSAGE_BYTES:
            raise self.refuse("malformed", f"{len(raw)} bytes")
        try:
            msg = decode_signed(self.key, raw, "cmd")
        except Refused as e:
            raise self.refuse(e.reason, e.detail) from None
        try:
            rid = _str_field(msg, "id", max_len=64)
            ts = msg.get("ts_ms")
            if not isinstance(ts, int) or isinstance(ts, bool):
                raise Refused("malformed", "field ts_ms")
            user = _str_field(msg, "user", required=False, max_len=64)
            role = _str_field(msg, "role", required=False, max_len=32)
            action = _str_field(msg, "action", max_len=64)
            target = _str_field(msg, "target", required=False)
            site = _str_field(msg, "site", required=False, max_len=64)
            line = _str_field(msg, "line", required=False, max_len=64)
            reply_to = _str_field(msg, "reply_to", max_len=300)
            args = msg.get("args", {})
            if not isinstance(args, dict):
                raise Refused("malformed", "field args")
            if not reply_to.startswith(reply_prefix(self.prefix)) or any(c in reply_to for c in "+#\0"):
                raise Refused("malformed", "reply_to outside the reply topics")
            if topic is not None and topic != cmd_topic(self.prefix, site, line):
                raise Refused("malformed", f"command for {site}/{line} on another line's topic")
        except Refused as e:
            raise self.refuse(e.reason, e.detail) from None
        cmd = Command(rid, ts, user, role, action, target, site, line, args, reply_to)
        what = f"id={rid} user={user!r} role={role!r} action={action!r} target={target[:100]!r}"
        if abs(now_ms - ts) > self.max_age_ms:
            raise self.refuse("expired", f"{what} age {(now_ms - ts) / 1000:.1f} s", msg)
        self._forget(now_ms)
        if rid in self._seen:
            raise self.refuse("replayed", what, msg)
        self._seen[rid] = ts
        while len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        if action not in ACTIONS or ACTIONS[action][0] not in ROLE_ACTIONS:
            raise self.refuse("unknown_action", what, msg)
        if not role_allows(role, ACTIONS[action][0]):
            raise self.refuse("not_allowed", what, msg)
        return cmd

    def _forget(self, now_ms: int) -> None:
        # ids older than the age window cannot come back (they would be expired)
        while self._seen:
            rid, ts = next(iter(self._seen.items()))
            if ts >= now_ms - self.max_age_ms:
                break
            self._seen.popitem(last=False)


# ----------------------------------------------------------------------------- replies, state
def state_dict(s: Any) -> Optional[dict[str, Any]]:
    """An alerts.lifecycle.AlarmState as JSON (status by value); None stays None."""
    if s is None:
        return None
    d = asdict(s)
    d["status"] = s.status.value
    return d


def reply(key: str | bytes, cmd_id: str, *, instance: str, ok: bool, message: str, now_ms: int,
          reason: str = "", changed: int = 0, alarm: Optional[dict] = None) -> bytes:
    return sign(key, {"kind": "reply", "id": cmd_id, "ts_ms": int(now_ms), "instance": instance, "ok": bool(ok),
                      "reason": reason, "message": message, "changed": int(changed), "alarm": alarm})


def snapshot(key: str | bytes, kind: str, instance: str, now_ms: int, body: Mapping[str, Any]) -> bytes:
    """A signed status or alarms snapshot of one collect instance."""
    if kind not in ("status", "alarms"):
        raise ValueError(kind)
    return sign(key, {**body, "kind": kind, "instance": instance, "ts_ms": int(now_ms)})


# ----------------------------------------------------------------------------- status merge
OFFLINE_AFTER_S = 10.0  # a status not renewed for this long (it is sent every 2 s) is offline


def instance_online(status: Optional[Mapping[str, Any]], now_ms: int, stale_s: float = OFFLINE_AFTER_S) -> bool:
    if not status or not status.get("online"):
        return False
    ts = status.get("ts_ms")
    return isinstance(ts, int) and now_ms - ts <= stale_s * 1000


def owner(statuses: Mapping[str, Mapping[str, Any]], site: str, line: str) -> Optional[str]:
    """The collect instance whose status says it owns site/line (an online one first)."""
    want = f"{site}/{line}"
    cands = sorted(n for n, st in statuses.items() if want in (st.get("lines") or []))
    if not cands:
        return None
    online = [n for n in cands if statuses[n].get("online")]
    return (online or cands)[0]


def merge_status(local: Mapping[str, Any], remotes: Mapping[str, Mapping[str, Any]], now_ms: int,
                 local_name: str = "") -> dict[str, Any]:
    """The status page's view: the local process's status with every collect instance's
    sources added (each source tagged with its instance, online and the status's age) and
    one row per instance in "instances"."""
    out = dict(local)
    sources = [{**s, "instance": s.get("instance") or local_name, "online": True, "age_s": 0.0}
               for s in local.get("sources") or []]
    instances = []
    for name in sorted(remotes):
        st = remotes[name]
        online = instance_online(st, now_ms)
        ts = st.get("ts_ms")
        age = (now_ms - ts) / 1000 if isinstance(ts, int) else None
        for s in st.get("sources") or []:
            if isinstance(s, dict):
                sources.append({**s, "instance": name, "online": online, "age_s": age})
        instances.append({"instance": name, "online": online, "age_s": age, "lines": list(st.get("lines") or []),
                          "store": st.get("store") or {}, "pipeline": st.get("pipeline") or {},
                          "started_ns": st.get("started_ns"), "rejects": st.get("control_rejects") or {}})
    out["sources"] = sources
    out["instances"] = instances
    return out


def sorted_states(states: Iterable[Any]) -> list[Any]:
    """Alarm states in the order of AlarmService.active(): most severe first, unacknowledged
    before acknowledged, newest first."""
    return sorted(states, key=lambda s: (s.rank, not s.unacknowledged, -(s.raised_ts or s.changed_ts)))
