"""Sparkplug B for the MQTT collector: the protobuf wire format of Payload/Metric, decoded and
encoded by hand, and the per-device alias state that turns DBIRTH/DDATA messages into Samples.

Hand-written because pysparkplug pins paho-mqtt < 2 and we want no protoc step; only the
fields we use are interpreted (Payload.timestamp=1, metrics=2, seq=3; Metric.name=1, alias=2,
timestamp=3, datatype=4, is_null=7, int_value=10 .. string_value=15), every other field is
skipped by its wire type. Anything that does not parse raises SparkplugError, never an
IndexError or a crash: payloads come from the network.

Topic mapping: spBv1.0/{group}/{type}/{edge node}/{device} -> site / line / machine.
No I/O here; the decoder's state is the alias table learned from DBIRTH (and the clock
offsets it observes, one per DBIRTH/DDATA message: collectors.clock).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional, Union

from collectors.clock import ClockOffsets
from gwanje.model import BadValue, Quality, Sample, now_ns
from gwanje.normalize import MIN_TS, FutureTimestamp, Normalizer

NAMESPACE = "spBv1.0"

# Sparkplug B DataType enum (the ones that can become a sample value)
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
_SIGNED_32 = frozenset((INT8, INT16, INT32))
_TEXT_TYPES = frozenset((STRING, TEXT, UUID))
_INT32_TYPES = frozenset((INT8, INT16, INT32, UINT8, UINT16, UINT32))

_EXACT_INT = 2**53

# protobuf wire types
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

MetricValue = Union[int, float, bool, str, None]


class SparkplugError(ValueError):
    """The bytes are not a Sparkplug B payload we can read."""


@dataclass
class Metric:
    name: Optional[str] = None
    alias: Optional[int] = None
    timestamp: Optional[int] = None  # ms since epoch
    datatype: Optional[int] = None
    value: MetricValue = None
    is_null: bool = False
    # which value field carried the value on the wire (10..15), or None; a value field we do
    # not turn into samples (bytes, dataset, template, extension) leaves its number here
    value_field: Optional[int] = None


@dataclass
class Payload:
    timestamp: Optional[int] = None  # ms since epoch
    seq: Optional[int] = None
    metrics: list[Metric] = field(default_factory=list)


# ------------------------------------------------------------------------------ decoding
def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise SparkplugError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise SparkplugError("varint too long")


def _fields(buf: bytes, pos: int, end: int):
    """Yield (field number, wire type, value) for each field in buf[pos:end]; value is an int
    for varints, the bounds (start, stop) of the bytes for LEN fields and the raw 4/8 bytes
    for fixed fields."""
    while pos < end:
        # one-byte keys, lengths and small values are the common case: no call for them
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise SparkplugError("field number 0")
        if wt == _VARINT:
            if pos < end and buf[pos] < 0x80:
                v = buf[pos]
                pos += 1
            else:
                v, pos = _varint(buf, pos, end)
            yield num, wt, v
        elif wt == _LEN:
            if pos < end and buf[pos] < 0x80:
                n = buf[pos]
                pos += 1
            else:
                n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise SparkplugError("length beyond the payload")
            yield num, wt, (pos, pos + n)
            pos += n
        elif wt == _FIXED64:
            if pos + 8 > end:
                raise SparkplugError("truncated fixed64")
            yield num, wt, buf[pos:pos + 8]
            pos += 8
        elif wt == _FIXED32:
            if pos + 4 > end:
                raise SparkplugError("truncated fixed32")
            yield num, wt, buf[pos:pos + 4]
            pos += 4
        else:  # groups (3, 4) are not in the Sparkplug schema; 6, 7 do not exist
            raise SparkplugError(f"wire type {wt}")


def _expect(wt: int, want: int, what: str) -> None:
    if wt != want:
        raise SparkplugError(f"{what}: wire type {wt}, expected {want}")


def _text(buf: bytes, span: tuple[int, int], what: str) -> str:
    try:
        return buf[span[0]:span[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise SparkplugError(f"{what} is not UTF-8") from None


def _decode_metric(buf: bytes, start: int, end: int) -> Metric:
    m = Metric()
    for num, wt, v in _fields(buf, start, end):
        if num == 1:
            _expect(wt, _LEN, "name")
            m.name = _text(buf, v, "name")
        elif num == 2:
            _expect(wt, _VARINT, "alias")
            m.alias = v
        elif num == 3:
            _expect(wt, _VARINT, "timestamp")
            m.timestamp = v
        elif num == 4:
            _expect(wt, _VARINT, "datatype")
            m.datatype = v
        elif num == 7:
            _expect(wt, _VARINT, "is_null")
            m.is_null = bool(v)
        elif num in (10, 11):
            _expect(wt, _VARINT, "int_value")
            m.value, m.value_field = v, num
        elif num == 12:
            _expect(wt, _FIXED32, "float_value")
            m.value, m.value_field = struct.unpack("<f", v)[0], num
        elif num == 13:
            _expect(wt, _FIXED64, "double_value")
            m.value, m.value_field = struct.unpack("<d", v)[0], num
        elif num == 14:
            _expect(wt, _VARINT, "boolean_value")
            m.value, m.value_field = bool(v), num
        elif num == 15:
            _expect(wt, _LEN, "string_value")
            m.value, m.value_field = _text(buf, v, "string_value"), num
        elif 16 <= num <= 19:  # bytes, dataset, template, extension: kept as "present"
            m.value, m.value_field = None, num
        # 5 is_historical, 6 is_transient, 8 metadata, 9 properties: not used
    if m.value_field in (10, 11) and isinstance(m.value, int):
        m.value = _signed(m.value, m.datatype, m.value_field)
    return m


def _signed(v: int, datatype: Optional[int], value_field: int) -> int:
    """Sparkplug carries signed integers as their two's complement in uint32/uint64."""
    if value_field == 10:
        v &= 0xFFFFFFFF
        if datatype in _SIGNED_32 and v >= 1 << 31:
            v -= 1 << 32
    elif datatype == INT64 and v >= 1 << 63:
        v -= 1 << 64
    return v


