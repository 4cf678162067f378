"""The one sample model every source becomes, and the derived records the engine writes.

No I/O here. Timestamps are integers: nanoseconds since the Unix epoch, UTC. A sample's
identity is its series (site, line, machine, signal) plus its source timestamp, so a sample
delivered twice (MQTT QoS 1 redelivery, spool replay) overwrites itself in every store.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

NS_PER_S = 1_000_000_000

Value = Union[float, str]


class Quality(str, Enum):
    """OPC UA's three severities; MQTT sources report good unless they say otherwise."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"

    @property
    def code(self) -> int:
        return _QUALITY_CODE[self]

    @classmethod
    def from_code(cls, code: int) -> "Quality":
        return _CODE_QUALITY.get(int(code), cls.BAD)


_QUALITY_CODE = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_CODE_QUALITY = {v: k for k, v in _QUALITY_CODE.items()}


class MachineState(str, Enum):
    """The states every PLC code is mapped to (config: state_codes per machine class)."""

    RUNNING = "running"
    IDLE = "idle"
    DOWN = "down"
    SETUP = "setup"
    PLANNED_STOP = "planned_stop"
    UNKNOWN = "unknown"  # no data, or a code the config does not map


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one signal of one machine at one source time.

    value is a float for numeric signals (counters, analog values, PLC state codes) and a
    str for text signals (LOT number). Booleans and ints are stored as floats.
    """

    site: str
    line: str
    machine: str
    signal: str
    value: Value
    ts: int  # source time, ns since epoch (UTC)
    quality: Quality = Quality.GOOD

    @property
    def series(self) -> tuple[str, str, str, str]:
        return (self.site, self.line, self.machine, self.signal)

    @property
    def is_numeric(self) -> bool:
        return isinstance(self.value, float)


def _fast_sample_init() -> None:
    """Replace Sample's generated __init__ (same signature, same frozen result) with one that
    sets the slots through their descriptors: the dataclass version looks each field up in
    object.__setattr__ and costs ~0.8 µs per sample, this one ~0.4 µs — and every sample of
    every source is built once (ingest at 100k+ samples/s)."""
    s_site, s_line, s_machine, s_signal, s_value, s_ts, s_quality = (
        Sample.__dict__[n].__set__ for n in ("site", "line", "machine", "signal", "value", "ts", "quality"))

    def __init__(self: Sample, site: str, line: str, machine: str, signal: str, value: Value, ts: int,
                 quality: Quality = Quality.GOOD) -> None:
        s_site(self, site)
        s_line(self, line)
        s_machine(self, machine)
        s_signal(self, signal)
        s_value(self, value)
        s_ts(self, ts)
        s_quality(self, quality)

    __init__.__qualname__ = "Sample.__init__"
    Sample.__init__ = __init__  # type: ignore[method-assign]


_fast_sample_init()


@dataclass(frozen=True, slots=True)
class Event:
    """A derived or operator record: a state change, an alarm lifecycle event, a downtime
    reason, a shift OEE result. Identity: (kind, site, line, machine, key, ts) — writing the
    same identity again replaces the record. data must be JSON-serialisable."""

    kind: str
    ts: int
    site: str
    line: str = ""
    machine: str = ""
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str, str, str, int]:
        return (self.kind, self.site, self.line, self.machine, self.key, self.ts)


class BadValue(ValueError):
    """A value that cannot become a sample; the message is the counted rejection reason."""


def coerce_value(raw: Any) -> Value:
    """Turn a decoded payload value into a sample value, or raise BadValue with a reason.

    bool/int/float -> float (finite only: NaN and ±inf are rejected, a monitoring system
    must not plot or store invented infinities); str -> str (bounded length).
    """
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, (int, float)):
        try:
            v = float(raw)
        except OverflowError:
            raise BadValue("number_out_of_range") from None
        if math.isnan(v):
            raise BadValue("nan")
        if math.isinf(v):
            raise BadValue("infinite")
        return v
    if isinstance(raw, str):
        if len(raw) > MAX_TEXT_LEN:
            raise BadValue("text_too_long")
        if "\x00" in raw:
            raise BadValue("text_has_nul")
        return raw
    raise BadValue(f"wrong_type:{type(raw).__name__}")


MAX_TEXT_LEN = 256


def now_ns() -> int:
    return time.time_ns()
