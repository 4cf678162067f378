"""collectors.opcua_wire decodes a PublishResponse exactly as asyncua does, with the data
changes as columns: random responses (every Variant type the collector meets, picoseconds,
missing and clamped timestamps, several notification types, diagnostics) encoded by asyncua,
decoded by both, compared field by field; broken bytes fail the way asyncua fails."""
from __future__ import annotations

import random
import struct
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from asyncua.ua.uatypes import MAX_OPC_FILETIME

from collectors.opcua import datetime_ns
from collectors import opcua_wire
from collectors.opcua_wire import SLOW, ItemColumns, decode_publish_response

UTC = timezone.utc


def random_variant(rng: random.Random) -> ua.Variant:
    t = ua.VariantType
    return rng.choice([
        lambda: ua.Variant(rng.uniform(-1e9, 1e9), t.Double),
        lambda: ua.Variant(float("inf"), t.Double),  # (NaN != NaN would spoil the comparison)
        lambda: ua.Variant(rng.uniform(-1e3, 1e3), t.Float),
        lambda: ua.Variant(rng.choice([True, False]), t.Boolean),
        lambda: ua.Variant(rng.randint(-128, 127), t.SByte),
        lambda: ua.Variant(rng.randint(0, 255), t.Byte),
        lambda: ua.Variant(rng.randint(-2**15, 2**15 - 1), t.Int16),
        lambda: ua.Variant(rng.randint(0, 2**16 - 1), t.UInt16),
        lambda: ua.Variant(rng.randint(-2**31, 2**31 - 1), t.Int32),
        lambda: ua.Variant(rng.randint(0, 2**32 - 1), t.UInt32),
        lambda: ua.Variant(rng.randint(-2**63, 2**63 - 1), t.Int64),
        lambda: ua.Variant(rng.randint(0, 2**64 - 1), t.UInt64),
        lambda: ua.Variant(rng.choice(["", "LOT-7", "한글", "a\x00b"]), t.String),
        lambda: ua.Variant(None, t.String),
        lambda: ua.Variant(b"\x00\x01", t.ByteString),
        lambda: ua.Variant(datetime(2026, 11, 24, tzinfo=UTC), t.DateTime),
        lambda: ua.Variant(uuid.UUID(int=rng.getrandbits(128)), t.Guid),
        lambda: ua.Variant(ua.LocalizedText("Running", "en"), t.LocalizedText),
        lambda: ua.Variant([1.0, 2.5], t.Double),
        lambda: ua.Variant([[1, 2], [3, 4]], t.Int32),
        lambda: ua.Variant(ua.StatusCode(0x808B0000), t.StatusCode),
        lambda: ua.Variant(),
    ])()


def random_datavalue(rng: random.Random, now: datetime) -> ua.DataValue:
    dv = ua.DataValue(random_variant(rng) if rng.random() < 0.95 else None)
    if rng.random() < 0.2:
        dv.Value = None
    if rng.random() < 0.7:
        dv.StatusCode = ua.StatusCode(rng.choice([0, 0x40900000, 0x808B0000, 0x00000480]))
    else:
        dv.StatusCode = None
    when = [None, now + timedelta(microseconds=rng.randrange(10**7)),
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC),
            datetime(1601, 1, 1, tzinfo=UTC)]
    dv.SourceTimestamp = rng.choice(when)
    dv.ServerTimestamp = rng.choice(when)
    if rng.random() < 0.15:
        dv.SourcePicoseconds = rng.randrange(10_000)
    if rng.random() < 0.15:
        dv.ServerPicoseconds = rng.randrange(10_000)
    return dv


def random_response(rng: random.Random, now: datetime) -> ua.PublishResponse:
    r = ua.PublishResponse()
    r.ResponseHeader.Timestamp = now
    r.ResponseHeader.RequestHandle = rng.randrange(1000)
    if rng.random() < 0.2:
        r.ResponseHeader.StringTable = ["x", "y"]
    p = r.Parameters
    p.SubscriptionId = rng.randrange(1, 10)
    p.AvailableSequenceNumbers = [rng.randrange(100) for _ in range(rng.randrange(3))]
    p.MoreNotifications = rng.random() < 0.5
    p.Results = [ua.StatusCode(0)] * rng.randrange(3)
    if rng.random() < 0.2:
        p.DiagnosticInfos = [ua.DiagnosticInfo(SymbolicId=3)]
    m = p.NotificationMessage
    m.SequenceNumber = rng.randrange(1, 10**6)
    m.PublishTime = now
    data = []
    for _ in range(rng.randrange(4)):
        kind = rng.random()
        if kind < 0.7:
            items = [ua.MonitoredItemNotification(ClientHandle=rng.randrange(2**32), Value=random_datavalue(rng, now))
                     for _ in range(rng.randrange(30))]
            n = ua.DataChangeNotification(MonitoredItems=items)
            if rng.random() < 0.1:
                n.DiagnosticInfos = [ua.DiagnosticInfo(AdditionalInfo="why")]
            data.append(n)
        elif kind < 0.85:
            data.append(ua.StatusChangeNotification(Status=ua.StatusCode(0x800D0000)))
        else:
            data.append(ua.EventNotificationList(Events=[ua.EventFieldList(ClientHandle=7, EventFields=[
                ua.Variant(1.0, ua.VariantType.Double)])]))
    m.NotificationData = data
    return r


