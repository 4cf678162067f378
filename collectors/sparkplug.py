"""Sparkplug B (spBv1.0, Sparkplug 3.0) for the MQTT collector, as a host application: the
payloads decoded with the protobuf runtime from the Eclipse Tahu schema
(collectors/sparkplug_b.proto, generated module collectors/sparkplug_b_pb2.py), the session
state of every edge node (birth, bdSeq, seq, aliases), and what turns its messages into Samples.

Names: spBv1.0/{group}/{type}/{edge node}/{device} -> site / line / machine and metric name
-> signal id, each through gwanje.naming.slug ("Press Line 2" -> press-line-2, "Motor/Speed"
-> motor-speed) unless system.yaml mqtt.sparkplug.devices maps the device explicitly.

Sessions, per edge node (group, edge node):
- NBIRTH starts a session: its bdSeq and seq are remembered; every later message of the node
  (NDATA, DBIRTH, DDATA, DDEATH) must carry the next seq (0..255, wrapping).
- A seq gap, an alias no DBIRTH defined, or data from a node or device whose birth we have not
  seen (e.g. after our own restart) asks the node for a rebirth: an NCMD
  `Node Control/Rebirth` = true, at most one per node per mqtt.sparkplug.rebirth_interval_s.
  The decoder only queues the request (take_rebirths); the collector publishes it.
- NDEATH whose bdSeq matches the session's ends it; one that does not is a stale will of an
  earlier session and is ignored. DDEATH ends one device's session.
- Death: every signal of the dead devices we have a value for gets one BAD-quality sample
  (its last value) at the death time, so the tiles, the engine and the alarm rules treat the
  machine as unknown at once (state unknown, counters not counted, no limit alarms) rather
  than after plant.stale_after_s of silence.

Values: integers by datatype (Int8..Int64 as two's complement in int_value or long_value,
UInt8..UInt64 as they are, DateTime as epoch ms) become floats, Float/Double floats,
Boolean 1/0, String/Text/UUID text; is_null is "no value now" (nothing stored, no error).
DataSet, Template, Bytes, File, arrays and extensions are rejected as
`unsupported_sparkplug_type` (no signal kind holds them). Historical metrics (is_historical)
are stored at their own times but are not the device's "now": they neither become the value a
death repeats nor a clock observation.

No I/O here. Not thread-safe: one decoder per MQTT network loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from google.protobuf.message import DecodeError

from collectors import sparkplug_b_pb2 as pb
from collectors.clock import ClockOffsets
from gwanje.config import SparkplugConfig
from gwanje.model import BadValue, Quality, Sample, now_ns
from gwanje.naming import slug
from gwanje.normalize import MIN_TS, FutureTimestamp, Normalizer

NAMESPACE = "spBv1.0"
OTHER_INSTANCE = "other_instance"  # data of a line another collect instance owns (gwanje.partition)
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

# Sparkplug B DataType (sparkplug_b.proto)
INT8, INT16, INT32, INT64 = pb.Int8, pb.Int16, pb.Int32, pb.Int64
UINT8, UINT16, UINT32, UINT64 = pb.UInt8, pb.UInt16, pb.UInt32, pb.UInt64
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = (
    pb.Float, pb.Double, pb.Boolean, pb.String, pb.DateTime, pb.Text, pb.UUID)
DATASET, BYTES, FILE, TEMPLATE = pb.DataSet, pb.Bytes, pb.File, pb.Template

_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_UNSIGNED = frozenset((UINT8, UINT16, UINT32, UINT64, DATETIME))
_TEXT_TYPES = frozenset((STRING, TEXT, UUID))
_FLOATS = frozenset((FLOAT, DOUBLE))
_INT_FIELDS = frozenset(("int_value", "long_value"))
_FLOAT_FIELDS = frozenset(("float_value", "double_value"))
_UNSUPPORTED_FIELDS = frozenset(("bytes_value", "dataset_value", "template_value", "extension_value"))

_EXACT_INT = 2**53
_MAX_TRACKED = 10_000  # edge nodes and name caches: bounded against topics made up on the wire

MetricValue = Union[int, float, bool, str, None]


class SparkplugError(ValueError):
    """The bytes are not a Sparkplug B payload we can read."""


# ------------------------------------------------------------------------------ encoding
@dataclass
class Metric:
    """One metric to encode (the simulator, tests): the value goes into the field the
    Sparkplug specification gives its datatype (inferred from the value when not given)."""

    name: Optional[str] = None
    alias: Optional[int] = None
    timestamp: Optional[int] = None  # ms since epoch
    datatype: Optional[int] = None
    value: MetricValue = None
    is_null: bool = False
    is_historical: bool = False


def _infer_datatype(value: MetricValue) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    raise TypeError(f"cannot infer a Sparkplug datatype for {type(value).__name__}")


def _fill(out: pb.Payload.Metric, m: Metric) -> None:
    if m.name is not None:
        out.name = m.name
    if m.alias is not None:
        out.alias = m.alias
    if m.timestamp is not None:
        out.timestamp = m.timestamp
    if m.is_historical:
        out.is_historical = True
    datatype = m.datatype if m.datatype is not None or m.value is None else _infer_datatype(m.value)
    if datatype is not None:
        out.datatype = datatype
    if m.is_null or m.value is None:
        if m.is_null:
            out.is_null = True
        return
    v = m.value
    if datatype == BOOLEAN:
        out.boolean_value = bool(v)
    elif datatype == FLOAT:
        out.float_value = float(v)  # type: ignore[arg-type]
    elif datatype == DOUBLE:
        out.double_value = float(v)  # type: ignore[arg-type]
    elif datatype in _TEXT_TYPES:
        out.string_value = str(v)
    elif datatype in (INT8, INT16, INT32, UINT8, UINT16, UINT32):
        out.int_value = int(v) & 0xFFFFFFFF  # type: ignore[arg-type]  # two's complement in uint32
    elif datatype in (INT64, UINT64, DATETIME):
        out.long_value = int(v) & 0xFFFFFFFFFFFFFFFF  # type: ignore[arg-type]
    else:
        raise ValueError(f"datatype {datatype}: not a scalar this encoder writes")


def encode_payload(metrics: list[Metric], timestamp: Optional[int] = None, seq: Optional[int] = None) -> bytes:
    """Sparkplug B Payload bytes. Timestamps are ms since epoch."""
    p = pb.Payload()
    if timestamp is not None:
        p.timestamp = timestamp
    if seq is not None:
        p.seq = seq
    for m in metrics:
        _fill(p.metrics.add(), m)
    return p.SerializeToString()


def rebirth_request(ts_ms: int) -> bytes:
    """The NCMD payload that asks an edge node to publish its births again."""
    return encode_payload([Metric(name=REBIRTH, datatype=BOOLEAN, value=True)], timestamp=ts_ms)


# ------------------------------------------------------------------------------ decoding
def decode_payload(data: bytes) -> pb.Payload:
    """Parse a Sparkplug B Payload; raise SparkplugError for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SparkplugError("payload is not bytes")
    try:
        return pb.Payload.FromString(bytes(data))
    except (DecodeError, ValueError, UnicodeDecodeError) as e:
        raise SparkplugError(str(e)) from None


