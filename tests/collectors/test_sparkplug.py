"""Sparkplug B (collectors.sparkplug): known bytes from the protobuf encoding rules worked out
by hand, round trips through the generated module, aliases from DBIRTH, malformed payloads,
and the host's session rules (seq, bdSeq, rebirth, death). The third-party peer is in
test_sparkplug_peer.py."""
from __future__ import annotations

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
from gwanje.model import BadValue, Quality, Sample
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
