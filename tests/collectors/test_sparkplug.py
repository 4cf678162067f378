"""Sparkplug B (collectors.sparkplug): known bytes from the protobuf encoding rules worked out
by hand, round trips through the generated module, aliases from DBIRTH, malformed payloads,
and the host's session rules (seq, bdSeq, rebirth, death). The third-party peer is in
test_sparkplug_peer.py."""
from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import sparkplug as sp
from collectors.payloads import MessageDecoder
from collectors.sparkplug import (Metric, SparkplugDecoder, SparkplugError, decode_payload, encode_payload,
                                  metric_value)
from collectors import sparkplug_b_pb2 as pb
from gwanje.config import SparkplugConfig
from gwanje.model import BadValue, MachineState, Quality, Sample
from gwanje.normalize import Normalizer
from tests.collectors import assert_valid, demo_config

CONFIG = demo_config()
NORM = Normalizer(CONFIG)
NOW = 1_764_000_000_000_000_000
TS_MS = 1_732_400_000_123
SITE, LINE, MACHINE = "changwon-2", "press-2", "press-201"


def topic(kind: str) -> str:
    return f"spBv1.0/{SITE}/{kind}/{LINE}/{MACHINE}"


def S(signal, value, ts_ms=TS_MS):
    return Sample(SITE, LINE, MACHINE, signal, value, ts_ms * 1_000_000, Quality.GOOD)


@pytest.fixture
def dec():
    return SparkplugDecoder(Normalizer(CONFIG))


# ---------------------------------------------------------------------------- wire format
def test_known_bytes_hand_encoded():
    # Payload{timestamp=1 (0x08 01), metrics=[Metric{name="a" (0x0a 01 61), datatype=Int32 (0x20 03),
    # int_value=-2 as uint32 0xFFFFFFFE (0x50 fe ff ff ff 0f)}], seq=5 (0x18 05)}
    metric = bytes([0x0A, 0x01, 0x61, 0x20, 0x03, 0x50, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F])
    wire = bytes([0x08, 0x01, 0x12, len(metric)]) + metric + bytes([0x18, 0x05])
    assert encode_payload([Metric(name="a", datatype=sp.INT32, value=-2)], timestamp=1, seq=5) == wire
    p = decode_payload(wire)
    assert (p.timestamp, p.seq, len(p.metrics)) == (1, 5, 1)
    assert (p.metrics[0].name, p.metrics[0].datatype, metric_value(p.metrics[0], sp.INT32)) == ("a", sp.INT32, (-2, None))


def test_round_trip_every_datatype():
    metrics = [
        Metric(name="i8", alias=1, datatype=sp.INT8, value=-100, timestamp=TS_MS),
        Metric(name="i32", alias=2, datatype=sp.INT32, value=-2_000_000_000),
        Metric(name="i64", alias=3, datatype=sp.INT64, value=-(2**62)),
        Metric(name="u32", alias=4, datatype=sp.UINT32, value=4_000_000_000),
        Metric(name="u64", alias=5, datatype=sp.UINT64, value=2**64 - 1),
        Metric(name="f", alias=6, datatype=sp.FLOAT, value=1.5),
        Metric(name="d", alias=7, datatype=sp.DOUBLE, value=-0.1),
        Metric(name="b", alias=8, datatype=sp.BOOLEAN, value=True),
        Metric(name="s", alias=9, datatype=sp.STRING, value="로트-7"),
        Metric(name="n", alias=10, datatype=sp.DOUBLE, is_null=True),
    ]
    p = decode_payload(encode_payload(metrics, timestamp=TS_MS, seq=255))
    assert (p.timestamp, p.seq) == (TS_MS, 255)
    assert [(m.name, m.alias, m.datatype, None if m.is_null else metric_value(m, m.datatype)[0], m.is_null)
            for m in p.metrics] == [(m.name, m.alias, m.datatype, m.value, m.is_null) for m in metrics]
    assert p.metrics[0].timestamp == TS_MS


def _metric_bytes(m: Metric) -> bytes:
    p = pb.Payload.FromString(encode_payload([m]))
    return p.metrics[0].SerializeToString()