def metric_value(m: pb.Payload.Metric, datatype: int) -> tuple[MetricValue, Optional[str]]:
    """(value, None) for a scalar metric of this datatype (the metric's own, or its birth's
    when the data message leaves it out; 0: unknown, read the value field as it is), or
    (None, rejection reason)."""
    which = m.WhichOneof("value")
    if which is None:
        return None, "bad_sparkplug"
    if which in _UNSUPPORTED_FIELDS or datatype > UUID:
        return None, "unsupported_sparkplug_type"
    if which in _INT_FIELDS:
        v = m.int_value if which == "int_value" else m.long_value
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            # two's complement: of 32 bits in int_value, 64 in long_value; Int8/Int16 are
            # also seen as the narrow form (-1 as 255)
            width = 32 if which == "int_value" else 64
            if v >= 1 << (width - 1):
                v -= 1 << width
            if bits < width and (1 << (bits - 1)) <= v < (1 << bits):
                v -= 1 << bits
            return v, None
        if datatype in _UNSIGNED or datatype == 0:
            return v, None
        return None, "sparkplug_type_mismatch"
    if which in _FLOAT_FIELDS:
        if datatype in _FLOATS or datatype == 0:
            return (m.float_value if which == "float_value" else m.double_value), None
        return None, "sparkplug_type_mismatch"
    if which == "boolean_value":
        return (m.boolean_value, None) if datatype in (BOOLEAN, 0) else (None, "sparkplug_type_mismatch")
    if datatype not in _TEXT_TYPES and datatype != 0:
        return None, "sparkplug_type_mismatch"
    v = m.string_value
    # proto2 strings are not checked on parse: the runtime hands back bytes that are not UTF-8
    return (v, None) if type(v) is str else (None, "bad_utf8")


