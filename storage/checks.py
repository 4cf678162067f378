"""What every store refuses, whatever its format: checks on samples and events before a write.

Pure functions, no I/O. A store calls these for each record of a batch, counts the refused
ones under their reason (gwanje.rejects.Rejects) and writes the rest, so one bad record never
costs the good records around it.
"""
from __future__ import annotations

import json
import re
from typing import Optional

from gwanje.model import Event, Quality, Sample

# InfluxDB's valid time range; the embedded store keeps the same range so both agree
MIN_TS = -9_223_372_036_854_775_806
MAX_TS = 9_223_372_036_854_775_806
# names are ids from config in practice; anything far longer is garbage or an attack
MAX_NAME_LEN = 256
# InfluxDB 1.x refuses string fields above 64 KiB
MAX_TEXT_BYTES = 64 * 1024 - 1
# Names every store must be able to give back unchanged. InfluxDB's line protocol cannot
# carry a newline in a tag, and has no escape for a backslash that stands before `,`, `=`,
# a space or the end of a tag (it reads `\\,` as an escaped comma). The embedded store refuses
# the same names, so switching stores never changes which data is kept.
_UNSTORABLE_NAME = re.compile(r"[\n\r]|\\(?:[,= ]|$)")


def name_problem(name: object) -> Optional[str]:
    if type(name) is not str:
        return "name_not_str"
    if len(name) > MAX_NAME_LEN:
        return "name_too_long"
    if "\x00" in name:
        return "name_has_nul"
    if not _utf8_ok(name):
        return "name_not_utf8"
    m = _UNSTORABLE_NAME.search(name)
    if m:
        return "name_has_newline" if m.group(0) in ("\n", "\r") else "name_backslash_before_separator"
    return None


def ts_problem(ts: object) -> Optional[str]:
    if type(ts) is not int:
        return "ts_not_int"
    if not MIN_TS <= ts <= MAX_TS:
        return "ts_out_of_range"
    return None


def value_problem(value: object) -> Optional[str]:
    t = type(value)
    if t is float:
        # x - x is 0.0 for every finite float and NaN for NaN and ±inf
        return None if value - value == 0.0 else "value_not_finite"  # type: ignore[operator]
    if t is str:
        if "\x00" in value:  # type: ignore[operator]
            return "text_has_nul"
        if not _utf8_ok(value):  # type: ignore[arg-type]
            return "text_not_utf8"
        if len(value) > MAX_TEXT_BYTES // 4 and len(value.encode("utf-8")) > MAX_TEXT_BYTES:  # type: ignore[union-attr]
            return "text_too_long"
        return None
    return f"value_wrong_type:{t.__name__}"


def sample_problem(s: Sample) -> Optional[str]:
    """Why the sample cannot be stored, or None. Names are checked by the caller, which
    can cache the answer per series (a batch holds few distinct series)."""
    v, ts = s.value, s.ts
    # the common case in one expression: this runs for every sample of every batch
    if (type(v) is float and v - v == 0.0 and type(ts) is int and MIN_TS <= ts <= MAX_TS
            and isinstance(s.quality, Quality)):
        return None
    return value_problem(v) or ts_problem(ts) or (
        None if isinstance(s.quality, Quality) else "quality_wrong_type")


def series_problem(series: tuple[str, ...]) -> Optional[str]:
    for n in series:
        p = name_problem(n)
        if p:
            return p
    return None


def event_json(e: Event) -> str:
    """The event's data as JSON, or ValueError naming why it has none (NaN, not serialisable)."""
    p = series_problem((e.kind, e.site, e.line, e.machine, e.key)) or ts_problem(e.ts)
    if p:
        raise ValueError(p)
    if not isinstance(e.data, dict):
        raise ValueError("event_data_not_dict")
    try:
        text = json.dumps(e.data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise ValueError("event_data_not_json") from None
    # JSON keeps the data as text; a NUL or a lone surrogate in it is refused like in a name
    if "\x00" in text or not _utf8_ok(text):
        raise ValueError("event_data_bad_text")
    if len(text) > MAX_TEXT_BYTES // 4 and len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError("event_data_too_long")
    return text


def _utf8_ok(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