def test_unknown_fields_are_skipped():
    # uuid (4, LEN), an unknown metric field 30 (varint), is_transient (6, varint) and a fixed32 field 99
    metric = _metric_bytes(Metric(name="x", datatype=sp.DOUBLE, value=2.5)) + bytes([0xF0, 0x01, 0x07, 0x30, 0x01])
    wire = (bytes([0x22, 0x03]) + b"abc" + bytes([0x12, len(metric)]) + metric
            + bytes([0x9D, 0x06]) + struct.pack("<f", 1.0))
    p = decode_payload(wire)
    assert [(m.name, metric_value(m, m.datatype)) for m in p.metrics] == [("x", (2.5, None))]


@pytest.mark.parametrize("wire", [
    b"\x08",  # truncated varint
    b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
    b"\x12\x05ab",  # length beyond the payload
    b"\x12\x03\x0a\x05a",  # metric name longer than the metric
    b"\x0b",  # wire type 3 (group) never closed
    b"\x0f",  # wire type 7
    b"\x00\x01",  # field number 0
    b"\x12\x02\x65\x00",  # float_value with varint wire type
    b"\x12\x03\x6d\x00\x00",  # truncated double
])
def test_malformed_wire_raises_sparkplug_error(wire):
    with pytest.raises(SparkplugError):
        decode_payload(wire)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_sparkplug_error(data):
    try:
        decode_payload(data)
    except SparkplugError:
        pass


metric_values = st.one_of(
    st.tuples(st.just(sp.INT32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(sp.INT64), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(sp.UINT64), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(sp.DOUBLE), st.floats(allow_nan=False)),
    st.tuples(st.just(sp.BOOLEAN), st.booleans()),
    st.tuples(st.just(sp.STRING), st.text(max_size=30)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.integers(0, 2**64 - 1), metric_values), max_size=8),
       st.none() | st.integers(0, 2**64 - 1), st.none() | st.integers(0, 255))
def test_round_trip_property(items, ts, seq):
    metrics = [Metric(name=n, alias=a, datatype=dt, value=v) for n, a, (dt, v) in items]
    p = decode_payload(encode_payload(metrics, timestamp=ts, seq=seq))
    assert (p.timestamp if p.HasField("timestamp") else None, p.seq if p.HasField("seq") else None) == (ts, seq)
    assert [(m.name, m.alias, m.datatype, metric_value(m, m.datatype)) for m in p.metrics] == [
        (m.name, m.alias, m.datatype, (m.value, None)) for m in metrics]


# ---------------------------------------------------------------------- messages -> samples
def test_dbirth_then_ddata_by_alias(dec):
    birth = encode_payload([
        Metric(name="state", alias=1, datatype=sp.INT32, value=1),
        Metric(name="tonnage", alias=2, datatype=sp.DOUBLE, value=812.5),
        Metric(name="lot", alias=3, datatype=sp.STRING, value="L-7"),
    ], timestamp=TS_MS, seq=0)
    assert dec.decode(topic("DBIRTH"), birth, NOW) == (
        [S("state", 1.0), S("tonnage", 812.5), S("lot", "L-7")], [])
    data = encode_payload([
        Metric(alias=2, value=900.25, datatype=sp.DOUBLE, timestamp=TS_MS + 10),
        Metric(alias=1, value=3, datatype=sp.INT32),
        Metric(alias=3, value="L-8", datatype=sp.STRING),
    ], timestamp=TS_MS + 20, seq=1)
    assert dec.decode(topic("DDATA"), data, NOW) == (
        [S("tonnage", 900.25, TS_MS + 10), S("state", 3.0, TS_MS + 20), S("lot", "L-8", TS_MS + 20)], [])


