"""Columnar sample batches: the ingest hot path's one data shape from decoder to store.

A message's samples decode into columns — series id, source time (ns), value, quality code —
not one Python object per sample. The pipeline concatenates columns, the engine, the alarm
rules and the stores read them; nothing on the common path builds a Sample per value.

`SeriesTable` gives every series (site, line, machine, signal) a small integer id, once per
process, append-only: the configured series are registered when a decoder or pipeline is
built from the config (so per-series work — a store's escaped line-protocol prefix, the
engine's role of a signal — is computed once, at config load), anything else the first time
it is seen. Ids are only meaningful inside the process that made them: what leaves the
process (spool, dead-letter file, store) carries names.

`SampleBatch` is a `Sequence[Sample]`: code that iterates samples keeps working (each item is
built on access, equal to the Sample it stands for); hot code reads `.sid`, `.ts`, `.value`,
`.quality` (None: all good) directly. Batches are immutable by convention: the lists are
shared by slices and concatenations must not be appended to after they are built.

No I/O, no threads: pure data.
"""
from __future__ import annotations

import threading
from itertools import compress, repeat
from typing import Any, Iterable, Iterator, Optional, Sequence, Union, overload

from gwanje.model import Quality, Sample, Value

Key = tuple[str, str, str, str]

_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)  # by code (Quality.code)
_CODE = {q: q.code for q in Quality}
GOOD = 0


