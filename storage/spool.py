"""A bounded on-disk spool: batches of samples wait here while the store is down or slow, and
are replayed oldest first when it answers again. It survives a restart of the process.

Layout (one directory): append-only segment files `seg-<seq>.spool`, each a run of records

    magic "GWSP" | payload length u32 | crc32(payload) u32 | samples u32 | flags u8 | payload

payload = zlib(JSON of the batch in columns: series table, series index, value, ts, quality
code). JSON keeps float and text values apart exactly; zlib level 1 shrinks the repetitive
names ~5x for little CPU. A segment is deleted only after its last record was acknowledged
(written to the store); the read position inside the oldest segment is kept in `cursor.json`
(replaced atomically after every acknowledgement; if it is lost, the segment is replayed
from its start, which the idempotent stores absorb).

Durability: with fsync=True (default) every record is fsync'ed before append() returns, so
an accepted batch survives a power cut; with fsync=False it survives a crash of the process
(kill -9) but not of the machine. A record torn by a crash mid-write is found when the spool
is opened, counted (reason torn_record), cut off, and the records before it are kept.

Size limit: when a new batch does not fit in max_bytes, the policy applies —
drop_oldest deletes whole oldest segments (a segment is at most ~1/16 of max_bytes, so about
6 % goes at a time), drop_newest refuses the new batch. Either way the loss is counted
(dropped_batches, dropped_samples) and `full` is set; `full` clears once the spool has
drained below half of max_bytes, so an alarm on it does not flap.
"""
from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional, Sequence

from gwanje.batch import SERIES, SampleBatch
from gwanje.model import Quality, Sample
from gwanje.rejects import Rejects
from storage.base import Store, StoreUnavailable

if TYPE_CHECKING:
    from gwanje.config import SpoolConfig

log = logging.getLogger("gwanje.spool")

MAGIC = b"GWSP"
HEADER = struct.Struct("<4sIIIB")
FLAG_NOTIFIED = 1  # the pipeline's listeners have already seen this batch
_SEG_RE = re.compile(r"^seg-(\d{12})\.spool$")
Policy = Literal["drop_oldest", "drop_newest"]


def encode_batch(samples: Sequence[Sample]) -> bytes:
    """Samples -> compact bytes (see module docstring); decode_batch is the inverse. A
    SampleBatch is encoded from its columns, to the same bytes the same samples give as a
    list."""
    if isinstance(samples, SampleBatch):
        doc = _batch_doc(samples)
        if doc is not None:
            return _compress(doc)
    keys: dict[tuple[str, str, str, str], int] = {}
    k: list[int] = []
    v: list[float | str] = []
    t: list[int] = []
    q: list[int] = []
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        i = keys.get(key)
        if i is None:
            i = keys[key] = len(keys)
        k.append(i)
        v.append(s.value)
        t.append(s.ts)
        q.append(s.quality.code)
    return _compress({"keys": list(keys), "k": k, "v": v, "t": t, "q": q})


def _compress(doc: dict) -> bytes:
    return zlib.compress(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(), 1)


def _batch_doc(b: SampleBatch) -> Optional[dict]:
    """The document of a batch, from its columns; None when its quality column holds garbage
    (the Sample walk above raises on it, as it always did). A NaN or a value JSON cannot
    carry raises in json.dumps either way."""
    q = b.quality
    if q is not None and (set(map(type, q)) != _INT or not _CODES.issuperset(q)):
        return None
    sid = b.sid
    local = dict.fromkeys(sid)  # the batch's series ids, in order of first appearance
    for j, i in enumerate(local):
        local[i] = j
    table = SERIES.keys
    return {"keys": [table[i] for i in local], "k": list(map(local.__getitem__, sid)), "v": b.value,
            "t": b.ts, "q": [0] * len(sid) if q is None else q}


_QUALITIES = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD)  # index = Quality.code
_INT = {int}
_CODES = frozenset((0, 1, 2))


def decode_batch(payload: bytes) -> SampleBatch:
    """The batch encode_batch wrote (this version or the previous one: same document), as a
    SampleBatch — a Sequence[Sample]; its series are registered in gwanje.batch.SERIES."""
    doc = json.loads(zlib.decompress(payload))
    keys, k, v, t, q = doc["keys"], doc["k"], doc["v"], doc["t"], doc["q"]
    n = min(len(k), len(v), len(t), len(q))
    if n < len(k) or n < len(v) or n < len(t) or n < len(q):
        k, v, t, q = k[:n], v[:n], t[:n], q[:n]
    ids = []
    for key in keys:
        key = tuple(key)
        if len(key) != 4:
            raise ValueError("a series key of the wrong length")
        try:
            ids.append(SERIES.id_of(key))
        except TypeError:  # an unhashable name: a row of its own, the store refuses it
            ids.append(SERIES.unindexed(key))
    sid = list(map(ids.__getitem__, k))
    if set(map(type, q)) == _INT and _CODES.issuperset(q):
        quality = None if not any(q) else q
    else:  # what the Sample decoder made of odd codes: out of range -> bad
        quality = [_QUALITIES[c].code if 0 <= c <= 2 else 2 for c in q]
    return SampleBatch(sid, t, v, quality)


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0  # bytes on disk, including acknowledged records
    batches: int = 0  # records not yet acknowledged
    samples: int = 0


