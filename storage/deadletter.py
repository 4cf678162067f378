"""The dead-letter file: records the store will never accept (storage.base.Refused, or older
than its retention), kept with their reason instead of blocking the pipeline or vanishing.

Location: <data dir>/deadletter/ (system.yaml `deadletter.dir`). The current file is
`deadletter.jsonl`; one JSON object per line (UTF-8):

    {"at": "2026-12-03T04:05:06.789Z", "reason": "beyond_retention", "detail": "<the store's words>",
     "store": "influxdb", "kind": "sample",
     "record": {"site": .., "line": .., "machine": .., "signal": .., "value": 7.0 | "text",
                "ts": <ns>, "quality": "good"}}
    {... "kind": "event", "record": {"kind": .., "ts": <ns>, "site": .., "line": .., "machine": ..,
                                     "key": .., "data": {..}}}

Bound: when the current file reaches max_bytes / files it becomes `deadletter.jsonl.1` (the
older ones shift to .2 … .<files-1>, the oldest is deleted), so the directory never holds
more than about max_bytes. Records deleted that way are counted (lost_records), as are
records a disk error kept from being written.

Inspect and replay (docs/deploy.md, "Refused data"):
    python -m storage.deadletter summary data/deadletter
    python -m storage.deadletter replay data/deadletter --config config --data-dir data
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from gwanje.model import Event, Quality, Sample

if TYPE_CHECKING:
    from gwanje.config import DeadLetterConfig

log = logging.getLogger("gwanje.deadletter")

NAME = "deadletter.jsonl"


def sample_doc(s: Sample) -> dict[str, Any]:
    q = s.quality.value if isinstance(s.quality, Quality) else str(s.quality)
    return {"site": s.site, "line": s.line, "machine": s.machine, "signal": s.signal, "value": s.value,
            "ts": s.ts, "quality": q}


def event_doc(e: Event) -> dict[str, Any]:
    return {"kind": e.kind, "ts": e.ts, "site": e.site, "line": e.line, "machine": e.machine, "key": e.key,
            "data": e.data}


def record_from(doc: dict[str, Any]) -> Sample | Event:
    """The Sample or Event a dead-letter line holds (inverse of sample_doc / event_doc)."""
    r = doc["record"]
    if doc["kind"] == "sample":
        v = r["value"]
        return Sample(r["site"], r["line"], r["machine"], r["signal"], float(v) if isinstance(v, (int, float)) else v,
                      int(r["ts"]), Quality(r.get("quality", "good")))
    return Event(r["kind"], int(r["ts"]), r["site"], r.get("line", ""), r.get("machine", ""), r.get("key", ""),
                 r.get("data") or {})


class DeadLetter:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 64 * 1024 * 1024, files: int = 4,
                 store: str = "") -> None:
        self.dir = Path(directory)
        self.max_bytes = int(max_bytes)
        self.files = max(2, int(files))
        self.file_bytes = max(4096, self.max_bytes // self.files)
        self.store = store
        self.records = 0  # written by this process
        self.lost_records = 0  # rotated out or not written (disk error)
        self._lock = threading.Lock()
        self._f: Optional[Any] = None
        self._size = 0
        self._lines = 0  # in the current file (counted when it is opened)

    @property
    def path(self) -> Path:
        return self.dir / NAME

    def write(self, kind: str, records: Sequence[Sample | Event], reason: str, detail: str = "") -> int:
        """Append the records (kind "sample" or "event"); never raises. Returns how many were written."""
        if not records:
            return 0
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        to_doc = sample_doc if kind == "sample" else event_doc
        head = {"at": at, "reason": reason, "detail": detail[:1000], "store": self.store, "kind": kind}
        lines = [json.dumps({**head, "record": to_doc(r)}, ensure_ascii=False, default=repr) + "\n"
                 for r in records]
        with self._lock:
            try:
                for line in lines:
                    data = line.encode("utf-8", "replace")
                    f = self._file()
                    if self._size and self._size + len(data) > self.file_bytes:
                        self._rotate()
                        f = self._file()
                    f.write(data)
                    self._size += len(data)
                    self._lines += 1
                f.flush()
                os.fsync(f.fileno())  # refused data is rare: worth surviving a power cut
            except OSError as e:
                self.lost_records += len(lines)
                log.error("dead-letter file %s not written (%s): %d records lost", self.path, e, len(lines))
                self._close()
                return 0
            self.records += len(lines)
        return len(lines)

    def _file(self) -> Any:
        if self._f is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "ab")
            self._size = self._f.tell()
            self._lines = _count_lines(self.path) if self._size else 0
        return self._f

    def _rotate(self) -> None:
        self._close()
        oldest = self.dir / f"{NAME}.{self.files - 1}"
        if oldest.exists():
            self.lost_records += _count_lines(oldest)
            log.warning("dead-letter file %s deleted by rotation (bound %d bytes)", oldest, self.max_bytes)
            oldest.unlink()
        for i in range(self.files - 2, 0, -1):
            p = self.dir / f"{NAME}.{i}"
            if p.exists():
                os.replace(p, self.dir / f"{NAME}.{i + 1}")
        os.replace(self.path, self.dir / f"{NAME}.1")

    def _close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            on_disk = sum(p.stat().st_size for p in self._paths())
            return {"deadletter_records": self.records, "deadletter_lost_records": self.lost_records,
                    "deadletter_bytes": on_disk, "deadletter_max_bytes": self.max_bytes,
                    "deadletter_path": str(self.path)}

    def _paths(self) -> list[Path]:
        try:
            return [p for p in self.dir.iterdir() if p.name == NAME or p.name.startswith(NAME + ".")]
        except FileNotFoundError:
            return []


def open_deadletter(config: "DeadLetterConfig", data_dir: str | os.PathLike[str], store: str = "") -> DeadLetter:
    """The dead-letter file system.yaml describes (deadletter.dir relative to the data dir)."""
    d = Path(config.dir)
    return DeadLetter(d if d.is_absolute() else Path(data_dir) / d, config.max_bytes, config.files, store)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every dead-letter line, oldest file first; a line that is not JSON is skipped (a crash
    can tear the last one)."""
    d = Path(directory)
    rotated = sorted((p for p in d.glob(NAME + ".*") if p.suffix[1:].isdigit()), key=lambda p: -int(p.suffix[1:]))
    for p in [*rotated, d / NAME]:
        if not p.exists():
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def _summary(directory: str) -> int:
    from collections import Counter

    counts: Counter[tuple[str, str]] = Counter()
    first, last = None, None
    for doc in read(directory):
        counts[(doc.get("kind", "?"), doc.get("reason", "?"))] += 1
        first = first or doc.get("at")
        last = doc.get("at")
    for (kind, reason), n in sorted(counts.items()):
        print(f"{n:>10}  {kind:<6}  {reason}")
    print(f"{sum(counts.values()):>10}  total" + (f" ({first} .. {last})" if first else ""))
    return 0


