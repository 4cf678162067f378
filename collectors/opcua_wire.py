"""A PublishResponse decoded with its data changes as columns (the OPC UA collector's hot path).

asyncua decodes a PublishResponse generically: every MonitoredItemNotification becomes a
dataclass holding a DataValue holding a Variant and datetimes, ~8 µs per data change in pure
Python — most of the collector's own time. `decode_publish_response` returns the same
ua.PublishResponse, except that the MonitoredItems of each DataChangeNotification are an
`ItemColumns`: client handle, value, status code and time (ns) per item, read with one
struct call per item for the common shapes (a scalar number or Boolean; status; source and
server timestamps). An item of any other shape (text, arrays, structures, picoseconds, times
out of asyncua's range) is marked for `ItemColumns.item(i)`, which decodes it with asyncua
itself, so whatever the shape, what the collector sees is what asyncua would have given it.

Exactness, relative to asyncua 2.x (the tests compare both on random responses):
  value     the Variant's value: float for Float/Double (Float widened as struct does), int
            for the integer types, bool for Boolean;
  ts        of a time asyncua turns into a datetime: its µs (asyncua drops the 100 ns digit)
            since 1970 * 1000, None before 1970 (collectors.opcua.datetime_ns of that datetime);
  code      the StatusCode's value, 0 when absent (asyncua's default StatusCode()).
The response outside the notifications (header, acknowledgement results, diagnostics, other
notification types) is decoded by asyncua. Anything unexpected while decoding: the whole
response is decoded again by asyncua (never worse than without this module).

Iterating an ItemColumns yields asyncua's MonitoredItemNotification objects (decoded on the
way), so code that does not know the columns still works.
"""
from __future__ import annotations

import logging
import struct
from typing import Any, Iterator

log = logging.getLogger("gwanje.collectors.opcua")

# DataValue encoding mask (Part 6 5.2.2.17)
_HAS_VALUE, _HAS_STATUS, _HAS_SOURCE, _HAS_SERVER = 0x01, 0x02, 0x04, 0x08
# Variant built-in types read inline: Boolean .. Double, scalar (no array / dimension bits)
_SCALAR = {1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q", 9: "Q", 10: "f", 11: "d"}
_ITEM_HEAD = struct.Struct("<IB")  # ClientHandle, DataValue encoding mask
_INT32 = struct.Struct("<i")
# 100 ns ticks since 1601 -> µs since 1970, as asyncua's datetime would give them
_EPOCH_DIFF_US = 11_644_473_600 * 1_000_000
# DataChangeNotification's ExtensionObject: TypeId FourByte NodeId ns=0;i=811, body encoded
_DCN_TYPE = b"\x01\x00" + struct.pack("<H", 811)
SLOW = object()  # ItemColumns.value: decode this item with asyncua (ItemColumns.item)


class ItemColumns:
    """The MonitoredItems of one DataChangeNotification: handle[i], value[i] (SLOW: see
    item(i)), code[i], ts[i] (ns from the source timestamp, else the server timestamp, else
    None; only meaningful when value[i] is not SLOW)."""

    __slots__ = ("raw", "offsets", "handle", "value", "code", "ts")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.offsets: list[int] = []
        self.handle: list[int] = []
        self.value: list[Any] = []
        self.code: list[int] = []
        self.ts: list[Any] = []

    def item(self, i: int) -> Any:
        """Item i as asyncua decodes it (a ua.MonitoredItemNotification)."""
        from asyncua import ua
        from asyncua.common.utils import Buffer
        from asyncua.ua.ua_binary import struct_from_binary

        return struct_from_binary(ua.MonitoredItemNotification, Buffer(self.raw, self.offsets[i]))

    def __len__(self) -> int:
        return len(self.handle)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self.handle)):
            yield self.item(i)

    def __repr__(self) -> str:
        return f"ItemColumns({len(self.handle)} items)"


class _Unexpected(Exception):
    pass


def _layouts() -> dict[tuple[int, int], tuple[struct.Struct, bool, bool, bool]]:
    """(mask, variant encoding) -> (struct of the rest of the DataValue, has status,
    has source time, has server time), for every shape read inline."""
    out = {}
    for mask in range(0x10):  # no picoseconds (mask 0x10, 0x20): such items are left to asyncua
        if not mask & _HAS_VALUE:
            continue
        for vt, fmt in _SCALAR.items():
            f = "<" + fmt + ("I" if mask & _HAS_STATUS else "") + ("q" if mask & _HAS_SOURCE else "") \
                + ("q" if mask & _HAS_SERVER else "")
            out[(mask, vt)] = (struct.Struct(f), bool(mask & _HAS_STATUS), bool(mask & _HAS_SOURCE),
                               bool(mask & _HAS_SERVER))
    return out


_LAYOUTS = _layouts()


