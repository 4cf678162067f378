"""The OPC UA collector's batch path (each DataChangeNotification decoded into the columns of
one SampleBatch) delivers exactly what its per-item path (one handler call and one Sample per
change, the code before issue 11) delivers: the same samples, values, times and qualities, the
same rejections counted by reason, the same change counts.

Against a real asyncua server (tests/fixtures/opcua.py): two collectors, one per path, on the
same server, fed one seeded random mix of good, uncertain and bad values, NaN and infinities,
wrong types for the signal's kind, unsupported types, arrays, out-of-range and future times,
overflow bits. And in-process, without a network: the same decoded publish responses handed to
asyncua's Subscription of each path, including client handles the collector does not know."""
from __future__ import annotations

import asyncio
import math
import random
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua

from collectors.opcua import OpcuaCollector, _DataChangeHandler, _deliver_batches, _dispatch_directly
from gwanje.batch import SampleBatch
from gwanje.config import Secrets, load_config
from gwanje.model import Quality, Sample
from tests.fixtures.common import wait_for
from tests.fixtures.opcua import OpcuaTestServer, plant_variables

UTC = timezone.utc
NO_SECRETS = Secrets.from_env({})

PLANT = """\
name: {ko: 시험 공장, en: Test plant}
machine_classes:
  press:
    name: {ko: 프레스, en: Press}
    total_signal: part_count_total
    good_signal: null
    reject_signal: null
    state_codes: {running: [1], idle: [2], down: [3]}
    signals:
      - {id: state, name: {ko: 상태, en: State}, kind: state}
      - {id: part_count_total, name: {ko: 총 생산수, en: Total}, kind: counter}
      - {id: tonnage, name: {ko: 하중, en: Tonnage}, unit: t}
      - {id: lot, name: {ko: LOT, en: LOT}, kind: text}
sites:
  - id: site-b
    name: {ko: 비, en: B}
    opcua_endpoint: plc
    lines:
      - id: line-1
        name: {ko: 1라인, en: Line 1}
        process: press
        machines:
          - {id: p-1, name: {ko: 1호기, en: No. 1}, class: press, source: opcua, ideal_cycle_s: 10}
          - {id: p-2, name: {ko: 2호기, en: No. 2}, class: press, source: opcua, ideal_cycle_s: 10}
"""
SYSTEM = """\
opcua:
  endpoints:
    - {name: plc, url: "opc.tcp://127.0.0.1:1/unused"}
"""

GOOD, UNCERTAIN, BAD = 0x00000000, 0x40900000, 0x808B0000  # Good, UncertainLastUsableValue, BadSensorFailure
OVERFLOW = 0x00000480  # Good + DataValue info type + Overflow: older values discarded on the server


class Sink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.submits: list = []

    def submit(self, samples) -> None:
        with self._lock:
            self.submits.append(samples)

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return [s for b in self.submits for s in b]

    def by_series(self) -> dict[tuple, list[tuple]]:
        """Per series, (value, ts, quality) in arrival order (NaN never arrives)."""
        out: dict[tuple, list[tuple]] = {}
        for s in self.samples:
            out.setdefault(s.series, []).append((s.value, s.ts, s.quality))
        return out


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    d = tmp_path_factory.mktemp("opcua-batch-config")
    (d / "plant.yaml").write_text(PLANT, encoding="utf-8")
    (d / "system.yaml").write_text(SYSTEM, encoding="utf-8")
    config = load_config(d, env={})
    return config, config.endpoint("plc")


# ---------------------------------------------------------------- the random mix
def random_value(rng: random.Random) -> ua.Variant:
    """A Variant of some type a PLC might send, valid or not for any signal kind."""
    pick = rng.randrange(24)
    if pick < 6:
        return ua.Variant(round(rng.uniform(-1e5, 1e5), 3), ua.VariantType.Double)
    return [
        lambda: ua.Variant(math.nan, ua.VariantType.Double),
        lambda: ua.Variant(rng.choice([math.inf, -math.inf]), ua.VariantType.Double),
        lambda: ua.Variant(1.5, ua.VariantType.Float),
        lambda: ua.Variant(rng.randint(-2**31, 2**31 - 1), ua.VariantType.Int32),
        lambda: ua.Variant(rng.choice([0, 2**32 - 1]), ua.VariantType.UInt32),
        lambda: ua.Variant(rng.choice([2**64 - 1, 2**53 + 1]), ua.VariantType.UInt64),
        lambda: ua.Variant(rng.choice([True, False]), ua.VariantType.Boolean),
        lambda: ua.Variant(rng.choice(["812.5", "LOT-20261124-A07", "", "x" * 300, "a\x00b"]),
                           ua.VariantType.String),
        lambda: ua.Variant(b"\x01\x02", ua.VariantType.ByteString),
        lambda: ua.Variant(datetime(2026, 11, 24, 9, 30, tzinfo=UTC), ua.VariantType.DateTime),
        lambda: ua.Variant(uuid.UUID(int=rng.getrandbits(128)), ua.VariantType.Guid),
        lambda: ua.Variant(ua.LocalizedText(rng.choice(["Running", None])), ua.VariantType.LocalizedText),
        lambda: ua.Variant(ua.QualifiedName("Running", 2), ua.VariantType.QualifiedName),
        lambda: ua.Variant([1.0, 2.0], ua.VariantType.Double),  # an array
        lambda: ua.Variant(1e300, ua.VariantType.Double),  # a number too long as text
        lambda: ua.Variant(),  # no value
        lambda: ua.Variant(ua.StatusCode(BAD), ua.VariantType.StatusCode),
        lambda: ua.Variant(-0.0, ua.VariantType.Double),
    ][pick - 6]()