def test_ddata_without_datatype_uses_the_birth_datatype_for_the_sign(dec):
    dec.decode(topic("DBIRTH"), encode_payload([Metric(name="state", alias=1, datatype=sp.INT32, value=0)]), NOW)
    # int_value 0xFFFFFFFF without a datatype: Int32 from DBIRTH says it is -1
    metric = bytes([0x10, 0x01, 0x18]) + bytes([0xFB, 0xD8, 0xD8, 0xD8, 0xB5, 0x32])  # alias 1, timestamp TS_MS
    metric += bytes([0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # int_value 0xFFFFFFFF, no datatype field
    wire = bytes([0x12, len(metric)]) + metric
    assert not decode_payload(wire).metrics[0].HasField("datatype")
    assert dec.decode(topic("DDATA"), wire, NOW) == ([S("state", -1.0)], [])


def test_unknown_alias_and_ddeath_forgets_aliases(dec):
    dec.decode(topic("DBIRTH"), encode_payload([Metric(name="tonnage", alias=7, value=1.0)]), NOW)
    data = encode_payload([Metric(alias=7, value=2.0), Metric(alias=8, value=3.0)], timestamp=TS_MS)
    assert dec.decode(topic("DDATA"), data, NOW) == ([S("tonnage", 2.0)], ["unknown_alias"])
    # the device's last value, bad, at the death (just after the birth's value, received at
    # NOW): its tile and the engine say "unknown" at once
    assert dec.decode(topic("DDEATH"), encode_payload([], seq=3), NOW) == (
        [Sample(SITE, LINE, MACHINE, "tonnage", 2.0, NOW + 1, Quality.BAD)], [])
    assert dec.deaths == 1
    assert dec.decode(topic("DDATA"), data, NOW) == ([], ["unknown_alias", "unknown_alias"])


def test_a_metric_stamped_too_far_ahead_is_rejected_and_the_clock_measured(dec):
    ahead_ms = NOW // 10**6 + 600_000  # the edge node's clock 10 min fast
    edge_ms = NOW // 10**6 + 30_000  # the shipped tolerance: still accepted
    p = encode_payload([Metric(name="tonnage", value=1.0, timestamp=edge_ms),
                        Metric(name="tonnage", value=2.0, timestamp=ahead_ms),  # the fast path's range
                        Metric(name="lot", value="L-1", timestamp=ahead_ms)], timestamp=None)  # the Normalizer's
    assert dec.decode(topic("DDATA"), p, NOW) == ([S("tonnage", 1.0, edge_ms)],
                                                   ["timestamp_in_future", "timestamp_in_future"])
    # a payload time ahead stands for metrics without their own
    assert dec.decode(topic("DDATA"), encode_payload([Metric(name="tonnage", value=3.0)], timestamp=ahead_ms), NOW) == (
        [], ["timestamp_in_future"])
    assert dec.clock.offsets() == {f"{SITE}/{LINE}/{MACHINE}": 600.0}


def test_nbirth_forgets_aliases_of_the_edge_nodes_devices(dec):
    dec.decode(topic("DBIRTH"), encode_payload([Metric(name="tonnage", alias=7, value=1.0)]), NOW)
    assert dec.decode(f"spBv1.0/{SITE}/NBIRTH/{LINE}", encode_payload([Metric(name="bdSeq", value=1)]), NOW) == ([], [])
    assert dec.decode(topic("DDATA"), encode_payload([Metric(alias=7, value=2.0)], timestamp=TS_MS), NOW) == (
        [], ["unknown_alias"])


def test_node_and_state_messages_are_ignored_not_errors(dec):
    p = encode_payload([Metric(name="tonnage", value=1.0)], timestamp=TS_MS)
    for t in (f"spBv1.0/{SITE}/NDATA/{LINE}", f"spBv1.0/{SITE}/NDEATH/{LINE}", "spBv1.0/STATE/scada-1",
              topic("DCMD"), f"spBv1.0/{SITE}/NCMD/{LINE}"):
        assert dec.decode(t, p, NOW) == ([], []), t


def test_metric_rejections_keep_the_good_metrics(dec):
    p = encode_payload([
        Metric(name="tonnage", value=1.0, timestamp=TS_MS),
        Metric(name="nope", value=1.0),
        Metric(name="tonnage", value=float("nan")),
        Metric(name="tonnage", datatype=sp.DOUBLE, is_null=True),  # no value now: nothing, no reject
        Metric(name="tonnage", value="high"),
        Metric(name="tonnage", value=1.0, timestamp=5),  # 1970: out of range
        Metric(name="tonnage", datatype=sp.DOUBLE),  # no value field at all
        Metric(value=1.0),  # neither name nor alias
        Metric(name="tonnage", value=4.0, timestamp=TS_MS + 1),
    ], timestamp=None)
    samples, rejects = dec.decode(topic("DDATA"), p, NOW)
    assert samples == [S("tonnage", 1.0), S("tonnage", 4.0, TS_MS + 1)]
    assert rejects == ["unknown_signal", "nan", "text_for_numeric_signal", "timestamp_out_of_range",
                       "bad_sparkplug", "bad_sparkplug"]


def test_bytes_value_is_unsupported(dec):
    name = _metric_bytes(Metric(name="tonnage"))
    metric = name + bytes([0x82, 0x01, 0x02, 0x01, 0x02])  # field 16 (bytes_value), LEN 2
    wire = bytes([0x12, len(metric)]) + metric
    assert dec.decode(topic("DDATA"), wire, NOW) == ([], ["unsupported_sparkplug_type"])


def test_missing_timestamps_mean_receive_time(dec):
    p = encode_payload([Metric(name="tonnage", value=1.0)])
    assert dec.decode(topic("DDATA"), p, NOW) == ([Sample(SITE, LINE, MACHINE, "tonnage", 1.0, NOW)], [])


@pytest.mark.parametrize("t, reason", [
    (f"spBv1.0/{SITE}/DDATA/{LINE}/press-999", "unknown_machine"),
    ("spBv1.0/창원/DDATA/라인/기계", "unknown_machine"),
    (f"spBv1.0/{SITE}/DDATA", "unknown_topic"),
    (f"spBv1.0/{SITE}/DDATA/{LINE}/{MACHINE}/x", "unknown_topic"),
    (f"spBv1.0/{SITE}/DXXX/{LINE}/{MACHINE}", "unknown_topic"),
    (f"spBv1.0/{SITE}/NXXX/{LINE}", "unknown_topic"),
])
def test_bad_topics(dec, t, reason):
    assert dec.decode(t, encode_payload([Metric(name="tonnage", value=1.0)]), NOW) == ([], [reason])


def test_malformed_payload_on_a_device_topic(dec):
    assert dec.decode(topic("DDATA"), b"\x12\x05ab", NOW) == ([], ["bad_sparkplug"])


def test_message_decoder_routes_sparkplug_and_honours_the_switch():
    p = encode_payload([Metric(name="tonnage", value=1.0, timestamp=TS_MS)])
    assert MessageDecoder(CONFIG).decode(topic("DDATA"), p, NOW) == ([S("tonnage", 1.0)], [])
    off = MessageDecoder(demo_config(sparkplug=SparkplugConfig(enabled=False)))
    assert off.decode(topic("DDATA"), p, NOW) == ([], ["unknown_topic"])
    small = MessageDecoder(demo_config(max_payload_bytes=10))
    assert small.decode(topic("DDATA"), p, NOW) == ([], ["payload_too_large"])


sp_metrics = st.builds(
    Metric,
    name=st.none() | st.sampled_from(["tonnage", "die_temp", "lot", "state", "bdSeq", "Node Control/Rebirth"]),
    alias=st.none() | st.integers(0, 5),
    timestamp=st.none() | st.integers(0, 2**64 - 1) | st.integers(TS_MS - 10**6, TS_MS + 10**6),
    datatype=st.none() | st.sampled_from([sp.INT8, sp.INT32, sp.INT64, sp.UINT64, sp.FLOAT, sp.DOUBLE,
                                          sp.BOOLEAN, sp.STRING, sp.TEXT, 17]),
    value=st.none() | st.integers(-(2**31), 2**31 - 1) | st.floats(width=32) | st.booleans() | st.text(max_size=300),
    is_null=st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["DBIRTH", "DDATA", "DDEATH"]), st.lists(sp_metrics, max_size=6),
                          st.none() | st.integers(0, 2**64 - 1)), max_size=4))
