"""Embedded store: DuckDB in one file (or in memory), the default when no InfluxDB is set up.

One DuckDB connection per store; every call works on its own cursor (DuckDB's per-thread
handle on the same database), so the writer thread and Dash callbacks may call at once.
Writes are serialised by a lock: two upserts of the same key in parallel would conflict.

A batch is inserted from an Arrow table in one statement (not row by row) with
INSERT OR REPLACE on the identity key, so a re-delivered sample or event overwrites itself.

The typed measurements of storage.schema (machine_state, counts, oee_shift, alarm, lot,
signal_meta) are views over the events table with the same names and columns as in
InfluxDB, so a user's SQL mirrors their InfluxQL and an older file gets them for its past
events too; writes cost nothing more.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import duckdb
import polars as pl
import pyarrow as pa

from gwanje.batch import SERIES, SampleBatch, SeriesTable
from gwanje.model import Event, Quality, Sample
from gwanje.rejects import Rejects
from storage.base import Refused, Store, StoreUnavailable, bucket_width
from storage.checks import (FLOATS, MIXED, batch_kind, batch_problems, event_json, sample_problem,
                            series_checks, series_problem)
from storage.schema import sql_views, typed_point

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    site VARCHAR NOT NULL, line VARCHAR NOT NULL, machine VARCHAR NOT NULL, signal VARCHAR NOT NULL,
    ts BIGINT NOT NULL, value DOUBLE, text VARCHAR, quality TINYINT NOT NULL,
    PRIMARY KEY (site, line, machine, signal, ts));
CREATE TABLE IF NOT EXISTS events (
    kind VARCHAR NOT NULL, site VARCHAR NOT NULL, line VARCHAR NOT NULL, machine VARCHAR NOT NULL,
    key VARCHAR NOT NULL, ts BIGINT NOT NULL, data VARCHAR NOT NULL,
    PRIMARY KEY (kind, site, line, machine, key, ts));
"""

_SAMPLE_ARROW = pa.schema([("site", pa.string()), ("line", pa.string()), ("machine", pa.string()),
                           ("signal", pa.string()), ("ts", pa.int64()), ("value", pa.float64()),
                           ("text", pa.string()), ("quality", pa.int8())])
_EVENT_ARROW = pa.schema([("kind", pa.string()), ("site", pa.string()), ("line", pa.string()),
                          ("machine", pa.string()), ("key", pa.string()), ("ts", pa.int64()),
                          ("data", pa.string())])
_SERIES_SCHEMA = {"ts": pl.Int64, "value": pl.Float64}
REPLACE_AFTER_CONFLICT = 16


