"""MQTT JSON payload decoding (collectors.payloads): every documented format, every rejection
reason with the good data around it kept, topic templates."""
from __future__ import annotations

import json
import pytest

from collectors.payloads import MessageDecoder, TopicTemplate
from gwanje.model import Quality, Sample
from tests.collectors import demo_config
NOW = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z, the receive time handed to the decoder
TS_MS = 1_732_400_000_123  # 2024-11-23T22:13:20.123Z
TS_NS = 1_732_400_000_123_000_000
SITE, LINE, MACHINE = "changwon-1", "cnc-1", "cnc-101"
TOPIC = f"gwanje/{SITE}/{LINE}/{MACHINE}"


@pytest.fixture(scope="module")
def config():
    return demo_config()


@pytest.fixture(scope="module")
def decoder(config):
    return MessageDecoder(config)


def S(signal: str, value, ts: int = TS_NS, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(SITE, LINE, MACHINE, signal, value, ts, quality)


def decode(decoder, payload, topic: str = TOPIC):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decoder.decode(topic, raw, now=NOW)


# ------------------------------------------------------------------ machine topic formats
def test_values_format_one_time_many_signals(decoder):
    samples, rejects = decode(decoder, {"ts": TS_MS, "values": {"spindle_speed": 1200.5, "state": 3,
                                                                  "lot": "L-24-0031"}, "quality": "good"})
    assert samples == [S("spindle_speed", 1200.5), S("state", 3.0), S("lot", "L-24-0031")]
    assert rejects == []


def test_values_format_quality_and_missing_ts_is_receive_time(decoder):
    samples, rejects = decode(decoder, {"values": {"vibration": 2, "feed_rate": True}, "quality": "uncertain"})
    assert samples == [S("vibration", 2.0, NOW, Quality.UNCERTAIN), S("feed_rate", 1.0, NOW, Quality.UNCERTAIN)]
    assert rejects == []


def test_batch_format(decoder):
    samples, rejects = decode(decoder, [
        {"signal": "spindle_speed", "value": 1200.5, "ts": TS_MS},
        {"signal": "spindle_load", "value": 55, "ts": TS_MS + 1, "quality": "bad"},
        {"signal": "lot", "value": "L-1", "ts": "2024-11-23T22:13:20.123Z"},
    ])
    assert samples == [S("spindle_speed", 1200.5), S("spindle_load", 55.0, TS_NS + 1_000_000, Quality.BAD),
                       S("lot", "L-1")]
    assert rejects == []


def test_single_sample_object(decoder):
    samples, rejects = decode(decoder, {"signal": "cycle_time", "value": 41.25, "ts": TS_MS})
    assert samples == [S("cycle_time", 41.25)]
    assert rejects == []


def test_utf8_byte_order_mark_is_accepted(decoder):
    assert decode(decoder, b'\xef\xbb\xbf{"values": {"lot": "\xeb\xa1\x9c\xed\x8a\xb8-1"}}') == (
        [S("lot", "로트-1", NOW)], [])


def test_empty_batch_is_nothing_and_not_an_error(decoder):
    assert decode(decoder, []) == ([], [])


@pytest.mark.parametrize("ts, expected_ns", [
    (1_732_400_000, 1_732_400_000_000_000_000),  # seconds
    (1_732_400_000.5, 1_732_400_000_500_000_000),  # fractional seconds
    (1_732_400_000_123, 1_732_400_000_123_000_000),  # milliseconds
    (1_732_400_000_123_456, 1_732_400_000_123_456_000),  # microseconds
    (1_732_400_000_123_456_789, 1_732_400_000_123_456_789),  # nanoseconds
    ("2024-11-23T22:13:20.123Z", 1_732_400_000_123_000_000),
    ("2024-11-24T07:13:20.123+09:00", 1_732_400_000_123_000_000),  # KST
    ("2024-11-23T22:13:20", 1_732_400_000_000_000_000),  # no offset = UTC
])
def test_timestamp_units(decoder, ts, expected_ns):
    samples, rejects = decode(decoder, [{"signal": "vibration", "value": 1.5, "ts": ts}])
    assert (samples, rejects) == ([S("vibration", 1.5, expected_ns)], [])
    samples, rejects = decode(decoder, {"ts": ts, "values": {"vibration": 1.5}})
    assert (samples, rejects) == ([S("vibration", 1.5, expected_ns)], [])


# ------------------------------------------------------------------- signal topic formats
def test_signal_topic_object_and_bare_scalars(decoder):
    t = TOPIC + "/spindle_speed"
    assert decode(decoder, {"value": 1200.5, "ts": TS_MS, "quality": "uncertain"}, t) == (
        [S("spindle_speed", 1200.5, TS_NS, Quality.UNCERTAIN)], [])
    assert decode(decoder, b"1200.5", t) == ([S("spindle_speed", 1200.5, NOW)], [])
    assert decode(decoder, b"true", t) == ([S("spindle_speed", 1.0, NOW)], [])
    assert decode(decoder, b'"L-24-0031"', TOPIC + "/lot") == ([S("lot", "L-24-0031", NOW)], [])
    # a number on a text signal is kept as its text
    assert decode(decoder, b"240031", TOPIC + "/lot") == ([S("lot", "240031", NOW)], [])
    # state codes may be text on some PLCs
    assert decode(decoder, b'"RUN"', TOPIC + "/state") == ([S("state", "RUN", NOW)], [])


# ----------------------------------------------------------------------------- rejections
def test_bad_elements_reject_only_themselves(decoder):
    samples, rejects = decode(decoder, b"""[
        {"signal": "spindle_speed", "value": 1.0, "ts": 1732400000123},
        {"signal": "spindle_speed", "value": NaN, "ts": 1732400000124},
        {"signal": "spindle_speed", "value": Infinity, "ts": 1732400000125},
        {"signal": "spindle_speed", "value": 1e400, "ts": 1732400000126},
        {"signal": "spindle_speed", "value": "fast", "ts": 1732400000127},
        {"signal": "spindle_speed", "value": [1], "ts": 1732400000128},
        {"signal": "spindle_speed", "value": null, "ts": 1732400000129},
        {"signal": "no_such_signal", "value": 1.0, "ts": 1732400000130},
        {"signal": "spindle_speed", "value": 2.0, "ts": "yesterday"},
        {"signal": "spindle_speed", "value": 2.0, "ts": 1000},
        {"signal": "spindle_speed", "value": 2.0, "ts": true},
        {"signal": "spindle_speed", "value": 2.0, "ts": 1732400000131, "quality": "great"},
        {"signal": "spindle_speed", "value": 2.0, "ts": 1732400000132, "qualty": "bad"},
        {"signal": 7, "value": 2.0},
        {"value": 2.0},
        {"signal": "spindle_speed"},
        "spindle_speed",
        {"signal": "lot", "value": "%s"},
        {"signal": "lot", "value": "a\\u0000b"},
        {"signal": "spindle_speed", "value": 3.0, "ts": 1732400000999}
    ]""".replace(b"%s", b"x" * 257))
    assert samples == [S("spindle_speed", 1.0), S("spindle_speed", 3.0, 1_732_400_000_999_000_000)]
    assert rejects == [
        "nan", "infinite", "infinite", "text_for_numeric_signal", "wrong_type:list", "wrong_type:NoneType",
        "unknown_signal", "bad_timestamp", "timestamp_out_of_range", "bad_timestamp", "bad_quality",
        "bad_shape", "bad_shape", "bad_shape", "bad_shape", "bad_shape", "text_too_long", "text_has_nul",
    ]


def test_bad_values_in_values_format_reject_only_themselves(decoder):
    samples, rejects = decode(decoder, b'{"ts": 1732400000123, "values": {"vibration": 1.5, "feed_rate": NaN,'
                                       b' "bogus": 1, "spindle_load": "high", "lot": "L-9"}}')
    assert samples == [S("vibration", 1.5), S("lot", "L-9")]
    assert rejects == ["nan", "unknown_signal", "text_for_numeric_signal"]


def test_bad_shared_time_or_quality_rejects_the_message_once(decoder):
    assert decode(decoder, {"ts": "soon", "values": {"vibration": 1.5, "feed_rate": 2}}) == ([], ["bad_timestamp"])
    assert decode(decoder, {"ts": 4_102_444_800_000, "values": {"vibration": 1.5}}) == (
        [], ["timestamp_in_future"])  # 2100-01-01: far ahead of NOW
    assert decode(decoder, {"quality": 0, "values": {"vibration": 1.5}}) == ([], ["bad_quality"])


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "bad_json"),
    (b"", "bad_json"),
    (b"\xff\xfe{}", "bad_utf8"),
    (b"1" * 5000, "bad_json"),  # an int longer than Python converts
    (b"[" * 300_000, "payload_too_large"),
    (b"[" * 50_000, "bad_json"),
    (b"[" * 20_000 + b"]" * 20_000, "bad_json"),  # deep nesting: RecursionError, not a crash
    (b"42", "bad_shape"),
    (b'"text"', "bad_shape"),
    (b"null", "bad_shape"),
    (b'{"spindle_speed": 1}', "bad_shape"),
    (b'{"values": [1, 2]}', "bad_shape"),
    (b'{"values": {"vibration": 1}, "extra": 1}', "bad_shape"),
])
def test_message_level_rejections(decoder, payload, reason):
    assert decoder.decode(TOPIC, payload, now=NOW) == ([], [reason])