def _bdseq(p: pb.Payload) -> Optional[int]:
    for m in p.metrics:
        if m.name == BDSEQ:
            which = m.WhichOneof("value")
            if which == "long_value":
                return m.long_value
            if which == "int_value":
                return m.int_value
    return None


# ------------------------------------------------------------------- messages -> samples
@dataclass
class _Device:
    key: Optional[tuple[str, str, str]]  # site, line, machine; None: not a machine of ours
    metrics: dict[str, str]  # explicit metric name -> signal id
    born: bool = False
    names: dict[int, str] = field(default_factory=dict)  # alias -> metric name (from DBIRTH)
    types: dict[str, int] = field(default_factory=dict)  # metric name -> datatype (from DBIRTH)
    signals: dict[str, str] = field(default_factory=dict)  # metric name -> signal id (cache)
    last: dict[str, Sample] = field(default_factory=dict)  # signal -> newest live sample
    newest_ts: int = 0
    foreign: bool = False  # a machine of a line another collect instance owns

    def signal(self, name: str) -> str:
        s = self.signals.get(name)
        if s is None:
            s = self.metrics.get(name) or slug(name)
            if len(self.signals) < _MAX_TRACKED:
                self.signals[name] = s
        return s


@dataclass
class _Node:
    born: bool = False
    bd_seq: Optional[int] = None
    next_seq: Optional[int] = None
    last_rebirth: float = float("-inf")
    devices: dict[str, _Device] = field(default_factory=dict)


@dataclass
class SparkplugStats:
    births: int = 0  # NBIRTH
    deaths: int = 0  # NDEATH and DDEATH that ended a session
    stale_deaths: int = 0  # NDEATH of an earlier session (bdSeq mismatch): ignored
    seq_gaps: int = 0
    rebirths_requested: int = 0  # NCMD Node Control/Rebirth queued (after the rate limit)


