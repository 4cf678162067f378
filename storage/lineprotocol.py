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

A columnar batch (gwanje.batch.SampleBatch) has encode_batch: the prefix of every series id
(or the reason its names cannot be written) is kept in the process-wide series table
(SERIES.column("lp_prefix"), filled by prepare() at config load, else on the first batch
holding the id); the batch is checked column by column (types, finiteness, time range,
quality codes: C-level passes over the lists) and, when every check passes, formatted by one
list comprehension over the zipped columns, each distinct value and time formatted once when
they repeat (they do: a message's samples share a time, states and counts repeat). Only a
batch failing a column check is walked sample by sample, with the same checks, in the same
order, as encode_samples, so a refused sample gets the reason it gets there and the rest is
written. The output is byte-identical to encode_samples on the batch's samples
(tests/storage/test_batch_write.py). Measured and left out (bench/store_write.py data):
"%"-formatting and str.format through map() (20-30 % slower than the f-string comprehension),
one str.join over chained pieces (slower), polars pl.format (~1.8x less CPU on floats, but
not repr(): '1e-7' for '1e-07', and 2.5e-05 as '0.000025', on ~0.8 % of random floats), and
polars concatenating Python's repr strings into whole bodies (no faster).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Iterator, Optional, Sequence

from gwanje.batch import SERIES, SampleBatch, SeriesTable
from gwanje.model import Event, Quality, Sample
from storage.checks import (FLOATS, MIXED, batch_kind, batch_problems, event_json, key_problem,
                            name_problem, sample_problem, series_checks, series_problem)
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
    # encode_batch only: rejected_at[j] is the position in the batch of rejected[j]'s sample
    # (the Sample in rejected[j] is built for the report: it is not an item of the batch,
    # which has none — a SampleBatch builds a new Sample on every access)
    rejected_at: Optional[list[int]] = None

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


# ---------------------------------------------------------------------- columnar batches
class SeriesProblem(str):
    """The reason a series' names cannot be written, where its prefix would be in the
    "lp_prefix" column (a str subclass: `type(x) is str` tells a prefix from a reason)."""

    __slots__ = ()


_Q_FIELD = (",q=0i ", ",q=1i ", ",q=2i ")  # by quality code


def _series_prefix(key: object) -> str:
    """The "lp_prefix" entry of a series key: its escaped prefix, or a SeriesProblem."""
    p = key_problem(key)
    if p:
        return SeriesProblem(p)
    return "sample" + tag_set(SAMPLE_TAGS, key)  # type: ignore[arg-type]


class _Prefixes:
    """Derived from a table's "lp_prefix" column, per id: "<prefix> value=",
    '<prefix> text="' and "<prefix> " (None for a series that cannot be written)."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self.value: list[Optional[str]] = []
        self.text: list[Optional[str]] = []
        self.space: list[Optional[str]] = []
        self._lock = threading.Lock()

    def refresh(self) -> "_Prefixes":
        prefix = self.table.column("lp_prefix", _series_prefix)
        if len(self.value) < len(prefix):
            with self._lock:
                for i in range(len(self.value), len(prefix)):
                    p = prefix[i]
                    ok = type(p) is str
                    self.text.append(p + ' text="' if ok else None)
                    self.space.append(p + " " if ok else None)
                    self.value.append(p + " value=" if ok else None)  # last: the id is ready
        return self


_PREFIXES: dict[int, _Prefixes] = {}


def _prefixes(table: SeriesTable) -> _Prefixes:
    p = _PREFIXES.get(id(table))
    if p is None or p.table is not table:
        p = _PREFIXES[id(table)] = _Prefixes(table)
    return p.refresh()


def prepare(table: SeriesTable = SERIES) -> None:
    """Compute the prefixes of every series registered so far (at config load, after
    SERIES.register; ids added later get theirs on the first batch holding them)."""
    _prefixes(table)
    series_checks(table)


def _memo(xs: list, fmt: Any) -> Optional[list[str]]:
    """[fmt(x) for x in xs], formatting each distinct x once — or None when a look at the head
    of the list says values do not repeat enough to pay for the look-ups (a message's samples
    share a time; states and counts repeat; analog values mostly do not). fmt(x) must depend
    on x's value only as far as dict keys tell values apart: the one pair of values they do
    not, 0.0 and -0.0, is handled here (and no bool may be among ints: the column checks
    make sure)."""
    n = len(xs)
    if n < 64:
        return None
    head = xs[:256]
    if len(set(head)) * 2 > len(head):
        return None
    memo = dict.fromkeys(xs)
    if len(memo) * 2 > n:
        return None
    zero = 0.0 in memo
    if zero:
        del memo[0.0]  # 0.0 and -0.0: one key, two texts
    for x in memo:
        memo[x] = fmt(x)
    out = list(map(memo.get, xs))
    if zero:
        k = -1
        try:
            while True:
                k = out.index(None, k + 1)
                out[k] = fmt(xs[k])
        except ValueError:
            pass
    return out


def _value_field(v: Any) -> str:
    """A sample's field in a point, after its prefix and a space (MIXED batches)."""
    return f"value={v!r}" if type(v) is float else f'text="{escape_string_field(v)}"'


def encode_batch(batch: SampleBatch, table: SeriesTable = SERIES) -> Encoded:
    """encode_samples for a columnar batch: the same points, byte for byte, and the same
    refusals — rejected: (a Sample built for the report from the batch, reason), in order;
    rejected_at: the positions of those samples in the batch."""
    if not len(batch.sid):
        return Encoded([], [], rejected_at=[])
    checks = series_checks(table)
    pre = _prefixes(table)
    kind = batch_kind(batch, checks.bad)
    rejected: list[tuple[object, str]] = []
    rejected_at: list[int] = []
    if kind is None:  # walked sample by sample: who is refused, and why
        problems = batch_problems(batch, checks.reasons)
        rejected = [(batch[k], reason) for k, reason in problems]
        rejected_at = [k for k, _ in problems]
        if problems:
            batch = batch.without(rejected_at)
            if not len(batch.sid):
                return Encoded([], rejected, rejected_at=rejected_at)
        kind = FLOATS if set(map(type, batch.value)) == {float} else MIXED
    return Encoded(_points(batch, kind, pre), rejected, rejected_at=rejected_at)


def _points(batch: SampleBatch, kind: str, pre: _Prefixes) -> list[str]:
    """The points of a batch whose every sample is writable."""
    sid, ts, val, q = batch.sid, batch.ts, batch.value, batch.quality
    tss = _memo(ts, int.__repr__) or list(map(int.__repr__, ts))
    qs = repeat(",q=0i ", len(sid)) if q is None else map(_Q_FIELD.__getitem__, q)
    if kind == FLOATS:
        vcol = pre.value
        # repr: the shortest text that reads back as the same float, always with '.' or 'e'
        vs = _memo(val, float.__repr__) or list(map(float.__repr__, val))
        return [f"{vcol[i]}{v}{c}{t}" for i, v, c, t in zip(sid, vs, qs, tss)]
    fields = _memo(val, _value_field)
    if fields is not None:
        scol = pre.space
        return [f"{scol[i]}{f}{c}{t}" for i, f, c, t in zip(sid, fields, qs, tss)]
    vcol, tcol = pre.value, pre.text
    return [f"{vcol[i]}{v!r}{c}{t}" if type(v) is float else f'{tcol[i]}{escape_string_field(v)}"{c}{t}'
            for i, v, c, t in zip(sid, val, qs, tss)]