class EmbeddedStore(Store):
    name = "embedded"

    def __init__(self, path: str | Path = ":memory:", memory_limit: str = "") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.rejects = Rejects("embedded-store")
        # memory_limit bounds DuckDB's buffer pool, which otherwise caches table blocks up to
        # 80 % of the host's RAM (~8 bytes per stored row, bench.soak --probe memory): in a
        # long-running plant that reads as a leak. "" keeps DuckDB's default.
        self._con = duckdb.connect(self.path, config={"memory_limit": memory_limit} if memory_limit else {})
        self._con.execute(_SCHEMA)
        self._con.execute(sql_views())
        self._write_lock = threading.Lock()
        self._replace_next = 0  # writes left that use INSERT OR REPLACE directly

    def close(self) -> None:
        with self._write_lock:
            self._con.close()

    def ping(self) -> bool:
        try:
            with self._cursor() as cur:
                cur.execute("SELECT 1").fetchall()
        except (duckdb.Error, StoreUnavailable):
            return False
        return True

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own for this call. I/O errors (disk full, file gone) and a closed
        store are "try again later" for the pipeline, like an unreachable server; a constraint
        or conversion error (a table an operator gave a CHECK, an older file's column types)
        refuses the data: the statement wrote nothing, the pipeline splits the batch."""
        try:
            cur = self._con.cursor()
        except duckdb.OperationalError as e:
            raise StoreUnavailable(f"embedded store: {e}") from None
        try:
            yield cur
        except duckdb.OperationalError as e:
            raise StoreUnavailable(f"embedded store: {e}") from None
        except duckdb.IntegrityError as e:
            raise Refused("constraint", str(e)[:1000]) from None
        except duckdb.DataError as e:
            raise Refused("conversion", str(e)[:1000]) from None
        finally:
            cur.close()

    # ------------------------------------------------------------------ writes
    def write_samples(self, samples: Sequence[Sample]) -> None:
        if isinstance(samples, SampleBatch):
            self._write_batch(samples)
            return
        # a plain list: sample by sample (converting it to a batch first would not keep the
        # garbage a caller put in a Sample exactly as it is, see tests/storage/test_batch_write.py)
        # last occurrence of an identity wins inside a batch, as it does across batches
        rows: dict[tuple, Sample] = {}
        checked: dict[tuple, Optional[str]] = {}
        for s in samples:
            try:
                key = (s.site, s.line, s.machine, s.signal)
                p = checked.get(key, "")
                if p == "":
                    p = checked[key] = series_problem(key)
            except TypeError:  # unhashable garbage in a name
                p = "name_not_str"
            p = p or sample_problem(s)
            if p:
                self.rejects.reject(p, repr(s))
                continue
            rows[(s.site, s.line, s.machine, s.signal, s.ts)] = s
        if not rows:
            return
        kept = rows.values()
        numeric = [type(s.value) is float for s in kept]
        table = pa.Table.from_arrays([
            pa.array([s.site for s in kept], pa.string()),
            pa.array([s.line for s in kept], pa.string()),
            pa.array([s.machine for s in kept], pa.string()),
            pa.array([s.signal for s in kept], pa.string()),
            pa.array([s.ts for s in kept], pa.int64()),
            pa.array([s.value if n else None for s, n in zip(kept, numeric)], pa.float64()),
            pa.array([None if n else s.value for s, n in zip(kept, numeric)], pa.string()),
            pa.array([_QCODE[s.quality] for s in kept], pa.int8()),
        ], schema=_SAMPLE_ARROW)
        self._insert_samples(table, unique=True)

    def _write_batch(self, batch: SampleBatch) -> None:
        """A columnar batch: checked column by column (storage.checks.batch_kind; the samples
        of a batch failing a check are walked one by one for their reasons, as above), then
        inserted from Arrow columns: the series' names are gathered by id from per-id arrays,
        the other columns are the batch's lists."""
        checks = series_checks(SERIES)
        kind = batch_kind(batch, checks.bad)
        if kind is None:
            problems = batch_problems(batch, checks.reasons)
            for k, reason in problems:
                self.rejects.reject(reason, repr(batch[k]))
            if problems:
                batch = batch.without(k for k, _ in problems)
            if not len(batch.sid):
                return
            kind = FLOATS if set(map(type, batch.value)) == {float} else MIXED
        n = len(batch.sid)
        sid = pa.array(batch.sid, pa.int32())
        site, line, machine, signal = _names(SERIES)
        if kind == FLOATS:
            value = pa.array(batch.value, pa.float64())
            text = pa.nulls(n, pa.string())
        else:
            val = batch.value
            value = pa.array([v if type(v) is float else None for v in val], pa.float64())
            text = pa.array([None if type(v) is float else v for v in val], pa.string())
        q = batch.quality
        table = pa.Table.from_arrays([
            site.take(sid), line.take(sid), machine.take(sid), signal.take(sid),
            pa.array(batch.ts, pa.int64()), value, text,
            pa.repeat(pa.scalar(0, pa.int8()), n) if q is None else pa.array(q, pa.int8()),
        ], schema=_SAMPLE_ARROW)
        # the identity (series, ts) of a writable series is (sid, ts): an id stands for one
        # key, and keys that share an id (unhashable garbage) were refused above
        self._insert_samples(table, unique=False, ids=(batch.sid, batch.ts))

    def _insert_samples(self, table: pa.Table, unique: bool,
                        ids: Optional[tuple[list[int], list[int]]] = None) -> None:
        """INSERT the rows; when a row's identity is already stored (a redelivery, a spool
        replay) or the batch holds one twice, INSERT OR REPLACE them, the last one of an
        identity inside the batch winning (unique: the batch holds each identity once). A plain
        INSERT costs ~2/3 of an INSERT OR REPLACE and a redelivery is rare; after one, the
        next REPLACE_AFTER_CONFLICT writes replace directly (a replay redelivers in a row)."""
        with self._write_lock, self._cursor() as cur:
            cur.register("batch", table)
            if self._replace_next <= 0:
                try:
                    cur.execute("INSERT INTO samples SELECT * FROM batch")
                    return
                except duckdb.ConstraintException:
                    # the statement wrote nothing; a constraint of the operator's own (a CHECK)
                    # fails again below and refuses the batch (storage.base.Refused)
                    self._replace_next = REPLACE_AFTER_CONFLICT
            else:
                self._replace_next -= 1
            if not unique and ids is not None:
                sid, ts = ids
                last = dict(zip(zip(sid, ts), range(len(sid))))  # identity -> its last position
                if len(last) < len(sid):
                    table = table.take(pa.array(sorted(last.values()), pa.int64()))
                    cur.register("batch", table)
            cur.execute("INSERT OR REPLACE INTO samples SELECT * FROM batch")

    def write_events(self, events: Sequence[Event]) -> None:
        rows: dict[tuple, tuple] = {}
        for e in events:
            try:
                data = event_json(e)
            except (ValueError, TypeError) as err:
                self.rejects.reject(str(err) or "bad_event", repr(e))
                continue
            rows[e.identity] = (*e.identity, data)
            p = typed_point(e)
            for name in p.problems if p is not None else ():
                # the view shows NULL there, as InfluxDB has no field: counted like there
                self.rejects.reject("typed_field_wrong_type", f"{name}: {e!r}")
        if not rows:
            return
        cols = list(zip(*rows.values()))
        table = pa.Table.from_arrays(
            [pa.array(c, f.type) for c, f in zip(cols, _EVENT_ARROW)], schema=_EVENT_ARROW)
        self._insert("events", table)

    def _insert(self, name: str, table: pa.Table) -> None:
        with self._write_lock, self._cursor() as cur:
            cur.register("batch", table)
            cur.execute(f"INSERT OR REPLACE INTO {name} SELECT * FROM batch")

    # ------------------------------------------------------------------ reads
    def latest(self, site: Optional[str] = None, line: Optional[str] = None,
               machine: Optional[str] = None, since_ns: Optional[int] = None) -> list[Sample]:
        w, args = _where({"site": site, "line": line, "machine": machine}, since_ns)
        rows = self._fetch(
            f"SELECT site, line, machine, signal, value, text, ts, quality FROM samples{w} "
            "QUALIFY row_number() OVER (PARTITION BY site, line, machine, signal ORDER BY ts DESC) = 1 "
            "ORDER BY site, line, machine, signal", args)
        return [Sample(r[0], r[1], r[2], r[3], r[4] if r[5] is None else r[5], r[6], Quality.from_code(r[7]))
                for r in rows]

    def series(self, site: str, line: str, machine: str, signal: str, start_ns: int, end_ns: int,
               max_points: int = 600) -> pl.DataFrame:
        w, args = _where({"site": site, "line": line, "machine": machine, "signal": signal},
                         start_ns, end_ns)
        w += " AND value IS NOT NULL"
        with self._cursor() as cur:
            (n,) = cur.execute(f"SELECT count(*) FROM samples{w}", args).fetchone()
            if n <= max_points:
                rows = cur.execute(f"SELECT ts, value FROM samples{w} ORDER BY ts", args).fetchall()
            else:
                width = bucket_width(start_ns, end_ns, max_points)
                # equal-width buckets counted from start_ns; ts is the bucket start
                rows = cur.execute(
                    f"SELECT ($b0 + (ts - $b0) // $bw * $bw)::BIGINT AS ts, avg(value) AS value "
                    f"FROM samples{w} GROUP BY 1 ORDER BY 1",
                    {**args, "b0": int(start_ns), "bw": int(width)}).fetchall()
        # at most max_points rows: plain tuples cost nothing here
        return pl.DataFrame(rows, schema=_SERIES_SCHEMA, orient="row")

    def samples(self, site: str, line: str, machine: str, start_ns: int, end_ns: int,
                page_size: int = 50_000) -> Iterator[list[Sample]]:
        w, args = _where({"site": site, "line": line, "machine": machine}, start_ns, end_ns)
        page_size = max(1, int(page_size))
        after: Optional[tuple[int, str]] = None
        while True:
            # keyset paging on the primary key's order: no page is read twice, none skipped
            cond = "" if after is None else " AND (ts > $ats OR (ts = $ats AND signal > $asig))"
            extra = {} if after is None else {"ats": after[0], "asig": after[1]}
            rows = self._fetch(f"SELECT site, line, machine, signal, value, text, ts, quality FROM samples{w}{cond} "
                               f"ORDER BY ts, signal LIMIT {page_size}", {**args, **extra})
            if not rows:
                return
            yield [Sample(r[0], r[1], r[2], r[3], r[4] if r[5] is None else r[5], r[6], Quality.from_code(r[7]))
                   for r in rows]
            if len(rows) < page_size:
                return
            after = (rows[-1][6], rows[-1][3])

    def events(self, kind: str, start_ns: int, end_ns: int, site: Optional[str] = None,
               line: Optional[str] = None, machine: Optional[str] = None, key: Optional[str] = None,
               limit: int = 10_000) -> list[Event]:
        w, args = _where({"kind": kind, "site": site, "line": line, "machine": machine, "key": key},
                         start_ns, end_ns)
        rows = self._fetch(f"SELECT kind, ts, site, line, machine, key, data FROM events{w} "
                           f"ORDER BY ts, site, line, machine, key LIMIT {max(0, int(limit))}", args)
        return [_event(r) for r in rows]

    def latest_events(self, kind: str, site: Optional[str] = None, line: Optional[str] = None,
                      machine: Optional[str] = None) -> list[Event]:
        w, args = _where({"kind": kind, "site": site, "line": line, "machine": machine})
        rows = self._fetch(
            f"SELECT kind, ts, site, line, machine, key, data FROM events{w} "
            "QUALIFY row_number() OVER (PARTITION BY site, line, machine, key ORDER BY ts DESC) = 1 "
            "ORDER BY site, line, machine, key", args)
        return [_event(r) for r in rows]

    def count_samples(self, start_ns: int, end_ns: int, site: Optional[str] = None,
                      machine: Optional[str] = None, signal: Optional[str] = None) -> int:
        w, args = _where({"site": site, "machine": machine, "signal": signal}, start_ns, end_ns)
        return int(self._fetch(f"SELECT count(*) FROM samples{w}", args)[0][0])

    def _fetch(self, sql: str, args: dict) -> list[tuple]:
        with self._cursor() as cur:
            return cur.execute(sql, args).fetchall()


def _where(tags: dict[str, Optional[str]], start_ns: Optional[int] = None,
           end_ns: Optional[int] = None) -> tuple[str, dict]:
    """WHERE clause with named parameters: names never become SQL text."""
    conds, args = [], {}
    for k, v in tags.items():
        if v is not None:
            conds.append(f"{k} = ${k}")
            args[k] = v
    if start_ns is not None:
        conds.append("ts >= $start")
        args["start"] = int(start_ns)
    if end_ns is not None:
        conds.append("ts < $end")
        args["end"] = int(end_ns)
    return (" WHERE " + " AND ".join(conds)) if conds else " WHERE TRUE", args


def _event(r: tuple) -> Event:
    return Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))