def test_arbitrary_sparkplug_messages_give_valid_samples(messages):
    decoder = SparkplugDecoder(NORM)  # fresh alias state for every example
    for kind, metrics, ts in messages:
        try:
            wire = encode_payload(metrics, timestamp=ts)
        except (TypeError, ValueError, OverflowError, struct.error):
            continue  # a combination the encoder refuses (e.g. text as FLOAT): not a payload
        assert_valid(CONFIG, *decoder.decode(topic(kind), wire, NOW), now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(
    Metric,
    name=st.sampled_from(["tonnage", "die_temp", "lot", "state", "nope"]),
    timestamp=st.none() | st.integers(0, 2**64 - 1) | st.integers(946_684_799_990, 946_684_800_010)
    | st.integers((NOW + NORM.future_tolerance_ns) // 10**6 - 5, (NOW + NORM.future_tolerance_ns) // 10**6 + 5),
    datatype=st.sampled_from([sp.INT32, sp.INT64, sp.UINT64, sp.FLOAT, sp.DOUBLE, sp.BOOLEAN, sp.STRING]),
    value=st.integers(-(2**31), 2**31 - 1),
), max_size=10), st.none() | st.integers(TS_MS - 10, TS_MS + 10), st.data())
def test_sample_fast_path_agrees_with_the_normalizer(metrics, ts, data):
    # give each metric a value of its datatype
    for m in metrics:
        m.value = data.draw({
            sp.INT32: st.integers(-(2**31), 2**31 - 1), sp.INT64: st.integers(-(2**63), 2**63 - 1),
            sp.UINT64: st.integers(0, 2**64 - 1), sp.FLOAT: st.floats(width=32), sp.DOUBLE: st.floats(),
            sp.BOOLEAN: st.booleans(), sp.STRING: st.text(max_size=5)}[m.datatype])
    wire = encode_payload(metrics, timestamp=ts)
    norm = NORM
    want, want_reasons = [], []
    for m in decode_payload(wire).metrics:  # the reference: every metric through Normalizer.sample
        ms = m.timestamp if m.HasField("timestamp") else ts
        try:
            want.append(norm.sample(SITE, LINE, MACHINE, m.name, metric_value(m, m.datatype)[0],
                                    None if ms is None else ms * 10**6, Quality.GOOD, NOW))
        except BadValue as e:
            want_reasons.append(str(e))
    samples, reasons = SparkplugDecoder(norm).decode(topic("DDATA"), wire, NOW)
    assert samples == want and reasons == want_reasons
    assert [type(s.value) for s in samples] == [type(s.value) for s in want]


