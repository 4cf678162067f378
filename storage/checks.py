"""What every store refuses, whatever its format: checks on samples and events before a write.

Pure functions, no I/O. A store calls these for each record of a batch, counts the refused
ones under their reason (gwanje.rejects.Rejects) and writes the rest, so one bad record never
costs the good records around it.
"""
from __future__ import annotations

import json
import re
import threading
from itertools import compress, repeat
from operator import not_
from typing import Any, Optional

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


# ---------------------------------------------------------------------- columnar batches
# What sample_problem says of every sample of a gwanje.batch.SampleBatch, from its columns.
# A batch's quality column holds codes: a sample's quality is a Quality exactly when its code
# is an int 0..2 (gwanje.batch._quality); anything else is garbage a caller put there.
FLOATS = "floats"  # batch_kind: every sample writable, every value a float
MIXED = "mixed"  # every sample writable, values floats and texts
_INT = {int}
_FLOAT = {float}
_FLOAT_STR = {float, str}
_CODES = frozenset((0, 1, 2))


def key_problem(key: object) -> Optional[str]:
    """series_problem of a series key that may hold unhashable garbage (every store calls
    such a name name_not_str before looking at the others)."""
    try:
        hash(key)
    except TypeError:
        return "name_not_str"
    return series_problem(key)  # type: ignore[arg-type]


class SeriesChecks:
    """key_problem of every id of a series table (its "series_problem" column), and the set of
    ids that have one — almost always empty, so a batch's name check costs nothing."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.reasons: list[Optional[str]] = []
        self.bad: set[int] = set()
        self._seen = 0
        self._lock = threading.Lock()

    def refresh(self) -> "SeriesChecks":
        reasons = self.table.column("series_problem", key_problem)
        if self._seen < len(reasons):
            with self._lock:
                for i in range(self._seen, len(reasons)):
                    if reasons[i] is not None:
                        self.bad.add(i)
                self._seen = max(self._seen, len(reasons))
        self.reasons = reasons
        return self


_CHECKS: dict[int, SeriesChecks] = {}


def series_checks(table: Any) -> SeriesChecks:
    """The SeriesChecks of a series table, brought up to date with its ids."""
    c = _CHECKS.get(id(table))
    if c is None or c.table is not table:
        c = _CHECKS[id(table)] = SeriesChecks(table)
    return c.refresh()


def batch_kind(batch: Any, bad: set[int]) -> Optional[str]:
    """FLOATS or MIXED when sample_problem (and the series check) is None for every sample
    of the batch, found by C-level passes over its columns; None when some column check
    fails (then batch_problems says which samples and why). bad: SeriesChecks.bad."""
    sid, ts, val, q = batch.sid, batch.ts, batch.value, batch.quality
    if not sid:
        return FLOATS
    if bad and not bad.isdisjoint(sid):
        return None
    if set(map(type, ts)) != _INT or min(ts) < MIN_TS or max(ts) > MAX_TS:
        return None
    if q is not None and (set(map(type, q)) != _INT or not _CODES.issuperset(q)):
        return None
    types = set(map(type, val))
    if types == _FLOAT:
        total = sum(val)
        # finite iff every value is (NaN and ±inf propagate); an overflow of finite values
        # only sends the batch the slow way
        return FLOATS if total - total == 0.0 else None
    if types <= _FLOAT_STR:
        is_float = list(map(isinstance, val, repeat(float)))
        total = sum(compress(val, is_float))
        if total - total != 0.0:
            return None
        texts = list(compress(val, map(not_, is_float)))
        if max(map(len, texts)) > MAX_TEXT_BYTES // 4:
            return None  # maybe too long: value_problem decides, sample by sample
        joined = "".join(texts)
        # a str never pairs surrogates across items: the join encodes iff every text does
        return MIXED if "\x00" not in joined and _utf8_ok(joined) else None
    return None


def batch_problems(batch: Any, reasons: list[Optional[str]]) -> list[tuple[int, str]]:
    """(position, reason) of every sample of the batch a store refuses, in order: the series'
    names first (reasons: SeriesChecks.reasons), then sample_problem's value, time, quality."""
    out: list[tuple[int, str]] = []
    q = batch.quality
    quals = repeat(0, len(batch.sid)) if q is None else q
    for k, (i, v, t, c) in enumerate(zip(batch.sid, batch.value, batch.ts, quals)):
        p = reasons[i]
        if p is None:
            if (type(v) is float and v - v == 0.0 and type(t) is int and MIN_TS <= t <= MAX_TS
                    and type(c) is int and 0 <= c <= 2):
                continue
            p = value_problem(v) or ts_problem(t) or (
                None if type(c) is int and 0 <= c <= 2 else "quality_wrong_type")
            if p is None:
                continue
        out.append((k, p))
    return out