def test_oversized_payload_is_rejected_by_size_alone(config):
    d = MessageDecoder(config)
    limit = config.system.mqtt.max_payload_bytes
    good = json.dumps({"values": {"vibration": 1.5}}).encode()
    padded = good + b" " * (limit - len(good))  # exactly at the limit: still accepted
    assert d.decode(TOPIC, padded, now=NOW) == ([S("vibration", 1.5, NOW)], [])
    assert d.decode(TOPIC, padded + b" ", now=NOW) == ([], ["payload_too_large"])


def test_signal_topic_rejections(decoder):
    t = TOPIC + "/spindle_speed"
    assert decode(decoder, [1, 2], t) == ([], ["bad_shape"])
    assert decode(decoder, {"ts": TS_MS}, t) == ([], ["bad_shape"])
    assert decode(decoder, {"value": 1, "unit": "rpm"}, t) == ([], ["bad_shape"])
    assert decode(decoder, {"value": 1, "quality": "fine"}, t) == ([], ["bad_quality"])
    assert decode(decoder, b"NaN", t) == ([], ["nan"])
    assert decode(decoder, b"1", TOPIC + "/nope") == ([], ["unknown_signal"])


@pytest.mark.parametrize("topic, reason", [
    ("gwanje/changwon-1/cnc-1/cnc-999", "unknown_machine"),
    ("gwanje/changwon-1/cnc-2/cnc-101", "unknown_machine"),  # right machine id, wrong line
    ("gwanje/창원/가공/기계-1", "unknown_machine"),
    ("gwanje/changwon-1/cnc-1/cnc-101\u202e", "unknown_machine"),
    ("gwanje/changwon-1/cnc-1/'; DROP TABLE samples;--", "unknown_machine"),
    ("gwanje/changwon-1/cnc-1/cnc-101/spindle_speed/extra", "unknown_topic"),
    ("gwanje/changwon-1//cnc-101", "unknown_topic"),
    ("gwanje/changwon-1/cnc-1", "unknown_topic"),
    ("other/changwon-1/cnc-1/cnc-101", "unknown_topic"),
    ("", "unknown_topic"),
])
def test_unknown_and_hostile_topics(decoder, topic, reason):
    assert decoder.decode(topic, b'{"values": {"vibration": 1}}', now=NOW) == ([], [reason])