def expected_columns(mi: ua.MonitoredItemNotification) -> tuple:
    """What the columns must hold for an item, from asyncua's own decoding."""
    dv = mi.Value
    v = dv.Value.Value if dv.Value is not None else None
    st = dv.StatusCode
    ts = datetime_ns(dv.SourceTimestamp, dv.SourcePicoseconds) or datetime_ns(dv.ServerTimestamp, dv.ServerPicoseconds)
    return mi.ClientHandle, v, st.value if st is not None else 0, ts


def assert_same(wire: bytes) -> int:
    """decode_publish_response == asyncua on these bytes; returns the items read inline."""
    theirs = struct_from_binary(ua.PublishResponse, Buffer(wire))
    fallbacks = opcua_wire._fallbacks
    ours = decode_publish_response(Buffer(wire))
    assert opcua_wire._fallbacks == fallbacks, "decoded by asyncua, not by opcua_wire"
    inline = 0
    for a, b in zip(ours.Parameters.NotificationMessage.NotificationData,
                    theirs.Parameters.NotificationMessage.NotificationData):
        if isinstance(b, ua.DataChangeNotification):
            cols = a.MonitoredItems
            assert isinstance(cols, ItemColumns)
            assert list(cols) == b.MonitoredItems  # item by item, as asyncua decodes them
            for i, mi in enumerate(b.MonitoredItems):
                handle, v, code, ts = expected_columns(mi)
                assert cols.handle[i] == handle
                if cols.value[i] is not SLOW:
                    inline += 1
                    assert type(cols.value[i]) is type(v) and (cols.value[i] == v or v != v), (cols.value[i], v)
                    assert (cols.code[i], cols.ts[i]) == (code, ts), mi
            a.MonitoredItems = list(cols)  # for the comparison of the whole response below
    assert ours == theirs
    return inline


def test_random_responses_decode_as_asyncua_decodes_them():
    rng = random.Random(5)
    now = datetime.now(UTC)
    inline = 0
    for _ in range(300):
        inline += assert_same(struct_to_binary(random_response(rng, now)))
    assert inline > 500  # the common shapes were read inline, not all handed back to asyncua


def _item(handle: int, source_ticks: int, server_ticks: int, value: float = 1.5) -> bytes:
    # ClientHandle, DataValue mask (value, source and server time), Variant Double, times
    return struct.pack("<IBBdqq", handle, 0x0D, 11, value, source_ticks, server_ticks)


def _response_with_items(items: list[bytes]) -> bytes:
    r = ua.PublishResponse()
    r.Parameters.NotificationMessage.NotificationData = [ua.DataChangeNotification(MonitoredItems=[])]
    wire = struct_to_binary(r)
    empty = struct_to_binary(ua.DataChangeNotification(MonitoredItems=[]))
    body = struct.pack("<i", len(items)) + b"".join(items) + empty[4:]
    head = b"\x01\x00" + struct.pack("<H", 811) + b"\x01" + struct.pack("<i", len(empty))
    at = wire.index(head + empty)
    return wire[:at] + b"\x01\x00" + struct.pack("<H", 811) + b"\x01" + struct.pack("<i", len(body)) + body \
        + wire[at + len(head) + len(empty):]


def test_times_asyncua_clamps_or_drops_are_handled_like_asyncua():
    epoch_1970 = 116_444_736_000_000_000
    ticks = [-5, 0, 1, epoch_1970 - 10, epoch_1970, epoch_1970 + 7, epoch_1970 + 12_345_678_901_234_567,
             MAX_OPC_FILETIME - 1, MAX_OPC_FILETIME, MAX_OPC_FILETIME + 10**12, 2**63 - 1]
    items = [_item(h, s, v) for h, (s, v) in enumerate((s, v) for s in ticks for v in ticks)]
    assert assert_same(_response_with_items(items)) > 0


@pytest.mark.parametrize("cut", [1, 7, 40, 200])
def test_broken_bytes_fail_as_asyncua_fails(cut):
    rng = random.Random(cut)
    now = datetime.now(UTC)
    r = random_response(rng, now)
    r.Parameters.NotificationMessage.NotificationData = [ua.DataChangeNotification(MonitoredItems=[
        ua.MonitoredItemNotification(ClientHandle=1, Value=random_datavalue(rng, now)) for _ in range(20)])]
    wire = struct_to_binary(r)[:-cut]
    with pytest.raises(Exception) as theirs:
        struct_from_binary(ua.PublishResponse, Buffer(wire))
    with pytest.raises(type(theirs.value)):
        decode_publish_response(Buffer(wire))
