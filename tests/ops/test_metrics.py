"""/metrics text: what Prometheus' own parser reads back from a hand-written status."""
from prometheus_client.parser import text_string_to_metric_families

from runtime.metrics import render

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
        {"name": 'opc "evil"\nline', "kind": "opcua", "connected": False, "samples_in": 400,
         "messages_in": 400, "reconnects": 0, "last_data_ns": None, "rejects": {}, "detail": "x"},
    ],
}


def parsed(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_render_parses_and_carries_every_number():
    m = parsed(render(STATUS, rss_bytes=123_456_789))
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
    m = parsed(text)
    evil = (("kind", "opcua"), ("source", 'opc "evil"\nline'))
    assert m[("gwanje_source_connected", evil)] == 0
    # no line of the output starts with the injected text
    assert not any(line.startswith("line") for line in text.splitlines())


def test_an_empty_status_renders_only_what_is_known():
    m = parsed(render({}, rss_bytes=None))
    assert ("gwanje_up", ()) in m
    assert not any(name.startswith("gwanje_source") for name, _ in m)
