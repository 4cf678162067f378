"""OPC UA collector: one subscription per endpoint, every data change becomes a Sample.

For one endpoint of system.yaml it subscribes to every signal of every machine whose source is
opcua and whose site names this endpoint (node id: the signal's `node`, else the endpoint's
node_template). It owns the connection: an asyncio loop in its own thread connects, creates ONE
subscription with one monitored item per signal, and on connection loss waits with exponential
back-off (reconnect_min_s .. reconnect_max_s), connects again and recreates the subscription.

Data changes arrive at a handler object (not asyncua's iterator-style subscription, whose
1,000-item queue silently drops values when the consumer lags). The handler only converts:
source timestamp -> ts, status code severity -> quality, value -> float or str by the rules of
gwanje.normalize.Normalizer; it takes each DataChangeNotification whole, its monitored items
decoded straight from the wire into columns (collectors.opcua_wire), and checks them into the
columns of one gwanje.batch.SampleBatch (series id per client handle looked up once, at
subscribe time). The samples of one publish response go to the sink in one submit, and the
newest source time of each publish response (rejected-as-future included) against its
receive time is one observation of the endpoint's clock offset (collectors.clock).

During an outage nothing is emitted (never invented values): status().connected is False and
the engine treats the silence as unknown. A Bad status is forwarded with quality BAD only when
the server sent a value with it. Configured nodes the server does not know are counted
("unknown_node", once per node) and skipped; the other signals are still subscribed.

Options (system.yaml, opcua.endpoints[]; see gwanje.config.OpcuaEndpoint):
  name, url              the endpoint; GWANJE_OPCUA_URL_<NAME> overrides url
  security_policy/_mode  None/None (demo) or Basic256Sha256 with Sign or SignAndEncrypt, which
                         need certificate + private_key (ours; its URI becomes our application
                         URI) and optionally server_certificate (else taken from GetEndpoints)
  node_template          "ns=2;s={site}.{line}.{machine}.{signal}" unless a signal sets node
  sampling_ms            per monitored item (0: as fast as the server samples)
  publishing_ms          of the one subscription; a keep-alive arrives at least every ~5 s
  queue_size             per monitored item, on the server (changes kept between publishes)
  reconnect_min_s/_max_s back-off between connection attempts, doubling
Credentials: GWANJE_OPCUA_USERNAME / GWANJE_OPCUA_PASSWORD, or per endpoint
GWANJE_OPCUA_USERNAME_<NAME> / GWANJE_OPCUA_PASSWORD_<NAME> (environment only, never logged);
or an X.509 user certificate (user_certificate + user_private_key). Our application
certificate defaults to <data dir>/pki/own/cert.der + key.pem (`python app.py certs`).
A failed connect names its cause in status().detail and the log, once per cause
(explain_connect_error): server rejected our certificate, bad user or password, server
requires SignAndEncrypt (no matching endpoint), unknown server certificate, ...
Server certificates: checked against the trust list at every connect (collectors.opcua_trust):
trust on first use in demo mode, an operator's confirmation in production, a changed
certificate refused always ("server_certificate_unknown" / "server_certificate_changed").
Node ids: a machine's `nodes`, else the class's SignalDef.node, else node_template
(MachineSpec.node); "nsu=<uri>;" ids are resolved to the server's namespace index at every
connect, so a server that restarts with another namespace array is still read right.
Values: every built-in scalar type has one rule (opcua_value); arrays and structures are
rejected with a counted reason.

status(): connected; messages_in = data changes received, samples_in = samples delivered;
reconnects = successful connections after the first; rejects by reason (unknown_node,
duplicate_node, monitor_failed, no_value, nan, text_for_numeric_signal, ...); detail.
server_queue_overflow is counted with the rejects but its sample is kept: the server discarded
older values of that item between two publishes (raise queue_size or publish faster).
clock_offsets_s: {endpoint name: recent clock offset, s} (collectors.clock).
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from collectors.base import SampleSink, SourceStatus
from collectors.clock import ClockOffsets
from collectors.opcua_trust import ServerNotTrusted, TrustList, fingerprint, to_der
from collectors.opcua_wire import SLOW, ItemColumns, decode_publish_response
from gwanje.batch import SERIES, SampleBatch
from gwanje.config import Config, OpcuaEndpoint, Secrets
from gwanje.model import BadValue, Quality, Sample, now_ns
from gwanje.normalize import MIN_TS, FutureTimestamp, Normalizer
from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.collectors.opcua")

# OPC UA's "no timestamp" is 1601-01-01 (DateTime 0); anything before 1970 is treated as absent
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_STATUS_SEVERITY_SHIFT = 30
# StatusCode info bits (Part 4 7.39): InfoType "DataValue" (0x400) + Overflow (0x80): the
# server's monitored-item queue was full and it discarded older values
_OVERFLOW_BITS = 0x0480
# servers cap monitored items per CreateMonitoredItems call (MaxMonitoredItemsPerCall)
_CREATE_CHUNK = 500
_CONNECT_TIMEOUT_S = 15.0
_CLOSE_TIMEOUT_S = 3.0
_LOST_CLOSE_TIMEOUT_S = 0.5
_KEEPALIVE_MS = 5000.0
_REQUEST_TIMEOUT_S = 10.0
# asyncua probes the server every watchdog interval, with the interval as timeout; at its 1 s
# default a busy server (thousands of changes/s) misses a probe and we reconnect for nothing.
# 5 s still notices a half-open connection within ~10 s (a closed socket is noticed at once).
_WATCHDOG_S = 5.0


# --------------------------------------------------------------------------- pure helpers
@dataclass(frozen=True, slots=True)
class MonitoredSignal:
    node_id: str
    site: str
    line: str
    machine: str
    signal: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.site, self.line, self.machine, self.signal)


def monitored_signals(config: Config, endpoint: OpcuaEndpoint) -> list[MonitoredSignal]:
    """Every signal this endpoint serves, with its node id, in config order."""
    out = []
    for m in config.machines():
        if m.definition.source != "opcua" or m.opcua_endpoint != endpoint.name:
            continue
        for s in m.signals:
            out.append(MonitoredSignal(m.node(s, endpoint), m.site, m.line, m.machine, s.id))
    return out


def quality_of(status_code: int) -> Quality:
    """OPC UA status code severity (top two bits) -> Quality; 11 (reserved) counts as bad."""
    severity = (int(status_code) >> _STATUS_SEVERITY_SHIFT) & 3
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def datetime_ns(dt: Optional[datetime], picoseconds: Optional[int] = None) -> Optional[int]:
    """UTC datetime (+ OPC UA 10-picosecond units) -> ns since epoch, exact (no float);
    None for a missing or pre-1970 time."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    d = dt - _EPOCH
    if d.days < 0:
        return None
    ns = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
    if picoseconds:
        ns += (int(picoseconds) * 10) // 1_000
    return ns