@dataclass(frozen=True)
class SpooledBatch:
    samples: SampleBatch  # a Sequence[Sample]
    notified: bool
    token: tuple[int, int, int]  # (segment seq, offset, next offset): hand back to ack()


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, policy: Policy = "drop_oldest",
                 segment_bytes: Optional[int] = None, fsync: bool = True) -> None:
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown spool policy {policy!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.policy: Policy = policy
        self.segment_bytes = int(segment_bytes or max(4096, min(self.max_bytes // 16, 16 * 1024 * 1024)))
        self.fsync = fsync
        self.rejects = Rejects("spool")
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._head_off = 0  # read position in the oldest segment
        self._wfile = None  # append handle of the newest segment
        self._next_seq = 0
        self._rfile = None  # (seq, handle) of the oldest segment, for reading
        self.dropped_batches = 0
        self.dropped_samples = 0
        self.appended_batches = 0
        self.acked_batches = 0
        self.full = False
        self.full_events = 0  # how many times the policy had to apply
        self._open_existing()

    # ----------------------------------------------------------------- opening
    def _open_existing(self) -> None:
        found = sorted((int(m.group(1)), p) for p in self.dir.iterdir() if (m := _SEG_RE.match(p.name)))
        cursor_seq, cursor_off = self._read_cursor()
        self._next_seq = max([cursor_seq + 1] + [seq + 1 for seq, _ in found])
        for n, (seq, path) in enumerate(found):
            if seq < cursor_seq:  # fully acknowledged; the crash came before its deletion
                path.unlink(missing_ok=True)
                continue
            seg = _Segment(seq, path)
            start = cursor_off if seq == cursor_seq else 0
            self._scan(seg, start, last=(n == len(found) - 1))
            if not self._segments:
                self._head_off = start if seq == cursor_seq else 0
            self._segments.append(seg)
        if self._segments:
            log.warning("spool %s holds %d batches (%d samples, %d bytes) from a previous run",
                        self.dir, self.batches, self.samples, self.bytes)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            c = json.loads((self.dir / "cursor.json").read_text())
            return int(c["seq"]), int(c["offset"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return -1, 0

    def _scan(self, seg: _Segment, start: int, last: bool) -> None:
        """Count the segment's records after `start`; cut off a torn tail."""
        size = seg.path.stat().st_size
        good_end = 0
        with open(seg.path, "rb") as f:
            off = 0
            while off < size:
                f.seek(off)
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    break
                magic, length, _crc, n, _flags = HEADER.unpack(head)
                if magic != MAGIC or off + HEADER.size + length > size:
                    break
                off += HEADER.size + length
                good_end = off
                if off > start:
                    seg.batches += 1
                    seg.samples += n
        if good_end < size:
            reason = "torn_record" if last else "corrupt_segment_tail"
            self.rejects.reject(reason, f"{seg.path.name} at byte {good_end} of {size}")
            if last:
                with open(seg.path, "r+b") as f:
                    f.truncate(good_end)
                size = good_end
        seg.size = size

    # ----------------------------------------------------------------- writing
    def append(self, samples: Sequence[Sample], notified: bool = True, sync: Optional[bool] = None) -> bool:
        """Store a batch at the tail. False when it was refused (drop_newest and full, too big
        for the spool, or a disk error) — the loss is counted."""
        if not samples:
            return True
        payload = encode_batch(samples)
        rec = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), len(samples),
                          FLAG_NOTIFIED if notified else 0) + payload
        with self._lock:
            if len(rec) > self.max_bytes:
                self._refuse(len(samples), "batch_larger_than_spool")
                return False
            if self.bytes + len(rec) > self.max_bytes:
                if self.policy == "drop_newest":
                    self._refuse(len(samples), "spool_full")
                    return False
                self._make_room(len(rec))
            seg = self._write_segment()
            try:
                self._wfile.write(rec)
                self._wfile.flush()
                if self.fsync if sync is None else sync:
                    os.fsync(self._wfile.fileno())
            except OSError as e:
                self._undo_write(seg)
                self._refuse(len(samples), "write_error", str(e))
                return False
            seg.size += len(rec)
            seg.batches += 1
            seg.samples += len(samples)
            self.appended_batches += 1
            return True

    def _write_segment(self) -> _Segment:
        tail = self._segments[-1] if self._segments else None
        # after a restart we never append to an old segment: its tail may have been repaired
        if tail is None or self._wfile is None or tail.size >= self.segment_bytes:
            self._close_write()
            tail = _Segment(self._next_seq, self.dir / f"seg-{self._next_seq:012d}.spool")
            self._next_seq += 1
            self._segments.append(tail)
            if len(self._segments) == 1:
                self._head_off = 0
            self._wfile = open(tail.path, "ab")
        return tail

    def _undo_write(self, seg: _Segment) -> None:
        try:
            self._wfile.truncate(seg.size)
        except (OSError, ValueError):
            self._close_write()

    def _close_write(self) -> None:
        if self._wfile is not None:
            try:
                self._wfile.close()
            except OSError:
                pass
            self._wfile = None

    def _refuse(self, n: int, reason: str, detail: str = "") -> None:
        self.dropped_batches += 1
        self.dropped_samples += n
        if reason == "spool_full":
            self._set_full()
        self.rejects.reject(reason, detail or f"{n} samples dropped")

    def _set_full(self) -> None:
        if not self.full:
            log.error("spool %s full (%d of %d bytes): policy %s applies", self.dir, self.bytes,
                      self.max_bytes, self.policy)
            self.full_events += 1
        self.full = True

    def _make_room(self, need: int) -> None:
        while self._segments and self.bytes + need > self.max_bytes:
            if len(self._segments) == 1:
                # the oldest is also the one being written: start a new one so it can go
                self._close_write()
            self._drop_head_segment(count_as_lost=True)
        self._set_full()

    def _drop_head_segment(self, count_as_lost: bool) -> None:
        seg = self._segments.pop(0)
        if count_as_lost and seg.batches:
            self.dropped_batches += seg.batches
            self.dropped_samples += seg.samples
            self.rejects.reject("spool_full", f"dropped oldest {seg.batches} batches ({seg.samples} samples)")
        if self._rfile is not None and self._rfile[0] == seg.seq:
            self._rfile[1].close()
            self._rfile = None
        if not self._segments:
            self._close_write()
        seg.path.unlink(missing_ok=True)
        self._head_off = 0
        self._write_cursor(seg.seq + 1, 0)

    # ----------------------------------------------------------------- reading
    def peek(self) -> Optional[SpooledBatch]:
        """The oldest batch not yet acknowledged, or None when the spool is empty."""
        with self._lock:
            while self._segments:
                seg = self._segments[0]
                if self._head_off >= seg.size:
                    self._drop_head_segment(count_as_lost=False)
                    continue
                rec = self._read_at(seg, self._head_off)
                if isinstance(rec, SpooledBatch):
                    return rec
                reason, nxt, n = rec
                if nxt is None:
                    self._skip_rest(seg, reason)
                else:
                    self.rejects.reject(reason, f"{seg.path.name} at byte {self._head_off}")
                    self._lose(seg, nxt, n)
            return None

    def peek_many(self, max_samples: int) -> list[SpooledBatch]:
        """The oldest batches, in order, up to about max_samples (at least one when the spool
        holds any; never across a segment end): the pipeline writes them as one store write
        and acks each, so a backlog of small records drains in few round trips."""
        with self._lock:
            first = self.peek()
            if first is None:
                return []
            out, n = [first], len(first.samples)
            seg = self._segments[0]
            off = first.token[2]
            while off < seg.size:
                rec = self._read_at(seg, off)
                if not isinstance(rec, SpooledBatch) or n + len(rec.samples) > max_samples:
                    break  # a bad record is dealt with when it is the head
                out.append(rec)
                n += len(rec.samples)
                off = rec.token[2]
            return out

    def _read_at(self, seg: _Segment, off: int):
        """The record at off as a SpooledBatch, or (reason, next offset or None, samples)."""
        f = self._reader(seg)
        f.seek(off)
        head = f.read(HEADER.size)
        magic, length, crc, n, flags = HEADER.unpack(head) if len(head) == HEADER.size else (b"", 0, 0, 0, 0)
        payload = f.read(length) if magic == MAGIC else b""
        if magic != MAGIC or len(payload) != length:
            return ("corrupt_record", None, 0)
        nxt = off + HEADER.size + length
        if zlib.crc32(payload) != crc:
            return ("bad_checksum", nxt, n)
        try:
            samples = decode_batch(payload)
        except (ValueError, KeyError, TypeError, IndexError, zlib.error):
            return ("undecodable_record", nxt, n)
        return SpooledBatch(samples, bool(flags & FLAG_NOTIFIED), (seg.seq, off, nxt))

    def _reader(self, seg: _Segment):
        if self._rfile is None or self._rfile[0] != seg.seq:
            if self._rfile is not None:
                self._rfile[1].close()
            self._rfile = (seg.seq, open(seg.path, "rb"))
        return self._rfile[1]

    def _lose(self, seg: _Segment, nxt: int, n: int) -> None:
        self.dropped_batches += 1
        self.dropped_samples += n
        seg.batches = max(0, seg.batches - 1)
        seg.samples = max(0, seg.samples - n)
        self._advance(seg, nxt)

    def _skip_rest(self, seg: _Segment, reason: str) -> None:
        self.rejects.reject(reason, f"{seg.path.name} at byte {self._head_off}; rest of segment skipped")
        self.dropped_batches += seg.batches
        self.dropped_samples += seg.samples
        seg.batches = seg.samples = 0
        if len(self._segments) == 1:
            self._close_write()  # never append behind garbage
        self._advance(seg, seg.size)

    def _advance(self, seg: _Segment, nxt: int) -> None:
        self._head_off = nxt
        if nxt >= seg.size:  # all of it is in the store (an empty spool holds no files)
            self._drop_head_segment(count_as_lost=False)
        else:
            self._write_cursor(seg.seq, nxt)

    def ack(self, token: tuple[int, int, int], n_samples: int) -> None:
        """The batch from peek() is in the store: forget it (delete its segment when done)."""
        seq, off, nxt = token
        with self._lock:
            if not self._segments or self._segments[0].seq != seq or self._head_off != off:
                return  # dropped by the size policy while it was being written
            seg = self._segments[0]
            seg.batches = max(0, seg.batches - 1)
            seg.samples = max(0, seg.samples - n_samples)
            self.acked_batches += 1
            self._advance(seg, nxt)
            if self.full and self.bytes < self.max_bytes // 2:
                self.full = False
                log.warning("spool %s below half of its limit again", self.dir)

    def _write_cursor(self, seq: int, off: int) -> None:
        tmp = self.dir / "cursor.json.tmp"
        tmp.write_text(json.dumps({"seq": seq, "offset": off}))
        os.replace(tmp, self.dir / "cursor.json")

    # ----------------------------------------------------------------- state
    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    @property
    def batches(self) -> int:
        with self._lock:
            return sum(s.batches for s in self._segments)

    @property
    def samples(self) -> int:
        with self._lock:
            return sum(s.samples for s in self._segments)

    def __len__(self) -> int:
        return self.batches

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "spool_bytes": self.bytes,
                "spool_max_bytes": self.max_bytes,
                "spool_batches": self.batches,
                "spool_samples": self.samples,
                "spool_segments": len(self._segments),
                "spool_dropped_batches": self.dropped_batches,
                "spool_dropped_samples": self.dropped_samples,
                "spool_full": self.full,
                "spool_full_events": self.full_events,
                "spool_policy": self.policy,
                "spool_rejects": self.rejects.counts(),
            }

    def close(self) -> None:
        with self._lock:
            self._close_write()
            if self._rfile is not None:
                self._rfile[1].close()
                self._rfile = None


def open_spool(config: "SpoolConfig", data_dir: str | os.PathLike[str]) -> Spool:
    """The spool system.yaml describes (spool.dir relative to the data dir)."""
    d = Path(config.dir)
    return Spool(d if d.is_absolute() else Path(data_dir) / d, config.max_bytes, config.policy)


class DeferredStore(Store):
    """A store that could not be opened at start-up (InfluxDB down when `collect` starts):
    every call tries to open it first and raises StoreUnavailable until that works, so the
    pipeline spools from the first sample on instead of the process failing to start."""

    def __init__(self, opener: Callable[[], Store], name: str = "store") -> None:
        self._opener = opener
        self._store: Optional[Store] = None
        self._lock = threading.Lock()
        self.name = name

    def _get(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = self._opener()  # raises StoreUnavailable while it is away
                log.warning("store %s reachable now", self.name)
            return self._store

    def write_samples(self, samples):
        self._get().write_samples(samples)

    def write_events(self, events):
        self._get().write_events(events)

    def latest(self, *a, **kw):
        return self._get().latest(*a, **kw)

    def series(self, *a, **kw):
        return self._get().series(*a, **kw)

    def samples(self, *a, **kw):
        return self._get().samples(*a, **kw)

    def events(self, *a, **kw):
        return self._get().events(*a, **kw)

    def latest_events(self, *a, **kw):
        return self._get().latest_events(*a, **kw)

    def count_samples(self, *a, **kw):
        return self._get().count_samples(*a, **kw)

    def ping(self) -> bool:
        try:
            return self._get().ping()
        except StoreUnavailable:
            return False

    def retention_ns(self):
        return self._get().retention_ns()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