def _replay(directory: str, config_dir: str, data_dir: str, reason: Optional[str]) -> int:
    """Write the dead letters into the configured store again (after the cause was fixed:
    retention extended, a field type conflict resolved). Writes are idempotent; what the store
    still refuses is counted, not retried."""
    from gwanje.config import Secrets, load_config
    from storage import open_store
    from storage.base import Refused

    store = open_store(load_config(config_dir), Path(data_dir), Secrets.from_env())
    written = refused = 0
    try:
        for doc in read(directory):
            if reason and doc.get("reason") != reason:
                continue
            rec = record_from(doc)
            try:
                if isinstance(rec, Sample):
                    store.write_samples([rec])
                else:
                    store.write_events([rec])
                written += 1
            except Refused as e:
                refused += 1
                if refused <= 10:
                    print(f"still refused ({e.reason}): {doc['record']}", file=sys.stderr)
    finally:
        store.close()
    print(f"{written} written, {refused} still refused")
    return 0 if not refused else 1


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m storage.deadletter", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="count the dead letters per kind and reason")
    s.add_argument("dir", nargs="?", default="data/deadletter")
    r = sub.add_parser("replay", help="write the dead letters into the configured store again")
    r.add_argument("dir", nargs="?", default="data/deadletter")
    r.add_argument("--config", default=os.environ.get("GWANJE_CONFIG_DIR") or "config")
    r.add_argument("--data-dir", default=os.environ.get("GWANJE_DATA_DIR") or "data")
    r.add_argument("--reason", default=None, help="only the records refused for this reason")
    args = p.parse_args(argv)
    if args.cmd == "summary":
        return _summary(args.dir)
    return _replay(args.dir, args.config, args.data_dir, args.reason)


if __name__ == "__main__":
    sys.exit(main())
