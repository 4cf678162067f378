"""Where the OPC UA latency goes: time stamps along the path of every 10th data change, each
as "time since the change's source timestamp" (bench.ingest --stages, collector process).

  srv     the value's ServerTimestamp (the bench server stamps it at its write with
          --stamp-write: its own lag behind the round's source time)
  publish NotificationMessage.PublishTime: the server built the notification message (it waits
          for the publishing interval and for a PublishRequest of ours to answer)
  recv    the collector's asyncua session has the response's bytes
  decoded asyncua decoded the PublishResponse
  submit  the collector handed the samples to Pipeline.submit
  taken   the pipeline's writer took the batch and calls its listeners (the flush wait)
  write   the listeners are done, the store's write_samples starts
  stored  write_samples returned (bench.ingest's latency)

Reaches into asyncua (UaSession._send_request and Subscription.publish_callback are wrapped
for the process) and into the pipeline's listeners and store: a measurement, not an API; on
the batch path the probe itself decodes every 10th change once more (for its times). Per stage: median and p99 over the samples of
the measurement window.
"""
from __future__ import annotations

import threading
import time
from typing import Any

STRIDE = 10
STAGES = ("srv", "publish", "recv", "decoded", "submit", "taken", "write", "stored")


def _ts_of(samples: Any) -> list[int]:
    ts = getattr(samples, "ts", None)  # a gwanje.batch.SampleBatch: its column
    if isinstance(ts, list):
        return ts[::STRIDE]
    return [s.ts for s in list(samples)[::STRIDE]]


class Stages:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deltas: dict[str, list[int]] = {k: [] for k in STAGES}
        self.publishes = 0
        self.changes = 0

    def reset(self) -> None:
        with self._lock:
            self.deltas = {k: [] for k in STAGES}
            self.publishes = self.changes = 0

    def add(self, stage: str, t_ns: int, ts: list[int]) -> None:
        with self._lock:
            self.deltas[stage].extend(t_ns - t for t in ts)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"publishes": self.publishes, "changes": self.changes}
            for k, v in self.deltas.items():
                v = sorted(v)
                if v:
                    out[k] = (v[len(v) // 2] / 1e9, v[min(len(v) - 1, int(len(v) * 0.99))] / 1e9)
            return out

    # ------------------------------------------------------------ probes
    def install(self, pipeline: Any, store: Any) -> None:
        """Wrap asyncua's request sending (the publish response's arrival) and subscription
        callback (decoded), the pipeline's submit, a first listener and the store."""
        from asyncua import ua
        from asyncua.client import ua_session
        from asyncua.common.subscription import Subscription

        from collectors.opcua import datetime_ns
        from collectors.opcua_wire import ItemColumns

        stages = self
        received = [0]  # one publish request outstanding: the response the next callback gets
        send = ua_session.UaSession._send_request

        async def timed_send(session: Any, request: Any, *args: Any, **kw: Any) -> Any:
            data = await send(session, request, *args, **kw)
            if isinstance(request, ua.PublishRequest):
                received[0] = time.time_ns()
            return data

        ua_session.UaSession._send_request = timed_send
        callback = Subscription.publish_callback

        async def timed_callback(sub: Any, result: Any) -> None:
            t_dec = time.time_ns()
            nm = result.NotificationMessage
            src, srv, n = [], [], 0
            for notif in nm.NotificationData or []:
                if isinstance(notif, ua.DataChangeNotification):
                    items = notif.MonitoredItems
                    n += len(items)
                    # columns (the batch path): every 10th item decoded by asyncua, for its times
                    picked = ([items.item(i) for i in range(0, len(items), STRIDE)]
                              if isinstance(items, ItemColumns) else items[::STRIDE])
                    for it in picked:
                        s = datetime_ns(it.Value.SourceTimestamp)
                        if s:
                            src.append(s)
                            srv.append(datetime_ns(it.Value.ServerTimestamp) or s)
            if n:
                with stages._lock:
                    stages.publishes += 1
                    stages.changes += n
                    stages.deltas["srv"].extend(b - a for a, b in zip(src, srv))
                stages.add("publish", datetime_ns(nm.PublishTime) or t_dec, src)
                stages.add("recv", received[0] or t_dec, src)
                stages.add("decoded", t_dec, src)
            await callback(sub, result)

        Subscription.publish_callback = timed_callback

        submit = pipeline.submit

        def timed_submit(samples: Any, on_done: Any = None) -> None:
            stages.add("submit", time.time_ns(), _ts_of(samples))
            submit(samples, on_done)

        pipeline.submit = timed_submit

        def taken(samples: Any) -> None:
            stages.add("taken", time.time_ns(), _ts_of(samples))

        pipeline.listeners.insert(0, taken)

        write = store.write_samples

        def timed_write(samples: Any) -> None:
            t0 = time.time_ns()
            write(samples)
            t1 = time.time_ns()
            ts = _ts_of(samples)
            stages.add("write", t0, ts)
            stages.add("stored", t1, ts)

        store.write_samples = timed_write


def show(s: dict[str, Any]) -> str:
    parts = [f"{k} {s[k][0] * 1000:,.0f}/{s[k][1] * 1000:,.0f}" for k in STAGES if k in s]
    per = s["changes"] / s["publishes"] if s.get("publishes") else 0
    return ("stages since source time, ms median/p99: " + ", ".join(parts)
            + f"; {per:,.0f} changes per publish")