class SparkplugDecoder:
    """Turns Sparkplug B messages into Samples; keeps each edge node's session. Not
    thread-safe: one decoder per MQTT network loop."""

    def __init__(self, normalizer: Normalizer, clock: Optional[ClockOffsets] = None,
                 settings: Optional[SparkplugConfig] = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.normalizer = normalizer
        self.clock = clock if clock is not None else ClockOffsets()
        self.settings = settings if settings is not None else normalizer.config.system.mqtt.sparkplug
        self.monotonic = monotonic
        self.stats = SparkplugStats()
        # machine -> {signal: kind}, for the fast path of plain numbers (see _samples)
        self._kinds: dict[tuple[str, str, str], dict[str, str]] = {
            m.key: {s.id: s.kind for s in m.signals} for m in normalizer.config.machines()}
        self._explicit = {(d.group, d.edge_node, d.device): d for d in self.settings.devices}
        self._nodes: dict[tuple[str, str], _Node] = {}
        # scaled-out collect (gwanje.partition): the lines other instances own, and the edge
        # nodes an explicit mapping of ours names (never skipped whatever their slug says)
        self._foreign = normalizer.config.foreign_lines
        ours = {(m.site, m.line) for m in normalizer.config.machines()}
        self._our_nodes = {(d.group, d.edge_node) for d in self.settings.devices if d.ids()[:2] in ours}
        self._foreign_nodes: dict[tuple[str, str], bool] = {}
        self._rebirths: list[tuple[str, str]] = []

    @staticmethod
    def handles(topic: str) -> bool:
        return topic.startswith("spBv1.0/")

    @property
    def deaths(self) -> int:
        return self.stats.deaths

    def take_rebirths(self) -> list[tuple[str, str]]:
        """(group, edge node) of each rebirth request queued since the last call."""
        out, self._rebirths = self._rebirths, []
        return out

    # -------------------------------------------------------------------------- routing
    def decode(self, topic: str, payload: bytes, now: Optional[int] = None) -> tuple[list[Sample], list[str]]:
        levels = topic.split("/")
        if levels[0] != NAMESPACE:
            return [], ["unknown_topic"]
        # STATE of host applications (ours too) and commands (ours, other hosts') carry no data
        if len(levels) == 3 and levels[1] == "STATE":
            return [], []
        if len(levels) == 4:
            kind = levels[2]
            if kind not in ("NBIRTH", "NDEATH", "NDATA", "NCMD"):
                return [], ["unknown_topic"]
        elif len(levels) == 5:
            kind = levels[2]
            if kind not in ("DBIRTH", "DDEATH", "DDATA", "DCMD"):
                return [], ["unknown_topic"]
        else:
            return [], ["unknown_topic"]
        if kind in ("NCMD", "DCMD"):
            return [], []
        if self._foreign and self._foreign_node(levels[1], levels[3]):
            # an edge node of a line another collect instance owns (gwanje.partition): no
            # session, no rebirth request, not even a parse
            return [], [OTHER_INSTANCE]
        try:
            p = decode_payload(payload)
        except SparkplugError:
            return [], ["bad_sparkplug"]
        now = now_ns() if now is None else now
        group, edge = levels[1], levels[3]
        node = self._node(group, edge)
        if kind == "NBIRTH":
            self._birth(node, p)
            return [], []
        if kind == "NDEATH":
            return self._node_death(node, p, now), []
        self._check_seq(group, edge, node, p)
        if kind == "NDATA":
            return [], []  # node metrics belong to no machine
        dev = self._device(node, group, edge, levels[4])
        if kind == "DDEATH":
            self.stats.deaths += 1
            return self._death(dev, now), []
        if kind == "DBIRTH":
            dev.born = True
            dev.names.clear()
            dev.types.clear()
            for m in p.metrics:
                if m.HasField("name") and type(m.name) is str:
                    if m.HasField("alias"):
                        dev.names[m.alias] = m.name
                    if m.HasField("datatype"):
                        dev.types[m.name] = m.datatype
        elif not dev.born:
            self._ask_rebirth(group, edge, node)
        if dev.key is None:
            return [], [OTHER_INSTANCE if dev.foreign else "unknown_machine"]
        samples, rejects = self._samples(dev, p, now)
        if "unknown_alias" in rejects:
            self._ask_rebirth(group, edge, node)
        return samples, rejects

    def _foreign_node(self, group: str, edge: str) -> bool:
        """An edge node whose line (the slug rule) another instance owns and that no explicit
        mapping of ours names."""
        f = self._foreign_nodes.get((group, edge))
        if f is None:
            f = (slug(group), slug(edge)) in self._foreign and (group, edge) not in self._our_nodes
            if len(self._foreign_nodes) < _MAX_TRACKED:
                self._foreign_nodes[(group, edge)] = f
        return f

    def _node(self, group: str, edge: str) -> _Node:
        node = self._nodes.get((group, edge))
        if node is None:
            node = _Node()
            if len(self._nodes) < _MAX_TRACKED:
                self._nodes[(group, edge)] = node
        return node

    def _device(self, node: _Node, group: str, edge: str, device: str) -> _Device:
        dev = node.devices.get(device)
        if dev is None:
            explicit = self._explicit.get((group, edge, device))
            key = explicit.ids() if explicit else (slug(group), slug(edge), slug(device))
            dev = _Device(key if key in self._kinds else None, explicit.metrics if explicit else {},
                          foreign=key not in self._kinds and key[:2] in self._foreign)
            if len(node.devices) < _MAX_TRACKED:
                node.devices[device] = dev
        return dev

    # ------------------------------------------------------------------------- sessions
    def _birth(self, node: _Node, p: pb.Payload) -> None:
        self.stats.births += 1
        node.born = True
        node.bd_seq = _bdseq(p)
        node.next_seq = (p.seq + 1) % 256 if p.HasField("seq") else None
        for dev in node.devices.values():  # their DBIRTHs follow; their last values stay for a death
            dev.born = False
            dev.names.clear()
            dev.types.clear()

    def _check_seq(self, group: str, edge: str, node: _Node, p: pb.Payload) -> None:
        if not node.born:
            self._ask_rebirth(group, edge, node)
            return
        seq = p.seq if p.HasField("seq") else None
        if node.next_seq is not None and seq != node.next_seq:
            self.stats.seq_gaps += 1
            self._ask_rebirth(group, edge, node)
        node.next_seq = None if seq is None else (seq + 1) % 256

    def _ask_rebirth(self, group: str, edge: str, node: _Node) -> None:
        t = self.monotonic()
        if t - node.last_rebirth >= self.settings.rebirth_interval_s:
            node.last_rebirth = t
            self.stats.rebirths_requested += 1
            self._rebirths.append((group, edge))

    def _node_death(self, node: _Node, p: pb.Payload, now: int) -> list[Sample]:
        bd = _bdseq(p)
        if not node.born or (node.bd_seq is not None and bd is not None and bd != node.bd_seq):
            # the will of a session we did not see, or of one before the current birth: the
            # node is alive (a real death after an unseen birth is found by the rebirth its
            # next data asks for, or by plant.stale_after_s)
            self.stats.stale_deaths += 1
            return []
        node.born = False
        node.next_seq = None
        self.stats.deaths += 1
        out: list[Sample] = []
        for dev in node.devices.values():
            out += self._death(dev, now)
        return out

    def _death(self, dev: _Device, now: int) -> list[Sample]:
        """One BAD sample per signal of the device we have a value for, at the death time
        (after its newest sample, so it is the newest even from a clock a little ahead)."""
        dev.born = False
        dev.names.clear()
        dev.types.clear()
        if dev.key is None or not dev.last:
            return []
        ts = max(now, dev.newest_ts + 1)
        out = [Sample(s.site, s.line, s.machine, s.signal, s.value, ts, Quality.BAD) for s in dev.last.values()]
        dev.last.clear()
        return out

    # -------------------------------------------------------------------------- metrics
    def _samples(self, dev: _Device, p: pb.Payload, now: int) -> tuple[list[Sample], list[str]]:
        assert dev.key is not None
        site, line, machine = dev.key
        kinds = self._kinds[dev.key]
        samples: list[Sample] = []
        rejects: list[str] = []
        sample = self.normalizer.sample
        # the source times Normalizer accepts (after 2000-01-01, at most the clock tolerance
        # ahead), for the fast path
        ts_max = now + self.normalizer.future_tolerance_ns
        ahead_ts = 0  # the newest time rejected as too far ahead: the clock observation needs it
        live_ts = 0  # the newest time of a live (not historical) sample
        payload_ms = p.timestamp if p.HasField("timestamp") else None
        last = dev.last
        for m in p.metrics:
            if m.HasField("name"):
                name = m.name
                if type(name) is not str:  # not UTF-8 (see metric_value)
                    rejects.append("bad_utf8")
                    continue
            elif m.HasField("alias"):
                name = dev.names.get(m.alias)  # type: ignore[assignment]
                if name is None:
                    rejects.append("unknown_alias")
                    continue
            else:
                rejects.append("bad_sparkplug")
                continue
            if m.is_null:
                continue  # a null says "no value now": nothing to store, nothing wrong
            value, reason = metric_value(m, m.datatype or dev.types.get(name, 0))
            if reason is not None:
                rejects.append(reason)
                continue
            ms = m.timestamp if m.HasField("timestamp") else payload_ms
            ts = None if ms is None else ms * 1_000_000
            signal = dev.signal(name)
            signal_kind = kinds.get(signal)
            # fast path, the same rules as Normalizer.sample for a plain finite number of a
            # numeric signal at an in-range source time; everything else goes through it
            if (signal_kind is not None and signal_kind != "text" and ts is not None and MIN_TS <= ts <= ts_max
                    and ((type(value) is float and value - value == 0.0)
                         or (type(value) is int and -_EXACT_INT <= value <= _EXACT_INT))):
                s = Sample(site, line, machine, signal, float(value), ts)  # type: ignore[arg-type]
            else:
                try:
                    s = sample(site, line, machine, signal, value, ts, Quality.GOOD, now)
                except BadValue as e:
                    rejects.append(str(e))
                    if type(e) is FutureTimestamp and e.ts > ahead_ts:
                        ahead_ts = e.ts
                    continue
            samples.append(s)
            if not m.is_historical:
                last[signal] = s
                if s.ts > live_ts:
                    live_ts = s.ts
        if live_ts > dev.newest_ts:
            dev.newest_ts = live_ts
        newest = max(live_ts, ahead_ts)
        if newest:
            self.clock.observe(dev.key, newest, now)
        return samples, rejects
