"""Prometheus exposition of one process's status through prometheus_client. The numbers
already live in Pipeline.stats() and the collectors' SourceStatus, so nothing here counts:
StatusCollector turns the runtime status dict (runtime.Runtime.status()) into metric families
when it is scraped, and render() writes them with prometheus_client's generate_latest from a
private CollectorRegistry (never the global one):

    {"instance": str, "pipeline": Pipeline.stats(), "sources": [asdict(SourceStatus), ...],
     "store": {"name": str, "ok": bool}, "started_ns": int,
     "rejects": {source: {reason: count}}}   # other counted rejections of the process (the UI's)

Beside the gwanje_* families the registry holds prometheus_client's ProcessCollector
(process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... from /proc,
Linux only: nothing elsewhere) and PlatformCollector (python_info), added on purpose.
gwanje_process_resident_memory_bytes stays (docs/deploy.md and bench/soak.py name it), as does
gwanje_process_start_time_seconds (the runtime's start, not the interpreter's).

Names: prometheus_client writes a counter as <family>_total whatever the family is called, so
every counter here is named with its _total (checked). Counters get no _created series: a
custom collector's families have one only when given `created`, which nothing here passes.
Label values are escaped by prometheus_client, so a hostile source name or rejection reason
cannot forge a metric line. Samples come out with labels sorted by name and values as Go
writes floats ("1.0", "1.7e+09"); read them with a parser
(prometheus_client.parser.text_string_to_metric_families), not by matching text.

Pure but for reading this process's /proc (RSS here, the rest in ProcessCollector).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

# The content type prometheus_client itself serves generate_latest's text under when the
# scraper asks for nothing else: text/plain; version=0.0.4, what /metrics always sent. Not
# CONTENT_TYPE_LATEST: in recent releases (0.26 here) that announces the 1.0.0 text format,
# while generate_latest's default output is the 0.0.4 text.
CONTENT_TYPE = choose_encoder("")[1]

StatusProvider = Callable[[], Mapping[str, Any]]

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

# (SourceStatus field, metric name, type, help): one sample per source, labels source and kind
_PER_SOURCE = (
    ("connected", "gwanje_source_connected", "gauge", "1 while the collector is connected to its source."),
    ("samples_in", "gwanje_source_samples_in_total", "counter", "Valid samples received, per source."),
    ("messages_in", "gwanje_source_messages_in_total", "counter", "Messages or notifications received."),
    ("reconnects", "gwanje_source_reconnects_total", "counter", "Reconnections to the source."),
    ("rebirths_requested", "gwanje_source_sparkplug_rebirths_requested_total", "counter",
     "Sparkplug B rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes: after a seq gap, "
     "an unknown alias or data before a birth."),
)

_KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


def read_rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _family(kind: str, name: str, help_text: str, labels: Sequence[str] = ()) -> Metric:
    if kind == "counter" and not name.endswith("_total"):
        # prometheus_client would write <name>_total: a different series than the one named here
        raise ValueError(f"counter {name} must end in _total")
    return _KINDS[kind](name, help_text, labels=list(labels))


def _one(kind: str, name: str, help_text: str, value: Any,
         labels: Optional[Mapping[str, Any]] = None) -> Optional[Metric]:
    """A family of one sample; None (no family) when the value is unknown."""
    if value is None:
        return None
    labels = labels or {}
    fam = _family(kind, name, help_text, tuple(labels))
    fam.add_metric([str(v) for v in labels.values()], float(value))
    return fam


def _many(kind: str, name: str, help_text: str, labels: Sequence[str],
          rows: Sequence[tuple[Sequence[Any], Any]]) -> Optional[Metric]:
    """A family of rows (label values, value); None when there are no rows."""
    if not rows:
        return None
    fam = _family(kind, name, help_text, labels)
    for values, value in rows:
        fam.add_metric([str(v) for v in values], float(value))
    return fam


def families(status: Mapping[str, Any], rss_bytes: Optional[int] = None) -> Iterator[Metric]:
    """The gwanje_* metric families of a status dict; a family only for what the status knows."""
    out: list[Optional[Metric]] = [
        _one("gauge", "gwanje_up", "1 while this process serves metrics.", 1),
    ]
    if status.get("instance"):
        out.append(_one("gauge", "gwanje_instance_info",
                        "Which collect instance this process is (scale-out), as a label.",
                        1, {"instance": status["instance"]}))
    started = status.get("started_ns")
    if started:
        out.append(_one("gauge", "gwanje_process_start_time_seconds", "Start time of the process, Unix seconds.",
                        started / 1e9))
    out.append(_one("gauge", "gwanje_process_resident_memory_bytes", "Resident set size of the process.", rss_bytes))
    store = status.get("store") or {}
    if store:
        out.append(_one("gauge", "gwanje_store_up", "1 when the store answers its ping.", bool(store.get("ok")),
                        {"store": store.get("name", "")}))
    pipeline = status.get("pipeline") or {}
    sources = list(status.get("sources") or [])
    out += _pipeline(pipeline)
    out += _sources(sources)
    rejects = [("spool", r, n) for r, n in (pipeline.get("spool_rejects") or {}).items()]
    rejects += [(s.get("name", ""), r, n) for s in sources for r, n in (s.get("rejects") or {}).items()]
    rejects += [(src, r, n) for src, counts in (status.get("rejects") or {}).items() for r, n in counts.items()]
    store_rejects: dict[str, int] = {}
    for counts in (pipeline.get("refused") or {}).values():
        for r, n in counts.items():
            store_rejects[r] = store_rejects.get(r, 0) + n
    rejects += [("store", r, n) for r, n in store_rejects.items()]
    out.append(_many("counter", "gwanje_rejects_total", "Rejected inputs and records, by source and reason.",
                     ("source", "reason"), [((src, reason), n) for src, reason, n in sorted(rejects)]))
    return (f for f in out if f is not None)


def _pipeline(p: Mapping[str, Any]) -> list[Optional[Metric]]:
    out = [_one(kind, name, help_text, p[key]) for key, name, kind, help_text in _PIPELINE if key in p]
    refused = p.get("refused") or {}
    out.append(_many("counter", "gwanje_store_refused_total",
                     "Records the store will never accept, dead-lettered, by kind and reason.", ("kind", "reason"),
                     [((kind, reason), n) for kind, counts in sorted(refused.items())
                      for reason, n in sorted(counts.items())]))
    by_site = p.get("samples_written_by_site") or {}
    out.append(_many("counter", "gwanje_samples_written_total", "Samples written to the store, per site.", ("site",),
                     [((site,), n) for site, n in sorted(by_site.items())]))
    buckets = p.get("write_latency_buckets")
    if buckets is not None:
        count = p.get("write_latency_count", 0)
        # cumulative counts per upper bound (float keys, or strings once through JSON); +Inf is the count
        finite = sorted((float(le), n) for le, n in buckets.items() if not math.isinf(float(le)))
        out.append(HistogramMetricFamily(
            "gwanje_store_write_latency_seconds", "Time of successful store writes.",
            buckets=[(floatToGoString(le), float(n)) for le, n in finite] + [("+Inf", float(count))],
            sum_value=float(p.get("write_latency_sum", 0.0))))
    return out


def _sources(sources: list[Mapping[str, Any]]) -> list[Optional[Metric]]:
    def who(s: Mapping[str, Any]) -> tuple[Any, Any]:
        return s.get("name", ""), s.get("kind", "")

    out = [_many(kind, name, help_text, ("source", "kind"), [(who(s), s.get(key) or 0) for s in sources])
           for key, name, kind, help_text in _PER_SOURCE]
    out.append(_many("gauge", "gwanje_source_last_data_timestamp_seconds",
                     "Receive time of the newest sample, Unix seconds.", ("source", "kind"),
                     [(who(s), s["last_data_ns"] / 1e9) for s in sources if s.get("last_data_ns")]))
    out.append(_many("gauge", "gwanje_source_clock_offset_seconds",
                     "Recent clock offset of a source, its time minus receive time (positive: ahead), "
                     "per origin: machine (mqtt) or endpoint (opcua).", ("source", "kind", "origin"),
                     [((*who(s), origin), v) for s in sources
                      for origin, v in sorted((s.get("clock_offsets_s") or {}).items())]))
    out.append(_many("counter", "gwanje_source_skipped_total",
                     "Messages skipped, not rejected, by reason: other_instance = a line another "
                     "collect instance owns (scale-out).", ("source", "kind", "reason"),
                     [((*who(s), reason), n) for s in sources for reason, n in sorted((s.get("skipped") or {}).items())]))
    return out


class StatusCollector(Collector):
    """prometheus_client collector of a status provider: each collect() (each scrape) asks the
    provider for the status and turns it into families, so the figures are those of the
    moment. rss_bytes: a no-argument callable (default: this process's RSS from /proc)."""

    def __init__(self, provider: StatusProvider, rss_bytes: Callable[[], Optional[int]] = read_rss_bytes) -> None:
        self.provider = provider
        self.rss_bytes = rss_bytes

    def collect(self) -> Iterator[Metric]:
        return families(self.provider(), self.rss_bytes())


# stateless (ProcessCollector reads /proc at each collect) or fixed (python_info): one of each
# serves every registry; registry=None keeps them out of prometheus_client's global REGISTRY
_PROCESS = ProcessCollector(registry=None)
_PLATFORM = PlatformCollector(registry=None)


def registry(provider: StatusProvider, rss_bytes: Callable[[], Optional[int]] = read_rss_bytes,
             process: bool = True) -> CollectorRegistry:
    """A private registry: the status collector and (process=True) the process and platform ones."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatusCollector(provider, rss_bytes))
    if process:
        reg.register(_PROCESS)
        reg.register(_PLATFORM)
    return reg


def render(status: Mapping[str, Any], rss_bytes: Optional[int] = None, process: bool = True) -> str:
    """The status dict as Prometheus text (CONTENT_TYPE). rss_bytes=None reads /proc/self/statm."""
    rss = (lambda: rss_bytes) if rss_bytes is not None else read_rss_bytes
    return generate_latest(registry(lambda: status, rss, process)).decode("utf-8")
