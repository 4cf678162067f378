"""InfluxDB line protocol for samples and events: encoding with correct escaping.

Pure code, no I/O. Layout (one point per line, timestamps in ns):

    sample,site=<s>,line=<l>,machine=<m>,signal=<g> value=<float>,q=<code>i <ts>
    sample,site=<s>,line=<l>,machine=<m>,signal=<g> text="<str>",q=<code>i <ts>
    event,kind=<k>,site=<s>,line=<l>,machine=<m>,key=<key> data="<json>" <ts>
    <typed measurement>,<tags> <typed fields> <ts>     (storage.schema, after its event)

An event of a kind storage.schema types (state, counts, oee_shift, alarm, lot, signal_meta)
is two points: the `event` point, the system's own record, and its typed point for InfluxQL
and Grafana users. Field types come from the schema, never from the value: an integer field
is always `<n>i`, a float field always has a '.' or an 'e', so a field never changes type.

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
from storage.schema import BOOL, FIELD_TYPES, FLOAT, INT, Point, typed_point

SAMPLE_TAGS = ("site", "line", "machine", "signal")
EVENT_TAGS = ("kind", "site", "line", "machine", "key")

_TAG_SPECIAL = re.compile(r"([,= ])")


@dataclass
class Encoded:
    """One batch in line protocol (one string per point), and what was refused (record, reason)."""

    points: list[str]
    rejected: list[tuple[object, str]] = field(default_factory=list)
    # owners[k]: which writable record (index among those not rejected) point k belongs to;
    # None: one point per record, in order
    owners: Optional[list[int]] = None
    # typed fields left out because their value did not fit the field's type (record, name)
    left_out: list[tuple[object, str]] = field(default_factory=list)

    def records_of(self, records: Sequence[object], first: int, stop: int) -> list[object]:
        """The writable records whose points are points[first:stop] (records: the writable
        ones, in order)."""
        if self.owners is None:
            return list(records[first:stop])
        seen = dict.fromkeys(self.owners[first:stop])
        return [records[i] for i in seen]

    def points_of(self, records: Sequence[object], chosen: Sequence[object]) -> int:
        """How many points the chosen writable records have."""
        if self.owners is None:
            return len(chosen)
        ids = {id(r) for r in chosen}
        return sum(1 for i in self.owners if id(records[i]) in ids)

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
    owners: list[int] = []
    left_out: list[tuple[object, str]] = []
    n = 0
    for e in events:
        try:
            data = event_json(e)
            tags = tag_set(EVENT_TAGS, (e.kind, e.site, e.line, e.machine, e.key))
        except (ValueError, TypeError) as err:
            rejected.append((e, str(err) or "bad_event"))
            continue
        out.append(f'event{tags} data="{escape_string_field(data)}" {e.ts}')
        owners.append(n)
        p = typed_point(e)
        if p is not None:
            out.append(encode_point(p))
            owners.append(n)
            left_out.extend((e, name) for name in p.problems)
        n += 1
    return Encoded(out, rejected, owners, left_out)


def encode_point(p: Point) -> str:
    """One typed point (storage.schema) in line protocol: the field's declared type decides
    its syntax, so a whole number in a float field is still written as a float."""
    types = FIELD_TYPES[p.measurement]
    tags = "".join(f",{k}={escape_tag(v)}" for k, v in p.tags.items())
    parts = []
    for k, v in p.fields.items():
        t = types[k]
        if t == FLOAT:
            parts.append(f"{k}={float(v)!r}")
        elif t == INT:
            parts.append(f"{k}={int(v)}i")
        elif t == BOOL:
            parts.append(f"{k}={'true' if v else 'false'}")
        else:
            parts.append(f'{k}="{escape_string_field(v)}"')
    return f"{p.measurement}{tags} {','.join(parts)} {p.ts}"


def _sample_prefix(key: tuple, problems: dict) -> Optional[str]:
    p = series_problem(key)
    if p:
        problems[key] = p
        return None
    return "sample" + tag_set(SAMPLE_TAGS, key)


_QCODE = {q: q.code for q in Quality}
