"""OPC UA collector against a real asyncua server (tests/fixtures/opcua.py).

What a user of the collector sees: the samples that reach the sink (value, source time,
quality), the counted rejections and the connection status."""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone

import pytest
from asyncua import ua

from collectors.opcua import OpcuaCollector, monitored_signals
from gwanje.config import Secrets, load_config
from gwanje.model import Quality, Sample
from tests.fixtures.common import wait_for
from tests.fixtures.opcua import MISSING_NODE, OpcuaTestServer, plant_variables

pytestmark = pytest.mark.services

UTC = timezone.utc
NS = "ns=2;s=changwon-1"
FORCE = f"{NS}.forge-1.forge-101.forging_force"
TEMP = f"{NS}.forge-1.forge-101.billet_temp"
LOT = f"{NS}.forge-1.forge-102.lot"
TOTAL = f"{NS}.press-1.press-103.part_count_total"
NO_SECRETS = Secrets.from_env({})

UNCERTAIN_LAST_USABLE = 0x40900000  # UncertainLastUsableValue
BAD_SENSOR_FAILURE = 0x808B0000  # BadSensorFailure


class ListSink:
    """Keeps every submitted batch, thread-safe (the collector calls from its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: list[list[Sample]] = []

    def submit(self, samples) -> None:
        with self._lock:
            self.batches.append(list(samples))

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return [s for b in self.batches for s in b]

    def of(self, machine: str, signal: str) -> list[Sample]:
        return [s for s in self.samples if s.machine == machine and s.signal == signal]



def fast(endpoint, url: str, **kw):
    """Test timing: publish every 50 ms, event-driven sampling, quick reconnects."""
    opts = dict(url=url, publishing_ms=50, sampling_ms=0, reconnect_min_s=0.2, reconnect_max_s=1.0)
    opts.update(kw)
    return endpoint.model_copy(update=opts)


# ---------------------------------------------------------------- the demo plant's changwon-1
@pytest.fixture(scope="module")
def demo(opcua_server):
    sink = ListSink()
    col = OpcuaCollector(opcua_server.config, fast(opcua_server.endpoint, opcua_server.url), sink, NO_SECRETS)
    col.start()
    # 92 configured signals, one missing on the server: 91 initial values
    assert wait_for(lambda: len(sink.samples) >= 91), col.status()
    yield opcua_server, col, sink
    col.stop()
    assert not col.status().connected


def test_demo_endpoint_subscribes_its_opcua_machines_only(demo):
    server, col, sink = demo
    # changwon-1: forge-101..104 (11 signals each: 8 + the LOT's product, quantity and parents)
    # + press-101..104 (12 each: the burr-height gauge too); the cnc lines are mqtt
    assert len(col.signals) == 92
    machines = {s.machine for s in sink.samples}
    assert machines == {"forge-101", "forge-102", "forge-103", "forge-104",
                        "press-101", "press-102", "press-103", "press-104"}
    st = col.status()
    assert st.connected and st.kind == "opcua" and st.name == "opcua:changwon-1"
    assert st.detail == "subscribed 91 of 92 signals"


def test_missing_node_counted_once_other_signals_of_machine_arrive(demo):
    server, col, sink = demo
    assert col.status().rejects.get("unknown_node") == 1
    assert MISSING_NODE.endswith("press-104.lot")
    assert sink.of("press-104", "lot") == []
    # the machine's other eleven signals are subscribed and delivered their initial values
    assert {s.signal for s in sink.samples if s.machine == "press-104"} == {
        "state", "part_count_total", "part_count_good", "part_count_reject", "tonnage",
        "strokes_per_min", "die_temp", "burr_height", "lot_product", "lot_qty", "lot_parents"}


def test_exact_value_and_source_timestamp(demo):
    server, col, sink = demo
    server.write(FORCE, 1234.5, source_ts=datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC))
    # 2026-11-24T09:30:00.123456Z = 20781 days * 86400 + 9.5 h = 1_795_512_600 s, + 123456 µs
    expected_ts = 1_795_512_600_123_456_000
    got = wait_for(lambda: [s for s in sink.of("forge-101", "forging_force") if s.ts == expected_ts])
    assert got == [Sample("changwon-1", "forge-1", "forge-101", "forging_force", 1234.5, expected_ts,
                          Quality.GOOD)]


def test_changes_of_one_publish_arrive_in_one_batch(demo):
    server, col, sink = demo
    ts = datetime(2026, 11, 24, 9, 31, tzinfo=UTC)
    # both writes run in one step of the server's loop, so no publish can fall between them
    server.write_many([(FORCE, 2000.0), (TEMP, 1150.0)], source_ts=ts)
    both = wait_for(lambda: [b for b in sink.batches
                             if {(s.signal, s.value) for s in b} >= {("forging_force", 2000.0), ("billet_temp", 1150.0)}])
    assert both, "the two changes written together should be submitted together"


def test_quality_uncertain_bad_without_value_then_good(demo):
    server, col, sink = demo
    base = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    ns0 = 1_795_514_400 * 10**9  # 2026-11-24T10:00:00Z
    no_value_before = col.status().rejects.get("no_value", 0)

    server.write(TEMP, 1101.0, source_ts=base, status=UNCERTAIN_LAST_USABLE)
    got = wait_for(lambda: [s for s in sink.of("forge-101", "billet_temp") if s.ts == ns0])
    assert [(s.value, s.quality) for s in got] == [(1101.0, Quality.UNCERTAIN)]

    # a Bad status: the server sends no value with it (OPC UA Part 4 7.7.1), nothing to store
    server.write(TEMP, 1102.0, source_ts=base.replace(second=1), status=BAD_SENSOR_FAILURE)
    assert wait_for(lambda: col.status().rejects.get("no_value", 0) == no_value_before + 1)

    server.write(TEMP, 1103.0, source_ts=base.replace(second=2))
    assert wait_for(lambda: [s for s in sink.of("forge-101", "billet_temp") if s.value == 1103.0])
    # the samples of this test: source times 10:00:00 .. 10:00:09
    mine = [(s.value, s.quality, s.ts - ns0) for s in sink.of("forge-101", "billet_temp")
            if ns0 <= s.ts < ns0 + 10 * 10**9]
    assert mine == [(1101.0, Quality.UNCERTAIN, 0), (1103.0, Quality.GOOD, 2 * 10**9)]


def test_server_queue_overflow_counted_and_value_kept(demo):
    server, col, sink = demo
    before = col.status().rejects.get("server_queue_overflow", 0)
    # Good with the Overflow info bits (0x400 DataValue info type + 0x80 overflow): the server
    # says it discarded older values of this item before this one
    server.write(TEMP, 1177.0, status=0x00000480)
    got = wait_for(lambda: [s for s in sink.of("forge-101", "billet_temp") if s.value == 1177.0])
    assert [s.quality for s in got] == [Quality.GOOD]
    assert col.status().rejects.get("server_queue_overflow", 0) == before + 1


def test_lot_text_and_counter_values(demo):
    server, col, sink = demo
    server.write(LOT, "LOT-20261124-A07")
    server.write(TOTAL, 4_294_967_295)  # a 32-bit PLC counter at its top
    lot = wait_for(lambda: [s for s in sink.of("forge-102", "lot") if s.value == "LOT-20261124-A07"])
    total = wait_for(lambda: [s for s in sink.of("press-103", "part_count_total") if s.value == 4_294_967_295.0])
    assert lot and isinstance(lot[0].value, str)
    assert total and isinstance(total[0].value, float)


def test_nan_rejected_and_next_value_kept(demo):
    server, col, sink = demo
    before = col.status().rejects.get("nan", 0)
    server.write(FORCE, math.nan)
    server.write(FORCE, 777.0)
    assert wait_for(lambda: [s for s in sink.of("forge-101", "forging_force") if s.value == 777.0])
    assert col.status().rejects.get("nan", 0) == before + 1
    assert not [s for s in sink.samples if isinstance(s.value, float) and math.isnan(s.value)]


# ---------------------------------------------------------------- a tiny config of our own
PLANT = """\
name: {ko: 시험 공장, en: Test plant}
machine_classes:
  forging:
    name: {ko: 단조기, en: Forging press}
    total_signal: part_count_total
    good_signal: null
    reject_signal: null
    state_codes: {running: [1], idle: [2], down: [3]}
    signals:
      - {id: state, name: {ko: 상태, en: State}, kind: state}
      - {id: part_count_total, name: {ko: 총 생산수, en: Total}, kind: counter,
         node: "nsu=urn:gwanje:test;s=site-a.line-1.m-1.part_count_total"}
      - {id: forging_force, name: {ko: 하중, en: Force}, unit: kN}
      - {id: billet_temp, name: {ko: 온도, en: Temperature}, node: "ns=2;s=PLC7.Forge.BilletTemp"}
      - {id: lot, name: {ko: LOT, en: LOT}, kind: text}
      - {id: cycle_time, name: {ko: 사이클, en: Cycle}, unit: s, node: "0:Objects/2:PLC7_CycleTime"}
