"""The /status page: each source's connection state and data rate, store, queue and spool, from
the runtime status dict (hand-written here, the shape runtime.Runtime.status() returns)."""
import pytest

from gwanje.config import load_config
from storage.embedded import EmbeddedStore
from tests.dashboards.helpers import by_class, text

T = 1_732_400_000_000_000_000
S = 10**9


def status(mqtt_in: int, opc_in: int, written: int, connected_opc: bool = True, **pipeline):
    return {
        "started_ns": T - 60 * S,
        "store": {"name": "influxdb", "ok": pipeline.pop("store_ok", True)},
        "pipeline": {"samples_written": written, "queue_depth": 120, "queue_capacity": 200_000,
                     "spool_samples": 0, "spool_bytes": 0, "spool_max_bytes": 536_870_912,
                     "samples_dropped": 0, "spool_dropped_samples": 0, "last_write_latency_s": 0.012,
                     "spool_alarm": False, "spool_policy": "drop_oldest", **pipeline},
        "sources": [
            {"name": "mqtt 10.0.0.5:8883", "kind": "mqtt", "connected": True, "samples_in": mqtt_in,
             "messages_in": 10, "reconnects": 2, "last_data_ns": T - 3 * S, "rejects": {"bad_json": 4, "nan": 1},
             "detail": "connected (session present: True)"},
            {"name": "opcua:changwon-1", "kind": "opcua", "connected": connected_opc, "samples_in": opc_in,
             "messages_in": 5, "reconnects": 0, "last_data_ns": None, "rejects": {}, "detail": "connect failed"},
        ],
    }


class Runtime:
    """What create_app receives: an object with status(); the test sets what it returns."""

    def __init__(self) -> None:
        self.reply = None

    def status(self):
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


@pytest.fixture(scope="module")
def app():
    from dashboards import create_app

    runtime = Runtime()
    store = EmbeddedStore()
    # pages can only be imported once an app exists (dash.register_page)
    create_app(load_config("config", env={}), store, runtime)
    from dashboards.pages import status as page

    yield page, runtime
    store.close()


def test_rates_come_from_two_readings_and_states_are_shown(app):
    counters, status_body = app[0].counters, app[0].status_body

    first = status(1000, 500, 1400)
    prev = counters(first, T)
    body = status_body(status(1600, 500, 2000, connected_opc=False), prev, T + 2 * S, "en")
    rows = [text(r) for r in by_class(body, "gw-status-sources")[0].children[1].children]
    # mqtt: (1600 - 1000) samples in 2 s = 300.0/s, last data 3 s before T = 5 s ago; opcua: nothing new = 0.0/s, disconnected
    assert rows[0].startswith("mqtt 10.0.0.5:8883 mqtt Connected 300.0 1,600 2 5 s ago — 5")
    assert rows[1].startswith("opcua:changwon-1 opcua Disconnected 0.0 500 0 never — 0 connect failed")
    facts = text(by_class(body, "gw-status-facts"))
    assert "Write rate (samples/s) 300.0" in facts  # (2000 - 1400) / 2 s
    assert "Memory queue 120 / 200,000" in facts
    assert by_class(body, "gw-alarm") == []


def test_first_reading_has_no_rate_and_a_full_spool_is_an_alert_in_korean(app):
    status_body = app[0].status_body

    body = status_body(status(10, 0, 0, spool_alarm=True, spool_samples=5000, spool_bytes=2_000_000,
                              spool_dropped_samples=700, store_ok=False), None, T, "ko")
    alert = by_class(body, "gw-alarm")
    assert text(alert) == "스풀 가득 참: drop_oldest 정책으로 데이터 손실 중"
    facts = text(by_class(body, "gw-status-facts"))
    assert "influxdb: 응답 없음" in facts and "손실 샘플 700" in facts and "5,000 (2.0 MB / 537 MB)" in facts
    row = text(by_class(body, "gw-status-sources")[0].children[1].children[0])
    assert "연결됨 — 10" in row  # no previous reading: no rate yet


def test_page_renders_in_the_app_and_survives_a_failing_runtime(app):
    import dash

    page, runtime = app
    assert "/status" in [p["path"] for p in dash.page_registry.values()]
    runtime.reply = status(10, 20, 30)
    shown = text(page.layout(lang="en"))
    assert "System status" in shown and "mqtt 10.0.0.5:8883" in shown
    body, prev = page.refresh(1, None, {"lang": "en"})
    assert prev["sources"] == {"mqtt 10.0.0.5:8883": 10, "opcua:changwon-1": 20} and prev["written"] == 30
    runtime.reply = RuntimeError("collectors not started")
    assert "No collectors in this process" in text(page.layout(lang="en"))
    body, prev = page.refresh(2, prev, {"lang": "en"})
    assert prev is None and "No collectors in this process" in text(body)


def test_the_machines_the_simulator_makes_up_are_named_and_an_unserved_endpoint_is_said(app):
    status_body = app[0].status_body

    sim = {"running": True, "machines": ["changwon-2/press-2/press-201", "changwon-2/press-2/press-202"],
           "unserved_endpoints": {"changwon-1": "OPC UA endpoint changwon-1: cannot listen on ...: in use"}}
    body = status_body({**status(1, 1, 1), "simulator": sim}, None, T, "en")
    assert text(by_class(body, "gw-status-simulated")) == "changwon-2/press-2/press-201, changwon-2/press-2/press-202"
    assert text(by_class(body, "gw-bad")[0]).startswith("The simulator does not serve OPC UA endpoint changwon-1:")
    real_only = status_body({**status(1, 1, 1), "simulator": {"running": False, "machines": []}}, None, T, "ko")
    assert text(by_class(real_only, "gw-status-simulated")) == "없음 — 모든 데이터는 실제 설비"


