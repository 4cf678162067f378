"""Decoding one MQTT message (topic, payload bytes) into validated Samples and rejection
reasons, for every format in docs/payloads.md: JSON on the unified-namespace topics
(system.yaml mqtt.topic_templates) and Sparkplug B on spBv1.0/... (collectors.sparkplug).

No I/O and no client library: the MQTT collector calls `MessageDecoder.decode` from paho's
network thread, tests and benches call it directly. It never raises for bad input; a bad
element of a batch rejects only that element. Message-level problems (too large, not JSON,
unknown topic or machine, wrong shape, a bad shared "ts"/"quality") give one reason for the
message; element-level problems give one reason per element.

Each decoded message of a machine is also one clock observation (collectors.clock): its last
sample's time, or the time of an element rejected as too far ahead, against `now`.

Topic levels and value keys are ids of plant.yaml, or foreign names whose
gwanje.naming.slug is one ("Press Line 2" -> press-line-2: what `discover` writes).

JSON objects must not carry keys other than the documented ones ("ts", "values", "quality",
"signal", "value"): a typo such as "qualty" would otherwise silently turn bad data good, so
it is a `bad_shape` rejection instead.

Speed (issue 11): the common message — every element a finite number for a numeric signal
of the machine at an integer epoch-ms or epoch-ns time, no quality — decodes in one typed
msgspec pass into columns (a gwanje.batch.SampleBatch: series id, time, value), checked per
message with C-level operations (a set of types, one sum for finiteness, min/max for the
time range). Anything else — a text value, a quality, an ISO time, a bad element — takes the
general path below, which gives each element its own reason exactly as before (it returns
Samples; the pipeline turns them into columns). Topic templates are compiled to one regex
each, once. Property tests (tests/collectors/test_payloads_props.py) hold both fast paths to
the Normalizer's results.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Optional, Sequence, Union

import msgspec

from collectors.clock import ClockOffsets
from collectors.sparkplug import SparkplugDecoder
from gwanje.batch import SERIES, SampleBatch
from gwanje.config import Config
from gwanje.model import MAX_TEXT_LEN, BadValue, Quality, Sample, now_ns
from gwanje.naming import slug
from gwanje.normalize import MIN_TS, FutureTimestamp, Normalizer, parse_ts

# (samples — a list of Samples or a SampleBatch, both Sequence[Sample] — , rejection reasons)
Decoded = tuple[Sequence[Sample], list[str]]

_FIELDS = ("site", "line", "machine", "signal")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_QUALITIES = {q.value: q for q in Quality}

# parse_ts reads integers in [1e11, 1e14) as epoch milliseconds and accepts times after
# 2000-01-01 and at most the clock tolerance ahead: the batch fast path applies the same rule
# in one check
_MS_MIN = max(10**11, MIN_TS // 1_000_000)
_MS_MAX = 10**14 - 1
# ... and integers from 1e17 up as epoch nanoseconds (gateways stamping with time.time_ns())
_NS_MIN = max(10**17, MIN_TS)

_EXACT_INT = 2**53

_MISSING = object()


class _Element(msgspec.Struct, forbid_unknown_fields=True):
    """One element of a batch message, as the fast path reads it (docs/payloads.md)."""

    signal: str
    value: float  # an int is read as its float; text, bools, null: the general path
    ts: Optional[int] = None


class _ValuesMessage(msgspec.Struct, forbid_unknown_fields=True):
    """{"ts": .., "values": {signal: value, ..}} with an integer time and no quality."""

    values: dict[str, Union[float, str]]
    ts: int


class _SignalMessage(msgspec.Struct, forbid_unknown_fields=True):
    """{"value": <number>, "ts": <int>} on a signal topic."""

    value: float
    ts: int


_ELEMENTS = msgspec.json.Decoder(list[_Element])
_SIGNAL = msgspec.json.Decoder(_SignalMessage)
_VALUES = msgspec.json.Decoder(_ValuesMessage)
_VALUES_KEYS = frozenset(("values", "ts", "quality"))
_SIGNAL_KEYS = frozenset(("value", "ts", "quality"))


class TopicTemplate:
    """One topic template, e.g. "gwanje/{site}/{line}/{machine}/{signal}", compiled once.
    A placeholder stands for one whole topic level or a part of it ("cell-{line}") and never
    matches '/' or an empty string; MQTT wildcards are not allowed in templates."""

    def __init__(self, template: str) -> None:
        self.template = template
        names = _PLACEHOLDER.findall(template)
        unknown = [n for n in names if n not in _FIELDS]
        if unknown:
            raise ValueError(f"topic template {template!r}: unknown placeholder(s) {unknown}, use {list(_FIELDS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"topic template {template!r}: a placeholder appears twice")
        if any(n not in names for n in ("site", "line", "machine")):
            raise ValueError(f"topic template {template!r}: needs {{site}}, {{line}} and {{machine}}")
        literal = _PLACEHOLDER.sub("\x00", template)
        if "+" in literal or "#" in literal:
            raise ValueError(f"topic template {template!r}: MQTT wildcards are not allowed")
        parts = literal.split("\x00")
        pattern = re.escape(parts[0]) + "".join(
            f"(?P<{n}>[^/]+)" + re.escape(rest) for n, rest in zip(names, parts[1:]))
        self._re = re.compile(pattern)
        self.has_signal = "signal" in names

    def match(self, topic: str) -> Optional[dict[str, str]]:
        m = self._re.fullmatch(topic)
        return m.groupdict() if m else None


class JsonDecoder:
    """JSON payloads on the configured topic templates (first matching template wins). Not
    thread-safe (it keeps the message being decoded's clock reading): one per network loop."""

    def __init__(self, templates: Sequence[str], normalizer: Normalizer,
                 clock: Optional[ClockOffsets] = None) -> None:
        self.templates = [TopicTemplate(t) for t in templates]
        self.normalizer = normalizer
        self.clock = clock if clock is not None else ClockOffsets()
        self._ahead_ts = 0  # newest time rejected as too far ahead in the message being decoded
        # machine -> {signal: kind}: the fast path's one lookup per sample
        self._kinds: dict[tuple[str, str, str], dict[str, str]] = {
            m.key: {s.id: s.kind for s in m.signals} for m in normalizer.config.machines()}
        self._foreign = normalizer.config.foreign_lines
        self._numeric = {key: frozenset(sig for sig, kind in kinds.items() if kind != "text")
                         for key, kinds in self._kinds.items()}
        # the fast path's tables (series ids registered at config load): machine -> {signal: sid}
        # for its numeric signals, and for all its signals, and the sids of its text signals
        self._num_sid: dict[tuple[str, str, str], dict[str, int]] = {}
        self._all_sid: dict[tuple[str, str, str], dict[str, int]] = {}
        self._text_sids: dict[tuple[str, str, str], frozenset[int]] = {}
        for key, kinds in self._kinds.items():
            ids = {sig: SERIES.id(*key, sig) for sig in kinds}
            self._all_sid[key] = ids
            self._num_sid[key] = {sig: i for sig, i in ids.items() if kinds[sig] != "text"}
            self._text_sids[key] = frozenset(i for sig, i in ids.items() if kinds[sig] == "text")
        self.fast_messages = 0  # decoded by the columnar fast path (the rest: general path)

    def decode(self, topic: str, payload: bytes, now: Optional[int] = None) -> Decoded:
        names = None
        for t in self.templates:
            names = t.match(topic)
            if names is not None:
                break
        if names is None:
            return [], ["unknown_topic"]
        site, line, machine = names["site"], names["line"], names["machine"]
        kinds = self._kinds.get((site, line, machine))
        if kinds is None:
            # a foreign name ("Press Line 2") is configured by its id (gwanje.naming.slug,
            # what `discover` writes); exact ids first, so ids with "_" keep working
            site, line, machine = _id_of(site), _id_of(line), _id_of(machine)
            kinds = self._kinds.get((site, line, machine))
            if kinds is None:
                # a line another collect instance owns (gwanje.partition): not an error here
                return [], ["other_instance" if (site, line) in self._foreign else "unknown_machine"]
        now = now_ns() if now is None else now
        sig = names.get("signal")
        fast = (self._fast(site, line, machine, payload, now) if sig is None
                else self._fast_signal(site, line, machine, sig, payload, now))
        if fast is not None:
            self.fast_messages += 1
            self.clock.observe((site, line, machine), fast.ts[-1], now)
            return fast, []
        try:
            # utf-8-sig: a leading byte-order mark (some PLC gateways send one) is dropped
            doc = json.loads(payload.decode("utf-8-sig"))
        except UnicodeDecodeError:
            return [], ["bad_utf8"]
        except (ValueError, RecursionError):  # JSONDecodeError, int too long, nesting
            return [], ["bad_json"]
        signal = names.get("signal")
        if signal is not None and signal not in kinds:
            signal = _id_of(signal)
        self._ahead_ts = 0
        if signal is not None:
            out = self._signal_topic(site, line, machine, signal, doc, now)
        elif isinstance(doc, list):
            out = self._batch(site, line, machine, kinds, doc, now)
        elif not isinstance(doc, dict):
            return [], ["bad_shape"]
        elif "values" in doc:
            out = self._values(site, line, machine, kinds, doc, now)
        elif "signal" in doc:
            out = self._batch(site, line, machine, kinds, [doc], now)
        else:
            return [], ["bad_shape"]
        # the last sample's time: batches come in time order, a values message has one time
        newest = out[0][-1].ts if out[0] else 0
        if self._ahead_ts > newest:
            newest = self._ahead_ts
        if newest:
            self.clock.observe((site, line, machine), newest, now)
        return out

    def _fast(self, site: str, line: str, machine: str, payload: bytes, now: int) -> Optional[SampleBatch]:
        """The columnar fast path (module docstring): the message as a SampleBatch, or None
        when anything about it needs the general path (which then decides, with reasons)."""
        key = (site, line, machine)
        ns_hi = now + self.normalizer.future_tolerance_ns
        try:
            if payload[:1] == b"[":
                items = _ELEMENTS.decode(payload)
                if not items:
                    return None
                sids = self._num_sid[key]
                sid = [sids[e.signal] for e in items]  # KeyError: not a numeric signal of it
                ts = [e.ts for e in items]
                value = nums = [e.value for e in items]
            elif payload[:1] == b"{":
                msg = _VALUES.decode(payload)
                if not msg.values:
                    return None
                ids = self._all_sid[key]
                sid = [ids[k] for k in msg.values]  # KeyError: an unknown or foreign signal
                value = list(msg.values.values())
                if str in set(map(type, value)):
                    # text only for text signals, numbers only for numeric ones; within limits
                    text = self._text_sids[key]
                    for i, v in zip(sid, value):
                        if (type(v) is str) != (i in text) or (type(v) is str and (len(v) > MAX_TEXT_LEN or "\x00" in v)):
                            return None
                    nums = [v for v in value if type(v) is float]
                else:
                    if not self._text_sids[key].isdisjoint(sid):
                        return None
                    nums = value
                ts = [msg.ts] * len(sid)
            else:
                return None
            # finite numbers only: one C-level sum (nan or inf make it non-finite; so may an
            # overflow of finite values, which the exact check then tells apart)
            total = sum(nums)
            if total - total != 0.0 and not all(map(math.isfinite, nums)):
                return None
            if None in ts:  # a missing time is the receive time: the general path
                return None
            lo, hi = min(ts), max(ts)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError):
            return None
        if _MS_MIN <= lo and hi <= min(_MS_MAX, ns_hi // 1_000_000):
            ts = [t * 1_000_000 for t in ts]
        elif not (_NS_MIN <= lo and hi <= ns_hi):
            return None
        return SampleBatch(sid, ts, value, None)

    def _fast_signal(self, site: str, line: str, machine: str, signal: str, payload: bytes,
                     now: int) -> Optional[SampleBatch]:
        """A single-sample message on a signal topic, {"value": <finite number>, "ts": <int>}
        for a numeric signal: one typed decode, a one-row batch; None: the general path."""
        sid = self._num_sid[(site, line, machine)].get(signal)
        if sid is None or payload[:1] != b"{":
            return None
        try:
            m = _SIGNAL.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        v, t = m.value, m.ts
        if v - v != 0.0:  # inf (a number too large for a float is a validation error)
            return None
        ns_hi = now + self.normalizer.future_tolerance_ns
        if _MS_MIN <= t <= min(_MS_MAX, ns_hi // 1_000_000):
            t *= 1_000_000
        elif not (_NS_MIN <= t <= ns_hi):
            return None
        return SampleBatch([sid], [t], [v], None)

    def _reason(self, e: BadValue) -> str:
        if type(e) is FutureTimestamp and e.ts > self._ahead_ts:
            self._ahead_ts = e.ts
        return str(e)

    def _signal_topic(self, site: str, line: str, machine: str, signal: str, doc: Any, now: int) -> Decoded:
        norm = self.normalizer
        try:
            if isinstance(doc, dict):
                if "value" not in doc or not doc.keys() <= _SIGNAL_KEYS:
                    return [], ["bad_shape"]
                s = norm.sample(site, line, machine, signal, doc["value"], doc.get("ts"),
                                _quality(doc.get("quality")), now)
            elif isinstance(doc, list):
                return [], ["bad_shape"]
            else:
                s = norm.sample(site, line, machine, signal, doc, None, Quality.GOOD, now)
        except BadValue as e:
            return [], [self._reason(e)]
        return [s], []

    def _values(self, site: str, line: str, machine: str, kinds: dict[str, str], doc: dict[str, Any],
                now: int) -> Decoded:
        """{"ts": .., "values": {signal: value, ..}, "quality": ..}: one time for all values."""
        values = doc["values"]
        if not isinstance(values, dict) or not doc.keys() <= _VALUES_KEYS:
            return [], ["bad_shape"]
        try:
            quality = _quality(doc.get("quality"))
            # parsed once; a bad shared time rejects the message once, not once per value
            ts = parse_ts(doc.get("ts"), now, self.normalizer.future_tolerance_ns)
        except BadValue as e:
            return [], [self._reason(e)]
        samples: list[Sample] = []
        rejects: list[str] = []
        sample = self.normalizer.sample
        for signal, raw in values.items():
            kind = kinds.get(signal)
            if kind is None:
                signal = _id_of(signal)  # a foreign key, configured by its id (see decode)
                kind = kinds.get(signal)
            # fast path: a finite number for a numeric signal (what nearly every message
            # carries); everything else goes through the Normalizer, which gives the reason
            if kind is not None and kind != "text" and _plain_number(raw):
                samples.append(Sample(site, line, machine, signal, float(raw), ts, quality))
                continue
            try:
                samples.append(sample(site, line, machine, signal, raw, ts, quality, now))
            except BadValue as e:
                rejects.append(self._reason(e))
        return samples, rejects

    def _batch(self, site: str, line: str, machine: str, kinds: dict[str, str], items: list[Any],
               now: int) -> Decoded:
        """[{"signal": .., "value": .., "ts": .., "quality": ..}, ..]; each element on its own."""
        samples: list[Sample] = []
        rejects: list[str] = []
        sample = self.normalizer.sample
        numeric = self._numeric[(site, line, machine)]
        # epoch milliseconds that parse_ts accepts, as one range check (the fast path below)
        ns_hi = now + self.normalizer.future_tolerance_ns
        ms_lo, ms_hi = _MS_MIN, min(_MS_MAX, ns_hi // 1_000_000)
        for item in items:
            if type(item) is not dict:
                rejects.append("bad_shape")
                continue
            signal = item.get("signal")
            raw = item.get("value", _MISSING)
            ts = item.get("ts")
            q = item.get("quality")
            # only the documented keys: counting them is cheaper than a set per element
            if type(signal) is not str or raw is _MISSING or len(item) != 2 + ("ts" in item) + ("quality" in item):
                rejects.append("bad_shape")
                continue
            t = type(raw)
            # fast path (what nearly every element is): a finite number, or an int a float
            # holds exactly, for a numeric signal at an epoch-ms time parse_ts would accept
            if (q is None and type(ts) is int and signal in numeric
                    and ((t is float and raw - raw == 0.0) or (t is int and -_EXACT_INT <= raw <= _EXACT_INT))):
                if ms_lo <= ts <= ms_hi:
                    samples.append(Sample(site, line, machine, signal, float(raw), ts * 1_000_000))
                    continue
                if _NS_MIN <= ts <= ns_hi:
                    samples.append(Sample(site, line, machine, signal, float(raw), ts))
                    continue
            if signal not in kinds:
                signal = _id_of(signal)  # a foreign name, configured by its id (see decode)
            try:
                samples.append(sample(site, line, machine, signal, raw, ts,
                                      Quality.GOOD if q is None else _quality(q), now))
            except BadValue as e:
                rejects.append(self._reason(e))
        return samples, rejects


def _id_of(name: Any) -> str:
    """The id a foreign name is configured by; "" (no id) for a name with invisible or
    control characters ("cnc-101\u202e" must not pass for cnc-101)."""
    return slug(name) if isinstance(name, str) and name.isprintable() else ""


def _plain_number(raw: Any) -> bool:
    """A finite float, or an int a float holds exactly: coerce_value would accept it as is.
    (bool is not int here: type() is exact, so True takes the Normalizer's path.)"""
    t = type(raw)
    return (t is float and raw - raw == 0.0) or (t is int and -_EXACT_INT <= raw <= _EXACT_INT)


def _quality(raw: Any) -> Quality:
    if raw is None:
        return Quality.GOOD
    q = _QUALITIES.get(raw) if isinstance(raw, str) else None
    if q is None:
        raise BadValue("bad_quality")
    return q


class MessageDecoder:
    """Every message format the MQTT collector accepts: Sparkplug B on spBv1.0/... (when
    system.yaml mqtt.sparkplug.enabled), JSON on the topic templates, and a size limit first."""

    def __init__(self, config: Config, normalizer: Optional[Normalizer] = None) -> None:
        mqtt = config.system.mqtt
        self.normalizer = normalizer or Normalizer(config)
        self.max_payload_bytes = mqtt.max_payload_bytes
        # one clock figure per machine, whichever format its messages come in
        self.clock = ClockOffsets()
        self.json = JsonDecoder(mqtt.topic_templates, self.normalizer, self.clock)
        self.sparkplug = (SparkplugDecoder(self.normalizer, self.clock, mqtt.sparkplug)
                          if mqtt.sparkplug.enabled else None)

    def decode(self, topic: str, payload: bytes, now: Optional[int] = None) -> Decoded:
        """(samples, rejection reasons) for one message; never raises for bad input."""
        if len(payload) > self.max_payload_bytes:
            return [], ["payload_too_large"]
        if self.sparkplug is not None and SparkplugDecoder.handles(topic):
            return self.sparkplug.decode(topic, payload, now)
        return self.json.decode(topic, payload, now)