class SeriesTable:
    """series key <-> id, append-only and process-wide (`SERIES`). Reads need no lock: the
    lists only grow, and an id is published (in `index`) after its row is complete."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.machine: list[tuple[str, str, str]] = []
        self.site: list[str] = []
        self.index: dict[Key, int] = {}
        self._lock = threading.Lock()
        # per-id caches other modules attach (e.g. storage.lineprotocol's prefixes): name -> list
        self.columns: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def id(self, site: str, line: str, machine: str, signal: str) -> int:
        return self.id_of((site, line, machine, signal))

    def id_of(self, key: Key) -> int:
        """The id of a series; a key whose names are not all exactly str (garbage: a str
        subclass equal to a real name, a number) gets a row of its own, never the real
        series' row, so it cannot change what that series' id stands for."""
        i = self.index.get(key)
        if i is not None and type(key[0]) is str and type(key[1]) is str and type(key[2]) is str \
                and type(key[3]) is str:
            return i
        if not all(type(x) is str for x in key):
            return self.unindexed(key)
        return self._add(key)

    def _add(self, key: Key) -> int:
        with self._lock:
            i = self.index.get(key)
            if i is not None:
                return i
            i = len(self.keys)
            self.keys.append(key)
            self.machine.append(key[:3])
            self.site.append(key[0])
            self.index[key] = i
            return i

    def unindexed(self, key: Any) -> int:
        """A row for a key that cannot be looked up (an unhashable name): never shared."""
        with self._lock:
            i = len(self.keys)
            self.keys.append(key)
            self.machine.append(key[:3])
            self.site.append(key[0])
            return i

    def register(self, config: Any) -> None:
        """Every configured series of a gwanje.config.Config (at config load)."""
        for m in config.machines():
            for s in m.signals:
                self.id(m.site, m.line, m.machine, s.id)

    def column(self, name: str, compute: Any) -> list[Any]:
        """A per-id cache named `name`, filled up to the table's length with compute(key)
        (ids added later are filled on the next call). The returned list is indexable by every
        id that existed when this was called."""
        col = self.columns.get(name)
        if col is None:
            col = self.columns.setdefault(name, [])
        n = len(self.keys)
        if len(col) < n:
            with self._lock:
                keys = self.keys
                col.extend(compute(keys[j]) for j in range(len(col), n))
        return col


SERIES = SeriesTable()


class SampleBatch(Sequence[Sample]):
    """Columns of samples: sid[i], ts[i] (ns), value[i] (float or str), quality[i] (code;
    the whole column None when every sample is good). Whatever a caller put in a Sample is
    kept as it is (a garbage value, time or quality), so a store refuses it with the reason it
    would give the Sample; the decoders only ever produce valid columns."""

    __slots__ = ("sid", "ts", "value", "quality")

    def __init__(self, sid: list[int], ts: list[int], value: list[Value],
                 quality: Optional[list[int]] = None) -> None:
        self.sid = sid
        self.ts = ts
        self.value = value
        self.quality = quality

    # ------------------------------------------------------------ building
    @classmethod
    def empty(cls) -> "SampleBatch":
        return cls([], [], [], None)

    @classmethod
    def of(cls, samples: Iterable[Sample], table: SeriesTable = SERIES) -> "SampleBatch":
        """A batch holding these samples (a SampleBatch is returned as it is)."""
        if isinstance(samples, SampleBatch):
            return samples
        idx = table.index
        sid: list[int] = []
        ts: list[int] = []
        value: list[Value] = []
        qual: list[int] = []
        bad = False
        for s in samples:
            key = (s.site, s.line, s.machine, s.signal)
            try:
                i = idx.get(key)
                # an equal str subclass would find the real row: only exact str names index
                if i is None or not (type(key[0]) is str and type(key[1]) is str and type(key[2]) is str
                                     and type(key[3]) is str):
                    i = table.id_of(key)
            except TypeError:  # an unhashable name (garbage from a caller): a row of its own
                i = table.unindexed(key)
            sid.append(i)
            ts.append(s.ts)
            value.append(s.value)
            ql = s.quality
            if ql is Quality.GOOD:
                qual.append(GOOD)
            else:
                # not a Quality at all (garbage, even an int that looks like a code): kept as
                # it is, marked, for the store to refuse as it refuses the Sample
                qual.append(_CODE[ql] if isinstance(ql, Quality) else Garbage(ql))
                bad = True
        return cls(sid, ts, value, qual if bad else None)

    @classmethod
    def concat(cls, parts: Sequence[Union["SampleBatch", Sequence[Sample]]]) -> "SampleBatch":
        """One batch of these parts, in order (lists of Samples are converted)."""
        if len(parts) == 1 and isinstance(parts[0], SampleBatch):
            return parts[0]
        sid: list[int] = []
        ts: list[int] = []
        value: list[Value] = []
        qual: Optional[list[int]] = None
        n = 0
        for p in parts:
            b = p if isinstance(p, SampleBatch) else cls.of(p)
            sid += b.sid
            ts += b.ts
            value += b.value
            if b.quality is not None:
                if qual is None:
                    qual = [GOOD] * n
                qual += b.quality
            elif qual is not None:
                qual += [GOOD] * len(b.sid)
            n += len(b.sid)
        return cls(sid, ts, value, qual)

    def take(self, indices: Sequence[int]) -> "SampleBatch":
        sid, ts, value, q = self.sid, self.ts, self.value, self.quality
        return SampleBatch([sid[i] for i in indices], [ts[i] for i in indices], [value[i] for i in indices],
                           [q[i] for i in indices] if q is not None else None)

    def without(self, drop: Iterable[int]) -> "SampleBatch":
        """The batch without the samples at these positions."""
        gone = set(drop)
        return self.take([i for i in range(len(self.sid)) if i not in gone])

    # ------------------------------------------------------------ Sequence[Sample]
    def __len__(self) -> int:
        return len(self.sid)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> "SampleBatch": ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            q = self.quality
            return SampleBatch(self.sid[i], self.ts[i], self.value[i], q[i] if q is not None else None)
        site, line, machine, signal = SERIES.keys[self.sid[i]]
        q = self.quality
        return Sample(site, line, machine, signal, self.value[i], self.ts[i],
                      _quality(q[i]) if q is not None else Quality.GOOD)

    def __iter__(self) -> Iterator[Sample]:
        keys = SERIES.keys
        q = self.quality
        quals: Iterable[Quality] = map(_quality, q) if q is not None else repeat(Quality.GOOD)
        for sid, v, t, ql in zip(self.sid, self.value, self.ts, quals):
            site, line, machine, signal = keys[sid]
            yield Sample(site, line, machine, signal, v, t, ql)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SampleBatch):
            return (self.sid == other.sid and self.ts == other.ts and self.value == other.value
                    and (self.quality or [GOOD] * len(self.sid)) == (other.quality or [GOOD] * len(other.sid)))
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SampleBatch({len(self.sid)} samples)"

    # ------------------------------------------------------------ columns
    def qualities(self) -> list[int]:
        """The quality codes, one per sample (the stored column, or all good)."""
        return self.quality if self.quality is not None else [GOOD] * len(self.sid)

    def keys(self) -> list[Key]:
        keys = SERIES.keys
        return [keys[i] for i in self.sid]


class Garbage:
    """A quality column entry that is no quality code: what a caller put in a Sample."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Garbage({self.value!r})"


def _quality(code: Any) -> Any:
    """The Quality of a quality column entry (a code, or a garbage value kept as it is)."""
    if type(code) is int and 0 <= code <= 2:
        return _QUALITIES[code]
    return code.value if type(code) is Garbage else code


def selected(b: SampleBatch, wanted: Sequence[bool]) -> Iterator[tuple]:
    """(machine key, signal, value, ts, bad) of the samples whose series id `wanted` marks
    (a listener's per-SERIES-id filter, e.g. the LOT tracker's and the quality monitor's)."""
    keys = SERIES.keys
    q = b.quality
    for i in compress(range(len(b.sid)), map(wanted.__getitem__, b.sid)):
        k = keys[b.sid[i]]
        yield k[:3], k[3], b.value[i], b.ts[i], q is not None and _quality(q[i]) == Quality.BAD


def as_batch(samples: Union[SampleBatch, Sequence[Sample]]) -> SampleBatch:
    return samples if isinstance(samples, SampleBatch) else SampleBatch.of(samples)