# ------------------------------------------------------------------ names and explicit map
from tests.collectors import sparkplug_plant as spp  # noqa: E402


@pytest.fixture
def third_party(tmp_path):
    """A decoder for the plant of tests/collectors/sparkplug_plant.py, with a clock to turn."""
    clock = [1000.0]
    config = spp.write_config(tmp_path / "config", extra_signals=[
        {"id": f"v-{n}", "name": {"ko": "x", "en": "x"}, "kind": kind} for n, kind in (
            ("int8", "analog"), ("int16", "analog"), ("int32", "analog"), ("int64", "analog"),
            ("uint8", "analog"), ("uint16", "analog"), ("uint32", "analog"), ("uint64", "analog"),
            ("float", "analog"), ("double", "analog"), ("boolean", "analog"), ("datetime", "analog"),
            ("string", "text"), ("text", "text"), ("uuid", "text"), ("dataset", "analog"), ("bytes", "analog"),
            ("file", "analog"), ("template", "analog"), ("int32array", "analog"))])
    dec = SparkplugDecoder(Normalizer(config), monotonic=lambda: clock[0])
    return dec, clock


def spt(kind: str, device: str = spp.DEVICE) -> str:
    return f"spBv1.0/{spp.GROUP}/{kind}/{spp.EDGE_NODE}" + (f"/{device}" if kind[0] == "D" else "")


def T(signal, value, ts_ms=TS_MS, quality=Quality.GOOD):
    return Sample(spp.SITE, spp.LINE, spp.MACHINE, signal, value, ts_ms * 1_000_000, quality)


def born(dec, bd_seq=0):
    """NBIRTH (seq 0) and the device's DBIRTH (seq 1) with every metric of the peer."""
    assert dec.decode(spt("NBIRTH"), encode_payload([Metric(name="bdSeq", datatype=sp.UINT64, value=bd_seq)],
                                                    timestamp=TS_MS, seq=0), NOW) == ([], [])
    birth = encode_payload([
        Metric(name="Motor/Speed", alias=1, datatype=sp.DOUBLE, value=1200.5),
        Metric(name="CycleCount", alias=2, datatype=sp.UINT32, value=7),
        Metric(name="State", alias=3, datatype=sp.INT32, value=1),
        Metric(name="Lot", alias=4, datatype=sp.STRING, value="L-1"),
    ], timestamp=TS_MS, seq=1)
    return dec.decode(spt("DBIRTH"), birth, NOW)


def test_mixed_case_names_map_through_the_slug_rule(third_party):
    dec, _ = third_party
    assert born(dec) == ([T("motor-speed", 1200.5), T("cyclecount", 7.0), T("state", 1.0), T("lot", "L-1")], [])
    data = encode_payload([Metric(alias=1, datatype=sp.DOUBLE, value=1300.0)], timestamp=TS_MS + 1, seq=2)
    assert dec.decode(spt("DDATA"), data, NOW) == ([T("motor-speed", 1300.0, TS_MS + 1)], [])
    assert dec.take_rebirths() == []
    # a name that slugs to no signal of the machine is unknown, one of an unknown device too
    other = encode_payload([Metric(name="Motor/Torque", datatype=sp.DOUBLE, value=1.0)], seq=3)
    assert dec.decode(spt("DDATA"), other, NOW) == ([], ["unknown_signal"])
    assert dec.decode(spt("DDATA", "Press_202"), other, NOW) == ([], ["unknown_machine"])