def random_change(rng: random.Random, now: datetime, k: int) -> ua.DataValue:
    status = rng.choice([GOOD] * 6 + [UNCERTAIN, UNCERTAIN, BAD, BAD, OVERFLOW, UNCERTAIN | 0x480])
    when = rng.randrange(10)
    # source times shared by a few changes in a row (one PLC scan), picoseconds apart or not
    src = now + timedelta(microseconds=k // 3)
    server = now + timedelta(microseconds=k, milliseconds=1)
    if when == 0:
        src = None  # the server time stands in
    elif when == 1:
        src = datetime(1999, 12, 31, 23, 59, 59, k % 10**6, tzinfo=UTC)  # before 2000: out of range
    elif when == 2:
        # a clock ahead: beyond system.yaml's future_tolerance_s (30 s) by 15 s (far from the
        # limit either way however long the test runs), or far
        src = now + rng.choice([timedelta(seconds=45), timedelta(days=1)]) + timedelta(microseconds=k)
    elif when == 3:
        src = datetime(1970, 1, 1, 0, 0, 1, k % 10**6, tzinfo=UTC)  # a few ns after the epoch
    elif when == 4:
        server = None
    dv = ua.DataValue(random_value(rng), StatusCode=ua.StatusCode(status), SourceTimestamp=src,
                      ServerTimestamp=server)
    if rng.random() < 0.3:
        dv.SourcePicoseconds = rng.randrange(10_000)
    if rng.random() < 0.3:
        dv.ServerPicoseconds = rng.randrange(10_000)
    return dv


def assert_the_mix_was_exercised(rejects: dict, samples: list[Sample]) -> None:
    """The comparison proves something only if every kind of input really came through."""
    for reason in ("nan", "infinite", "text_for_numeric_signal", "no_value", "timestamp_in_future",
                   "timestamp_out_of_range", "unsupported_type:ByteString", "array_not_supported",
                   "text_too_long", "text_has_nul", "server_queue_overflow"):
        assert rejects.get(reason, 0) > 0, (reason, rejects)
    qualities = Counter(s.quality for s in samples)
    assert qualities[Quality.GOOD] and qualities[Quality.UNCERTAIN] and qualities[Quality.BAD], qualities
    assert any(isinstance(s.value, str) for s in samples) and any(isinstance(s.value, float) for s in samples)


# ---------------------------------------------------------------- against a real server
@pytest.mark.services
def test_batch_path_delivers_exactly_what_the_per_item_path_delivers(plant):
    config, endpoint = plant
    variables = plant_variables(config, endpoint)
    server = OpcuaTestServer(variables).start()
    # queue_size: every change of a node between two publishes is kept (nothing discarded)
    ep = endpoint.model_copy(update=dict(url=server.url, publishing_ms=50, sampling_ms=0, queue_size=5000,
                                         reconnect_min_s=0.2, reconnect_max_s=1.0))
    from collectors import opcua_wire

    fallbacks = opcua_wire._fallbacks
    sinks = {True: Sink(), False: Sink()}
    cols = {c: OpcuaCollector(config, ep, sinks[c], NO_SECRETS, columnar=c) for c in (True, False)}
    try:
        for c in cols.values():
            c.start()
        for sink in sinks.values():  # both subscribed: the initial values arrived
            assert wait_for(lambda: len(sink.samples) >= len(variables), timeout=20)
        rng = random.Random(20261124)
        now = datetime.now(UTC).replace(microsecond=0)
        nodes = sorted(variables)
        k = 0
        for _ in range(40):  # 40 server loop steps of 15 changes: several publishes
            changes = []
            for _ in range(15):
                k += 1
                changes.append((rng.choice(nodes), random_change(rng, now, k)))
            server.write_unchecked(changes)
        # a last good value on every node: once it is in, everything before it is
        end = now + timedelta(seconds=1)
        server.write_unchecked([(n, ua.DataValue(ua.Variant(4242.0, ua.VariantType.Double),
                                                 SourceTimestamp=end, ServerTimestamp=end)) for n in nodes])
        end_ns = int(end.timestamp()) * 10**9
        for sink in sinks.values():
            assert wait_for(lambda: sum(1 for s in sink.samples if s.ts == end_ns and s.value in (4242.0, "4242"))
                            == len(nodes), timeout=20)
        batch, item = cols[True].status(), cols[False].status()
        assert sinks[True].by_series() == sinks[False].by_series()
        assert sorted(map(repr, sinks[True].samples)) == sorted(map(repr, sinks[False].samples))
        assert batch.rejects == item.rejects
        assert (batch.messages_in, batch.samples_in) == (item.messages_in, item.samples_in)
        assert batch.messages_in >= 600 + 2 * len(nodes)
        assert_the_mix_was_exercised(batch.rejects, sinks[True].samples)
        assert opcua_wire._fallbacks == fallbacks  # every response was decoded as columns
        # the batch path submits columns, one SampleBatch per publish; the per-item path lists
        assert all(isinstance(b, SampleBatch) for b in sinks[True].submits)
        assert not any(isinstance(b, SampleBatch) for b in sinks[False].submits)
        # clock offsets (future times included) are observed by both
        assert set(batch.clock_offsets_s) == set(item.clock_offsets_s) == {"plc"}
    finally:
        for c in cols.values():
            c.stop()
        server.stop()


# ---------------------------------------------------------------- in process, many cases
class _Session:
    from asyncua.observer import NULL_OBSERVER as observer


def _subscription(config, endpoint, columnar: bool, unknown_handle: int):
    """A collector's handler on a real asyncua Subscription (no connection): client handle h
    monitors the h-th signal's node; handle 1 a node the collector never asked for."""
    from asyncua.common.node import Node
    from asyncua.common.subscription import Subscription, SubscriptionItemData

    sink = Sink()
    col = OpcuaCollector(config, endpoint, sink, NO_SECRETS, columnar=columnar)
    loop = asyncio.get_running_loop()
    handler = _DataChangeHandler(col, {}, loop, asyncio.Event())
    sub = Subscription(_Session(), ua.CreateSubscriptionParameters(), handler)  # type: ignore[arg-type]
    if not (columnar and _deliver_batches(sub, handler)):
        assert not columnar, "this asyncua has no hook for the batch path"
        _dispatch_directly(sub, handler)
    nodes = [(h, ua.NodeId.from_string(sig.node_id), sig) for h, sig in enumerate(col.signals, start=2)]
    nodes.append((1, ua.NodeId("not.ours", 2), None))
    for h, nid, sig in nodes:
        data = SubscriptionItemData()
        data.node, data.client_handle = Node(None, nid), h  # type: ignore[arg-type]
        sub._monitored_items[h] = data
        if sig is not None:
            handler._keys[nid] = sig
    handler.map_handles()
    assert unknown_handle not in sub._monitored_items
    return col, sink, sub


async def _feed_both(config, endpoint, wires: list[bytes]) -> dict:
    """Each path decodes the publish responses as its collector would: asyncua's decoder for
    the per-item path, collectors.opcua_wire's for the batch path (and, for every 5th
    response, asyncua's too: a response decoded before the hook was in place)."""
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary

    from collectors.opcua_wire import decode_publish_response

    out = {}
    for columnar in (False, True):
        col, sink, sub = _subscription(config, endpoint, columnar, unknown_handle=999)
        for k, wire in enumerate(wires):
            if columnar and k % 5:
                r = decode_publish_response(Buffer(wire)).Parameters
            else:
                r = struct_from_binary(ua.PublishResponse, Buffer(wire)).Parameters
            await sub.publish_callback(r)
            await asyncio.sleep(0)  # the handler's flush (call_soon)
            await asyncio.sleep(0)
        st = col.status()
        out[columnar] = (sink, st)
    return out


def test_batch_path_equals_per_item_path_on_random_publishes(plant):
    from asyncua.ua.ua_binary import struct_to_binary

    config, endpoint = plant
    n_signals = 8
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    responses = []
    k = 0
    for seq in range(1, 121):
        items = []
        for _ in range(rng.randrange(1, 40)):
            k += 1
            handle = rng.choice(list(range(2, 2 + n_signals)) * 4 + [1, 999])  # 1: not ours, 999: unknown
            items.append(ua.MonitoredItemNotification(ClientHandle=handle, Value=random_change(rng, now, k)))
        response = ua.PublishResponse()
        result = response.Parameters
        result.SubscriptionId = 1
        result.NotificationMessage.SequenceNumber = seq
        result.NotificationMessage.NotificationData = [ua.DataChangeNotification(MonitoredItems=items)]
        if seq % 7 == 0:  # two notifications in one publish
            result.NotificationMessage.NotificationData.append(ua.DataChangeNotification(MonitoredItems=items[:3]))
        responses.append(struct_to_binary(response))  # the wire format, as the client gets it

    got = asyncio.run(_feed_both(config, endpoint, responses))
    (item_sink, item_st), (batch_sink, batch_st) = got[False], got[True]
    assert batch_sink.samples == item_sink.samples  # same samples, same order
    assert [len(b) for b in batch_sink.submits] == [len(b) for b in item_sink.submits]  # one submit per publish
    assert batch_st.rejects == item_st.rejects
    assert batch_st.rejects.get("unknown_node", 0) > 0
    assert (batch_st.messages_in, batch_st.samples_in) == (item_st.messages_in, item_st.samples_in)
    assert set(batch_st.clock_offsets_s) == set(item_st.clock_offsets_s) == {"plc"}  # both observe the clock
    assert_the_mix_was_exercised(batch_st.rejects, batch_sink.samples)
