"""/metrics text: what Prometheus' own parser (prometheus_client's) reads back from a status,
rendered by runtime.metrics and served by a running health server, against the status dict."""
import math
import platform

import pytest
import requests
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from runtime import metrics
from runtime.health import HealthServer
from runtime.metrics import CONTENT_TYPE, render
from tests.fixtures.prom import samples

# hostile label values: quotes, a newline, backslashes (one before the quote, one last) and a
# whole forged line
EVIL = 'opc "evil"\\"\nline\\'
FORGED = 'x"} 1\ngwanje_up 0\n# TYPE gwanje_up counter\ngwanje_spool_full{a="'

STATUS = {
    "started_ns": 1_732_400_000_000_000_000,
    "store": {"name": "influxdb", "ok": False},
    "pipeline": {
        "samples_in": 1300, "samples_written": 300, "samples_dropped": 0, "samples_spooled": 1000,
        "samples_spilled": 0, "samples_replayed": 0, "samples_written_by_site": {"changwon": 200, "gimhae": 100},
        "events_written": 4, "events_pending": 1, "write_errors": 3, "batches_written": 3,
        "queue_depth": 17, "queue_capacity": 200000, "store_up": False, "last_write_latency_s": 0.012,
        "write_latency_buckets": {0.005: 1, 0.01: 1, 0.025: 3, 0.05: 3, 0.1: 3, 0.25: 3, 0.5: 3, 1.0: 3,
                                  2.5: 3, 5.0: 3, 10.0: 3},
        "write_latency_count": 3, "write_latency_sum": 0.036,
        "spool_bytes": 40960, "spool_max_bytes": 536870912, "spool_samples": 1000, "spool_batches": 10,
        "spool_dropped_samples": 0, "spool_dropped_batches": 0, "spool_full": False, "spool_alarm": False,
        "spool_policy": "drop_oldest", "spool_rejects": {"torn_record": 1},
    },
    "sources": [
        {"name": "mqtt 127.0.0.1:1883", "kind": "mqtt", "connected": True, "samples_in": 900,
         "messages_in": 120, "reconnects": 2, "last_data_ns": 1_732_400_100_000_000_000,
         "rejects": {"bad_json": 5, "unknown_machine": 1}, "detail": "",
         "clock_offsets_s": {"changwon-1/cnc-2/cnc-203": 600.25, "changwon-1/cnc-2/cnc-201": -0.5}},
        {"name": EVIL, "kind": "opcua", "connected": False, "samples_in": 400,
         "messages_in": 400, "reconnects": 0, "last_data_ns": None, "rejects": {FORGED: 2}, "detail": "x"},
    ],
}