def opcua_value(value: Any) -> Any:
    """A decoded OPC UA Variant value -> what a sample holds (float or str), or BadValue.

    Every built-in scalar type (Part 6 5.1.2) has one rule:
      Boolean                              1.0 / 0.0
      SByte, Byte, Int16 .. Int64, UInt64  float: exact up to 2**53, beyond that the nearest
                                           float (UInt64 up to 2**64-1 included); enumerations too
      Float, Double                        float (NaN and infinities rejected by the normalizer)
      String                               text
      DateTime                             ISO 8601 UTC text, "2026-11-24T09:30:00.123456Z"
      Guid                                 text, "72962b91-fa75-4ae6-8d28-b404dc7daf63"
      LocalizedText                        its text (the locale is dropped)
      QualifiedName                        text "<ns>:<name>", e.g. "2:Running"
      NodeId, ExpandedNodeId               text, e.g. "ns=2;s=Press1"
      StatusCode                           its name as text, e.g. "BadSensorFailure" (a PLC
                                           that reports a state as a status code maps by name)
      ByteString, XmlElement               rejected "unsupported_type:<type>": opaque bytes or
                                           a document are no measurement
      ExtensionObject (structures), DataValue, Variant, DiagnosticInfo
                                           rejected "unsupported_type:<type>"
      arrays and matrices                  rejected "array_not_supported"
    Text is then bounded (256 characters) like any other source's."""
    from asyncua import ua

    if value is None or isinstance(value, (bool, int, float, str)):
        return value  # the normalizer's own rules (and its reasons) apply
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.LocalizedText):
        if value.Text is None:
            raise BadValue("no_value")
        return value.Text
    if isinstance(value, ua.QualifiedName):
        return value.to_string()
    if isinstance(value, (ua.NodeId, ua.ExpandedNodeId)):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return value.name
    if isinstance(value, (list, tuple)):
        raise BadValue("array_not_supported")
    if isinstance(value, (bytes, bytearray)):
        raise BadValue("unsupported_type:ByteString")
    if isinstance(value, ua.XmlElement):
        raise BadValue("unsupported_type:XmlElement")
    if isinstance(value, (ua.DataValue, ua.Variant, ua.DiagnosticInfo)):
        raise BadValue(f"unsupported_type:{type(value).__name__}")
    # ua.ExtensionObject (undecoded) or a structure asyncua decoded into a dataclass
    raise BadValue("unsupported_type:ExtensionObject")


def to_sample(normalizer: Normalizer, sig: MonitoredSignal, value: Any, dv: Any) -> Sample:
    """One data change (the Variant's value and its DataValue) -> Sample, or BadValue.

    ts is the source timestamp, else the server timestamp, else receive time. A Bad status is
    kept as quality BAD when the server sent a value with it; without a value there is
    nothing to store ("no_value": the gap stays a gap). Values: opcua_value."""
    status = dv.StatusCode.value if dv.StatusCode is not None else 0
    if value is None:
        raise BadValue("no_value")
    ts = datetime_ns(dv.SourceTimestamp, dv.SourcePicoseconds) or datetime_ns(dv.ServerTimestamp, dv.ServerPicoseconds)
    return normalizer.sample(sig.site, sig.line, sig.machine, sig.signal, opcua_value(value), ts, quality_of(status))


_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]*;)?[isgb]=")


def is_browse_path(node: str) -> bool:
    """A signal's `node` is a node id ("ns=3;i=1042", "i=85", "nsu=urn:x;s=Tag") or else a
    browse path from the Root folder ("0:Objects/2:Press1/2:Tonnage") in OPC UA relative-path
    syntax (Part 4 A.2): "." also separates elements, so a name containing one writes "&."."""
    return _NODE_ID.match(node) is None