def test_an_explicit_mapping_wins_over_the_slug(tmp_path):
    mapping = {"devices": [{"group": "창원", "edge_node": "프레스 라인", "device": "프레스-1", "site": spp.SITE,
                            "line": spp.LINE, "machine": spp.MACHINE, "metrics": {"모터 속도": "motor-speed"}}]}
    config = spp.write_config(tmp_path / "config", mqtt={"sparkplug": mapping})
    dec = SparkplugDecoder(Normalizer(config))
    p = encode_payload([Metric(name="모터 속도", datatype=sp.DOUBLE, value=5.0),
                        Metric(name="State", datatype=sp.INT32, value=2)], timestamp=TS_MS)
    assert dec.decode("spBv1.0/창원/DDATA/프레스 라인/프레스-1", p, NOW) == ([T("motor-speed", 5.0), T("state", 2.0)], [])


@pytest.mark.parametrize("entry, problem", [
    ({"machine": "press_999"}, "machine changwon-1/press-line-2/press_999 is not in plant.yaml"),
    ({"metrics": {"Motor/Speed": "motor_speed"}}, "signal(s) ['motor_speed'] are not signals of the machine's class"),
    ({"device": "a/b"}, "String should match pattern"),
    ({"group": "창원"}, "a name without letters or digits has no id of its own"),
])
def test_an_explicit_mapping_is_checked_against_the_plant(tmp_path, entry, problem):
    from gwanje.config import ConfigError

    dev = {"group": spp.GROUP, "edge_node": spp.EDGE_NODE, "device": spp.DEVICE, **entry}
    with pytest.raises(ConfigError, match=re.escape(problem)):
        spp.write_config(tmp_path / "config", mqtt={"sparkplug": {"devices": [dev]}})


def test_sparkplug_true_and_false_still_mean_on_and_off(tmp_path):
    assert spp.write_config(tmp_path / "a", mqtt={"sparkplug": False}).system.mqtt.sparkplug.enabled is False
    assert spp.write_config(tmp_path / "b", mqtt={"sparkplug": True}).system.mqtt.sparkplug.enabled is True


# ----------------------------------------------------------------------- sessions, rebirth
def test_a_seq_gap_asks_for_one_rebirth_per_interval(third_party):
    dec, clock = third_party
    born(dec)
    ok = encode_payload([Metric(alias=1, datatype=sp.DOUBLE, value=1.0)], timestamp=TS_MS, seq=2)
    assert dec.decode(spt("DDATA"), ok, NOW)[1] == [] and dec.take_rebirths() == []
    gap = encode_payload([Metric(alias=1, datatype=sp.DOUBLE, value=2.0)], timestamp=TS_MS, seq=6)
    assert dec.decode(spt("DDATA"), gap, NOW) == ([T("motor-speed", 2.0)], [])  # the data itself is good
    assert dec.take_rebirths() == [(spp.GROUP, spp.EDGE_NODE)]
    gap2 = encode_payload([Metric(alias=1, datatype=sp.DOUBLE, value=3.0)], timestamp=TS_MS, seq=9)
    dec.decode(spt("DDATA"), gap2, NOW)
    assert dec.take_rebirths() == []  # within rebirth_interval_s of the last request
    clock[0] += 5.0
    dec.decode(spt("DDATA"), encode_payload([Metric(alias=1, value=4.0)], seq=0), NOW)
    assert dec.take_rebirths() == [(spp.GROUP, spp.EDGE_NODE)]
    assert (dec.stats.seq_gaps, dec.stats.rebirths_requested) == (3, 2)


def test_seq_wraps_after_255_and_nbirth_resets_it(third_party):
    dec, _ = third_party
    born(dec)
    for seq in [*range(2, 256), 0, 1, 2]:
        dec.decode(spt("DDATA"), encode_payload([Metric(alias=1, value=1.0)], seq=seq), NOW)
    assert dec.take_rebirths() == [] and dec.stats.seq_gaps == 0
    born(dec)  # a new session: seq 0 again
    dec.decode(spt("DDATA"), encode_payload([Metric(alias=1, value=1.0)], seq=2), NOW)
    assert dec.take_rebirths() == [] and dec.stats.seq_gaps == 0