def test_render_parses_and_carries_every_number():
    m = samples(render(STATUS, rss_bytes=123_456_789))
    assert m[("gwanje_up", ())] == 1
    assert m[("gwanje_process_resident_memory_bytes", ())] == 123_456_789
    assert m[("gwanje_store_up", (("store", "influxdb"),))] == 0
    assert m[("gwanje_pipeline_samples_in_total", ())] == 1300
    assert m[("gwanje_pipeline_samples_spooled_total", ())] == 1000
    assert m[("gwanje_pipeline_queue_depth_samples", ())] == 17
    assert m[("gwanje_spool_bytes", ())] == 40960
    assert m[("gwanje_spool_full", ())] == 0
    assert m[("gwanje_samples_written_total", (("site", "gimhae"),))] == 100
    mq = (("kind", "mqtt"), ("source", "mqtt 127.0.0.1:1883"))
    assert m[("gwanje_source_connected", mq)] == 1
    assert m[("gwanje_source_reconnects_total", mq)] == 2
    assert m[("gwanje_source_samples_in_total", mq)] == 900
    assert m[("gwanje_source_last_data_timestamp_seconds", mq)] == 1_732_400_100.0
    assert m[("gwanje_rejects_total", (("reason", "bad_json"), ("source", "mqtt 127.0.0.1:1883")))] == 5
    assert m[("gwanje_source_clock_offset_seconds", (*mq[:1], ("origin", "changwon-1/cnc-2/cnc-203"), mq[1]))] == 600.25
    assert m[("gwanje_source_clock_offset_seconds", (*mq[:1], ("origin", "changwon-1/cnc-2/cnc-201"), mq[1]))] == -0.5
    assert not [k for k in m if k[0] == "gwanje_source_clock_offset_seconds" and ("kind", "opcua") in k[1]]
    assert m[("gwanje_rejects_total", (("reason", "torn_record"), ("source", "spool")))] == 1
    assert m[("gwanje_store_write_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert m[("gwanje_store_write_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert m[("gwanje_store_write_latency_seconds_count", ())] == 3


def test_a_hostile_source_name_stays_inside_its_label():
    text = render(STATUS, rss_bytes=1)
    m = samples(text)  # (a forged series would be a duplicate here: samples() refuses those)
    evil = (("kind", "opcua"), ("source", EVIL))
    assert m[("gwanje_source_connected", evil)] == 0  # the name read back exactly, escapes undone
    assert m[("gwanje_rejects_total", (("reason", FORGED), ("source", EVIL)))] == 2
    assert m[("gwanje_up", ())] == 1 and ("gwanje_spool_full", (("a", ""),)) not in m
    # no line of the output starts with the injected text: each label stays on its sample's line
    lines = text.splitlines()
    assert not any(line.startswith(("line", "gwanje_up 0", "# TYPE gwanje_up counter", "gwanje_spool_full{"))
                   for line in lines)
    assert sum(line.startswith("# TYPE gwanje_up ") for line in lines) == 1
    assert 'source="opc \\"evil\\"\\\\\\"\\nline\\\\"' in text  # \" \\ \n as the format escapes them


def test_an_empty_status_renders_only_what_is_known():
    m = samples(render({}, rss_bytes=None))
    assert ("gwanje_up", ()) in m
    assert not any(name.startswith("gwanje_source") for name, _ in m)


# ------------------------------------------------------------------ the status, number by number
def expected(status) -> dict[tuple[str, tuple], float]:
    """Every gwanje_* series /metrics must carry for a status, with its value, written from
    the status dict's documented shape (runtime.metrics docstring) and nothing else: what the
    renderer must produce, not how it does it. RSS and the process start are left out (the
    renderer reads RSS itself)."""
    p = status.get("pipeline") or {}
    sources = status.get("sources") or []
    out = {("gwanje_up", ()): 1.0}
    if status.get("instance"):
        out[("gwanje_instance_info", (("instance", status["instance"]),))] = 1.0
    if status.get("store"):
        out[("gwanje_store_up", (("store", status["store"]["name"]),))] = float(bool(status["store"]["ok"]))
    for key, name in PIPELINE_NAMES.items():
        if p.get(key) is not None:
            out[(name, ())] = float(p[key])
    for site, n in (p.get("samples_written_by_site") or {}).items():
        out[("gwanje_samples_written_total", (("site", site),))] = n
    for kind, counts in (p.get("refused") or {}).items():
        for reason, n in counts.items():
            out[("gwanje_store_refused_total", (("kind", kind), ("reason", reason)))] = n
    if p.get("write_latency_buckets") is not None:
        name = "gwanje_store_write_latency_seconds"
        for le, n in p["write_latency_buckets"].items():
            out[(name + "_bucket", (("le", repr(float(le))),))] = n
        out[(name + "_bucket", (("le", "+Inf"),))] = p["write_latency_count"]
        out[(name + "_count", ())] = p["write_latency_count"]
        out[(name + "_sum", ())] = p["write_latency_sum"]
    rejects: dict[tuple[str, str], float] = {}
    for reason, n in (p.get("spool_rejects") or {}).items():
        rejects[("spool", reason)] = n
    for counts in (p.get("refused") or {}).values():
        for reason, n in counts.items():
            rejects[("store", reason)] = rejects.get(("store", reason), 0) + n
    for src, counts in (status.get("rejects") or {}).items():
        for reason, n in counts.items():
            rejects[(src, reason)] = n
    for s in sources:
        who = (("kind", s["kind"]), ("source", s["name"]))
        for field, name in SOURCE_NAMES.items():
            out[(name, who)] = float(s.get(field) or 0)
        if s.get("last_data_ns"):
            out[("gwanje_source_last_data_timestamp_seconds", who)] = s["last_data_ns"] / 1e9
        for origin, v in (s.get("clock_offsets_s") or {}).items():
            out[("gwanje_source_clock_offset_seconds", (who[0], ("origin", origin), who[1]))] = v
        for reason, n in (s.get("skipped") or {}).items():
            out[("gwanje_source_skipped_total", (who[0], ("reason", reason), who[1]))] = n
        for reason, n in (s.get("rejects") or {}).items():
            rejects[(s["name"], reason)] = n
    for (src, reason), n in rejects.items():
        out[("gwanje_rejects_total", (("reason", reason), ("source", src)))] = n
    return out


PIPELINE_NAMES = {
    "samples_in": "gwanje_pipeline_samples_in_total", "samples_written": "gwanje_pipeline_samples_written_total",
    "samples_dropped": "gwanje_pipeline_samples_dropped_total",
    "samples_spooled": "gwanje_pipeline_samples_spooled_total",
    "samples_spilled": "gwanje_pipeline_samples_spilled_total",
    "samples_replayed": "gwanje_pipeline_samples_replayed_total",
    "events_written": "gwanje_pipeline_events_written_total", "events_pending": "gwanje_pipeline_events_pending",
    "write_errors": "gwanje_store_write_errors_total", "batches_written": "gwanje_store_batches_written_total",
    "queue_depth": "gwanje_pipeline_queue_depth_samples", "queue_capacity": "gwanje_pipeline_queue_capacity_samples",
    "spool_bytes": "gwanje_spool_bytes", "spool_max_bytes": "gwanje_spool_max_bytes",
    "spool_samples": "gwanje_spool_samples", "spool_batches": "gwanje_spool_batches",
    "spool_dropped_samples": "gwanje_spool_dropped_samples_total",
    "spool_dropped_batches": "gwanje_spool_dropped_batches_total",
    "spool_full": "gwanje_spool_full", "spool_alarm": "gwanje_spool_alarm",
    "samples_refused": "gwanje_pipeline_samples_refused_total",
    "events_refused": "gwanje_pipeline_events_refused_total", "refused_alarm": "gwanje_refused_alarm",
    "retention_s": "gwanje_store_retention_seconds", "deadletter_records": "gwanje_deadletter_records_total",
    "deadletter_lost_records": "gwanje_deadletter_lost_records_total", "deadletter_bytes": "gwanje_deadletter_bytes",
    "deadletter_max_bytes": "gwanje_deadletter_max_bytes",
}
SOURCE_NAMES = {
    "connected": "gwanje_source_connected", "samples_in": "gwanje_source_samples_in_total",
    "messages_in": "gwanje_source_messages_in_total", "reconnects": "gwanje_source_reconnects_total",
    "rebirths_requested": "gwanje_source_sparkplug_rebirths_requested_total",
}


def check_against(status, text: str) -> None:
    """The gwanje_* series of a /metrics text are exactly expected(status), value for value."""
    got = {k: v for k, v in samples(text).items()
           if k[0].startswith("gwanje_") and k[0] not in ("gwanje_process_resident_memory_bytes",
                                                         "gwanje_process_start_time_seconds")}
    want = expected(status)
    assert got.keys() == want.keys(), (sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys()))
    wrong = {k: (got[k], v) for k, v in want.items() if not math.isclose(got[k], v, rel_tol=1e-12)}
    assert not wrong


def test_a_running_health_server_serves_the_status_it_was_given_number_by_number():
    """HealthServer over real HTTP; its /metrics read back with prometheus_client's parser and
    compared with the status dict, and the process collector's figures are there (Linux)."""
    seen = []

    def provider():
        seen.append(STATUS)
        return STATUS

    server = HealthServer(provider).start()
    try:
        r = requests.get(server.url + "/metrics", timeout=5)
    finally:
        server.stop()
    assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4
    assert len(seen) == 1  # one status per scrape
    check_against(STATUS, r.text)
    m = samples(r.text)
    assert m[("gwanje_process_start_time_seconds", ())] == STATUS["started_ns"] / 1e9
    assert m[("gwanje_process_resident_memory_bytes", ())] > 0
    assert m[("process_resident_memory_bytes", ())] > 0 and m[("process_cpu_seconds_total", ())] > 0
    major, minor, patch = platform.python_version_tuple()
    assert m[("python_info", (("implementation", platform.python_implementation()), ("major", major),
                              ("minor", minor), ("patchlevel", patch), ("version", platform.python_version())))] == 1


# a status with every field the renderer knows, for the catalog of names
FULL = {
    "instance": "a", "started_ns": 1_700_000_000_000_000_000, "store": {"name": "influxdb", "ok": True},
    "pipeline": {**{key: i + 1 for i, key in enumerate(PIPELINE_NAMES)},
                 "spool_full": True, "spool_alarm": False, "refused_alarm": True, "retention_s": 86400.0,
                 "spool_rejects": {"torn_record": 1},
                 "refused": {"sample": {"timestamp_too_old": 2}, "event": {"bad_field": 1}},
                 "samples_written_by_site": {"a": 1, "b": 2},
                 "write_latency_buckets": {0.005: 1, 0.01: 2, 10.0: 3}, "write_latency_count": 3,
                 "write_latency_sum": 0.5},
    "sources": [{"name": "m", "kind": "mqtt", "connected": True, "subscribed": True, "samples_in": 5,
                 "messages_in": 6, "reconnects": 1, "last_data_ns": 1_700_000_000_000_000_000,
                 "rejects": {"bad_json": 2}, "detail": "", "clock_offsets_s": {"x": 1.5}, "rebirths_requested": 1,
                 "skipped": {"other_instance": 3}}],
    "rejects": {"dashboard-login": {"throttled": 1}},
}

# The names, types and labels of the hand-written exposition this module replaced (issue 11),
# taken from its output for FULL: alert rules (docs/deploy.md), dashboards and benches name
# them, so none may change.
CATALOG = """
gauge gwanje_up
gauge gwanje_instance_info instance
gauge gwanje_process_start_time_seconds
gauge gwanje_process_resident_memory_bytes
gauge gwanje_store_up store
counter gwanje_pipeline_samples_in_total
counter gwanje_pipeline_samples_written_total
counter gwanje_pipeline_samples_dropped_total
counter gwanje_pipeline_samples_spooled_total
counter gwanje_pipeline_samples_spilled_total
counter gwanje_pipeline_samples_replayed_total
counter gwanje_pipeline_events_written_total
gauge gwanje_pipeline_events_pending
counter gwanje_store_write_errors_total
counter gwanje_store_batches_written_total
gauge gwanje_pipeline_queue_depth_samples
gauge gwanje_pipeline_queue_capacity_samples
gauge gwanje_spool_bytes
gauge gwanje_spool_max_bytes
gauge gwanje_spool_samples
gauge gwanje_spool_batches
counter gwanje_spool_dropped_samples_total
counter gwanje_spool_dropped_batches_total
gauge gwanje_spool_full
gauge gwanje_spool_alarm
counter gwanje_pipeline_samples_refused_total
counter gwanje_pipeline_events_refused_total
gauge gwanje_refused_alarm
gauge gwanje_store_retention_seconds
counter gwanje_deadletter_records_total
counter gwanje_deadletter_lost_records_total
gauge gwanje_deadletter_bytes
gauge gwanje_deadletter_max_bytes
counter gwanje_store_refused_total kind,reason
counter gwanje_samples_written_total site
histogram gwanje_store_write_latency_seconds_bucket le
histogram gwanje_store_write_latency_seconds_count
histogram gwanje_store_write_latency_seconds_sum
gauge gwanje_source_connected kind,source
counter gwanje_source_samples_in_total kind,source
counter gwanje_source_messages_in_total kind,source
counter gwanje_source_reconnects_total kind,source
counter gwanje_source_sparkplug_rebirths_requested_total kind,source
gauge gwanje_source_last_data_timestamp_seconds kind,source
gauge gwanje_source_clock_offset_seconds kind,origin,source
counter gwanje_source_skipped_total kind,reason,source
counter gwanje_rejects_total reason,source
"""


def catalog(text: str) -> list[str]:
    out = []
    for fam in text_string_to_metric_families(text):
        for name, labels in sorted({(s.name, tuple(sorted(s.labels))) for s in fam.samples}):
            out.append(" ".join(filter(None, (fam.type, name, ",".join(labels)))))
    return out


def test_every_metric_name_type_and_label_stays_what_it_was():
    text = render(FULL, rss_bytes=1, process=False)
    assert catalog(text) == CATALOG.split("\n")[1:-1]
    check_against(FULL, text)


def test_no_created_series_no_family_twice_and_nothing_in_the_global_registry():
    text = render(FULL, rss_bytes=1)
    assert "_created" not in text
    typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(typed) == len(set(typed)), sorted(n for n in typed if typed.count(n) > 1)
    # prometheus_client's process collector beside ours, on purpose: its names, not ours
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= set(typed)
    assert "gwanje_" not in generate_latest(REGISTRY).decode()


def test_a_counter_named_without_total_is_refused():
    """prometheus_client writes a counter as <name>_total: a counter named without it would
    come out under another name than the one written here."""
    with pytest.raises(ValueError, match="_total"):
        metrics._family("counter", "gwanje_things", "Things.")