_QCODE = {q: q.code for q in Quality}


class _Names:
    """The four names of every id of a series table as Arrow arrays (null for a series the
    stores refuse), extended when the table has grown: a batch gathers its names by id."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self.n = 0
        self.arrays: tuple[pa.Array, ...] = tuple(pa.array([], pa.string()) for _ in range(4))
        self._lock = threading.Lock()

    def get(self) -> tuple[pa.Array, ...]:
        if self.n != len(self.table):
            with self._lock:
                n0, n = self.n, len(self.table)
                if n != n0:
                    reasons = series_checks(self.table).reasons
                    keys = self.table.keys[n0:n]
                    ok = [reasons[i] is None for i in range(n0, n)]
                    # the new ids only: a copy of the old arrays in C, no Python per old id
                    self.arrays = tuple(pa.concat_arrays([old, pa.array([k[j] if g else None for k, g in zip(keys, ok)],
                                                                         pa.string())])
                                        for j, old in enumerate(self.arrays))
                    self.n = n
        return self.arrays


_NAMES: dict[int, _Names] = {}


def _names(table: SeriesTable) -> tuple[pa.Array, ...]:
    c = _NAMES.get(id(table))
    if c is None or c.table is not table:
        c = _NAMES[id(table)] = _Names(table)
    return c.get()


def prepare(table: SeriesTable = SERIES) -> None:
    """The per-id name arrays of every series registered so far (at config load)."""
    _names(table)
