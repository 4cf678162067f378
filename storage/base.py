"""The one storage interface every store implements and every reader uses.

Writes are idempotent: a sample is identified by (site, line, machine, signal, ts) and an
event by (kind, site, line, machine, key, ts); writing the same identity again replaces it.
Numeric sample values and text sample values are kept apart (InfluxDB fixes a field's type),
quality is kept with every sample.

Raise StoreUnavailable when the store cannot be reached or refuses for a transient reason
(the pipeline then spools the batch and retries); raise Refused (a ValueError) for records the
store will never accept — the pipeline isolates them into the dead-letter file and writes the
rest (runtime.pipeline).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Optional, Sequence, Union

import polars as pl

from gwanje.model import Event, Sample


def bucket_width(start_ns: int, end_ns: int, max_points: int) -> int:
    """The width (ns) of the equal buckets Store.series() downsamples [start_ns, end_ns) to:
    ceil(window / max_points), so at most max_points buckets, the first starting at start_ns."""
    return max(1, -(-(end_ns - start_ns) // max(1, max_points)))


class StoreUnavailable(Exception):
    """The store is down, unreachable or too slow: try again later (spool the batch)."""


class Refused(ValueError):
    """The store will never accept some records of this write: a refusal of the data (InfluxDB
    400/413/422, a partial write, a DuckDB constraint or conversion error), not an outage.

    reason: a short code for counting (beyond_retention, field_type_conflict, unparsable,
    too_large, constraint, conversion, refused); detail: the store's own words.
    records: the records the store says it refused, every other record of the write being
    stored — or None when it cannot say which (then nothing or only part of the write may be
    stored; the caller splits the write to find them, rewriting is harmless: writes are
    idempotent).
    positions: where those records are in the sequence the write was given (same order as
    records; None when records is None). For a plain list, records are its items themselves
    (match by id() or by position); for a gwanje.batch.SampleBatch, which holds no Sample
    objects, records are Samples built once for this answer (equal to the batch's items, not
    identical to any later `list(batch)`): match those by position."""

    def __init__(self, reason: str, detail: str = "",
                 records: Optional[Sequence[Union[Sample, Event]]] = None,
                 positions: Optional[Sequence[int]] = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.records = records
        self.positions = positions


class Store(ABC):
    name: str = "store"

    # ------------------------------------------------------------------ writes
    @abstractmethod
    def write_samples(self, samples: Sequence[Sample]) -> None: ...

    @abstractmethod
    def write_events(self, events: Sequence[Event]) -> None: ...

    # ------------------------------------------------------------------ reads
    @abstractmethod
    def latest(self, site: Optional[str] = None, line: Optional[str] = None,
               machine: Optional[str] = None, since_ns: Optional[int] = None) -> list[Sample]:
        """The newest sample of every series matching the filters (with ts >= since_ns)."""

    @abstractmethod
    def series(self, site: str, line: str, machine: str, signal: str, start_ns: int, end_ns: int,
               max_points: int = 600) -> pl.DataFrame:
        """Numeric values of one series in [start_ns, end_ns), ascending, as columns
        ts (Int64, ns) and value (Float64). When the window holds more than max_points raw
        points, it is downsampled to at most max_points buckets of equal width (mean per
        bucket, ts = bucket start)."""

    @abstractmethod
    def samples(self, site: str, line: str, machine: str, start_ns: int, end_ns: int,
                page_size: int = 50_000) -> Iterator[list[Sample]]:
        """Every stored sample of one machine in [start_ns, end_ns): all signals, numeric and
        text, with quality, ascending by (ts, signal), in pages of about page_size. Never
        downsampled, whatever the signal rate: the engine rebuilds state and counts from it."""

    @abstractmethod
    def events(self, kind: str, start_ns: int, end_ns: int, site: Optional[str] = None,
               line: Optional[str] = None, machine: Optional[str] = None, key: Optional[str] = None,
               limit: int = 10_000) -> list[Event]:
        """Events of one kind in [start_ns, end_ns), ascending by ts (at most limit, the oldest)."""

    @abstractmethod
    def latest_events(self, kind: str, site: Optional[str] = None, line: Optional[str] = None,
                      machine: Optional[str] = None) -> list[Event]:
        """The newest event of the kind for every (site, line, machine, key)."""

    @abstractmethod
    def count_samples(self, start_ns: int, end_ns: int, site: Optional[str] = None,
                      machine: Optional[str] = None, signal: Optional[str] = None) -> int:
        """How many distinct samples are stored in the window (tests and the status page)."""

    def ping(self) -> bool:
        """True when the store answers."""
        return True

    def retention_ns(self) -> Optional[int]:
        """How long the store keeps data (ns), None when unknown or forever: the pipeline
        rejects samples older than that before writing them. May raise StoreUnavailable."""
        return None

    def close(self) -> None:
        pass