def test_data_before_any_birth_asks_for_a_rebirth(third_party):
    dec, _ = third_party  # e.g. we just restarted: the edge node was born before we were
    by_alias = encode_payload([Metric(alias=1, datatype=sp.DOUBLE, value=1.0)], timestamp=TS_MS, seq=17)
    by_name = encode_payload([Metric(name="State", datatype=sp.INT32, value=1)], timestamp=TS_MS, seq=18)
    assert dec.decode(spt("DDATA"), by_alias, NOW) == ([], ["unknown_alias"])
    assert dec.decode(spt("DDATA"), by_name, NOW) == ([T("state", 1.0)], [])  # names still say it all
    assert dec.take_rebirths() == [(spp.GROUP, spp.EDGE_NODE)]
    assert born(dec)[1] == []
    dec.decode(spt("DDATA"), encode_payload([Metric(alias=1, value=1.0)], seq=2), NOW)
    assert dec.take_rebirths() == []


def test_an_unknown_alias_after_the_birth_asks_for_a_rebirth(third_party):
    dec, _ = third_party
    born(dec)
    p = encode_payload([Metric(alias=99, datatype=sp.DOUBLE, value=1.0)], seq=2)
    assert dec.decode(spt("DDATA"), p, NOW) == ([], ["unknown_alias"])
    assert dec.take_rebirths() == [(spp.GROUP, spp.EDGE_NODE)]


