"""Property tests of the MQTT decoders: arbitrary bytes, JSON and topics never raise, every
returned sample is valid, and the batch fast path agrees with the Normalizer exactly."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.payloads import MessageDecoder
from gwanje.batch import SampleBatch
from gwanje.model import BadValue, Quality
from gwanje.normalize import Normalizer
from tests.collectors import assert_valid, demo_config

CONFIG = demo_config()
DECODER = MessageDecoder(CONFIG)
NORMALIZER = Normalizer(CONFIG)
NOW = 1_764_000_000_000_000_000
TOLERANCE_NS = NORMALIZER.future_tolerance_ns  # the fast path's upper bound, at its edge
KINDS = {(*m.key, s.id): s.kind for m in CONFIG.machines() for s in m.signals}
MACHINE = ("changwon-2", "injection-1", "imm-103")
SIGNALS = sorted(s for (a, b, c, s) in KINDS if (a, b, c) == MACHINE)
TOPIC = "gwanje/" + "/".join(MACHINE)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["ts", "values", "quality", "signal", "value", *SIGNALS]) | st.text(max_size=8),
        children, max_size=6),
    max_leaves=40,
)
SP_DEVICE = f"spBv1.0/{MACHINE[0]}/{{}}/{MACHINE[1]}/{MACHINE[2]}"
topics = st.sampled_from([TOPIC, TOPIC + "/melt_temp", TOPIC + "/lot", TOPIC + "/state", "spBv1.0/x/DDATA/y/z",
                          SP_DEVICE.format("DDATA"), SP_DEVICE.format("DBIRTH")]) | st.text(max_size=40)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(topic=topics, payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(topic, payload):
    assert_valid(CONFIG, *DECODER.decode(topic, payload, now=NOW), now=NOW)


@PROPS
@given(topic=topics, doc=json_values)
def test_arbitrary_json_never_raises(topic, doc):
    payload = json.dumps(doc).encode()
    assert_valid(CONFIG, *DECODER.decode(topic, payload, now=NOW), now=NOW)


element = st.fixed_dictionaries(
    {"signal": st.sampled_from(SIGNALS + ["nope", "진동"]),
     "value": st.one_of(st.floats(), st.integers(min_value=-2**60, max_value=2**60), st.booleans(),
                        st.integers(min_value=10**308, max_value=10**320),
                        st.text(max_size=5), st.none())},
    optional={"ts": st.one_of(st.integers(min_value=-10**19, max_value=10**19),
                              st.integers(min_value=10**11 - 5, max_value=10**14 + 5),
                              st.just(946_684_800_000), st.just(946_684_799_999),
                              st.just((NOW + TOLERANCE_NS) // 10**6),
                              st.just((NOW + TOLERANCE_NS) // 10**6 + 1),
                              st.just(NOW + TOLERANCE_NS), st.just(NOW + TOLERANCE_NS + 1),
                              st.floats(allow_nan=True), st.text(max_size=5)),
              "quality": st.sampled_from(["good", "uncertain", "bad", "fine"])},
)


def reference(items):
    """What a batch message of these elements must decode to: every element through
    Normalizer.sample on its own (samples, rejection reasons)."""
    want_samples, want_reasons = [], []
    for it in items:
        q = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}.get(it.get("quality", "good"))
        if q is None:
            want_reasons.append("bad_quality")
            continue
        try:
            # the JSON round trip turns NaN/inf into the same floats the decoder sees
            value = json.loads(json.dumps(it["value"]))
            want_samples.append(NORMALIZER.sample(*MACHINE, it["signal"], value,
                                                  json.loads(json.dumps(it.get("ts"))), q, NOW))
        except BadValue as e:
            want_reasons.append(str(e))
    return want_samples, want_reasons


@PROPS
@given(items=st.lists(element, max_size=20))
def test_batch_fast_path_agrees_with_the_normalizer(items):
    payload = json.dumps(items).encode()
    want_samples, want_reasons = reference(items)
    samples, reasons = DECODER.decode(TOPIC, payload, now=NOW)
    assert samples == want_samples
    assert [type(s.value) for s in samples] == [type(s.value) for s in want_samples]
    assert reasons == want_reasons


@PROPS
@given(values=st.dictionaries(st.sampled_from(SIGNALS + ["nope"]), st.one_of(
    st.floats(), st.integers(min_value=-2**60, max_value=2**60), st.booleans(), st.text(max_size=5),
    st.integers(min_value=10**308, max_value=10**320))))
def test_values_fast_path_agrees_with_the_normalizer(values):
    payload = json.dumps({"ts": 1_732_400_000_123, "values": values}).encode()
    want_samples, want_reasons = [], []
    for signal, raw in values.items():
        try:
            want_samples.append(NORMALIZER.sample(*MACHINE, signal, raw, 1_732_400_000_123, Quality.GOOD, NOW))
        except BadValue as e:
            want_reasons.append(str(e))
    assert DECODER.decode(TOPIC, payload, now=NOW) == (want_samples, want_reasons)


NUMERIC = [s for s in SIGNALS if KINDS[(*MACHINE, s)] not in ("text",)]
good_element = st.fixed_dictionaries(
    {"signal": st.sampled_from(NUMERIC),
     "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                        st.integers(min_value=-2**53, max_value=2**53)),
     "ts": st.one_of(st.integers(min_value=946_684_800_000, max_value=(NOW + TOLERANCE_NS) // 10**6),
                     st.integers(min_value=946_684_800 * 10**9, max_value=NOW + TOLERANCE_NS))})


@PROPS
@given(items=st.lists(good_element, min_size=1, max_size=30), spoil=st.one_of(st.none(), element))
def test_columnar_fast_path_gives_the_normalizers_samples(items, spoil):
    """Messages of plain numbers decode through the columnar path (a SampleBatch) into exactly
    the Normalizer's samples; one spoiled element sends the message down the general path,
    which still keeps every good element."""
    if spoil is not None:
        items = items[:len(items) // 2] + [spoil] + items[len(items) // 2:]
    want_samples, want_reasons = reference(items)
    before = DECODER.json.fast_messages
    samples, reasons = DECODER.decode(TOPIC, json.dumps(items).encode(), now=NOW)
    assert list(samples) == want_samples and reasons == want_reasons
    assert [type(s.value) for s in samples] == [type(s.value) for s in want_samples]
    if spoil is None and len({it["ts"] < 10**14 for it in items}) == 1:
        # the common message (one time unit): no Sample built, columns only
        assert isinstance(samples, SampleBatch) and DECODER.json.fast_messages == before + 1
