"""The MQTT collector against a real mosquitto: JSON and Sparkplug B messages published by a
separate client arrive as the exact samples; bad messages between good ones are counted and
the good ones all arrive; a broker restart with QoS 1 and a persistent session loses nothing."""
from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttCollector, parse_broker_url
from collectors.sparkplug import Metric, encode_payload
from gwanje.config import Secrets
from gwanje.model import Quality, Sample
from tests.collectors import demo_config
from tests.fixtures.common import wait_for

NO_SECRETS = Secrets.from_env({})
TS_MS = int(time.time() * 1000) - 60_000  # a minute ago: inside the accepted window whenever the test runs
SITE, LINE, MACHINE = "changwon-1", "cnc-2", "cnc-203"
TOPIC = f"gwanje/{SITE}/{LINE}/{MACHINE}"


class ListSink:
    """The consumer end of the collector: collects what it is handed, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def submit(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            self._samples.extend(samples)

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)



def S(signal: str, value, ts_ms: int, machine: str = MACHINE, site: str = SITE, line: str = LINE,
      quality: Quality = Quality.GOOD) -> Sample:
    return Sample(site, line, machine, signal, value, ts_ms * 1_000_000, quality)


def key(s: Sample):
    return (s.site, s.line, s.machine, s.signal, s.ts, str(s.value))


@contextmanager
def publisher(port: int) -> Iterator[Callable[[str, bytes], None]]:
    """A separate paho client; the returned function publishes at QoS 1 and waits for PUBACK."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()

    def publish(topic: str, payload: bytes) -> None:
        info = c.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published(), f"broker did not acknowledge {topic}"

    try:
        yield publish
    finally:
        c.disconnect()
        c.loop_stop()


@contextmanager
def running(broker, sink: ListSink, client_id: str = "", **mqtt) -> Iterator[MqttCollector]:
    c = MqttCollector(demo_config(**mqtt), sink, NO_SECRETS, url=broker.url,
                      client_id=client_id or f"gwanje-test-{uuid.uuid4().hex[:8]}")
    c.start()
    try:
        assert wait_for(lambda: c.status().connected), c.status()
        # subscribed once the SUBACK is back; a retained-free broker gives us no event for it,
        # so wait for our own probe message to come through
        with publisher(broker.port) as publish:
            assert wait_for(lambda: _probe(c, publish)), c.status()
        yield c
    finally:
        c.stop()


def _probe(c: MqttCollector, publish) -> bool:
    before = c.status().messages_in
    publish("gwanje/probe/x/y", b"{}")  # an unknown machine: counted as a message and a reject
    return wait_for(lambda: c.status().messages_in > before, 0.5)


# ------------------------------------------------------------------------ pure helpers
def test_parse_broker_url():
    assert parse_broker_url("mqtt://broker.plant.local:1884") == ("broker.plant.local", 1884, False)
    assert parse_broker_url("mqtts://10.0.0.5") == ("10.0.0.5", 8883, True)
    assert parse_broker_url("mqtt://[::1]") == ("::1", 1883, False)
    for bad in ("http://x:1", "x:1883", "mqtt://", "mqtt://h:99999", "mqtt://user:pw@h:1883"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_no_url_is_a_clear_error():
    with pytest.raises(ValueError, match="GWANJE_MQTT_URL"):
        MqttCollector(demo_config(), ListSink(), NO_SECRETS)


def test_a_refused_subscription_shows_in_the_status():
    # mosquitto 2.0 grants every v3.1.1 subscription and filters by ACL on delivery; brokers
    # such as EMQX or HiveMQ answer 0x80 in the SUBACK: the paho callback, called as paho would
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    c = MqttCollector(demo_config(), ListSink(), NO_SECRETS, url="mqtt://127.0.0.1:1")
    c._session = "connected (session present: False)"
    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=0x80)
    c._on_subscribe(None, None, 1, [granted, refused], None)
    assert c.status().detail == ("connected (session present: False); "
                                 "the broker refused the subscription to ['spBv1.0/#']")
    assert c.subscribed  # gwanje/# still flows
    c._on_subscribe(None, None, 2, [refused, refused], None)
    assert not c.subscribed
    c._on_subscribe(None, None, 3, [granted, granted], None)
    assert c.subscribed and c.status().detail.endswith("; subscribed to 2 topic filter(s)")


def test_secrets_never_appear_in_status_or_repr():
    secrets = Secrets.from_env({"GWANJE_MQTT_USERNAME": "op", "GWANJE_MQTT_PASSWORD": "s3cr3t-pw"})
    c = MqttCollector(demo_config(), ListSink(), secrets, url="mqtt://127.0.0.1:1")
    assert "s3cr3t-pw" not in repr(c.status()) + repr(secrets) + c.name


