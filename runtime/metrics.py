"""Prometheus text exposition (format 0.0.4) of one process's status, without a client
library: the numbers already live in Pipeline.stats() and the collectors' SourceStatus, so
this module only renders the runtime status dict (runtime.Runtime.status()):

    {"instance": str, "pipeline": Pipeline.stats(), "sources": [asdict(SourceStatus), ...],
     "store": {"name": str, "ok": bool}, "started_ns": int,
     "rejects": {source: {reason: count}}}   # other counted rejections of the process (the UI's)

Pure: no I/O except reading this process's RSS from /proc (optional, Linux only).
Label values are escaped as the format requires, so a hostile source name or rejection
reason cannot forge a metric line.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    return repr(f)


class _Doc:
    """Collects metric families; each family's HELP/TYPE is written once, before its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: Any, labels: Optional[Mapping[str, Any]] = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_num(value)}")

    def one(self, name: str, kind: str, help_text: str, value: Any,
            labels: Optional[Mapping[str, Any]] = None) -> None:
        if value is None:
            return
        self.family(name, kind, help_text)
        self.sample(name, value, labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# (stats key, metric name, type, help)
_PIPELINE = (
    ("samples_in", "gwanje_pipeline_samples_in_total", "counter", "Samples handed to the pipeline by collectors."),
    ("samples_written", "gwanje_pipeline_samples_written_total", "counter", "Samples written to the store."),
    ("samples_dropped", "gwanje_pipeline_samples_dropped_total", "counter",
     "Samples lost: queue full and no room in the spool."),
    ("samples_spooled", "gwanje_pipeline_samples_spooled_total", "counter", "Samples written to the disk spool."),
    ("samples_spilled", "gwanje_pipeline_samples_spilled_total", "counter",
     "Samples spooled because the in-memory queue was full (store too slow)."),
    ("samples_replayed", "gwanje_pipeline_samples_replayed_total", "counter",
     "Samples written to the store from the spool."),
    ("events_written", "gwanje_pipeline_events_written_total", "counter", "Derived events written to the store."),
    ("events_pending", "gwanje_pipeline_events_pending", "gauge", "Derived events waiting for the store."),
    ("write_errors", "gwanje_store_write_errors_total", "counter", "Failed store writes."),
    ("batches_written", "gwanje_store_batches_written_total", "counter", "Batches written to the store."),
    ("queue_depth", "gwanje_pipeline_queue_depth_samples", "gauge", "Samples waiting in memory."),
    ("queue_capacity", "gwanje_pipeline_queue_capacity_samples", "gauge", "Bound of the in-memory queue."),
    ("spool_bytes", "gwanje_spool_bytes", "gauge", "Bytes in the disk spool."),
    ("spool_max_bytes", "gwanje_spool_max_bytes", "gauge", "Size limit of the disk spool."),
    ("spool_samples", "gwanje_spool_samples", "gauge", "Samples waiting in the disk spool."),
    ("spool_batches", "gwanje_spool_batches", "gauge", "Batches waiting in the disk spool."),
    ("spool_dropped_samples", "gwanje_spool_dropped_samples_total", "counter",
     "Samples dropped by the spool's size policy or unreadable records."),
    ("spool_dropped_batches", "gwanje_spool_dropped_batches_total", "counter",
     "Batches dropped by the spool's size policy or unreadable records."),
    ("spool_full", "gwanje_spool_full", "gauge", "1 while the spool is full and its policy applies."),
    ("spool_alarm", "gwanje_spool_alarm", "gauge", "1 while the system:spool_full alarm is active."),
    ("samples_refused", "gwanje_pipeline_samples_refused_total", "counter",
     "Samples the store will never accept (or older than its retention), put in the dead-letter file."),
    ("events_refused", "gwanje_pipeline_events_refused_total", "counter",
     "Events the store will never accept (or older than its retention), put in the dead-letter file."),
    ("refused_alarm", "gwanje_refused_alarm", "gauge", "1 while the system:data_refused alarm is active."),
    ("retention_s", "gwanje_store_retention_seconds", "gauge",
     "The store's retention as last read (absent: forever or unknown)."),
    ("deadletter_records", "gwanje_deadletter_records_total", "counter",
     "Records written to the dead-letter file by this process."),
    ("deadletter_lost_records", "gwanje_deadletter_lost_records_total", "counter",
     "Dead-letter records deleted by rotation or not written (disk error)."),
    ("deadletter_bytes", "gwanje_deadletter_bytes", "gauge", "Bytes in the dead-letter files."),
    ("deadletter_max_bytes", "gwanje_deadletter_max_bytes", "gauge", "Size bound of the dead-letter files."),
)


def render(status: Mapping[str, Any], rss_bytes: Optional[int] = None) -> str:
    """The status dict as Prometheus text. rss_bytes=None reads /proc/self/statm."""
    d = _Doc()
    d.one("gwanje_up", "gauge", "1 while this process serves metrics.", 1)
    if status.get("instance"):
        d.one("gwanje_instance_info", "gauge", "Which collect instance this process is (scale-out), as a label.",
              1, {"instance": status["instance"]})
    started = status.get("started_ns")
    if started:
        d.one("gwanje_process_start_time_seconds", "gauge", "Start time of the process, Unix seconds.",
              started / 1e9)
    rss = rss_bytes if rss_bytes is not None else read_rss_bytes()
    d.one("gwanje_process_resident_memory_bytes", "gauge", "Resident set size of the process.", rss)
    store = status.get("store") or {}
    if store:
        d.one("gwanje_store_up", "gauge", "1 when the store answers its ping.", bool(store.get("ok")),
              {"store": store.get("name", "")})
    pipeline = status.get("pipeline") or {}
    sources = list(status.get("sources") or [])
    _pipeline(d, pipeline)
    _sources(d, sources)
    # one family, all its samples together (the format wants a family's lines contiguous)
    rejects = [("spool", r, n) for r, n in (pipeline.get("spool_rejects") or {}).items()]
    rejects += [(s.get("name", ""), r, n) for s in sources for r, n in (s.get("rejects") or {}).items()]
    rejects += [(src, r, n) for src, counts in (status.get("rejects") or {}).items() for r, n in counts.items()]
    store_rejects: dict[str, int] = {}
    for counts in (pipeline.get("refused") or {}).values():
        for r, n in counts.items():
            store_rejects[r] = store_rejects.get(r, 0) + n
    rejects += [("store", r, n) for r, n in store_rejects.items()]
    if rejects:
        d.family("gwanje_rejects_total", "counter", "Rejected inputs and records, by source and reason.")
        for src, reason, n in sorted(rejects):
            d.sample("gwanje_rejects_total", n, {"source": src, "reason": reason})
    return d.text()


def _pipeline(d: _Doc, p: Mapping[str, Any]) -> None:
    for key, name, kind, help_text in _PIPELINE:
        if key in p:
            d.one(name, kind, help_text, p[key])
    refused = p.get("refused") or {}
    if refused:
        name = "gwanje_store_refused_total"
        d.family(name, "counter", "Records the store will never accept, dead-lettered, by kind and reason.")
        for kind, counts in sorted(refused.items()):
            for reason, n in sorted(counts.items()):
                d.sample(name, n, {"kind": kind, "reason": reason})
    by_site = p.get("samples_written_by_site") or {}
    if by_site:
        d.family("gwanje_samples_written_total", "counter", "Samples written to the store, per site.")
        for site, n in sorted(by_site.items()):
            d.sample("gwanje_samples_written_total", n, {"site": site})
    buckets = p.get("write_latency_buckets")
    if buckets is not None:
        name = "gwanje_store_write_latency_seconds"
        d.family(name, "histogram", "Time of successful store writes.")
        for le, n in sorted(buckets.items(), key=lambda kv: float(kv[0])):
            d.sample(name + "_bucket", n, {"le": _num(float(le))})
        d.sample(name + "_bucket", p.get("write_latency_count", 0), {"le": "+Inf"})
        d.sample(name + "_sum", p.get("write_latency_sum", 0.0))
        d.sample(name + "_count", p.get("write_latency_count", 0))


def _sources(d: _Doc, sources: list[Mapping[str, Any]]) -> None:
    per_source = (
        ("connected", "gwanje_source_connected", "gauge", "1 while the collector is connected to its source."),
        ("samples_in", "gwanje_source_samples_in_total", "counter", "Valid samples received, per source."),
        ("messages_in", "gwanje_source_messages_in_total", "counter", "Messages or notifications received."),
        ("reconnects", "gwanje_source_reconnects_total", "counter", "Reconnections to the source."),
        ("rebirths_requested", "gwanje_source_sparkplug_rebirths_requested_total", "counter",
         "Sparkplug B rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes: after a seq gap, "
         "an unknown alias or data before a birth."),
    )
    for key, name, kind, help_text in per_source:
        if not sources:
            break
        d.family(name, kind, help_text)
        for s in sources:
            d.sample(name, s.get(key) or 0, {"source": s.get("name", ""), "kind": s.get("kind", "")})
    with_data = [s for s in sources if s.get("last_data_ns")]
    if with_data:
        name = "gwanje_source_last_data_timestamp_seconds"
        d.family(name, "gauge", "Receive time of the newest sample, Unix seconds.")
        for s in with_data:
            d.sample(name, s["last_data_ns"] / 1e9, {"source": s.get("name", ""), "kind": s.get("kind", "")})
    offsets = [(s, origin, v) for s in sources for origin, v in sorted((s.get("clock_offsets_s") or {}).items())]
    if offsets:
        name = "gwanje_source_clock_offset_seconds"
        d.family(name, "gauge", "Recent clock offset of a source, its time minus receive time (positive: ahead), "
                                "per origin: machine (mqtt) or endpoint (opcua).")
        for s, origin, v in offsets:
            d.sample(name, v, {"source": s.get("name", ""), "kind": s.get("kind", ""), "origin": origin})
    skipped = [(s, r, n) for s in sources for r, n in sorted((s.get("skipped") or {}).items())]
    if skipped:
        name = "gwanje_source_skipped_total"
        d.family(name, "counter", "Messages skipped, not rejected, by reason: other_instance = a line another "
                                  "collect instance owns (scale-out).")
        for s, reason, n in skipped:
            d.sample(name, n, {"source": s.get("name", ""), "kind": s.get("kind", ""), "reason": reason})


def read_rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