def decode_payload(data: bytes) -> Payload:
    """Parse a Sparkplug B Payload; raise SparkplugError for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SparkplugError("payload is not bytes")
    buf = bytes(data)
    p = Payload()
    for num, wt, v in _fields(buf, 0, len(buf)):
        if num == 1:
            _expect(wt, _VARINT, "timestamp")
            p.timestamp = v
        elif num == 2:
            _expect(wt, _LEN, "metric")
            p.metrics.append(_decode_metric(buf, v[0], v[1]))
        elif num == 3:
            _expect(wt, _VARINT, "seq")
            p.seq = v
    return p


def _signed_after(m: Metric, datatype: Optional[int]) -> MetricValue:
    """A DDATA metric may omit its datatype (it was given in DBIRTH): re-read the sign."""
    if m.datatype is None and datatype is not None and m.value_field in (10, 11) and isinstance(m.value, int):
        return _signed(m.value, datatype, m.value_field)
    return m.value


# ------------------------------------------------------------------------------ encoding
def _put_varint(out: bytearray, v: int) -> None:
    v &= 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_key(out: bytearray, num: int, wt: int) -> None:
    _put_varint(out, (num << 3) | wt)


def _put_len(out: bytearray, num: int, data: bytes) -> None:
    _put_key(out, num, _LEN)
    _put_varint(out, len(data))
    out += data


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


def encode_metric(m: Metric) -> bytes:
    out = bytearray()
    if m.name is not None:
        _put_len(out, 1, m.name.encode("utf-8"))
    if m.alias is not None:
        _put_key(out, 2, _VARINT)
        _put_varint(out, m.alias)
    if m.timestamp is not None:
        _put_key(out, 3, _VARINT)
        _put_varint(out, m.timestamp)
    datatype = m.datatype if m.datatype is not None or m.value is None else _infer_datatype(m.value)
    if datatype is not None:
        _put_key(out, 4, _VARINT)
        _put_varint(out, datatype)
    if m.is_null or m.value is None:
        if m.is_null:
            _put_key(out, 7, _VARINT)
            _put_varint(out, 1)
        return bytes(out)
    v = m.value
    if datatype == BOOLEAN:
        _put_key(out, 14, _VARINT)
        _put_varint(out, 1 if v else 0)
    elif datatype == FLOAT:
        _put_key(out, 12, _FIXED32)
        out += struct.pack("<f", float(v))  # type: ignore[arg-type]
    elif datatype == DOUBLE:
        _put_key(out, 13, _FIXED64)
        out += struct.pack("<d", float(v))  # type: ignore[arg-type]
    elif datatype in _TEXT_TYPES:
        _put_len(out, 15, str(v).encode("utf-8"))
    elif datatype in _INT32_TYPES:
        _put_key(out, 10, _VARINT)
        _put_varint(out, int(v) & 0xFFFFFFFF)  # type: ignore[arg-type]
    else:  # INT64, UINT64, DATETIME
        _put_key(out, 11, _VARINT)
        _put_varint(out, int(v))  # type: ignore[arg-type]
    return bytes(out)


def encode_payload(metrics: list[Metric], timestamp: Optional[int] = None, seq: Optional[int] = None) -> bytes:
    """Sparkplug B Payload bytes (for the simulator and tests). Timestamps are ms."""
    out = bytearray()
    if timestamp is not None:
        _put_key(out, 1, _VARINT)
        _put_varint(out, timestamp)
    for m in metrics:
        _put_len(out, 2, encode_metric(m))
    if seq is not None:
        _put_key(out, 3, _VARINT)
        _put_varint(out, seq)
    return bytes(out)


# ------------------------------------------------------------------- messages -> samples
@dataclass
class _Device:
    names: dict[int, str] = field(default_factory=dict)  # alias -> metric name
    types: dict[str, int] = field(default_factory=dict)  # metric name -> datatype


class SparkplugDecoder:
    """Turns Sparkplug B messages into Samples; remembers each device's aliases and datatypes
    from its DBIRTH. Not thread-safe: one decoder per MQTT network loop."""

    def __init__(self, normalizer: Normalizer, clock: Optional[ClockOffsets] = None) -> None:
        self.normalizer = normalizer
        self.clock = clock if clock is not None else ClockOffsets()
        # machine -> {signal: kind}, for the fast path of plain numbers (see decode)
        self._kinds: dict[tuple[str, str, str], dict[str, str]] = {
            m.key: {s.id: s.kind for s in m.signals} for m in normalizer.config.machines()}
        self._devices: dict[tuple[str, str, str], _Device] = {}
        self.deaths = 0  # DDEATH / NDEATH seen (a device or edge node went offline)

    @staticmethod
    def handles(topic: str) -> bool:
        return topic.startswith("spBv1.0/")

    def decode(self, topic: str, payload: bytes, now: Optional[int] = None) -> tuple[list[Sample], list[str]]:
        levels = topic.split("/")
        # STATE (v3: spBv1.0/STATE/<host>) and node-level messages carry no machine samples
        if len(levels) == 3 and levels[1] == "STATE":
            return [], []
        if len(levels) not in (4, 5) or levels[0] != NAMESPACE:
            return [], ["unknown_topic"]
        kind = levels[2]
        if len(levels) == 4:
            if kind in ("NBIRTH", "NDEATH"):
                # a new session of the edge node: its devices re-announce their aliases
                self._forget(levels[1], levels[3])
                self.deaths += kind == "NDEATH"
                return [], []
            if kind in ("NDATA", "NCMD"):
                return [], []
            return [], ["unknown_topic"]
        site, line, machine = levels[1], levels[3], levels[4]
        if kind == "DDEATH":
            self._devices.pop((site, line, machine), None)
            self.deaths += 1
            return [], []
        if kind == "DCMD":
            return [], []
        if kind not in ("DBIRTH", "DDATA"):
            return [], ["unknown_topic"]
        kinds = self._kinds.get((site, line, machine))
        if kinds is None:
            return [], ["unknown_machine"]
        try:
            p = decode_payload(payload)
        except SparkplugError:
            return [], ["bad_sparkplug"]
        key = (site, line, machine)
        if kind == "DBIRTH":
            dev = self._devices[key] = _Device()
            for m in p.metrics:
                if m.name is not None:
                    if m.alias is not None:
                        dev.names[m.alias] = m.name
                    if m.datatype is not None:
                        dev.types[m.name] = m.datatype
        else:
            dev = self._devices.get(key) or _Device()
        now = now_ns() if now is None else now
        samples: list[Sample] = []
        rejects: list[str] = []
        sample = self.normalizer.sample
        # the source times Normalizer accepts (after 2000-01-01, at most the clock tolerance
        # ahead), for the fast path
        ts_max = now + self.normalizer.future_tolerance_ns
        ahead_ts = 0  # the newest time rejected as too far ahead: the clock observation needs it
        for m in p.metrics:
            name = m.name if m.name is not None else dev.names.get(m.alias) if m.alias is not None else None
            if name is None:
                rejects.append("unknown_alias" if m.alias is not None else "bad_sparkplug")
                continue
            if m.is_null:
                continue  # a null says "no value now": nothing to store, nothing wrong
            if m.value_field is None or m.value_field >= 16:
                rejects.append("bad_sparkplug" if m.value_field is None else "unsupported_sparkplug_type")
                continue
            ms = m.timestamp if m.timestamp is not None else p.timestamp
            ts = None if ms is None else ms * 1_000_000
            value = _signed_after(m, dev.types.get(name))
            signal_kind = kinds.get(name)
            # fast path, the same rules as Normalizer.sample for a plain finite number of a
            # numeric signal at an in-range source time; everything else goes through it
            if (signal_kind is not None and signal_kind != "text" and ts is not None and MIN_TS <= ts <= ts_max
                    and ((type(value) is float and value - value == 0.0)
                         or (type(value) is int and -_EXACT_INT <= value <= _EXACT_INT))):
                samples.append(Sample(site, line, machine, name, float(value), ts))  # type: ignore[arg-type]
                continue
            try:
                samples.append(sample(site, line, machine, name, value, ts, Quality.GOOD, now))
            except BadValue as e:
                rejects.append(str(e))
                if type(e) is FutureTimestamp and e.ts > ahead_ts:
                    ahead_ts = e.ts
        # the last metric's time (a payload is in time order), as the JSON decoder does
        newest = max(samples[-1].ts if samples else 0, ahead_ts)
        if newest:
            self.clock.observe(key, newest, now)
        return samples, rejects

    def _forget(self, site: str, line: str) -> None:
        for key in [k for k in self._devices if k[0] == site and k[1] == line]:
            del self._devices[key]