def subscription_parameters(ep: OpcuaEndpoint, ua: Any) -> Any:
    """Publishing every publishing_ms; an empty publish (keep-alive) at least every ~5 s so a
    silent server is noticed; the server may drop us after 6 missed keep-alives (spec: >= 3)."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = ep.publishing_ms
    keepalive = max(1, math.ceil(_KEEPALIVE_MS / ep.publishing_ms))
    params.RequestedMaxKeepAliveCount = keepalive
    params.RequestedLifetimeCount = keepalive * 6
    params.MaxNotificationsPerPublish = 0  # no limit: one publish carries all changes of an interval
    params.PublishingEnabled = True
    params.Priority = 0
    return params


def redact_url(url: str) -> str:
    """The endpoint url without user:password@ (urls may carry credentials; logs must not)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class _OutageIsNotACrash(logging.Filter):
    """asyncua logs "Publish iteration crashed" with a traceback at ERROR when its publish loop
    finds the connection closed. That is an outage, which the collector reports itself (one
    warning, status().connected False); a traceback per outage would bury real errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionError) and record.msg.startswith("Publish iteration crashed"))


_outage_filter = _OutageIsNotACrash()


# --------------------------------------------------------------------------- the handler
_SEVERITY_CODE = (0, 1, 2, 2)  # status severity (top two bits) -> Quality.code (quality_of)
_INT_FLOAT = 1 << 1023  # ints below this convert to float without OverflowError


class _DataChangeHandler:
    """Turns the data changes of one publish response into one submit.

    Batch path (the default): the session decodes each PublishResponse with
    collectors.opcua_wire (_decode_columns: the monitored items of a DataChangeNotification
    come as columns — handle, value, status code, time — not as objects), and asyncua hands
    each DataChangeNotification over whole (_deliver_batches). The columns are checked into
    the columns of one gwanje.batch.SampleBatch (sid, ts, value, quality), with the signal of
    each client handle looked up once (`_items`, built at subscribe time). No Sample and no
    asyncua object per change. The common kind (a finite number or a Boolean for a numeric
    signal, a source time in range) is checked inline; anything else goes through to_sample
    with the item as asyncua decodes it, the rules of the per-item path, so both paths
    accept, mark and reject exactly the same (tests/collectors/test_opcua_batch.py).

    Per-item path (columnar=False, or an asyncua without the hook): datachange_notification
    is called once per change (directly, see _dispatch_directly; or by asyncua in one task per
    change) and builds a Sample each. It is the reference the batch path is tested against.

    Either way the first change of a publish schedules a flush with call_soon, which runs
    after the unpacking (and after every task asyncua scheduled), so the samples of one
    publish response reach the sink in one submit, and the newest source time of the publish
    (rejected-as-future included) is one clock observation."""

    def __init__(self, owner: "OpcuaCollector", keys: dict[Any, MonitoredSignal],
                 loop: asyncio.AbstractEventLoop, lost: asyncio.Event) -> None:
        self._owner = owner
        self._keys = keys
        self._loop = loop
        self._lost = lost
        self._sub: Any = None  # the asyncua Subscription (batch path: its client handles)
        self._batch: list[Sample] = []  # per-item path
        # batch path: the columns of this publish
        self._sid: list[int] = []
        self._ts: list[int] = []
        self._value: list[Any] = []
        self._quality: list[int] = []
        self._any_bad = False
        # client handle -> (signal, series id, numeric: its kind takes floats only)
        self._items: dict[int, tuple[MonitoredSignal, int, bool]] = {}
        self._future_ns = owner.normalizer.future_tolerance_ns
        self._newest = 0  # newest source time of this publish, rejected-as-future included
        self._flush_scheduled = False

    # ------------------------------------------------------------ per-item path
    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        owner = self._owner
        owner._changes += 1
        sig = self._keys.get(node.nodeid)
        if sig is None:  # a node we did not ask for: nothing to map it to
            owner.rejects.reject("unknown_node", node.nodeid.to_string())
            return
        try:
            sample = to_sample(owner.normalizer, sig, val, data.monitored_item.Value)
        except BadValue as e:
            self._rejected(e, sig, val, data.monitored_item.Value.StatusCode)
            return
        st = data.monitored_item.Value.StatusCode
        if st is not None and st.value & _OVERFLOW_BITS == _OVERFLOW_BITS:
            # the value is good; older ones of this item were discarded on the server
            owner.rejects.reject("server_queue_overflow", f"{sig.node_id}: raise queue_size")
        self._batch.append(sample)
        self._saw(sample.ts)

    def _rejected(self, e: BadValue, sig: MonitoredSignal, val: Any, st: Any) -> None:
        self._owner.rejects.reject(str(e), f"{sig.node_id} value={val!r} status=0x{st.value if st else 0:08X}"[:200])
        if type(e) is FutureTimestamp:
            self._saw(e.ts)

    def _saw(self, ts: int) -> None:
        if ts > self._newest:
            self._newest = ts
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # ------------------------------------------------------------ batch path
    def map_handles(self) -> None:
        """(Re)build client handle -> signal from the subscription's monitored items; called
        once the items are created. Handles seen before that are resolved on first sight."""
        self._items = {}
        for handle in list(getattr(self._sub, "_monitored_items", {})):
            self._item(handle)

    def _item(self, handle: Any) -> Any:
        """The (signal, sid, numeric) of a client handle, cached; None for a handle asyncua
        does not know (it warns and skips those); (None, node id text, False) for a node that
        is not one of our signals."""
        data = self._sub._monitored_items.get(handle) if self._sub is not None else None
        if data is None or data.node is None:
            log.warning("%s: notification for unknown client handle %s", self._owner.name, handle)
            return None
        sig = self._keys.get(data.node.nodeid)
        if sig is None:
            return (None, data.node.nodeid.to_string(), False)  # not cached: counted each time
        kind = self._owner.normalizer._kinds.get(sig.key)
        item = (sig, SERIES.id(*sig.key), kind is not None and kind != "text")
        self._items[handle] = item
        return item

    def datachange_batch(self, notification: Any) -> None:
        """One DataChangeNotification -> columns appended to this publish's batch. Its
        MonitoredItems are collectors.opcua_wire.ItemColumns (decoded by us) or asyncua's
        objects (a response asyncua decoded). Never raises: a change that cannot be handled is
        logged and skipped (as per item)."""
        items = notification.MonitoredItems
        if isinstance(items, ItemColumns):
            self._take(items.handle, items.value, items.code, items.ts, items.item)
        elif items:
            self._take(*_object_columns(items))

    def _take(self, handles: list[int], values: list[Any], codes: list[int], tss: list[Any],
              item_at: Any) -> None:
        """The core of the batch path. Per change: its client handle, its value (SLOW: only
        item_at(i), the asyncua MonitoredItemNotification, tells), status code and time (ns or
        None). A finite number (or Boolean) for a numeric signal at a time in range is taken
        here; anything else goes through to_sample with item_at(i), the per-item rules."""
        owner = self._owner
        items = self._items
        sids, out_ts, out_values, quals = self._sid, self._ts, self._value, self._quality
        # a source time at most this far ahead is accepted without asking the clock again
        # (the normalizer reads it per sample; now only grows, so this is never laxer)
        limit = now_ns() + self._future_ns
        newest = self._newest
        changes = 0
        saw = False
        any_bad = False
        for i, (handle, v, code, ts) in enumerate(zip(handles, values, codes, tss)):
            try:
                item = items.get(handle)
                if item is None:
                    item = self._item(handle)
                    if item is None:
                        continue
                changes += 1
                sig, sid, numeric = item
                if sig is None:
                    owner.rejects.reject("unknown_node", sid)
                    continue
                if numeric and ts is not None and MIN_TS <= ts <= limit:
                    tv = type(v)
                    if tv is float:
                        ok = v - v == 0.0  # finite
                    elif tv is int:
                        ok = -_INT_FLOAT < v < _INT_FLOAT
                        v = float(v) if ok else v
                    elif tv is bool:
                        v, ok = (1.0 if v else 0.0), True
                    else:
                        ok = False
                    if ok:
                        q = _SEVERITY_CODE[(code >> _STATUS_SEVERITY_SHIFT) & 3]
                        if code & _OVERFLOW_BITS == _OVERFLOW_BITS:
                            owner.rejects.reject("server_queue_overflow", f"{sig.node_id}: raise queue_size")
                        sids.append(sid)
                        out_ts.append(ts)
                        out_values.append(v)
                        quals.append(q)
                        if q:
                            any_bad = True
                        if ts > newest:
                            newest = ts
                        saw = True
                        continue
                # everything else: the per-item rules, exactly
                mi = item_at(i)
                dv = mi.Value
                val = dv.Value.Value if dv is not None and dv.Value is not None else None
                try:
                    sample = to_sample(owner.normalizer, sig, val, dv)
                except BadValue as e:
                    st = dv.StatusCode
                    owner.rejects.reject(str(e), f"{sig.node_id} value={val!r} status=0x{st.value if st else 0:08X}"[:200])
                    if type(e) is FutureTimestamp:
                        if e.ts > newest:
                            newest = e.ts
                        saw = True
                    continue
                st = dv.StatusCode
                if st is not None and st.value & _OVERFLOW_BITS == _OVERFLOW_BITS:
                    owner.rejects.reject("server_queue_overflow", f"{sig.node_id}: raise queue_size")
                q = sample.quality.code
                sids.append(sid)
                out_ts.append(sample.ts)
                out_values.append(sample.value)
                quals.append(q)
                if q:
                    any_bad = True
                if sample.ts > newest:
                    newest = sample.ts
                saw = True
            except Exception:  # never let one bad notification stop the publish loop
                log.exception("%s: data change handler failed", owner.name)
        owner._changes += changes
        if any_bad:
            self._any_bad = True
        self._newest = newest
        if saw and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # ------------------------------------------------------------ both
    def status_change_notification(self, status: Any) -> None:
        code = getattr(getattr(status, "Status", None), "value", 0)
        if quality_of(code) is not Quality.GOOD:
            # the server ended our subscription (timeout, shutdown): reconnect and recreate
            log.warning("%s: subscription status 0x%08X, reconnecting", self._owner.name, code)
            self._lost.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._batch = self._batch, []
        newest, self._newest = self._newest, 0
        if newest:
            self._owner.clock.observe(self._owner.endpoint.name, newest, now_ns())
        if batch:
            self._owner._deliver(batch)
        if self._sid:
            columns = SampleBatch(self._sid, self._ts, self._value, self._quality if self._any_bad else None)
            self._sid, self._ts, self._value, self._quality, self._any_bad = [], [], [], [], False
            self._owner._deliver(columns)


def _object_columns(items: Sequence[Any]) -> tuple[list[int], list[Any], list[int], list[Any], Any]:
    """asyncua's MonitoredItemNotifications -> the columns _DataChangeHandler._take reads:
    handle, value (SLOW unless a number or Boolean), status code, time (ns) — the source
    time, else the server time, as to_sample reads them (datetime_ns)."""
    handles: list[int] = []
    values: list[Any] = []
    codes: list[int] = []
    tss: list[Any] = []
    last_src: Any = None
    last_pico: Any = None
    last_ns = 0
    for mi in items:
        handles.append(mi.ClientHandle)
        dv = mi.Value
        variant = dv.Value if dv is not None else None
        v = variant.Value if variant is not None else None
        if dv is None or type(v) not in (float, int, bool):
            values.append(SLOW)
            codes.append(0)
            tss.append(None)
            continue
        st = dv.StatusCode
        src, pico = dv.SourceTimestamp, dv.SourcePicoseconds
        if src is not None and src == last_src and pico == last_pico:
            ts = last_ns
        else:
            ts = datetime_ns(src, pico)
            if ts:
                last_src, last_pico, last_ns = src, pico, ts
            else:
                ts = datetime_ns(dv.ServerTimestamp, dv.ServerPicoseconds)
        values.append(v)
        codes.append(st.value if st is not None else 0)
        tss.append(ts)
    return handles, values, codes, tss, items.__getitem__


def _decode_columns(client: Any) -> bool:
    """The batch path's decoding: the client's session decodes its PublishResponses with
    collectors.opcua_wire (data changes as columns, everything else by asyncua) instead of
    asyncua's generic decoder. The request is built and sent as asyncua's UaSession.publish
    does it. False (nothing changed) for an asyncua without that session method."""
    from asyncua import ua
    from asyncua.ua.uaerrors import UaStructParsingError

    session = getattr(getattr(client, "uaclient", None), "session", None)
    if session is None or not callable(getattr(session, "publish", None)) or not callable(
            getattr(session, "_send_request", None)):
        return False

    async def publish(acks: list[Any]) -> Any:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        try:
            return decode_publish_response(data)
        except Exception as ex:
            log.exception("error parsing a publish response from the server")
            raise UaStructParsingError from ex

    session.publish = publish
    return True


def _deliver_batches(sub: Any, handler: _DataChangeHandler) -> bool:
    """The batch path: asyncua's Subscription turns each DataChangeNotification of a publish
    into one event per change (_explode_datachange) and delivers each; the handler takes the
    notification whole instead (publish_callback iterates what the hook returns: nothing).
    Status changes and events keep asyncua's path. False (nothing changed) for an asyncua
    without the hook or without the client handle map (_monitored_items)."""
    if not callable(getattr(sub, "_explode_datachange", None)) or not isinstance(
            getattr(sub, "_monitored_items", None), dict):
        return False
    handler._sub = sub

    def explode_datachange(notification: Any) -> tuple[()]:
        handler.datachange_batch(notification)
        return ()

    sub._explode_datachange = explode_datachange
    return True


def _dispatch_directly(sub: Any, handler: _DataChangeHandler) -> None:
    """Per-item path: call the handler for data changes in the publish callback instead of in
    one new asyncio task per notification. asyncua 2.x spawns that task so a slow handler
    cannot block its publish loop; ours never awaits and takes ~10 µs, less than the task
    costs. Measured like bench/opcua_ingest.py's collector-side figure (decode + dispatch +
    convert, one core): 55k -> 85k changes/s on a quiet machine, 13k -> 31k on a loaded one.
    Other events (status changes) keep asyncua's path. Without the hook (other asyncua
    versions) nothing changes."""
    from asyncua.common.subscription import DataChangeEvent

    original = getattr(sub, "_deliver", None)
    if original is None:
        return

    def deliver(event: Any) -> None:
        if isinstance(event, DataChangeEvent):
            try:
                handler.datachange_notification(event.node, event.value, event.data)
            except Exception:  # never let one bad notification stop the publish loop
                log.exception("%s: data change handler failed", handler._owner.name)
            return
        original(event)

    sub._deliver = deliver


# --------------------------------------------------------------------------- the collector
class OpcuaCollector:
    """collectors.base.Collector for one OPC UA endpoint. `url` overrides endpoint.url;
    `watchdog_s` (tests, very quiet links) is how often a silent server is probed.
    `columnar` False: the per-item path (one handler call and one Sample per change) instead
    of the batch path (_DataChangeHandler), for comparing the two."""

    kind = "opcua"

    def __init__(self, config: Config, endpoint: OpcuaEndpoint, sink: SampleSink, secrets: Secrets,
                 url: str | None = None, *, watchdog_s: float = _WATCHDOG_S,
                 trust_dir: Optional[Path] = None, columnar: bool = True) -> None:
        self.config = config
        self.columnar = columnar
        # the server certificates we accept (collectors.opcua_trust); None: not checked
        self.trust = TrustList(trust_dir) if trust_dir is not None else None
        self._refused: set[str] = set()  # fingerprints refused so far (logged and counted once each)
        self.endpoint = endpoint
        self.sink = sink
        self._secrets = secrets
        self.url = url or endpoint.url
        self.watchdog_s = watchdog_s  # how often a silent server is probed (and the probe's timeout)
        self.name = f"opcua:{endpoint.name}"
        self.normalizer = Normalizer(config)
        self.rejects = Rejects(self.name)
        self.clock = ClockOffsets()
        self.signals = monitored_signals(config, endpoint)
        _check_security(endpoint)
        self._unknown_nodes: set[str] = set()  # counted once each, retried on every connect
        self._changes = 0
        self._samples = 0
        self._reconnects = 0
        self._last_data_ns: Optional[int] = None
        self._connected = False
        self._subscribed = 0
        self._detail = ""
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_ev: Optional[asyncio.Event] = None

    # ------------------------------------------------------------ Collector API
    def start(self) -> None:
        if self._thread is not None:
            return
        session_log = logging.getLogger("asyncua.client.ua_session.UaSession")
        if _outage_filter not in session_log.filters:
            session_log.addFilter(_outage_filter)
        started = threading.Event()
        self._thread = threading.Thread(target=self._run_thread, args=(started,),
                                        name=f"gwanje-{self.name}", daemon=True)
        self._thread.start()
        started.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        loop, ev, thread = self._loop, self._stop_ev, self._thread
        if thread is None:
            return
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # loop already closed between the check and the call
                pass
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s: collector thread did not stop within %.1fs", self.name, timeout)
        self._thread = None

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(
                # connected is set once the subscription and its monitored items are made
                name=self.name, kind=self.kind, connected=self._connected, subscribed=self._connected,
                samples_in=self._samples,
                messages_in=self._changes, reconnects=self._reconnects, last_data_ns=self._last_data_ns,
                rejects=self.rejects.counts(), detail=self._detail, clock_offsets_s=self.clock.offsets(),
            )

    # ------------------------------------------------------------ loop thread
    def _run_thread(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop_ev = asyncio.Event()
        started.set()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("%s: collector loop crashed", self.name)
        finally:
            loop.close()

    def _deliver(self, batch: Sequence[Sample]) -> None:
        with self._lock:
            self._samples += len(batch)
            self._last_data_ns = now_ns()
        try:
            self.sink.submit(batch)
        except Exception:
            # a broken sink must not kill the subscription; the sink owns its own accounting
            log.exception("%s: sink.submit failed for %d samples", self.name, len(batch))

    def _set(self, connected: bool, detail: str) -> None:
        with self._lock:
            self._connected = connected
            self._detail = detail

    async def _main(self) -> None:
        assert self._stop_ev is not None
        stop = self._stop_ev
        ep = self.endpoint
        delay = ep.reconnect_min_s
        ever_connected = False
        failures = 0  # connect attempts failed in a row
        last_why = ""  # the cause of the last failure (a new cause is a warning, a repeat info)
        while not stop.is_set():
            lost = asyncio.Event()
            client = None
            try:
                client = await self._connect_unless_stopped(lost)
                if client is None:
                    break
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # repr(e) carries no credentials: they live only on the client object
                failures += 1
                why = await self._why(e)
                self._set(False, f"connect failed ({failures}x): {why}"[:300])
                # each cause once at WARNING (a new cause again); repeats at INFO
                log.log(logging.WARNING if why != last_why else logging.INFO,
                        "%s: cannot connect to %s (attempt %d): %s; retrying in %.1fs",
                        self.name, redact_url(self.url), failures, why, delay)
                last_why = why
            else:
                if ever_connected:
                    with self._lock:
                        self._reconnects += 1
                ever_connected = True
                failures = 0
                last_why = ""
                delay = ep.reconnect_min_s
                self._set(True, f"subscribed {self._subscribed} of {len(self.signals)} signals")
                log.info("%s: connected to %s, %d of %d signals subscribed", self.name,
                         redact_url(self.url), self._subscribed, len(self.signals))
                await _first(lost.wait(), stop.wait())
                if not stop.is_set():
                    self._set(False, "connection lost")
                    log.warning("%s: connection to %s lost; reconnecting", self.name, redact_url(self.url))
            finally:
                self._set(False, self._detail)
            if client is not None:
                # after a loss the server may be hung: a polite CloseSession would only wait
                await self._close(client, _CLOSE_TIMEOUT_S if stop.is_set() else _LOST_CLOSE_TIMEOUT_S)
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, ep.reconnect_max_s)
        self._set(False, "stopped")

    async def _connect_unless_stopped(self, lost: asyncio.Event) -> Any:
        """The connected client, or None when stop() came first (a hung server can hold a
        connect for the whole timeout; stop must not wait for it)."""
        assert self._stop_ev is not None
        connect = asyncio.ensure_future(asyncio.wait_for(self._connect(lost), _CONNECT_TIMEOUT_S))
        stopped = asyncio.ensure_future(self._stop_ev.wait())
        await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if connect.done():
            return connect.result()
        connect.cancel()  # _connect closes its half-made client on the way out
        await asyncio.gather(connect, return_exceptions=True)
        return None

    async def _connect(self, lost: asyncio.Event) -> Any:
        from asyncua import Client, ua

        ep = self.endpoint
        client = Client(self.url, timeout=_REQUEST_TIMEOUT_S, watchdog_intervall=self.watchdog_s)
        client.name = client.description = "Gwanje collector"
        client.session_timeout = 600_000  # what asyncua servers grant anyway; asking more only logs a warning
        await self._set_identity(client)
        if ep.security_policy != "None":
            await self._set_security(client)

        async def on_lost(exc: Exception) -> None:
            lost.set()

        if self.trust is not None:
            # asyncua calls it with the certificate of CreateSession's response, before
            # ActivateSession: a refused server never sees our credentials
            client.certificate_validator = self._check_server_certificate

        client.connection_lost_callback = on_lost
        try:
            await client.connect()
            if self.columnar:
                _decode_columns(client)  # before the subscription starts the publish loop
            loop = asyncio.get_running_loop()
            handler = _DataChangeHandler(self, {}, loop, lost)
            sub = await client.create_subscription(subscription_parameters(ep, ua), handler)
            if not (self.columnar and _deliver_batches(sub, handler)):
                _dispatch_directly(sub, handler)
            self._subscribed = await self._monitor(client, sub, handler, ua)
            handler.map_handles()
        except BaseException:  # including the connect timeout's cancellation: leave no half-open client
            await self._close(client)
            raise
        return client

    async def _monitor(self, client: Any, sub: Any, handler: _DataChangeHandler, ua: Any) -> int:
        """Create the monitored items in chunks; count and skip nodes the server refuses."""
        by_node: dict[Any, MonitoredSignal] = {}
        nodes = []
        for sig, nid in await self._resolve(client, ua):
            if nid is None:
                continue
            if nid in by_node:
                # two signals on one node: one monitored item cannot feed both
                self._count_bad_node("duplicate_node", sig)
                continue
            by_node[nid] = sig
            nodes.append(client.get_node(nid))
        # the handler must know every node before the first notification can arrive
        handler._keys.update(by_node)
        ok = 0
        for i in range(0, len(nodes), _CREATE_CHUNK):
            chunk = nodes[i:i + _CREATE_CHUNK]
            results = await self._subscribe_chunk(sub, chunk, ua)
            for node, res in zip(chunk, results):
                if isinstance(res, ua.StatusCode):
                    reason = "unknown_node" if res.value in (
                        ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid,
                        ua.StatusCodes.BadAttributeIdInvalid) else "monitor_failed"
                    self._count_bad_node(reason, by_node.pop(node.nodeid), res)
                    handler._keys.pop(node.nodeid, None)
                else:
                    ok += 1
                    self._unknown_nodes.discard(by_node[node.nodeid].node_id)
        return ok

    async def _subscribe_chunk(self, sub: Any, chunk: list[Any], ua: Any) -> list[Any]:
        """Monitored items with the endpoint's data change trigger. asyncua's public
        subscribe_data_change takes no filter; its _subscribe does (fallback: no filter)."""
        kwargs = dict(queuesize=self.endpoint.queue_size, sampling_interval=self.endpoint.sampling_ms)
        if self.endpoint.data_change_trigger == "status_value_timestamp" and hasattr(sub, "_subscribe"):
            flt = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
            res = await sub._subscribe(chunk, ua.AttributeIds.Value, mfilter=flt, **kwargs)
            return res if isinstance(res, list) else [res]
        return await sub.subscribe_data_change(chunk, **kwargs)

    async def _resolve(self, client: Any, ua: Any) -> list[tuple[MonitoredSignal, Any]]:
        """Each signal with its NodeId, or None when it has none (counted): node id strings are
        parsed (a namespace URI resolved to this server's index), browse paths ("0:Objects/2:Press1/2:Tonnage", from the Root folder) are
        translated by the server, in chunks."""
        out: list[tuple[MonitoredSignal, Any]] = []
        paths: list[tuple[int, MonitoredSignal]] = []
        namespaces: Optional[list[str]] = None
        for sig in self.signals:
            if is_browse_path(sig.node_id):
                paths.append((len(out), sig))
                out.append((sig, None))
                continue
            try:
                nid = ua.NodeId.from_string(sig.node_id)
            except Exception:
                self._count_bad_node("bad_node_id", sig)
                out.append((sig, None))
                continue
            uri = getattr(nid, "NamespaceUri", None)
            if uri:
                # "nsu=<uri>;..." survives a server that renumbers its namespaces; requests
                # carry the index, so look the URI up in this server's namespace array
                if namespaces is None:
                    namespaces = await client.get_namespace_array()
                if uri not in namespaces:
                    self._count_bad_node("unknown_node", sig, "namespace not on this server")
                    out.append((sig, None))
                    continue
                nid = ua.NodeId(nid.Identifier, namespaces.index(uri), nid.NodeIdType)
            out.append((sig, nid))
        root = ua.NodeId(ua.ObjectIds.RootFolder)
        for i in range(0, len(paths), _CREATE_CHUNK):
            chunk = paths[i:i + _CREATE_CHUNK]
            try:
                results = await client.translate_browsepaths(
                    root, ["/" + sig.node_id.lstrip("/") for _, sig in chunk])
            except ua.UaStringParsingError:
                # one unparseable path fails the whole call: fall back to one call per path
                results = [None] * len(chunk)
            for (pos, sig), res in zip(chunk, results):
                if res is None:
                    try:
                        res = (await client.translate_browsepaths(root, ["/" + sig.node_id.lstrip("/")]))[0]
                    except ua.UaStringParsingError:
                        self._count_bad_node("bad_node_id", sig)
                        continue
                if res.StatusCode.is_good() and res.Targets:
                    target = res.Targets[0].TargetId  # an ExpandedNodeId: compare as a plain NodeId
                    out[pos] = (sig, ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType))
                else:
                    self._count_bad_node("unknown_node", sig, res.StatusCode)
        return out

    async def _check_server_certificate(self, cert: Any, server: Any = None) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        assert self.trust is not None
        ep = self.endpoint
        der = cert.public_bytes(Encoding.DER)
        pinned = to_der(Path(ep.server_certificate).read_bytes()) if ep.server_certificate else None
        try:
            self.trust.check(ep.name, der, self.config.system.demo, pinned)
        except ServerNotTrusted as e:
            fp = fingerprint(der)
            if fp not in self._refused:  # every attempt is refused; said loudly once per certificate
                self._refused.add(fp)
                self.rejects.reject(e.reason, f"{ep.name}: SHA-256 {fp}")
                log.error("%s: %s", self.name, e)
            raise

    def _count_bad_node(self, reason: str, sig: MonitoredSignal, status: Any = None) -> None:
        # counted once per node for the collector's life: a reconnect is not a new problem
        if sig.node_id in self._unknown_nodes:
            return
        self._unknown_nodes.add(sig.node_id)
        detail = f"{sig.node_id} ({sig.site}/{sig.line}/{sig.machine}/{sig.signal})"
        if status is not None:
            detail += f" {getattr(status, 'name', status)}"
        self.rejects.reject(reason, detail)

    async def _set_security(self, client: Any) -> None:
        from asyncua import ua
        from asyncua.crypto import security_policies

        ep = self.endpoint
        assert ep.certificate and ep.private_key  # _check_security at construction
        uri = _certificate_uri(ep.certificate)
        if uri:
            # asyncua checks that our application URI matches the one in our certificate
            client.application_uri = uri
        mode = ua.MessageSecurityMode.Sign if ep.security_mode == "Sign" else ua.MessageSecurityMode.SignAndEncrypt
        await client.set_security(security_policies.SecurityPolicyBasic256Sha256, ep.certificate, ep.private_key,
                                  server_certificate=ep.server_certificate, mode=mode)

    async def _set_identity(self, client: Any) -> None:
        """Who we are to the server: an X.509 user certificate (user_certificate +
        user_private_key) or a username/password from the environment (the endpoint's own
        GWANJE_OPCUA_USERNAME_<NAME> first), else anonymous."""
        ep = self.endpoint
        if ep.user_certificate and ep.user_private_key:
            await client.load_client_certificate(ep.user_certificate)
            await client.load_private_key(Path(ep.user_private_key))
            return
        user, password = self._secrets.opcua_login(ep.name)
        if user:
            client.set_user(user)
            if password:
                client.set_password(password)

    async def _why(self, e: BaseException) -> str:
        """A failed connect -> the cause in one line (never a credential). When the error itself
        does not say (asyncua found no matching endpoint, or the server just dropped a
        channel it would not open), the server's endpoints are asked what it offers."""
        offered = None
        if isinstance(e, (TimeoutError, asyncio.TimeoutError, ConnectionError)) or "No matching endpoints" in str(e):
            offered = await _offered_security(self.url)
        return explain_connect_error(e, self.endpoint, offered, self._user_kind(), self.url)

    def _user_kind(self) -> str:
        ep = self.endpoint
        if ep.user_certificate and ep.user_private_key:
            return "certificate"
        return "password" if self._secrets.opcua_login(ep.name)[0] else "anonymous"

    async def _close(self, client: Any, timeout: float = _CLOSE_TIMEOUT_S) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except Exception:
            client.disconnect_socket()


def _check_security(ep: OpcuaEndpoint) -> None:
    """Refuse contradictory security settings at construction, not at the first connect."""
    if ep.security_policy == "None" and ep.security_mode != "None":
        raise ValueError(f"opcua endpoint {ep.name}: security_mode {ep.security_mode} needs "
                         f"security_policy Basic256Sha256")
    if ep.security_policy != "None":
        if ep.security_mode == "None":
            raise ValueError(f"opcua endpoint {ep.name}: security_policy {ep.security_policy} needs "
                             f"security_mode Sign or SignAndEncrypt")
        if not (ep.certificate and ep.private_key):
            raise ValueError(f"opcua endpoint {ep.name}: security_policy {ep.security_policy} needs "
                             f"certificate and private_key")


def _certificate_uri(path: str) -> Optional[str]:
    """The URI in a certificate's subjectAltName, if any (PEM or DER file)."""
    from cryptography import x509

    data = open(path, "rb").read()
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


_CERT_REFUSED = {"BadCertificateUntrusted", "BadSecurityChecksFailed", "BadCertificateInvalid",
                 "BadCertificateUriInvalid", "BadCertificateUseNotAllowed", "BadCertificateTimeInvalid",
                 "BadCertificateIssuerTimeInvalid", "BadCertificateRevoked", "BadCertificateIssuerRevoked",
                 "BadCertificateRevocationUnknown", "BadCertificateIssuerRevocationUnknown",
                 "BadCertificateIssuerUseNotAllowed", "BadCertificatePolicyCheckFailed"}
_USER_REFUSED = {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid",
                 "BadUserSignatureInvalid"}
_MODE_REFUSED = {"BadSecurityPolicyRejected", "BadSecurityModeRejected"}
_MODE_NO = {"None": 1, "Sign": 2, "SignAndEncrypt": 3}
_MODE_NAME = {v: k for k, v in _MODE_NO.items()}


def explain_connect_error(e: BaseException, ep: OpcuaEndpoint, offered: Optional[list[tuple[str, str]]] = None,
                          user_kind: str = "password", url: Optional[str] = None) -> str:
    """A failed OPC UA connect -> one line naming the cause. offered: the (policy, mode) pairs
    the server's endpoints announce, when known. Pure."""
    if isinstance(e, ServerNotTrusted):
        return e.short
    code = type(e).__name__
    ours = f"{ep.security_policy}/{ep.security_mode}"
    if offered is not None and offered and (ep.security_policy, ep.security_mode) not in offered:
        need = ", ".join(f"{p}/{m}" for p, m in offered)
        what = "SignAndEncrypt" if all(m == "SignAndEncrypt" for _, m in offered) else need
        return f"server requires {what} (no matching endpoint for our {ours}; it offers {need})"
    if code in _CERT_REFUSED:
        return (f"server rejected our certificate ({code}): trust our application certificate "
                f"{ep.certificate or ''} on the server (`python app.py certs` prints its fingerprint)")
    if code in _USER_REFUSED:
        if user_kind == "certificate":
            return f"server refused our user certificate ({code}; user_certificate {ep.user_certificate})"
        if user_kind == "anonymous":
            return f"server refused an anonymous session ({code}): set GWANJE_OPCUA_USERNAME/PASSWORD"
        return f"bad user or password ({code}; GWANJE_OPCUA_USERNAME/PASSWORD)"
    if code in _MODE_REFUSED:
        return f"server refused our security {ours} ({code}): no matching endpoint"
    if "No matching endpoints" in str(e):
        return f"the server offers no endpoint with our security {ours} (no matching endpoint)"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused: no OPC UA server listening at {redact_url(url or ep.url)}"
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return "timed out (server not answering, or it dropped a secure channel it would not open)"
    return f"{code}: {e}"


async def _offered_security(url: str) -> Optional[list[tuple[str, str]]]:
    """(policy, mode) of every endpoint the server announces (GetEndpoints, no session);
    None when it cannot be asked."""
    from asyncua import Client

    try:
        client = Client(url, timeout=3)
        endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), 5)
    except Exception:
        return None
    out = []
    for e in endpoints:
        pair = (e.SecurityPolicyUri.rpartition("#")[2], _MODE_NAME.get(int(e.SecurityMode), str(e.SecurityMode)))
        if pair not in out:
            out.append(pair)
    return out


async def _first(*aws: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
