"""The OPC UA collector's pure conversions: status code -> Quality, DataValue -> Sample."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua

from collectors.opcua import MonitoredSignal, datetime_ns, quality_of, redact_url, to_sample
from gwanje.config import load_config
from gwanje.model import BadValue, Quality, Sample
from gwanje.normalize import Normalizer

UTC = timezone.utc
SIG = MonitoredSignal("ns=2;s=changwon-1.forge-1.forge-101.forging_force",
                      "changwon-1", "forge-1", "forge-101", "forging_force")


@pytest.fixture(scope="module")
def normalizer():
    from pathlib import Path

    return Normalizer(load_config(Path(__file__).resolve().parents[2] / "config", env={}))


@pytest.mark.parametrize("code, quality", [
    (0x00000000, Quality.GOOD),        # Good
    (0x002D0000, Quality.GOOD),        # GoodClamped
    (0x40000000, Quality.UNCERTAIN),   # Uncertain
    (0x40900000, Quality.UNCERTAIN),   # UncertainLastUsableValue
    (0x80000000, Quality.BAD),         # Bad
    (0x808B0000, Quality.BAD),         # BadSensorFailure
    (0xC0000000, Quality.BAD),         # severity 11 is reserved: treated as bad
])
def test_quality_from_status_severity(code, quality):
    assert quality_of(code) is quality


def test_datetime_ns_is_exact():
    # 2026-11-24T09:30:00.123456Z -> 1_795_512_600 s + 123456 µs; 10-ps units: 5000 -> 50 ns
    dt = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)
    assert datetime_ns(dt) == 1_795_512_600_123_456_000
    assert datetime_ns(dt, 5000) == 1_795_512_600_123_456_050
    assert datetime_ns(None) is None
    assert datetime_ns(datetime(1601, 1, 1, tzinfo=UTC)) is None  # OPC UA's "no time"


def test_bad_status_with_a_value_is_kept_as_bad(normalizer):
    # the asyncua server nulls values on Bad (Part 4 7.7.1) but PLC servers do send them
    dv = ua.DataValue(ua.Variant(18250.0, ua.VariantType.Double), StatusCode=ua.StatusCode(0x808B0000),
                      SourceTimestamp=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert to_sample(normalizer, SIG, 18250.0, dv) == Sample(
        "changwon-1", "forge-1", "forge-101", "forging_force", 18250.0, 1_795_512_600 * 10**9, Quality.BAD)


def test_server_timestamp_when_source_timestamp_missing(normalizer):
    dv = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double),
                      ServerTimestamp=datetime(2026, 11, 24, 9, 30, 1, tzinfo=UTC))
    assert to_sample(normalizer, SIG, 1.0, dv).ts == 1_795_512_601 * 10**9


@pytest.mark.parametrize("value, reason", [
    (None, "no_value"),
    (float("inf"), "infinite"),
    ([1.0, 2.0], "array_not_supported"),             # an array where a scalar belongs
    (b"\x00\x01", "unsupported_type:ByteString"),
    ("812.5", "text_for_numeric_signal"),
])
def test_values_that_cannot_become_samples(normalizer, value, reason):
    dv = ua.DataValue(ua.Variant(value), SourceTimestamp=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    with pytest.raises(BadValue, match=f"^{reason}$"):
        to_sample(normalizer, SIG, value, dv)


@pytest.mark.parametrize("ahead", [timedelta(days=3), timedelta(minutes=10), timedelta(seconds=31)])
def test_source_time_ahead_of_the_clock_beyond_the_tolerance_rejected(normalizer, ahead):
    future = datetime.now(UTC) + ahead  # the shipped tolerance is 30 s
    dv = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=future)
    with pytest.raises(BadValue, match="^timestamp_in_future$"):
        to_sample(normalizer, SIG, 1.0, dv)
    # the server's clock stands in for a missing source time, under the same rule
    dv = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), ServerTimestamp=future)
    with pytest.raises(BadValue, match="^timestamp_in_future$"):
        to_sample(normalizer, SIG, 1.0, dv)


def test_redact_url_drops_credentials():
    assert redact_url("opc.tcp://op:pw@plc.local:4840/x") == "opc.tcp://plc.local:4840/x"
    assert redact_url("opc.tcp://plc.local:4840/x") == "opc.tcp://plc.local:4840/x"


@pytest.mark.parametrize("update, message", [
    ({"security_policy": "Basic256Sha256"}, "needs security_mode Sign or SignAndEncrypt"),
    ({"security_policy": "Basic256Sha256", "security_mode": "Sign"}, "needs certificate and private_key"),
    ({"security_mode": "SignAndEncrypt"}, "needs security_policy Basic256Sha256"),
])
def test_contradictory_security_settings_refused_at_construction(normalizer, update, message):
    from collectors.opcua import OpcuaCollector
    from gwanje.config import Secrets

    config = normalizer.config
    endpoint = config.endpoint("changwon-1").model_copy(update=update)
    with pytest.raises(ValueError, match=message):
        OpcuaCollector(config, endpoint, sink=None, secrets=Secrets.from_env({}))  # type: ignore[arg-type]


def test_any_value_status_and_time_becomes_a_sample_or_a_counted_reason(normalizer):
    """Whatever a server sends: a finite float or a bounded str with the status's quality, or
    BadValue (a counted reason); never another exception, never NaN."""
    import math

    from hypothesis import given, settings
    from hypothesis import strategies as st

    values = st.one_of(
        st.none(), st.booleans(), st.integers(-2**63, 2**64), st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=300), st.binary(max_size=20), st.lists(st.floats(), max_size=3),
        st.datetimes(timezones=st.just(UTC)))
    times = st.one_of(st.none(), st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9000, 1, 1),
                                              timezones=st.just(UTC)))
    signals = st.sampled_from([SIG, MonitoredSignal("n", "changwon-1", "forge-1", "forge-101", "lot"),
                               MonitoredSignal("n", "changwon-1", "forge-1", "forge-101", "state")])

    @settings(max_examples=100, deadline=None)
    @given(value=values, status=st.integers(0, 2**32 - 1), source=times, server=times, sig=signals)
    def check(value, status, source, server, sig):
        # to_sample takes the decoded value beside its DataValue (status and times)
        dv = ua.DataValue(StatusCode=ua.StatusCode(status), SourceTimestamp=source, ServerTimestamp=server)
        try:
            s = to_sample(normalizer, sig, value, dv)
        except BadValue:
            return
        assert s.quality is quality_of(status)
        if isinstance(s.value, float):
            assert math.isfinite(s.value)
        else:
            assert isinstance(s.value, str) and len(s.value) <= 256 and "\x00" not in s.value

    check()


@pytest.mark.parametrize("node, path", [
    ("ns=2;s=changwon-1.forge-1.forge-101.state", False),
    ("ns=3;i=1042", False),
    ("i=2258", False),
    ("nsu=urn:plc:line7;s=Press/Tonnage", False),  # a "/" inside a string id is still a node id
    ("0:Objects/2:Press1/2:Tonnage", True),
    ("/0:Objects/3:Line7", True),
])
def test_node_ids_and_browse_paths_told_apart(node, path):
    from collectors.opcua import is_browse_path

    assert is_browse_path(node) is path


def test_huge_number_for_a_text_signal_rejected_not_stored_as_257_digits(normalizer):
    # found by the property test above: 1e256 written out is 257 characters, over the 256 limit
    lot = MonitoredSignal("n", "changwon-1", "forge-1", "forge-101", "lot")
    dv = ua.DataValue(SourceTimestamp=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    with pytest.raises(BadValue, match="^text_too_long$"):
        to_sample(normalizer, lot, 1e256, dv)
    assert to_sample(normalizer, lot, 20261124.0, dv).value == "20261124"


@pytest.mark.parametrize("value, signal, expected", [
    (True, "forging_force", 1.0),                                     # Boolean
    (2**64 - 1, "forging_force", float(2**64 - 1)),                   # UInt64 above 2**63
    (-2**63, "forging_force", float(-2**63)),                         # Int64
    (datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC), "lot", "2026-11-24T09:30:00.123456Z"),  # DateTime
    (__import__("uuid").UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"), "lot", "72962b91-fa75-4ae6-8d28-b404dc7daf63"),
    (ua.LocalizedText("Bake A", "en"), "lot", "Bake A"),
    (ua.QualifiedName("Night", 1), "lot", "1:Night"),
    (ua.NodeId("Press1", 3), "lot", "ns=3;s=Press1"),
    (ua.StatusCode(0x808B0000), "lot", ua.StatusCode(0x808B0000).name),
    (ua.StatusCode(0), "state", "Good"),                              # a state reported as a status code
])
def test_every_builtin_scalar_type_has_one_sample_value(normalizer, value, signal, expected):
    sig = MonitoredSignal("n", "changwon-1", "forge-1", "forge-101", signal)
    dv = ua.DataValue(SourceTimestamp=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert to_sample(normalizer, sig, value, dv).value == expected


@pytest.mark.parametrize("value, reason", [
    (ua.XmlElement("<a/>"), "unsupported_type:XmlElement"),
    (ua.ExtensionObject(), "unsupported_type:ExtensionObject"),
    (ua.EUInformation(), "unsupported_type:ExtensionObject"),       # a structure asyncua decoded
    (ua.Variant(1.0), "unsupported_type:Variant"),
    (ua.DiagnosticInfo(), "unsupported_type:DiagnosticInfo"),
    ((1, 2), "array_not_supported"),
])
def test_types_no_sample_can_hold_are_rejected_with_their_reason(normalizer, value, reason):
    dv = ua.DataValue(SourceTimestamp=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    lot = MonitoredSignal("n", "changwon-1", "forge-1", "forge-101", "lot")
    with pytest.raises(BadValue, match=f"^{reason}$"):
        to_sample(normalizer, lot, value, dv)