# ---------------------------------------------------------------------- against mosquitto
@pytest.mark.services
def test_json_and_sparkplug_messages_arrive_as_samples(mosquitto_module):
    sink = ListSink()
    with running(mosquitto_module, sink) as c, publisher(mosquitto_module.port) as publish:
        publish(TOPIC, json.dumps({"ts": TS_MS, "values": {"spindle_speed": 1200.5, "state": 3,
                                                           "lot": "L-24-0031"}}).encode())
        publish(TOPIC, json.dumps([{"signal": "vibration", "value": 2.25, "ts": TS_MS + 1},
                                   {"signal": "feed_rate", "value": 800, "ts": TS_MS + 2, "quality": "bad"}]).encode())
        publish(TOPIC + "/cycle_time", b"41.5")  # bare scalar: receive time, checked below
        publish(TOPIC + "/spindle_load", json.dumps({"value": 61, "ts": TS_MS + 3}).encode())
        sp_topic = "spBv1.0/changwon-2/{}/press-2/press-203"
        publish(sp_topic.format("DBIRTH"), encode_payload(
            [Metric(name="tonnage", alias=1, value=410.0), Metric(name="die_temp", alias=2, value=88.5)],
            timestamp=TS_MS + 4, seq=0))
        publish(sp_topic.format("DDATA"), encode_payload([Metric(alias=1, value=415.5, timestamp=TS_MS + 5)], seq=1))
        expected = [
            S("spindle_speed", 1200.5, TS_MS), S("state", 3.0, TS_MS), S("lot", "L-24-0031", TS_MS),
            S("vibration", 2.25, TS_MS + 1), S("feed_rate", 800.0, TS_MS + 2, quality=Quality.BAD),
            S("spindle_load", 61.0, TS_MS + 3),
            S("tonnage", 410.0, TS_MS + 4, "press-203", "changwon-2", "press-2"),
            S("die_temp", 88.5, TS_MS + 4, "press-203", "changwon-2", "press-2"),
            S("tonnage", 415.5, TS_MS + 5, "press-203", "changwon-2", "press-2"),
        ]
        assert wait_for(lambda: len(sink.samples) >= len(expected) + 1), sink.samples
        got = sink.samples
        scalar = [s for s in got if s.signal == "cycle_time"]
        assert [(s.value, s.machine) for s in scalar] == [(41.5, MACHINE)]
        assert abs(scalar[0].ts - time.time_ns()) < 60 * 10**9  # stamped on receipt
        assert sorted((s for s in got if s.signal != "cycle_time"), key=key) == sorted(expected, key=key)
        st = c.status()
        assert st.kind == "mqtt" and st.connected
        assert st.samples_in == len(expected) + 1
        assert st.last_data_ns is not None


@pytest.mark.services
def test_bad_messages_between_good_ones(mosquitto_module):
    sink = ListSink()
    with running(mosquitto_module, sink, max_payload_bytes=2048) as c, \
            publisher(mosquitto_module.port) as publish:
        base = c.status()
        good = [json.dumps({"ts": TS_MS + i, "values": {"vibration": float(i)}}).encode() for i in range(6)]
        publish(TOPIC, good[0])
        publish(TOPIC, b'{"ts": 1, "values": {"vibration": ' + b"1" * 3000 + b"}}")  # oversized
        publish(TOPIC, good[1])
        publish(TOPIC, b'{"ts": 1732400000123, "values": {')  # malformed JSON
        publish(TOPIC, good[2])
        publish("spBv1.0/changwon-2/DDATA/press-2/press-203", b"\x12\x05ab")  # malformed protobuf
        publish(TOPIC, good[3])
        publish("gwanje/changwon-1/cnc-2/없는-기계", good[4])  # unknown (Korean) machine
        publish(TOPIC, b"\xff\xfe")  # not UTF-8
        publish(TOPIC, good[4])
        publish(TOPIC, json.dumps([{"signal": "vibration", "value": float("nan"), "ts": TS_MS},
                                   {"signal": "vibration", "value": 5.0, "ts": TS_MS + 5}]).encode())
        assert wait_for(lambda: c.status().messages_in - base.messages_in >= 11), c.status()
        assert sorted(sink.samples, key=key) == [S("vibration", float(i), TS_MS + i) for i in range(6)]
        rejects = c.status().rejects
        new = {r: n - base.rejects.get(r, 0) for r, n in rejects.items() if n != base.rejects.get(r, 0)}
        assert new == {"payload_too_large": 1, "bad_json": 1, "bad_sparkplug": 1, "unknown_machine": 1,
                       "bad_utf8": 1, "nan": 1}