def test_signal_names_in_payload_hostile(decoder):
    samples, rejects = decode(decoder, {"ts": TS_MS, "values": {"진동": 1, "vibration\n": 2, "": 3, "vibration": 4}})
    assert samples == [S("vibration", 4.0)]
    assert rejects == ["unknown_signal"] * 3


# ------------------------------------------------------------------------ topic templates
def test_topic_template_partial_levels_and_field_order():
    t = TopicTemplate("plant/{site}/cell-{line}/{machine}/{signal}")
    assert t.has_signal
    assert t.match("plant/a/cell-b/c/d") == {"site": "a", "line": "b", "machine": "c", "signal": "d"}
    assert t.match("plant/a/b/c/d") is None
    assert t.match("plant/a/cell-/c/d") is None
    t2 = TopicTemplate("{machine}@{line}.{site}")
    assert not t2.has_signal
    assert t2.match("m1@l1.s1") == {"machine": "m1", "line": "l1", "site": "s1"}


@pytest.mark.parametrize("bad", [
    "gwanje/{site}/{line}", "gwanje/{site}/{line}/{machine}/{sig}", "gwanje/{site}/{line}/{machine}/{machine}",
    "+/{site}/{line}/{machine}", "gwanje/{site}/{line}/{machine}/#",
])
def test_bad_topic_templates_are_refused(bad):
    with pytest.raises(ValueError):
        TopicTemplate(bad)