def _ns(ticks: int, max_ticks: int) -> Any:
    """ns since 1970 of a DateTime as asyncua decodes it, or SLOW when asyncua clamps it."""
    if ticks < 0 or ticks >= max_ticks:
        return SLOW
    us = ticks // 10 - _EPOCH_DIFF_US
    return us * 1000 if us >= 0 else None


def decode_items(raw: Any) -> tuple[ItemColumns, int]:
    """A DataChangeNotification body -> (its items as columns, the offset after them)."""
    from asyncua.ua.uatypes import MAX_OPC_FILETIME

    cols = ItemColumns(raw)
    (n,) = _INT32.unpack_from(raw, 0)
    pos = 4
    layouts = _LAYOUTS
    offsets, handles, values, codes, tss = cols.offsets, cols.handle, cols.value, cols.code, cols.ts
    for _ in range(max(n, 0)):
        offsets.append(pos)
        handle, mask = _ITEM_HEAD.unpack_from(raw, pos)
        layout = layouts.get((mask, raw[pos + 5])) if mask & _HAS_VALUE else None
        if layout is None:
            pos = _skip_item(raw, pos)
            handles.append(handle)
            values.append(SLOW)
            codes.append(0)
            tss.append(None)
            continue
        st, has_status, has_source, has_server = layout
        fields = st.unpack_from(raw, pos + 6)
        pos += 6 + st.size
        j = 1
        code = 0
        if has_status:
            code = fields[1]
            j = 2
        value = fields[0]
        ts = None
        if has_source:
            ts = _ns(fields[j], MAX_OPC_FILETIME)
            j += 1
        if not ts:  # the source time, else the server time, else None (as `a or b`)
            ts = _ns(fields[j], MAX_OPC_FILETIME) if has_server else None
        if ts is SLOW:
            value = SLOW
        handles.append(handle)
        values.append(value)
        codes.append(code)
        tss.append(ts)
    return cols, pos


def _skip_item(raw: Any, pos: int) -> int:
    """The offset after the MonitoredItemNotification at pos, decoded by asyncua."""
    from asyncua import ua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary

    buf = Buffer(raw, pos)
    struct_from_binary(ua.MonitoredItemNotification, buf)
    return len(raw) - len(buf)


def decode_publish_response(data: Any) -> Any:
    """asyncua's struct_from_binary(ua.PublishResponse, data), with ItemColumns as the
    MonitoredItems of every DataChangeNotification (module docstring)."""
    from asyncua import ua
    from asyncua.ua.ua_binary import struct_from_binary

    global _fallbacks
    backup = data.copy()
    try:
        return _decode(data)
    except Exception as e:
        _fallbacks += 1
        if _fallbacks == 1:  # said once per process: the data still arrives, only slower
            log.warning("a publish response was not decodable as columns (%r); asyncua decodes it "
                        "(and any other such response) instead", e)
        return struct_from_binary(ua.PublishResponse, backup)


_fallbacks = 0  # responses handed back to asyncua's decoder


def _decode(data: Any) -> Any:
    from asyncua import ua
    from asyncua.ua.ua_binary import extensionobject_from_binary, from_binary, nodeid_from_binary, struct_from_binary

    response = ua.PublishResponse()
    response.TypeId = nodeid_from_binary(data)
    response.ResponseHeader = struct_from_binary(ua.ResponseHeader, data)
    result = ua.PublishResult()
    result.SubscriptionId = from_binary(ua.UInt32, data)
    result.AvailableSequenceNumbers = from_binary(list[ua.UInt32], data)
    result.MoreNotifications = from_binary(ua.Boolean, data)
    message = ua.NotificationMessage()
    message.SequenceNumber = from_binary(ua.UInt32, data)
    message.PublishTime = from_binary(ua.DateTime, data)
    (n,) = _INT32.unpack(data.read(4))
    notifications = []
    for _ in range(max(n, 0)):
        head = data.copy(9)
        if len(head) == 9 and head.read(4) == _DCN_TYPE and head.read(1) == b"\x01":
            data.skip(5)
            (length,) = _INT32.unpack(data.read(4))
            if length < 8:
                raise _Unexpected("DataChangeNotification body too short")
            body = data.read(length)
            items, end = decode_items(body)
            notification = ua.DataChangeNotification()
            notification.MonitoredItems = items  # type: ignore[assignment]
            from asyncua.common.utils import Buffer

            rest = Buffer(body, end)
            notification.DiagnosticInfos = from_binary(list[ua.DiagnosticInfo], rest)
            if len(rest):
                raise _Unexpected("bytes left in a DataChangeNotification")
            notifications.append(notification)
        else:
            notifications.append(extensionobject_from_binary(data))
    message.NotificationData = notifications
    result.NotificationMessage = message
    result.Results = from_binary(list[ua.StatusCode], data)
    result.DiagnosticInfos = from_binary(list[ua.DiagnosticInfo], data)
    response.Parameters = result
    return response