@pytest.mark.services
def test_broker_restart_loses_nothing_published_while_we_were_away(mosquitto):
    sink = ListSink()
    # a slow first reconnect attempt, so the second batch is certainly published while the
    # collector is disconnected and must wait in its persistent session at the broker
    with running(mosquitto, sink, reconnect_min_s=3.0, reconnect_max_s=6.0) as c:
        with publisher(mosquitto.port) as publish:
            for i in range(20):
                publish(TOPIC + "/vibration", json.dumps({"value": float(i), "ts": TS_MS + i}).encode())
            assert wait_for(lambda: len({key(s) for s in sink.samples}) == 20), len(sink.samples)
        mosquitto.restart()
        with publisher(mosquitto.port) as publish:
            for i in range(20, 40):
                publish(TOPIC + "/vibration", json.dumps({"value": float(i), "ts": TS_MS + i}).encode())
        away = c.status()
        assert not away.connected, "the collector reconnected before the second batch was published"
        assert wait_for(lambda: len({key(s) for s in sink.samples}) == 40, 15), len(sink.samples)
        # QoS 1 may redeliver; the set of samples is exactly the 40 published
        assert {key(s) for s in sink.samples} == {key(S("vibration", float(i), TS_MS + i)) for i in range(40)}
        st = c.status()
        assert st.connected and st.reconnects == 1


@pytest.mark.services
def test_start_before_the_broker_is_up_then_stop(mosquitto):
    mosquitto.stop()
    sink = ListSink()
    c = MqttCollector(demo_config(reconnect_min_s=0.2, reconnect_max_s=0.5), sink, NO_SECRETS,
                      url=mosquitto.url, client_id=f"gwanje-test-{uuid.uuid4().hex[:8]}")
    c.start()
    try:
        time.sleep(0.3)  # let the first attempt fail: the state under test, not an assertion
        assert not c.status().connected
        mosquitto.start()
        assert wait_for(lambda: c.status().connected), c.status()
    finally:
        c.stop()
    assert not c.status().connected
    assert c.status().detail == "stopped"


class AckingSink(ListSink):
    """A sink that reports when it is done (as runtime.pipeline.Pipeline does): the collector
    then acknowledges a message only when on_done is called. ack=False never calls it, as if
    the process died before the samples were stored."""

    def __init__(self, ack: bool) -> None:
        super().__init__()
        self.ack = ack

    def submit(self, samples: Sequence[Sample], on_done: Callable[[], None] | None = None) -> None:
        super().submit(samples)
        if self.ack and on_done is not None:
            on_done()


@pytest.mark.services
def test_messages_are_acked_only_when_the_sink_is_done(mosquitto_module):
    client_id = f"gwanje-test-{uuid.uuid4().hex[:8]}"
    lost_with_the_process = AckingSink(ack=False)
    with running(mosquitto_module, lost_with_the_process, client_id=client_id) as c:
        assert c.ack_after_store
        with publisher(mosquitto_module.port) as publish:
            for i in range(5):
                publish(TOPIC + "/vibration", json.dumps({"value": float(i), "ts": TS_MS + i}).encode())
        assert wait_for(lambda: len(lost_with_the_process.samples) == 5)
    # the same session again: the broker redelivers the 5 messages nobody acknowledged
    stored = AckingSink(ack=True)
    want = {key(S("vibration", float(i), TS_MS + i)) for i in range(5)}
    with running(mosquitto_module, stored, client_id=client_id):
        assert wait_for(lambda: {key(s) for s in stored.samples} >= want), stored.samples
    # and once acknowledged they are gone: a third session gets only what is new
    again = AckingSink(ack=True)
    with running(mosquitto_module, again, client_id=client_id):
        with publisher(mosquitto_module.port) as publish:
            publish(TOPIC + "/vibration", json.dumps({"value": 99.0, "ts": TS_MS + 99}).encode())
        assert wait_for(lambda: len(again.samples) >= 1)
        assert [key(s) for s in again.samples] == [key(S("vibration", 99.0, TS_MS + 99))]


@pytest.mark.services
def test_shared_subscription_splits_the_stream_between_collectors(mosquitto_module):
    # two collectors in one $share group; each message reaches exactly one of them: a machine's
    # samples split between processes, which is why collect scales out by partition instead
    # (gwanje/partition.py) and load_config refuses $share subscriptions
    group = f"$share/g{uuid.uuid4().hex[:6]}/"
    shared = dict(subscriptions=[group + "gwanje/#"])
    a, b = ListSink(), ListSink()
    with running(mosquitto_module, a, **shared) as ca, running(mosquitto_module, b, **shared) as cb, \
            publisher(mosquitto_module.port) as publish:
        for i in range(40):
            publish(TOPIC + "/vibration", json.dumps({"value": float(i), "ts": TS_MS + i}).encode())
        assert wait_for(lambda: len(a.samples) + len(b.samples) >= 40)
        got = [key(s) for s in a.samples + b.samples]
        assert sorted(got) == sorted(key(S("vibration", float(i), TS_MS + i)) for i in range(40))
        assert a.samples and b.samples, (len(a.samples), len(b.samples))
        assert ca.status().connected and cb.status().connected