def test_refused_data_and_failing_writes_are_shown_with_the_dead_letter_file(app):
    status_body = app[0].status_body

    body = status_body(status(10, 0, 0, store_up=False, last_write_error="StoreUnavailable: 500",
                              samples_refused=3, events_refused=1, refused_alarm=True,
                              refused={"sample": {"timestamp_too_old": 2, "field_type_conflict": 1},
                                       "event": {"timestamp_too_old": 1}},
                              deadletter_path="/var/lib/gwanje/deadletter/deadletter.jsonl",
                              deadletter_bytes=2048), None, T, "en")
    alert = text(by_class(body, "gw-alarm"))
    assert "refused data for good" in alert and "/var/lib/gwanje/deadletter/deadletter.jsonl" in alert
    facts = text(by_class(body, "gw-status-facts"))
    assert "influxdb: Answering — writes failing (StoreUnavailable: 500)" in facts
    assert "Refused (dead-letter file) 4" in facts
    assert "field_type_conflict 1, timestamp_too_old 3" in facts


def test_each_sources_clock_offset_is_shown_in_warning_style_beyond_the_tolerance(app):
    page = app[0]
    st = status(10, 20, 30)
    # mqtt: per machine; cnc-203's clock 10 min fast (its samples are being refused), the others right
    st["sources"][0]["clock_offsets_s"] = {"changwon-1/cnc-2/cnc-201": -0.2, "changwon-1/cnc-2/cnc-203": 600.4,
                                           "changwon-1/cnc-2/cnc-202": 0.0}
    # opcua: per endpoint, 12 s behind: within the 30 s tolerance
    st["sources"][1]["clock_offsets_s"] = {"changwon-1": -12.0}
    body = page.status_body(st, None, T, "en", tolerance_s=30.0)
    cells = by_class(body, "gw-clock-offset")
    assert [text(c) for c in cells] == ["+600.4 s (cnc-203)", "-12.0 s"]
    assert [c.className.split() for c in cells] == [["gw-num", "gw-clock-offset", "gw-bad"], ["gw-num", "gw-clock-offset"]]
    assert cells[0].title.splitlines() == [
        "source time − receive time (+: the source's clock is ahead), tolerance ±30 s",
        "changwon-1/cnc-2/cnc-203: +600.4 s", "changwon-1/cnc-2/cnc-201: -0.2 s", "changwon-1/cnc-2/cnc-202: +0.0 s"]
    heads = [text(h) for h in by_class(body, "gw-status-sources")[0].children[0].children.children]
    assert heads[7] == "Clock offset"
    # a slow clock beyond the tolerance is as wrong as a fast one; several are counted (Korean)
    st["sources"][1]["clock_offsets_s"] = {"changwon-1": -45.0}
    st["sources"][0]["clock_offsets_s"]["changwon-1/cnc-2/cnc-201"] = -31.0
    cells = by_class(page.status_body(st, None, T, "ko", tolerance_s=30.0), "gw-clock-offset")
    assert [text(c) for c in cells] == ["+600.4 s (cnc-203) · 2곳 허용 초과", "-45.0 s"]
    assert all("gw-bad" in c.className for c in cells)
    # the page uses system.yaml's tolerance (30 s shipped)
    app[1].reply = st
    assert [text(c) for c in by_class(page.layout(lang="en"), "gw-clock-offset")] == [
        "+600.4 s (cnc-203) · 2 beyond tolerance", "-45.0 s"]


def test_a_collect_instances_source_shows_the_rate_measured_by_that_collect(app):
    """A remote collect's retained status is published every 2 s; read twice between two
    publishes it is the same reading. The rate it carries (runtime.control, measured where the
    samples are counted) is shown, not 0.0 from the unchanged counter."""
    counters, status_body = app[0].counters, app[0].status_body
    remote = status(1600, 500, 2000)
    for s in remote["sources"]:
        s["instance"] = "a"
    remote["sources"][0]["rate"] = 312.5
    prev = counters(remote, T)
    body = status_body(remote, prev, T + 1 * S, "en")
    rows = [text(r) for r in by_class(body, "gw-status-sources")[0].children[1].children]
    assert rows[0].startswith("a mqtt 10.0.0.5:8883 mqtt Connected 312.5 1,600"), rows[0]
    assert " 0.0 500 " in rows[1]  # no rate from its collect: the page's own, 0.0 for an unchanged counter


def test_collect_measures_the_rate_of_each_source_between_its_status_publishes():
    from runtime.control import CommandServer

    srv = CommandServer.__new__(CommandServer)  # only the rate bookkeeping, no broker
    first = [{"name": "mqtt x", "samples_in": 1000}, {"name": "opcua:c1", "samples_in": 50}]
    srv._add_rates(first, 100.0)
    assert all("rate" not in s for s in first)  # a first reading has no rate
    second = [{"name": "mqtt x", "samples_in": 1600}, {"name": "opcua:c1", "samples_in": 40}]
    srv._add_rates(second, 102.0)
    assert second[0]["rate"] == 300.0
    assert "rate" not in second[1]  # a counter that went back (a restart): no rate