def test_ndeath_of_the_current_birth_makes_every_signal_bad_a_stale_will_is_ignored(third_party):
    dec, _ = third_party
    born(dec, bd_seq=4)
    stale = encode_payload([Metric(name="bdSeq", datatype=sp.UINT64, value=3)])
    assert dec.decode(spt("NDEATH"), stale, NOW) == ([], [])
    assert (dec.stats.deaths, dec.stats.stale_deaths) == (0, 1)
    death = encode_payload([Metric(name="bdSeq", datatype=sp.UINT64, value=4)])
    later = NOW + 10**9
    assert dec.decode(spt("NDEATH"), death, later) == ([
        T("motor-speed", 1200.5, later // 10**6, Quality.BAD), T("cyclecount", 7.0, later // 10**6, Quality.BAD),
        T("state", 1.0, later // 10**6, Quality.BAD), T("lot", "L-1", later // 10**6, Quality.BAD)], [])
    assert dec.stats.deaths == 1
    # dead: its data is from a session we have not seen the birth of
    dec.decode(spt("DDATA"), encode_payload([Metric(alias=1, value=1.0)], seq=2), NOW)
    assert dec.take_rebirths() == [(spp.GROUP, spp.EDGE_NODE)]


def test_a_bad_death_sample_is_what_the_tiles_show_as_unknown(third_party):
    from dashboards.data import build_snapshot

    dec, _ = third_party
    samples, _ = born(dec)
    now = TS_MS * 10**6 + 10**9
    view = build_snapshot(dec.normalizer.config, samples, now).machine(spp.SITE, spp.LINE, spp.MACHINE)
    assert view.state is MachineState.RUNNING
    dead, _ = dec.decode(spt("DDEATH"), encode_payload([], seq=2), now)
    view = build_snapshot(dec.normalizer.config, samples + dead, now).machine(spp.SITE, spp.LINE, spp.MACHINE)
    assert view.state is MachineState.UNKNOWN


# ------------------------------------------------------------------------------ datatypes
def test_every_scalar_datatype(third_party):
    dec, _ = third_party
    born(dec)
    raw = pb.Payload(timestamp=TS_MS, seq=2)

    def add(name, dt, **value):
        m = raw.metrics.add(name=name, datatype=dt)
        for k, v in value.items():
            setattr(m, k, v)

    add("V-Int8", sp.INT8, int_value=2**32 - 5)  # -5, two's complement in 32 bits (the spec)
    add("V-Int16", sp.INT16, int_value=2**16 - 300)  # -300 in its own 16 bits (seen in the field)
    add("V-Int32", sp.INT32, int_value=2**32 - 2_000_000_000)
    add("V-Int64", sp.INT64, long_value=2**64 - 2**62)
    add("V-UInt8", sp.UINT8, int_value=255)
    add("V-UInt16", sp.UINT16, int_value=65535)
    add("V-UInt32", sp.UINT32, long_value=4_000_000_000)  # Tahu's JavaScript client uses long_value
    add("V-UInt64", sp.UINT64, long_value=2**64 - 1)
    add("V-Float", sp.FLOAT, float_value=1.5)
    add("V-Double", sp.DOUBLE, double_value=-0.1)
    add("V-Boolean", sp.BOOLEAN, boolean_value=True)
    add("V-DateTime", sp.DATETIME, long_value=TS_MS)
    add("V-String", sp.STRING, string_value="로트-7")
    add("V-Text", sp.TEXT, string_value="a\nb")
    add("V-UUID", sp.UUID, string_value="0f8fad5b-d9cb-469f-a165-70867728950e")
    samples, rejects = dec.decode(spt("DDATA"), raw.SerializeToString(), NOW)
    assert rejects == []
    assert {s.signal: s.value for s in samples} == {
        "v-int8": -5.0, "v-int16": -300.0, "v-int32": -2e9, "v-int64": float(-(2**62)), "v-uint8": 255.0,
        "v-uint16": 65535.0, "v-uint32": 4e9, "v-uint64": float(2**64 - 1), "v-float": 1.5, "v-double": -0.1,
        "v-boolean": 1.0, "v-datetime": float(TS_MS), "v-string": "로트-7", "v-text": "a\nb",
        "v-uuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}
    assert all(type(s.value) in (float, str) for s in samples)


def test_datasets_templates_bytes_files_and_arrays_are_rejected_with_the_rest_kept(third_party):
    dec, _ = third_party
    born(dec)
    raw = pb.Payload(timestamp=TS_MS, seq=2)
    ds = raw.metrics.add(name="V-DataSet", datatype=sp.DATASET)
    ds.dataset_value.num_of_columns = 1
    ds.dataset_value.columns.append("a")
    raw.metrics.add(name="V-Bytes", datatype=sp.BYTES, bytes_value=b"\x01")
    raw.metrics.add(name="V-File", datatype=sp.FILE, bytes_value=b"%PDF")
    raw.metrics.add(name="V-Template", datatype=sp.TEMPLATE).template_value.version = "1"
    raw.metrics.add(name="V-Int32Array", datatype=pb.Int32Array, bytes_value=b"\x01\x00\x00\x00")
    raw.metrics.add(name="Motor/Speed", datatype=sp.DOUBLE, double_value=3.0)
    raw.metrics.add(name="V-Int32", datatype=sp.INT32, string_value="3")  # a value in the wrong field
    raw.metrics.add(name="V-Double", datatype=sp.DOUBLE, is_null=True)  # no value now: nothing, no error
    samples, rejects = dec.decode(spt("DDATA"), raw.SerializeToString(), NOW)
    assert samples == [T("motor-speed", 3.0)]
    assert rejects == ["unsupported_sparkplug_type"] * 5 + ["sparkplug_type_mismatch"]


def test_historical_metrics_keep_their_times_but_are_not_the_devices_now(third_party):
    dec, _ = third_party
    born(dec)
    old_ms = TS_MS - 3_600_000
    p = encode_payload([Metric(name="State", datatype=sp.INT32, value=3, timestamp=old_ms, is_historical=True),
                        Metric(name="Motor/Speed", datatype=sp.DOUBLE, value=9.0, timestamp=old_ms, is_historical=True)],
                       timestamp=TS_MS, seq=2)
    assert dec.decode(spt("DDATA"), p, NOW) == ([T("state", 3.0, old_ms), T("motor-speed", 9.0, old_ms)], [])
    dead, _ = dec.decode(spt("DDEATH"), encode_payload([], seq=3), NOW)
    # the death repeats the live values (from the birth), not the backfilled ones
    assert {s.signal: s.value for s in dead} == {"motor-speed": 1200.5, "cyclecount": 7.0, "state": 1.0, "lot": "L-1"}


def test_names_and_text_that_are_not_utf8_are_rejected(third_party):
    dec, _ = third_party
    born(dec)
    # proto2 does not check strings on parse: the runtime gives bytes, which must not pass as text
    metric = bytes([0x0A, 0x02, 0xC3, 0x28, 0x20, 0x0C, 0x7A, 0x01, 0xFF])  # name b"\xc3(", String b"\xff"
    lot = _metric_bytes(Metric(name="Lot", datatype=sp.STRING, value="x"))[:-1] + b"\xff"
    wire = bytes([0x12, len(metric)]) + metric + bytes([0x12, len(lot)]) + lot + bytes([0x18, 0x02])
    assert dec.decode(spt("DDATA"), wire, NOW) == ([], ["bad_utf8", "bad_utf8"])
