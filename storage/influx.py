"""InfluxDB store: line-protocol writes, InfluxQL reads, for InfluxDB 1.x, 2.x and 3.x.

start() reads `X-Influxdb-Version` from GET /ping. 1.x: writes go to POST /write (one
keep-alive requests.Session, gzip when asked) and the database is created when missing.
2.x/3.x: writes go through influxdb-client's synchronous write API to /api/v2/write with the
token (its batching mode is not used: flush() does nothing there and errors only reach
callbacks, while the pipeline needs the failure raised to spool the batch). Reads always use
InfluxQL over POST /query with epoch=ns: the one query language all three versions answer.

Every name reaching a query is quoted (identifiers "…", literals '…' with backslash escapes),
so a hostile machine or signal name is data, never InfluxQL. Failures map to the Store
contract: a refusal of the data itself (400 unparsable or partial write, 413, 422) raises
storage.base.Refused with the server's message (those records will never be accepted);
everything else (unreachable, timeout, 5xx, 429, and 401/403/404, which an operator can fix)
raises StoreUnavailable, so the pipeline spools the batch instead of losing it.

A partial write stores every point but the dropped ones, and the answer says why and how many
(1.x: `partial write: points beyond retention policy dropped=2`, `partial write: field type
conflict: input field "value" on measurement "sample" is type string, already exists as type
float dropped=1`; 2.x answers the same text with 422). Refused.records then names the points
that reason selects (older than the retention; the points carrying that field with that
type) when their number is the number dropped, else None and the pipeline splits the batch.
"""
from __future__ import annotations

import gzip as gzip_mod
import json
import logging
import re
import threading
import time
from typing import Any, Iterator, Optional, Sequence

import polars as pl
import requests

from gwanje.batch import SampleBatch
from gwanje.model import Event, Quality, Sample
from gwanje.rejects import Rejects
from storage.base import Refused, Store, StoreUnavailable, bucket_width
from storage.lineprotocol import Encoded, encode_batch, encode_events, encode_samples
from storage.schema import FIELD_TYPES, typed_point

log = logging.getLogger("gwanje.storage.influx")

_SERIES_SCHEMA = {"ts": pl.Int64, "value": pl.Float64}
# a spool replay can hand over a large batch; InfluxDB answers best to bodies of a few MB
MAX_POINTS_PER_REQUEST = 10_000
PING_TIMEOUT_S = 2.0


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal in single quotes (its scanner knows \\\\ \\' \\" \\n)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def where(tags: dict[str, Optional[str]], start_ns: Optional[int] = None,
          end_ns: Optional[int] = None) -> str:
    """A WHERE clause from tag equalities (None: no filter) and a [start, end) window."""
    conds = [f"{quote_ident(k)} = {quote_literal(v)}" for k, v in tags.items() if v is not None]
    if start_ns is not None:
        conds.append(f"time >= {int(start_ns)}")
    if end_ns is not None:
        conds.append(f"time < {int(end_ns)}")
    return (" WHERE " + " AND ".join(conds)) if conds else ""


