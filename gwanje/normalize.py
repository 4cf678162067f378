"""Turn what a source says (names, raw value, raw time, quality) into a validated Sample.

Both collectors go through here, so MQTT and OPC UA reject the same things for the same
reasons: unknown machine or signal, wrong type for the signal's kind, NaN/inf, absurd time,
a time further ahead of the collector's clock than system.yaml clock.future_tolerance_s.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Optional

from gwanje.config import ClockConfig, Config
from gwanje.model import MAX_TEXT_LEN, NS_PER_S, BadValue, Quality, Sample, coerce_value, now_ns

# accepted source times: after 2000-01-01 and at most the tolerance ahead of receive time
MIN_TS = 946_684_800 * NS_PER_S
DEFAULT_FUTURE_TOLERANCE_NS = int(ClockConfig().future_tolerance_s * NS_PER_S)


class FutureTimestamp(BadValue):
    """A source time further ahead of the receive time than the tolerance: the source's clock
    is fast. Carries the times, so a collector can still tell how far ahead the clock is."""

    def __init__(self, ts: int, now: int) -> None:
        super().__init__("timestamp_in_future")
        self.ts = ts
        self.now = now


def parse_ts(raw: Any, now: Optional[int] = None,
             future_tolerance_ns: int = DEFAULT_FUTURE_TOLERANCE_NS) -> int:
    """Source time to ns since epoch. Numbers: seconds, ms, µs or ns by magnitude; strings:
    ISO 8601 (a missing offset means UTC). None -> now (receive time)."""
    now = now_ns() if now is None else now
    if raw is None:
        return now
    if isinstance(raw, bool):
        raise BadValue("bad_timestamp")
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and (math.isnan(raw) or math.isinf(raw)):
            raise BadValue("bad_timestamp")
        a = abs(raw)
        if a < 1e11:  # seconds (until year 5138)
            ts = int(round(raw * NS_PER_S))
        elif a < 1e14:
            ts = int(round(raw * 1_000_000))
        elif a < 1e17:
            ts = int(round(raw * 1_000))
        else:
            ts = int(raw)
    elif isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadValue("bad_timestamp") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        ts = int(dt.timestamp()) * NS_PER_S + dt.microsecond * 1000
    else:
        raise BadValue("bad_timestamp")
    if ts < MIN_TS:
        raise BadValue("timestamp_out_of_range")
    if ts > now + future_tolerance_ns:
        raise FutureTimestamp(ts, now)
    return ts


class Normalizer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.future_tolerance_ns = int(config.system.clock.future_tolerance_s * NS_PER_S)
        # (site, line, machine, signal) -> signal kind; built once, looked up per sample
        self._kinds: dict[tuple[str, str, str, str], str] = {}
        self._machines: set[tuple[str, str, str]] = set()
        for m in config.machines():
            self._machines.add(m.key)
            for s in m.signals:
                self._kinds[(*m.key, s.id)] = s.kind

    def sample(self, site: Any, line: Any, machine: Any, signal: Any, raw: Any,
               ts: Any = None, quality: Quality = Quality.GOOD, now: Optional[int] = None) -> Sample:
        """A validated Sample, or BadValue whose message is the rejection reason."""
        kind = self._kinds.get((site, line, machine, signal)) if all(
            isinstance(x, str) for x in (site, line, machine, signal)) else None
        if kind is None:
            if (site, line, machine) in self._machines:
                raise BadValue("unknown_signal")
            raise BadValue("unknown_machine")
        value = coerce_value(raw)
        if kind == "text":
            if not isinstance(value, str):
                value = _num_text(value)
                if len(value) > MAX_TEXT_LEN:  # 1e300 as digits would pass coerce_value's bound
                    raise BadValue("text_too_long")
        elif not isinstance(value, float):
            # state codes may be strings on some PLCs
            if kind != "state":
                raise BadValue("text_for_numeric_signal")
        return Sample(site, line, machine, signal, value, parse_ts(ts, now, self.future_tolerance_ns), quality)


def _num_text(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)