def test_first_matching_template_wins():
    d = MessageDecoder(demo_config(topic_templates=[
        "x/{site}/{line}/{machine}/{signal}", "x/{site}/{line}/{signal}/{machine}"]))
    assert d.decode(f"x/{SITE}/{LINE}/{MACHINE}/vibration", b"1.5", now=NOW) == ([S("vibration", 1.5, NOW)], [])
    # the second template would read this as machine "vibration": the first one wins
    assert d.decode(f"x/{SITE}/{LINE}/vibration/{MACHINE}", b"1.5", now=NOW) == ([], ["unknown_machine"])


# ------------------------------------------------------------ a source clock running ahead
AHEAD_NS = NOW + 600 * 10**9  # a PLC whose clock is 10 min fast
EDGE_NS = NOW + 30 * 10**9  # the shipped tolerance (system.yaml clock.future_tolerance_s: 30)


@pytest.mark.parametrize("ahead", [AHEAD_NS // 10**6, AHEAD_NS, AHEAD_NS / 1e9, "2025-11-24T16:10:00Z"],
                         ids=["ms", "ns", "s", "iso"])
def test_a_time_too_far_ahead_is_rejected_in_every_json_shape(config, ahead):
    decoder = MessageDecoder(config)
    edge = EDGE_NS // 10**6
    # a batch (the fast path for ms and ns integers): the element ahead rejected, the rest kept
    assert decode(decoder, [{"signal": "vibration", "value": 1.0, "ts": edge},
                            {"signal": "vibration", "value": 2.0, "ts": ahead},
                            {"signal": "vibration", "value": 3.0, "ts": edge - 1}]) == (
        [S("vibration", 1.0, EDGE_NS), S("vibration", 3.0, EDGE_NS - 10**6)], ["timestamp_in_future"])
    # one shared time: the message, once
    assert decode(decoder, {"ts": ahead, "values": {"vibration": 1.5, "state": 3}}) == ([], ["timestamp_in_future"])
    assert decode(decoder, {"ts": edge, "values": {"vibration": 1.5}}) == ([S("vibration", 1.5, EDGE_NS)], [])
    # a signal topic
    assert decode(decoder, {"value": 1.5, "ts": ahead}, TOPIC + "/vibration") == ([], ["timestamp_in_future"])


def test_the_decoder_measures_each_machines_clock_including_rejected_times(config):
    decoder = MessageDecoder(config)
    for i in range(5):  # cnc-101's clock 10 min fast: every message rejected, still measured
        decode(decoder, {"ts": AHEAD_NS // 10**6 + i, "values": {"vibration": 1.5}})
    for i in range(5):  # cnc-102 a second behind (transit), in every shape
        decode(decoder, [{"signal": "vibration", "value": 1.0, "ts": (NOW - 10**9) // 10**6}],
               f"gwanje/{SITE}/{LINE}/cnc-102")
    decode(decoder, {"ts": 1, "values": {"vibration": 1.5}}, f"gwanje/{SITE}/{LINE}/cnc-102")  # 1970: no figure
    assert decoder.clock.offsets() == {f"{SITE}/{LINE}/{MACHINE}": 600.002, f"{SITE}/{LINE}/cnc-102": -1.0}