class InfluxStore(Store):
    name = "influxdb"

    def __init__(self, url: str, database: str, token: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None, org: str = "",
                 timeout_s: float = 10, gzip: bool = True, retention_policy: str = "") -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.org = org
        self.timeout_s = timeout_s
        self.gzip = gzip
        self.retention_policy = retention_policy
        self.rejects = Rejects("influxdb")
        self.version: Optional[str] = None  # from /ping, set by start()
        self._token = token
        # credentials go in headers only: never in a URL that could end up in a log
        self._auth = (username, password or "") if username and not token else None
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        # one keep-alive session per thread (writer, Dash callbacks): requests.Session is not
        # documented as thread-safe, and a shared one would serialise reads behind writes
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._v2_client: Any = None
        self._v2_write: Any = None
        self._start_lock = threading.Lock()
        # read queries this store sent (POST /query without write), for the UI cache tests and bench
        self.queries = 0
        self._queries_lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "InfluxStore":
        """Ask /ping which API to use and create the 1.x database; StoreUnavailable when the
        server does not answer. Optional: the first write or read starts a store not started
        yet, so a process that boots while InfluxDB is down spools and catches up later."""
        with self._start_lock:
            if self.version is not None:
                return self
            r = self._request("GET", "/ping")
            version = r.headers.get("X-Influxdb-Version", "")
            if _is_v2(version, self._token):
                self._open_v2()
            else:
                self._query(f"CREATE DATABASE {quote_ident(self.database)}", write=True)
            self.version = version
        log.info("InfluxDB %s at %s, database %s", self.version or "(no version header)",
                 self.url, self.database)
        return self

    @property
    def uses_v2(self) -> bool:
        """True when writes go through the 2.x/3.x API (known after start())."""
        return self.version is not None and _is_v2(self.version, self._token)

    def _open_v2(self) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        token = self._token
        if not token and self._auth:
            # 1.8+/2.x v1-compatibility authorisation: "username:password" as the token
            token = "%s:%s" % self._auth
        self._v2_client = InfluxDBClient(url=self.url, token=token, org=self.org or None,
                                         timeout=int(self.timeout_s * 1000), enable_gzip=self.gzip)
        self._v2_write = self._v2_client.write_api(write_options=SYNCHRONOUS)

    def close(self) -> None:
        if self._v2_client is not None:
            self._v2_client.close()
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def ping(self) -> bool:
        # /readyz and /metrics ask on every scrape: a hung server must not hold them for the
        # whole write timeout
        try:
            self._request("GET", "/ping", timeout=min(self.timeout_s, PING_TIMEOUT_S))
        except StoreUnavailable:
            return False
        return True

    # ------------------------------------------------------------------ writes
    # the pipeline may have this many sample writes in flight (runtime.pipeline overlap):
    # sessions are per thread, and influxd parses concurrent requests on separate cores
    write_concurrency = 2

    def write_samples(self, samples: Sequence[Sample]) -> None:
        # a columnar batch (the pipeline's) is encoded from its columns; a plain list keeps
        # the per-Sample encoder: converting it first is slower and would not keep the
        # garbage a caller put in a Sample exactly as it is (see tests/storage/test_batch_write.py)
        if isinstance(samples, SampleBatch):
            self._write(encode_batch(samples), samples)
        else:
            self._write(encode_samples(samples), samples)

    def write_events(self, events: Sequence[Event]) -> None:
        self._write(encode_events(events), events)

    def _write(self, enc: Encoded, records: Sequence[Any]) -> None:
        for record, reason in enc.rejected:
            self.rejects.reject(reason, repr(record))
        for record, name in enc.left_out:
            self.rejects.reject("typed_field_wrong_type", f"{name}: {record!r}")
        if enc.lines and self.version is None:
            self.start()
        # a failure part-way leaves the earlier bodies written; the retry rewrites them, which
        # is harmless because a point with the same identity overwrites itself
        named: list[Any] = []
        last: Optional[Refused] = None
        writable: Optional[list[Any]] = None
        for i, body in enumerate(enc.bodies(MAX_POINTS_PER_REQUEST)):
            try:
                if self.uses_v2:
                    self._write_v2(body)
                else:
                    self._write_v1(body)
            except Refused as e:
                if writable is None:  # the records the encoder did not reject, in order
                    writable, pos = _writable(enc, records)
                part = enc.records_of(writable, i * MAX_POINTS_PER_REQUEST, (i + 1) * MAX_POINTS_PER_REQUEST)
                these = self._named(e, part)
                if these is None:
                    raise
                # the answer counts points; a record may be several (an event and its typed point)
                dropped = int(_DROPPED.search(e.detail).group(1))  # type: ignore[union-attr]
                if e.reason == "beyond_retention" and enc.points_of(writable, these) != dropped:
                    raise
                named += these
                last = e
        if last is not None:
            at = {id(r): k for r, k in zip(writable, pos)}  # type: ignore[arg-type]
            raise Refused(last.reason, last.detail, named, [at[id(r)] for r in named])

    def _named(self, e: Refused, part: Sequence[Any]) -> Optional[list[Any]]:
        """The records of one refused request its answer names (see module docstring)."""
        m = _DROPPED.search(e.detail)
        if not e.detail.startswith("partial write") or not m:
            return None
        if e.reason == "beyond_retention":
            try:
                keep = self.retention_ns()
            except StoreUnavailable:
                return None
            if not keep:
                return None
            cutoff = time.time_ns() - keep
            # every point of these records is that old: _write compares the point count
            return [r for r in part if r.ts < cutoff] or None
        if e.reason == "field_type_conflict":
            c = _CONFLICT.search(e.detail)
            if not c:
                return None
            carries = _field_test(c.group(2), c.group(1), c.group(3))
            if carries is None:
                return None
            # a record has at most one point carrying a given field of a given measurement
            these = [r for r in part if carries(r)]
            return these if these and len(these) == int(m.group(1)) else None
        return None

    def retention_ns(self) -> Optional[int]:
        """1.x: the duration of the configured (else the default) retention policy; 2.x: the
        bucket's retention rule when the token may read it. None: forever or unknown."""
        if self.version is None:
            self.start()
        if self.uses_v2:
            return self._retention_v2()
        for res in self._query(f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}").get("results", []):
            for series in res.get("series", []) or []:
                cols = series["columns"]
                for values in series.get("values", []):
                    rp = dict(zip(cols, values))
                    if (rp.get("name") == self.retention_policy if self.retention_policy else rp.get("default")):
                        return parse_duration_ns(str(rp.get("duration", ""))) or None
        return None

    def _retention_v2(self) -> Optional[int]:
        try:
            bucket = self._v2_client.buckets_api().find_bucket_by_name(self.database)
            rules = [r.every_seconds for r in (bucket.retention_rules or []) if r.every_seconds] if bucket else []
        except Exception:  # no right to read buckets, or a 3.x server without the API: unknown
            return None
        return min(rules) * 10**9 if rules else None

    def _write_v1(self, body: bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            # mtime=0: one zlib call (wbits=31) instead of a raw deflate, a separate crc32 pass
            # and two copies for header and trailer (~12 % less time, bench/store_write.py)
            body = gzip_mod.compress(body, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            self._request("POST", "/write", params=params, data=body, headers=headers)
        except _NotFound:
            # the database went away (dropped, or the server came back with empty storage):
            # create it again rather than spool until someone notices
            log.warning("InfluxDB database %s not found: creating it", self.database)
            self._query(f"CREATE DATABASE {quote_ident(self.database)}", write=True)
            self._request("POST", "/write", params=params, data=body, headers=headers)

    def _write_v2(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        bucket = self.database + (f"/{self.retention_policy}" if self.retention_policy else "")
        try:
            self._v2_write.write(bucket=bucket, org=self.org or None, record=body, write_precision="ns")
        except ApiException as e:
            body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else e.body
            _raise_for_status(e.status or 0, str(body or e.reason or ""))
        except (HTTPError, OSError) as e:
            raise StoreUnavailable(f"InfluxDB write failed: {type(e).__name__}") from None

    # ------------------------------------------------------------------ reads
    def latest(self, site: Optional[str] = None, line: Optional[str] = None,
               machine: Optional[str] = None, since_ns: Optional[int] = None) -> list[Sample]:
        # every point has q: last(q) finds the newest point of each series and the other
        # selected fields come from that same point (one selector keeps the real time)
        q = ('SELECT last("q") AS q, "value", "text" FROM "sample"'
             + where({"site": site, "line": line, "machine": machine}, since_ns)
             + ' GROUP BY "site", "line", "machine", "signal"')
        out = []
        for tags, row in self._rows(q):
            number, text = row.get("value"), row.get("text")
            if number is None and text is None:
                continue
            out.append(Sample(tags.get("site", ""), tags.get("line", ""), tags.get("machine", ""),
                              tags.get("signal", ""), float(number) if number is not None else text,
                              int(row["time"]), Quality.from_code(row["q"])))
        return out

    def series(self, site: str, line: str, machine: str, signal: str, start_ns: int, end_ns: int,
               max_points: int = 600) -> pl.DataFrame:
        w = where({"site": site, "line": line, "machine": machine, "signal": signal}, start_ns, end_ns)
        if end_ns <= start_ns:
            return pl.DataFrame(schema=_SERIES_SCHEMA)
        n = next((int(r["count"]) for _, r in self._rows(f'SELECT count("value") AS count FROM "sample"{w}')), 0)
        if n <= max_points:
            rows = [r for _, r in self._rows(f'SELECT "value" FROM "sample"{w}')]
        else:
            width = bucket_width(start_ns, end_ns, max_points)
            # the offset aligns buckets to start_ns (InfluxQL aligns them to the epoch)
            rows = [r for _, r in self._rows(
                f'SELECT mean("value") AS value FROM "sample"{w} '
                f"GROUP BY time({width}ns, {start_ns % width}ns) fill(none)")]
        return pl.DataFrame({"ts": [int(r["time"]) for r in rows],
                             "value": [float(r["value"]) for r in rows]}, schema=_SERIES_SCHEMA)

    def samples(self, site: str, line: str, machine: str, start_ns: int, end_ns: int,
                page_size: int = 50_000) -> Iterator[list[Sample]]:
        # InfluxQL pages by LIMIT only, and the order of points of several series at one
        # time is not defined: a full page's last timestamp is read again whole, by itself
        tags = {"site": site, "line": line, "machine": machine}
        page_size = max(1, int(page_size))
        cursor = int(start_ns)
        while cursor < end_ns:
            rows = self._sample_rows(where(tags, cursor, end_ns) + f" ORDER BY time ASC LIMIT {page_size}")
            if not rows:
                return
            if len(rows) < page_size:
                yield self._to_samples(site, line, machine, rows)
                return
            last = int(rows[-1]["time"])
            head = [r for r in rows if int(r["time"]) < last]
            same = self._sample_rows(where(tags, last, last + 1))
            yield self._to_samples(site, line, machine, head + same)
            cursor = last + 1

    def _sample_rows(self, clause: str) -> list[dict]:
        return [r for _, r in self._rows(f'SELECT "signal", "value", "text", "q" FROM "sample"{clause}')]

    @staticmethod
    def _to_samples(site: str, line: str, machine: str, rows: list[dict]) -> list[Sample]:
        out = [Sample(site, line, machine, r["signal"], float(r["value"]) if r.get("value") is not None else r["text"],
                      int(r["time"]), Quality.from_code(r["q"]))
               for r in rows if r.get("value") is not None or r.get("text") is not None]
        out.sort(key=lambda s: (s.ts, s.signal))
        return out

    def events(self, kind: str, start_ns: int, end_ns: int, site: Optional[str] = None,
               line: Optional[str] = None, machine: Optional[str] = None, key: Optional[str] = None,
               limit: int = 10_000) -> list[Event]:
        if limit <= 0:
            return []
        q = ('SELECT "data", "kind", "site", "line", "machine", "key" FROM "event"'
             + where({"kind": kind, "site": site, "line": line, "machine": machine, "key": key},
                     start_ns, end_ns)
             + f" ORDER BY time ASC LIMIT {int(limit)}")
        return [_event(kind, r, r) for _, r in self._rows(q)]

    def latest_events(self, kind: str, site: Optional[str] = None, line: Optional[str] = None,
                      machine: Optional[str] = None) -> list[Event]:
        q = ('SELECT last("data") AS data FROM "event"'
             + where({"kind": kind, "site": site, "line": line, "machine": machine})
             + ' GROUP BY "site", "line", "machine", "key"')
        return [_event(kind, tags, r) for tags, r in self._rows(q)]

    def count_samples(self, start_ns: int, end_ns: int, site: Optional[str] = None,
                      machine: Optional[str] = None, signal: Optional[str] = None) -> int:
        q = ('SELECT count("q") AS n FROM "sample"'
             + where({"site": site, "machine": machine, "signal": signal}, start_ns, end_ns))
        return sum(int(r["n"]) for _, r in self._rows(q))

    # ------------------------------------------------------------------ HTTP
    def _rows(self, q: str):
        """(tags, row dict) for every row of every series of the query's one statement."""
        for res in self._query(q).get("results", []):
            if "error" in res:
                raise ValueError(f"InfluxQL error: {res['error']}")
            for s in res.get("series", []) or []:
                cols = s["columns"]
                tags = s.get("tags") or {}
                for values in s.get("values", []):
                    yield tags, dict(zip(cols, values))

    def _query(self, q: str, write: bool = False) -> dict:
        data = {"q": q, "epoch": "ns"}
        if not write:
            if self.version is None:
                self.start()
            data["db"] = self.database
            with self._queries_lock:
                self.queries += 1
            if self.retention_policy:
                data["rp"] = self.retention_policy
        r = self._request("POST", "/query", data=data)
        try:
            return r.json()
        except ValueError:
            raise StoreUnavailable("InfluxDB answered /query with something that is not JSON") from None

    def _http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self._headers)
            session.auth = self._auth
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout_s)
        try:
            r = self._http().request(method, self.url + path, **kw)
        except requests.RequestException as e:
            # the exception text can hold the URL; the type says enough and leaks nothing
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {type(e).__name__}") from None
        if r.status_code >= 300:
            _raise_for_status(r.status_code, _error_text(r))
        return r


# Refusals of the data itself (unparsable line, field type conflict, body too large): the
# same batch will never be accepted. Every other status (401/403 wrong credentials, 404 a
# database dropped, 429, 5xx) is a state an operator can fix, so the batch is kept for later.
_REFUSES_DATA = (400, 413, 422)
_DROPPED = re.compile(r"dropped=(\d+)")
_CONFLICT = re.compile(r'input field "((?:[^"\\]|\\.)*)" on measurement "((?:[^"\\]|\\.)*)" is type (\w+)')
# (measurement, field, type InfluxDB names): does a record's point carry that field with that
# type (storage.lineprotocol's layout)
_FIELD_TEST = {
    ("sample", "value", "float"): lambda r: type(r.value) is float,
    ("sample", "text", "string"): lambda r: type(r.value) is str,
    ("sample", "q", "integer"): lambda r: True,
    ("event", "data", "string"): lambda r: True,
}


def _writable(enc: Encoded, records: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """The records the encoder did not reject, in order, and their positions in records. A
    SampleBatch is walked once, so every Sample a refusal names is one of these objects."""
    if isinstance(records, SampleBatch):
        out = set(enc.rejected_at or ())
        pos = [k for k in range(len(records)) if k not in out] if out else list(range(len(records)))
        return list(records.take(pos) if out else records), pos
    gone = {id(r) for r, _ in enc.rejected}
    pos = [k for k, r in enumerate(records) if id(r) not in gone]
    return [records[k] for k in pos], pos


def _field_test(measurement: str, name: str, influx_type: str) -> Optional[Any]:
    """The test for a point of `measurement` carrying field `name` with the type InfluxDB
    names — for the typed measurements, from storage.schema."""
    test = _FIELD_TEST.get((measurement, name, influx_type))
    if test is not None:
        return test
    if FIELD_TYPES.get(measurement, {}).get(name) != influx_type:
        return None

    def carries(r: Any) -> bool:
        if not isinstance(r, Event):
            return False
        p = typed_point(r)
        return p is not None and p.measurement == measurement and name in p.fields

    return carries


_REASONS = (  # the server's words -> the counted reason
    ("points beyond retention policy", "beyond_retention"),
    ("field type conflict", "field_type_conflict"),
    ("unable to parse", "unparsable"),
    ("max-values-per-tag limit exceeded", "limit_exceeded"),
    ("max series per database exceeded", "limit_exceeded"),
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s|d|w)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}


def parse_duration_ns(text: str) -> int:
    """InfluxDB's duration text ("48h0m0s", "168h0m0s", "0s" = forever) in ns."""
    return int(sum(float(n) * _UNIT_NS[u] for n, u in _DURATION.findall(text)))


def _is_v2(version: str, token: Optional[str]) -> bool:
    """2.x/3.x answer /ping with their version. A compatible server that names none gets
    the v2 API when we hold a token, since a token only means something there."""
    if version.startswith("1."):
        return False
    if version[:1].isdigit() or version.lower().startswith("v"):
        return True
    return bool(token)


class _NotFound(StoreUnavailable):
    """404: on /write, the database does not exist."""


def _raise_for_status(status: int, message: str) -> None:
    if status in _REFUSES_DATA:
        reason = "too_large" if status == 413 else next((r for words, r in _REASONS if words in message), "refused")
        # 2.x prefixes "failure writing points to database: "; keep the message from "partial write"
        at = message.find("partial write")
        raise Refused(reason, (message[at:] if at > 0 else message)[:1000])
    raise (_NotFound if status == 404 else StoreUnavailable)(f"InfluxDB answered {status}: {message[:300]}")


def _error_text(r: requests.Response) -> str:
    try:
        return str(r.json().get("error") or r.json().get("message") or r.text)
    except ValueError:
        return r.text


def _event(kind: str, tags: dict, row: dict) -> Event:
    def tag(k: str) -> str:
        return tags.get(k) or ""

    return Event(kind, int(row["time"]), tag("site"), tag("line"), tag("machine"), tag("key"),
                 json.loads(row["data"]))
