"""InfluxDB line protocol for samples and events: encoding with correct escaping.

Pure code, no I/O. Layout (one point per line, timestamps in ns):

    sample,site=<s>,line=<l>,machine=<m>,signal=<g> value=<float>,q=<code>i <ts>
    sample,site=<s>,line=<l>,machine=<m>,signal=<g> text="<str>",q=<code>i <ts>
    event,kind=<k>,site=<s>,line=<l>,machine=<m>,key=<key> data="<json>" <ts>

Quality is a field, not a tag: a point is identified by its tags and timestamp, so a
re-delivered sample overwrites itself even when its quality changed.

Escaping (InfluxDB line protocol reference): in tag values `,`, `=` and space take a
backslash; in string fields `"` and `\\` do. Line protocol cannot carry an empty tag value,
so an empty name (line, machine, key) is written by leaving the tag out and read back as ""
(a missing tag reads as "" in InfluxQL). Some names cannot be written at all and are
refused with a reason instead of being stored altered:
  - a newline or carriage return in a name (it ends the line);
  - a backslash right before `,`, `=`, space or at the end of a name: InfluxDB's parser
    reads `\\,` as an escaped comma and has no escape for a backslash itself in tags.
Newlines in text values are fine: they sit inside a quoted string field.

The hot path caches the escaped tag prefix per series: a batch holds thousands of samples of
a few hundred series, so escaping runs per series, not per sample. A polars-expression
encoder was measured against this loop (bench/store_write.py data, 100k samples): no faster,
because reading the fields out of Sample objects, which both need, dominates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

from gwanje.model import Event, Quality, Sample
from storage.checks import event_json, name_problem, sample_problem, series_problem

SAMPLE_TAGS = ("site", "line", "machine", "signal")
EVENT_TAGS = ("kind", "site", "line", "machine", "key")

_TAG_SPECIAL = re.compile(r"([,= ])")


@dataclass
class Encoded:
    """One batch in line protocol (one string per point), and what was refused (record, reason)."""

    points: list[str]
    rejected: list[tuple[object, str]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return len(self.points)

    @property
    def body(self) -> str:
        return "\n".join(self.points)

    def bodies(self, max_points: int) -> Iterator[bytes]:
        """The batch as request bodies of at most max_points points each (a point's text
        may hold a newline inside a quoted string, so the body is never split as text)."""
        for i in range(0, len(self.points), max_points):
            yield "\n".join(self.points[i:i + max_points]).encode("utf-8")


def escape_tag(value: str) -> str:
    """Escape a tag key or value; ValueError when line protocol cannot carry it."""
    p = tag_problem(value)
    if p:
        raise ValueError(p)
    # the plain test first: most names need no escaping and a regex sub costs more
    return _TAG_SPECIAL.sub(r"\\\1", value) if ("," in value or "=" in value or " " in value) else value


# the names line protocol cannot carry are refused by every store (storage.checks)
tag_problem = name_problem


def escape_string_field(value: str) -> str:
    """The body of a double-quoted string field (without the quotes)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    return value


def tag_set(names: Sequence[str], values: Sequence[str]) -> str:
    """",k=v,k=v" for the non-empty values (empty ones are left out, see module doc)."""
    return "".join(f",{k}={escape_tag(v)}" for k, v in zip(names, values) if v != "")


def encode_samples(samples: Sequence[Sample]) -> Encoded:
    """Line protocol for the writable samples; the others come back in .rejected."""
    prefixes: dict[tuple[str, str, str, str], Optional[str]] = {}
    problems: dict[tuple[str, str, str, str], str] = {}
    out: list[str] = []
    rejected: list[tuple[object, str]] = []
    append = out.append
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        try:
            prefix = prefixes[key]
        except KeyError:
            prefix = _sample_prefix(key, problems)
            prefixes[key] = prefix
        except TypeError:  # an unhashable name: garbage from a caller
            rejected.append((s, "name_not_str"))
            continue
        if prefix is None:
            rejected.append((s, problems[key]))
            continue
        p = sample_problem(s)
        if p is not None:
            rejected.append((s, p))
        elif type(s.value) is float:
            # repr() is the shortest text that reads back as the same float, and always has
            # a '.' or an 'e': never mistaken for an integer field
            append(f"{prefix} value={s.value!r},q={_QCODE[s.quality]}i {s.ts}")
        else:
            append(f'{prefix} text="{escape_string_field(s.value)}",q={_QCODE[s.quality]}i {s.ts}')
    return Encoded(out, rejected)


def encode_events(events: Sequence[Event]) -> Encoded:
    out: list[str] = []
    rejected: list[tuple[object, str]] = []
    for e in events:
        try:
            data = event_json(e)
            tags = tag_set(EVENT_TAGS, (e.kind, e.site, e.line, e.machine, e.key))
        except (ValueError, TypeError) as err:
            rejected.append((e, str(err) or "bad_event"))
            continue
        out.append(f'event{tags} data="{escape_string_field(data)}" {e.ts}')
    return Encoded(out, rejected)


def _sample_prefix(key: tuple, problems: dict) -> Optional[str]:
    p = series_problem(key)
    if p:
        problems[key] = p
        return None
    return "sample" + tag_set(SAMPLE_TAGS, key)


_QCODE = {q: q.code for q in Quality}
