"""Sparkplug B edge nodes for the simulated lines chosen to speak it instead of JSON.

One edge node per line (its own MQTT connection, as a real line gateway has), devices are
the line's machines: spBv1.0/{site}/NBIRTH/{line}, then spBv1.0/{site}/DBIRTH/{line}/{machine}
with every metric's name, alias and datatype, then DDATA. Every DDATA carries all metrics (no
report-by-exception), so a signal that keeps its value is not taken for a silent one, and
names as well as aliases, so a host that subscribed after the birth still understands it.
After every (re)connect the node is born again (new bdSeq), and its NDEATH is the MQTT will,
so a lost gateway shows up at the collector. A rebirth request (NCMD Node Control/Rebirth,
which the collector sends after its own restart or a seq gap) makes the next step publish
NBIRTH and DBIRTHs again, as a real edge node does.

Payloads are encoded by collectors.sparkplug with the protobuf module generated from the
Sparkplug B schema (collectors/sparkplug_b_pb2.py), the same one the collector decodes with.
"""
from __future__ import annotations

import logging
import threading
from typing import Mapping, Optional

import paho.mqtt.client as mqtt

from collectors.sparkplug import (DOUBLE, INT32, REBIRTH, STRING, UINT16, UINT32, UINT64, Metric,
                                  SparkplugError, decode_payload, encode_payload)
from gwanje.config import MachineSpec, MqttConfig, Secrets, SignalDef
from simulator.mqtt_publisher import PublisherStatus, drain, make_client

log = logging.getLogger("gwanje.simulator.sparkplug")

NAMESPACE = "spBv1.0"
_COUNTER = {16: UINT16, 32: UINT32, 64: UINT64}


def datatype(spec: MachineSpec, sig: SignalDef, value: object) -> int:
    if sig.kind == "text" or isinstance(value, str):
        return STRING
    if sig.kind == "counter":
        return _COUNTER[spec.definition.counter_bits]
    if sig.kind == "state":
        return INT32
    return DOUBLE


class SparkplugEdgeNode:
    """The edge node of one line; publish() is called from one (the stepping) thread."""

    def __init__(self, url: str, site: str, line: str, settings: Optional[MqttConfig] = None,
                 secrets: Optional[Secrets] = None, qos: int = 1) -> None:
        self.site, self.line, self.qos = site, line, qos
        self.bd_seq = 0
        self.seq = 0
        self._lock = threading.Lock()
        self._needs_birth = True
        self._born: set[str] = set()
        self._status = PublisherStatus()
        self._ever_connected = False
        self._last: Optional[mqtt.MQTTMessageInfo] = None
        self.client, self.host, self.port = make_client(url, settings, secrets, f"gwanje-sim-sp-{site}-{line}")
        self._set_will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_command

    def _topic(self, kind: str, machine: Optional[str] = None) -> str:
        t = f"{NAMESPACE}/{self.site}/{kind}/{self.line}"
        return f"{t}/{machine}" if machine else t

    def _set_will(self) -> None:
        self.client.will_set(self._topic("NDEATH"), encode_payload([Metric(name="bdSeq", datatype=UINT64,
                                                                             value=self.bd_seq)]), qos=1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            ok = not reason_code.is_failure
            self._status.connected = ok
            if ok:
                self._status.reconnects += self._ever_connected
                self._ever_connected = True
                self._needs_birth = True  # births go out with the next step's values
        if ok:
            client.subscribe(self._topic("NCMD"), qos=0)
        if not ok:
            log.warning("MQTT broker %s:%s refused edge node %s/%s: %s", self.host, self.port,
                        self.site, self.line, reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._status.connected = False
            # the next session is a new birth: its death certificate must carry the new bdSeq
            self.bd_seq = (self.bd_seq + 1) % 256
            self._set_will()

    def _on_command(self, client, userdata, msg) -> None:
        try:
            p = decode_payload(msg.payload)
        except SparkplugError:
            return
        if any(m.name == REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value
               for m in p.metrics):
            with self._lock:
                self._needs_birth = True

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        # a clean disconnect sends no will: say goodbye ourselves
        with self._lock:
            if self._status.connected:
                self._send(self._topic("NDEATH"), [Metric(name="bdSeq", datatype=UINT64, value=self.bd_seq)], None)
            last = self._last
        drain(self.client, last, timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def _send(self, topic: str, metrics: list[Metric], ts_ms: Optional[int], seq: Optional[int] = None) -> None:
        info = self.client.publish(topic, encode_payload(metrics, ts_ms, seq), qos=self.qos)
        self._last = info
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._status.published += 1
        else:
            self._status.dropped += 1

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    def publish(self, spec: MachineSpec, ts_ns: int, values: Mapping[str, object]) -> None:
        ts_ms = ts_ns // 1_000_000
        with self._lock:
            if not self._status.connected:
                return  # Sparkplug data without a birth in this session would be meaningless
            if self._needs_birth:
                self.seq = 0
                self._send(self._topic("NBIRTH"), [Metric(name="bdSeq", datatype=UINT64, value=self.bd_seq),
                                                   Metric(name="Node Control/Rebirth", value=False)],
                           ts_ms, self._next_seq())
                self._born.clear()
                self._needs_birth = False
            birth = spec.machine not in self._born
            metrics = []
            for alias, sig in enumerate(spec.signals, start=1):
                if sig.id not in values:
                    continue
                v = values[sig.id]
                metrics.append(Metric(name=sig.id, alias=alias, datatype=datatype(spec, sig, v),
                                      value=v))  # type: ignore[arg-type]
            self._send(self._topic("DBIRTH" if birth else "DDATA", spec.machine), metrics, ts_ms, self._next_seq())
            self._born.add(spec.machine)

    def status(self) -> PublisherStatus:
        with self._lock:
            return PublisherStatus(**self._status.__dict__)
