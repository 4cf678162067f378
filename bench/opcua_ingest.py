"""Benchmark: OPC UA data changes per second through OpcuaCollector.

    python -m bench.opcua_ingest [--variables 1000] [--seconds 5] [--runs 3] [--publishing-ms 100]

An asyncua server in a separate process owns N Double variables and rewrites all of them as
fast as it can (each write a new value with a fresh source timestamp). OpcuaCollector
subscribes to every one of them into a counting sink. Printed: the machine, the server's write
rate, and the samples/s reaching the sink per run and their median. The field notes measured the
asyncua server as the bottleneck at ~22k data changes/s on this 2-core machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SIGNALS_PER_MACHINE = 20


def node_ids(n: int) -> list[str]:
    """n rounded up to whole machines; the names the collector derives from the node_template."""
    machines = (n + SIGNALS_PER_MACHINE - 1) // SIGNALS_PER_MACHINE
    return [f"ns=2;s=bench.line-1.m-{m:03d}.{signal_id(s)}"
            for m in range(machines) for s in range(SIGNALS_PER_MACHINE)]


def signal_id(s: int) -> str:
    return "state" if s == 0 else f"s{s:02d}"


def write_config(directory: Path, n: int, url: str, publishing_ms: float = 100.0) -> None:
    """plant.yaml + system.yaml for n bench variables on one endpoint (sampling 0, queue 100,
    the given publishing interval: without it the config's default, 1,000 ms, would apply)."""
    machines = (n + SIGNALS_PER_MACHINE - 1) // SIGNALS_PER_MACHINE
    signals = "\n".join(
        f"      - {{id: {signal_id(s)}, name: {{ko: 신호 {s}, en: Signal {s}}}"
        + (", kind: state}" if s == 0 else "}")
        for s in range(SIGNALS_PER_MACHINE))
    machine_lines = "\n".join(
        f"          - {{id: m-{m:03d}, name: {{ko: {m}호기, en: No. {m}}}, class: bench, source: opcua, ideal_cycle_s: 1}}"
        for m in range(machines))
    (directory / "plant.yaml").write_text(f"""\
name: {{ko: 벤치, en: Bench}}
machine_classes:
  bench:
    name: {{ko: 벤치, en: Bench}}
    total_signal: null
    good_signal: null
    reject_signal: null
    state_codes: {{running: [1]}}
    signals:
{signals}
sites:
  - id: bench
    name: {{ko: 벤치, en: Bench}}
    opcua_endpoint: bench
    lines:
      - id: line-1
        name: {{ko: 1라인, en: Line 1}}
        process: press
        machines:
{machine_lines}
""", encoding="utf-8")
    (directory / "system.yaml").write_text(f"""\
opcua:
  endpoints:
    - {{name: bench, url: "{url}", sampling_ms: 0, queue_size: 100, publishing_ms: {publishing_ms:g}}}
""", encoding="utf-8")


# ------------------------------------------------------------------ server process
async def serve(port: int, n: int, rate: float, stamp_write: bool = False) -> None:
    """stamp_write: each value's ServerTimestamp is the time of its write (else the round's
    start, like its SourceTimestamp): the server's own lag, for --stages."""
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:gwanje:bench")
    nids = [ua.NodeId.from_string(s) for s in node_ids(n)]
    for nid in nids:
        await server.nodes.objects.add_variable(nid, ua.QualifiedName(nid.Identifier, idx), 0.0, ua.VariantType.Double)
    await server.start()
    print("READY", flush=True)
    aspace = server.iserver.aspace
    writes, value, t0 = 0, 0.0, time.monotonic()
    t_round = t0
    try:
        while True:
            value += 1.0
            now = datetime.now(timezone.utc)
            for nid in nids:
                await aspace.write_attribute_value(nid, ua.AttributeIds.Value, ua.DataValue(
                    ua.Variant(value, ua.VariantType.Double), SourceTimestamp=now,
                    ServerTimestamp=datetime.now(timezone.utc) if stamp_write else now))
            writes += len(nids)
            if rate > 0:
                # paced: one round of n writes every n/rate seconds
                next_round = t_round + len(nids) / rate
                await asyncio.sleep(max(0.0, next_round - time.monotonic()))
                t_round = max(next_round, time.monotonic() - 1.0)
            else:
                await asyncio.sleep(0)  # let the publish loop and the session run
            if time.monotonic() - t0 >= 1.0:
                print(f"WRITES {writes / (time.monotonic() - t0):.0f}", flush=True)
                writes, t0 = 0, time.monotonic()
    finally:
        await server.stop()


# ------------------------------------------------------------------ client side
class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self.batches = 0
        self._lock = threading.Lock()

    def submit(self, samples) -> None:
        with self._lock:
            self.count += len(samples)
            self.batches += 1


async def _collector_capacity(config, endpoint, seconds: float, columnar: bool = True) -> float:
    """Samples/s the collector side alone sustains on one core: decode a recorded publish
    response of one change per signal, dispatch it to the collector's handler, convert and
    submit. No server and no network (those are measured end to end above). Reaches into
    asyncua's Subscription and the collector's handler: it is a measurement, not an API.
    columnar: the batch path (the response decoded by collectors.opcua_wire, one SampleBatch
    per notification), else the per-item path (asyncua's decoder, one Sample per change)."""
    from asyncua import ua
    from asyncua.common.node import Node
    from asyncua.common.subscription import Subscription, SubscriptionItemData
    from asyncua.common.utils import Buffer
    from asyncua.observer import NULL_OBSERVER
    from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

    from collectors.opcua import OpcuaCollector, _DataChangeHandler, _deliver_batches, _dispatch_directly
    from collectors.opcua_wire import decode_publish_response
    from gwanje.config import Secrets

    class Session:
        observer = NULL_OBSERVER

    sink = CountingSink()
    col = OpcuaCollector(config, endpoint, sink, Secrets.from_env({}))
    handler = _DataChangeHandler(col, {}, asyncio.get_running_loop(), asyncio.Event())
    sub = Subscription(Session(), ua.CreateSubscriptionParameters(), handler)  # type: ignore[arg-type]
    if not (columnar and _deliver_batches(sub, handler)):
        _dispatch_directly(sub, handler)
    now = datetime.now(timezone.utc)
    items = []
    for handle, sig in enumerate(col.signals, start=1):
        nid = ua.NodeId.from_string(sig.node_id)
        data = SubscriptionItemData()
        data.node, data.client_handle = Node(None, nid), handle  # type: ignore[arg-type]
        sub._monitored_items[handle] = data
        handler._keys[nid] = sig
        items.append(ua.MonitoredItemNotification(ClientHandle=handle, Value=ua.DataValue(
            ua.Variant(float(handle), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now)))
    handler.map_handles()
    response = ua.PublishResponse()
    response.Parameters.SubscriptionId = 1
    response.Parameters.NotificationMessage.SequenceNumber = 1
    response.Parameters.NotificationMessage.NotificationData = [ua.DataChangeNotification(MonitoredItems=items)]
    wire = struct_to_binary(response)
    # as the collector decodes: collectors.opcua_wire on the batch path, asyncua's decoder else
    decode = decode_publish_response if columnar else (lambda buf: struct_from_binary(ua.PublishResponse, buf))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        decoded = decode(Buffer(wire))
        await sub.publish_callback(decoded.Parameters)
        await asyncio.sleep(0)  # the handler's flush (call_soon) runs here
    await asyncio.sleep(0)
    return sink.count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variables", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--publishing-ms", type=float, default=100.0)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="server writes per second (default 0: as fast as it can)")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--stamp-write", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.variables, args.rate, args.stamp_write))
        return

    import asyncua

    from collectors.opcua import OpcuaCollector
    from gwanje.config import Secrets, load_config

    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"asyncua: {getattr(asyncua, '__version__', '?')}  load average: {os.getloadavg()[0]:.1f}")
    with socket.socket() as sock:  # a free port for the server process
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"opc.tcp://127.0.0.1:{port}/bench"
    proc = subprocess.Popen([sys.executable, "-m", "bench.opcua_ingest", "--serve", str(port),
                             "--variables", str(args.variables), "--rate", str(args.rate)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    server_rates: list[float] = []

    def read_server() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("WRITES"):
                server_rates.append(float(line.split()[1]))

    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise SystemExit("bench server did not start")
        threading.Thread(target=read_server, daemon=True).start()
        with tempfile.TemporaryDirectory() as d:
            write_config(Path(d), args.variables, url)
            config = load_config(d, env={})
            endpoint = config.endpoint("bench").model_copy(update={"publishing_ms": args.publishing_ms})
            sink = CountingSink()
            col = OpcuaCollector(config, endpoint, sink, Secrets.from_env({}))
            col.start()
            deadline = time.monotonic() + 30
            while sink.count < len(col.signals) and time.monotonic() < deadline:
                time.sleep(0.05)
            print(f"variables: {len(col.signals)}  publishing_ms: {args.publishing_ms:g}  "
                  f"monitored-item queue: {endpoint.queue_size}")
            rates = []
            for run in range(args.runs):
                c0, b0, r0, t0 = sink.count, sink.batches, len(server_rates), time.monotonic()
                time.sleep(args.seconds)
                dt = time.monotonic() - t0
                rate = (sink.count - c0) / dt
                srv = server_rates[r0:] or [float("nan")]
                rates.append(rate)
                print(f"run {run + 1}: {rate:,.0f} samples/s into the sink  "
                      f"({(sink.batches - b0) / dt:.1f} submits/s; server wrote {statistics.mean(srv):,.0f}/s)")
            st = col.status()
            col.stop()
        print(f"median: {statistics.median(rates):,.0f} data changes/s end to end  "
              f"(rejects {st.rejects or 0}, reconnects {st.reconnects})")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    # with the server process gone, so it does not compete for the cores
    with tempfile.TemporaryDirectory() as d:
        write_config(Path(d), args.variables, url)
        config = load_config(d, env={})
        caps: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.runs):  # the two paths interleaved
            for columnar in (False, True):
                caps[columnar].append(asyncio.run(_collector_capacity(
                    config, config.endpoint("bench"), min(args.seconds, 3.0), columnar)))
    for columnar, label in ((False, "per-item path"), (True, "batch path")):
        c = caps[columnar]
        print(f"collector side alone, {label} (decode + handler + normalize + submit, one core): "
              + ", ".join(f"{x:,.0f}" for x in c) + f" -> median {statistics.median(c):,.0f} samples/s")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