sites:
  - id: site-a
    name: {ko: 에이, en: A}
    opcua_endpoint: plc
    lines:
      - id: line-1
        name: {ko: 1라인, en: Line 1}
        process: forging
        machines:
          - {id: m-1, name: {ko: 1호기, en: No. 1}, class: forging, source: opcua, ideal_cycle_s: 10}
          - {id: m-2, name: {ko: 2호기, en: No. 2}, class: forging, source: mqtt, ideal_cycle_s: 10}
"""
SYSTEM = """\
opcua:
  endpoints:
    - {name: plc, url: "opc.tcp://127.0.0.1:1/unused"}
"""
TINY_FORCE = "ns=2;s=site-a.line-1.m-1.forging_force"
TINY_CUSTOM = "ns=2;s=PLC7.Forge.BilletTemp"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("opcua-config")
    (d / "plant.yaml").write_text(PLANT, encoding="utf-8")
    (d / "system.yaml").write_text(SYSTEM, encoding="utf-8")
    config = load_config(d, env={})
    return config, config.endpoint("plc")


def tiny_server(tiny, skip=(), **kw) -> OpcuaTestServer:
    config, endpoint = tiny
    variables = plant_variables(config, endpoint, skip=skip)
    # this PLC publishes the temperature as text: a type the signal (analog) does not accept
    variables[TINY_CUSTOM] = (ua.VariantType.String, "812.5")
    return OpcuaTestServer(variables, **kw)


def test_node_ids_from_template_and_signal_override(tiny):
    config, endpoint = tiny
    nodes = [s.node_id for s in monitored_signals(config, endpoint)]
    assert nodes == [
        "ns=2;s=site-a.line-1.m-1.state",
        "nsu=urn:gwanje:test;s=site-a.line-1.m-1.part_count_total",  # by namespace URI
        "ns=2;s=site-a.line-1.m-1.forging_force",
        "ns=2;s=PLC7.Forge.BilletTemp",
        "ns=2;s=site-a.line-1.m-1.lot",
        "0:Objects/2:PLC7_CycleTime",  # a browse path, translated by the server
    ]  # m-2 is an mqtt machine: not subscribed


def test_server_restart_same_port_resubscribes_and_invents_nothing(tiny, caplog):
    config, endpoint = tiny
    caplog.set_level(logging.WARNING)
    server = tiny_server(tiny, skip=["ns=2;s=site-a.line-1.m-1.lot"]).start()
    sink = ListSink()
    col = OpcuaCollector(config, fast(endpoint, server.url), sink, NO_SECRETS)
    try:
        col.start()
        assert wait_for(lambda: col.status().connected and len(sink.samples) >= 4), col.status()
        # lot is missing on this server and the custom node's text is no analog value: both
        # counted; state, part_count_total, forging_force and (by browse path) cycle_time arrive
        assert col.status().rejects == {"unknown_node": 1, "text_for_numeric_signal": 1}
        assert sorted(s.signal for s in sink.samples) == ["cycle_time", "forging_force", "part_count_total",
                                                          "state"]
        server.write(TINY_FORCE, 500.0, source_ts=datetime(2026, 11, 24, 11, 0, tzinfo=UTC))
        assert wait_for(lambda: [s for s in sink.of("m-1", "forging_force") if s.value == 500.0])

        server.stop()
        outage_start = time.time_ns()
        assert wait_for(lambda: not col.status().connected), "collector did not notice the outage"
        n_at_loss = len(sink.samples)
        time.sleep(0.5)  # the outage itself (not an assertion): reconnect attempts fail
        assert len(sink.samples) == n_at_loss, "samples produced while the server was down"
        assert not col.status().connected
        outage_end = time.time_ns()

        server.start()
        assert wait_for(lambda: col.status().connected, timeout=10.0), col.status()
        server.write(TINY_FORCE, 501.0)
        assert wait_for(lambda: [s for s in sink.of("m-1", "forging_force") if s.value == 501.0], timeout=10.0)
        st = col.status()
        assert st.reconnects == 1
        # after the restart only the retained values (old source times) and the new write came in
        assert not [s for s in sink.samples if outage_start <= s.ts <= outage_end]
        # resubscribing does not count the missing node again; the text value re-sent as the
        # initial value of the new subscription is a second (real) bad delivery
        assert st.rejects == {"unknown_node": 1, "text_for_numeric_signal": 2}
        # an outage is a warning in the log, not an error with a traceback
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert any("connection to" in r.getMessage() and "lost" in r.getMessage() for r in caplog.records)
    finally:
        col.stop()
        server.stop()
    assert not col.status().connected


def test_unreachable_endpoint_keeps_retrying_without_samples(tiny):
    config, endpoint = tiny
    from tests.fixtures.common import free_port

    sink = ListSink()
    col = OpcuaCollector(config, fast(endpoint, f"opc.tcp://127.0.0.1:{free_port()}/nothing"), sink, NO_SECRETS)
    col.start()
    try:
        assert wait_for(lambda: "connect failed" in col.status().detail)
        st = col.status()
        assert not st.connected and st.samples_in == 0 and sink.samples == []
    finally:
        col.stop()


def test_production_endpoint_encrypted_with_login_password_never_logged(tiny, tmp_path, caplog):
    """Outside the demo: Basic256Sha256 SignAndEncrypt and a user login. Only a collector with
    both gets data; the password (from the environment) appears in no log line or status."""
    from tests.fixtures.opcua import SERVER_URI, make_certificate

    config, endpoint = tiny
    server_cert = make_certificate(tmp_path, "server", SERVER_URI, server=True)
    client_cert, client_key = make_certificate(tmp_path, "collector", "urn:gwanje:collector", server=False)
    server = tiny_server(tiny, credentials=("operator", "s3cret-Pa55"), certificate=server_cert).start()
    good = Secrets.from_env({"GWANJE_OPCUA_USERNAME": "operator", "GWANJE_OPCUA_PASSWORD": "s3cret-Pa55"})
    bad = Secrets.from_env({"GWANJE_OPCUA_USERNAME": "operator", "GWANJE_OPCUA_PASSWORD": "wrong-Pa55"})
    secure = fast(endpoint, server.url, security_policy="Basic256Sha256", security_mode="SignAndEncrypt",
                  certificate=str(client_cert), private_key=str(client_key), server_certificate=str(server_cert[0]))
    caplog.set_level(logging.DEBUG, logger="gwanje")
    sinks = {name: ListSink() for name in ("ok", "bad_password", "plain")}
    cols = {
        "ok": OpcuaCollector(config, secure, sinks["ok"], good),
        "bad_password": OpcuaCollector(config, secure, sinks["bad_password"], bad),
        # the server offers no unencrypted endpoint
        "plain": OpcuaCollector(config, fast(endpoint, server.url), sinks["plain"], good),
    }
    try:
        for col in cols.values():
            col.start()
        server.write(TINY_FORCE, 640.0)
        assert wait_for(lambda: [s for s in sinks["ok"].of("m-1", "forging_force") if s.value == 640.0]), \
            cols["ok"].status()
        for name in ("bad_password", "plain"):
            assert wait_for(lambda: "connect failed" in cols[name].status().detail), cols[name].status()
            assert sinks[name].samples == [] and not cols[name].status().connected
        assert "BadUserAccessDenied" in cols["bad_password"].status().detail
    finally:
        for col in cols.values():
            col.stop()
        server.stop()
    text = caplog.text + repr(good) + "".join(repr(c.status()) for c in cols.values())
    assert "s3cret-Pa55" not in text and "wrong-Pa55" not in text


def test_frozen_server_noticed_by_the_watchdog_then_resubscribed(tiny):
    """A hung server keeps its TCP connection open; only the periodic probe notices it."""
    config, endpoint = tiny
    server = OpcuaTestServer(plant_variables(config, endpoint)).start()
    sink = ListSink()
    col = OpcuaCollector(config, fast(endpoint, server.url), sink, NO_SECRETS, watchdog_s=1.0)
    try:
        col.start()
        assert wait_for(lambda: col.status().connected and len(sink.samples) >= 5, timeout=15), col.status()
        server.freeze()
        assert wait_for(lambda: not col.status().connected, timeout=10), "a frozen server went unnoticed"
        n_frozen = len(sink.samples)
        server.thaw()
        assert wait_for(lambda: col.status().connected, timeout=10), col.status()
        # the new subscription delivers the (unchanged) current values again
        assert wait_for(lambda: len(sink.samples) >= n_frozen + 5), len(sink.samples)
        assert col.status().reconnects == 1

        # frozen again: the next connect hangs (TCP accepted, no answer) until its 15 s timeout;
        # stop() must not wait for it
        server.freeze()
        assert wait_for(lambda: not col.status().connected, timeout=10)
        # not an assertion: past closing the lost client (0.5 s) and the back-off (0.2 s), into
        # the hanging connect
        time.sleep(1.0)
        thread = col._thread
        col.stop(timeout=5.0)
        assert thread is not None and not thread.is_alive()
        assert col.status().detail == "stopped"
    finally:
        col.stop()
        server.stop()


@pytest.mark.parametrize("trigger, delivered", [("status_value_timestamp", True), ("status_value", False)])
def test_unchanged_value_with_new_source_time_keeps_an_idle_machine_alive(opcua_server, trigger, delivered):
    """An idle machine's values do not change; a PLC that refreshes its timestamps each scan
    is still heard with the default trigger, and only changes are heard with status_value."""
    sink = ListSink()
    ep = fast(opcua_server.endpoint, opcua_server.url, data_change_trigger=trigger)
    col = OpcuaCollector(opcua_server.config, ep, sink, NO_SECRETS)
    node = f"{NS}.forge-1.forge-103.stroke_rate"
    t1 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    t2 = datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC)
    opcua_server.write(node, 0.0, source_ts=t1)
    col.start()
    try:
        assert wait_for(lambda: sink.of("forge-103", "stroke_rate")), col.status()
        opcua_server.write(node, 0.0, source_ts=t2)
        # 2026-11-24T10:00:01Z = 1_795_512_600 s + 30 min + 1 s
        t2_ns = 1_795_514_401_000_000_000
        got = wait_for(lambda: [s for s in sink.of("forge-103", "stroke_rate") if s.ts == t2_ns], timeout=2.0)
        assert bool(got) is delivered
        if delivered:
            assert got[0].value == 0.0
    finally:
        col.stop()


def test_a_fast_server_clock_is_rejected_counted_and_measured(opcua_server):
    """The PLC behind changwon-1 stamps its values 10 min ahead: each one is refused as
    timestamp_in_future (counted), the values stamped right still arrive, and the status
    gives the endpoint's clock offset from the source times against receive time."""
    from datetime import timedelta

    sink = ListSink()
    col = OpcuaCollector(opcua_server.config, fast(opcua_server.endpoint, opcua_server.url), sink, NO_SECRETS)
    col.start()
    try:
        assert wait_for(lambda: len(sink.samples) >= 63), col.status()
        for i in range(12):
            opcua_server.write(FORCE, 3000.0 + i, source_ts=datetime.now(UTC) + timedelta(minutes=10))
            # one publish each: the next write waits until this one was refused
            assert wait_for(lambda: col.status().rejects.get("timestamp_in_future", 0) == i + 1), col.status()
        assert not [s for s in sink.of("forge-101", "forging_force") if s.value >= 3000.0]
        offset = col.status().clock_offsets_s["changwon-1"]
        assert 570 < offset <= 600, col.status().clock_offsets_s  # 600 s ahead less the transit
        opcua_server.write(TEMP, 1111.0)  # stamped right: kept
        assert wait_for(lambda: [s for s in sink.of("forge-101", "billet_temp") if s.value == 1111.0])
    finally:
        col.stop()
        opcua_server.write(FORCE, 0.0)  # the other tests of the module see a right clock again