class BrokenSink(ListSink):
    def submit(self, samples: Sequence[Sample]) -> None:
        raise RuntimeError("sink bug")


@pytest.mark.services
def test_a_broken_sink_is_counted_and_logged_once_not_per_message(mosquitto_module, caplog):
    with running(mosquitto_module, BrokenSink()) as c, publisher(mosquitto_module.port) as publish:
        for i in range(20):
            publish(TOPIC + "/vibration", json.dumps({"value": float(i), "ts": TS_MS + i}).encode())
        assert wait_for(lambda: c.status().rejects.get("sink_error", 0) == 20), c.status()
        assert c.status().connected  # the network loop survived every failure
    tracebacks = [r for r in caplog.records if r.exc_info and "sample sink failed" in r.getMessage()]
    assert len(tracebacks) == 1


@pytest.mark.services
def test_a_fast_machine_clock_is_rejected_counted_and_measured(mosquitto_module, caplog):
    """cnc-203's PLC clock runs 10 min ahead, press-203's (Sparkplug) is right: cnc-203's
    samples are refused as timestamp_in_future, counted and logged; press-203's all arrive;
    the status tells each machine's clock offset."""
    sp_topic = "spBv1.0/changwon-2/{}/press-2/press-203"
    sink = ListSink()
    with running(mosquitto_module, sink) as c, publisher(mosquitto_module.port) as publish:
        base = c.status().rejects.get("timestamp_in_future", 0)
        publish(sp_topic.format("DBIRTH"), encode_payload([Metric(name="tonnage", alias=1, value=400.0)],
                                                          timestamp=int(time.time() * 1000), seq=0))
        for i in range(5):
            fast = int(time.time() * 1000) + 600_000
            publish(TOPIC, json.dumps({"ts": fast, "values": {"vibration": 1.0 + i}}).encode())
            publish(sp_topic.format("DDATA"), encode_payload(
                [Metric(alias=1, value=410.0 + i, timestamp=int(time.time() * 1000))], seq=i + 1))
        assert wait_for(lambda: len(sink.samples) >= 6), sink.samples
        assert [s.value for s in sink.samples if s.machine == "press-203"] == [400.0, 410.0, 411.0, 412.0, 413.0, 414.0]
        assert not [s for s in sink.samples if s.machine == MACHINE]
        st = c.status()
        assert st.rejects.get("timestamp_in_future", 0) - base == 5
        fast_clock = st.clock_offsets_s[f"{SITE}/{LINE}/{MACHINE}"]
        right_clock = st.clock_offsets_s["changwon-2/press-2/press-203"]
        # 600 s ahead less the transit of a loopback message; the right clock is behind by transit only
        assert 570 < fast_clock <= 600 and -30 < right_clock <= 0, st.clock_offsets_s
    assert any("timestamp_in_future" in r.getMessage() for r in caplog.records)


def test_buffered_reads_deliver_every_message_whole_and_in_order(mosquitto_module):
    """The collector's client reads the socket in large chunks and serves paho's small reads
    from them (GwanjeMqttClient): messages of every size — smaller than a length byte, across
    chunk boundaries, larger than a chunk — arrive intact, in order, none held back in the
    buffer while the socket is quiet."""
    import random

    from collectors.mqtt import GwanjeMqttClient

    rnd = random.Random(7)
    sizes = [rnd.choice([0, 1, 2, 127, 128, 16_383, 16_384, 3_000, 70_000]) for _ in range(400)]
    sizes += [GwanjeMqttClient.RECV_CHUNK + 1, 5, 2 * GwanjeMqttClient.RECV_CHUNK + 17, 3]
    bodies = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    got: list[bytes] = []
    sub = GwanjeMqttClient(CallbackAPIVersion.VERSION2, client_id=f"buf-{uuid.uuid4().hex[:6]}",
                           protocol=paho.MQTTv311)
    sub.on_message = lambda c, u, m: got.append(m.payload)
    subscribed = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("buf/#", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mosquitto_module.port)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    pub.connect("127.0.0.1", mosquitto_module.port)
    pub.loop_start()
    try:
        assert subscribed.wait(10)
        for b in bodies:
            pub.publish("buf/x", b, qos=1)
        assert wait_for(lambda: len(got) == len(bodies), timeout=30)
        assert got == bodies
        # the last message is tiny and came after a quiet moment: nothing waits in the buffer
        pub.publish("buf/x", b"last", qos=1)
        assert wait_for(lambda: got[-1:] == [b"last"], timeout=10)
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
