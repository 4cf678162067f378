"""Publishes the simulated MQTT machines to a broker, the way a site's edge gateway would.

One JSON message per machine and step on `gwanje/{site}/{line}/{machine}`, in the "one time,
many signals" format of docs/payloads.md: `{"ts": <epoch ms>, "values": {...}}`, QoS 1.
paho-mqtt 2.x (callback API version 2) reconnects by itself with back-off; while the broker
is away paho queues what we publish, bounded so an outage cannot eat the memory (what does
not fit is counted as dropped).
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from gwanje.config import MachineSpec, MqttConfig, Secrets

log = logging.getLogger("gwanje.simulator.mqtt")

# messages paho keeps while disconnected: a few minutes of the demo plant at 1 s
MAX_QUEUED = 20_000


def topic_for(spec: MachineSpec) -> str:
    return f"gwanje/{spec.site}/{spec.line}/{spec.machine}"


def payload_for(ts_ns: int, values: Mapping[str, object]) -> bytes:
    """The JSON message of one machine at one time (epoch milliseconds)."""
    return json.dumps({"ts": ts_ns // 1_000_000, "values": dict(values)},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:1883] or mqtts://host[:8883] -> (host, port, tls)."""
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT url must be mqtt://host:port or mqtts://host:port, got {url!r}")
    tls = u.scheme in ("mqtts", "ssl")
    if not u.hostname:
        raise ValueError(f"MQTT url has no host: {url!r}")
    return u.hostname, u.port or (8883 if tls else 1883), tls


@dataclass
class PublisherStatus:
    connected: bool = False
    published: int = 0
    dropped: int = 0
    reconnects: int = 0


def make_client(url: str, settings: Optional[MqttConfig], secrets: Optional[Secrets],
                client_id: str, strict: bool = False) -> tuple[mqtt.Client, str, int]:
    """A paho 2.x client set up from the url and system.yaml mqtt settings (TLS, back-off) and
    the credentials of the environment; not yet connected."""
    host, port, tls = parse_mqtt_url(url)
    settings = settings or MqttConfig()
    secrets = secrets or Secrets.from_env()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                    clean_session=True)
    c.max_queued_messages_set(MAX_QUEUED)
    c.reconnect_delay_set(max(1, int(settings.reconnect_min_s)), max(1, int(settings.reconnect_max_s)))
    if secrets.mqtt_username:
        c.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    if tls:
        # the collector's TLS rules (ca_file "system", no insecure outside demo mode)
        from collectors.mqtt import configure_tls

        configure_tls(c, settings.tls, strict=strict)
    return c, host, port


def drain(client: mqtt.Client, last: Optional[mqtt.MQTTMessageInfo], timeout: float) -> None:
    """Wait (bounded) until the last queued message has left: paho's loop_stop right after
    disconnect can cut a packet in half, the broker then drops the connection (and fires the
    will) and what was still queued is lost."""
    if last is None or not client.is_connected():
        return
    try:
        last.wait_for_publish(timeout)
    except (RuntimeError, ValueError):
        pass  # the message was refused or the connection went: nothing left to wait for


class MqttPublisher:
    def __init__(self, url: str, settings: Optional[MqttConfig] = None, secrets: Optional[Secrets] = None,
                 client_id: str = "gwanje-simulator", qos: int = 1) -> None:
        c, self.host, self.port = make_client(url, settings, secrets, client_id)
        self.qos = qos
        self.keepalive = (settings or MqttConfig()).keepalive_s
        self._status = PublisherStatus()
        self._lock = threading.Lock()
        self._ever_connected = False
        self._last: Optional[mqtt.MQTTMessageInfo] = None
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            ok = not reason_code.is_failure
            self._status.connected = ok
            if ok and self._ever_connected:
                self._status.reconnects += 1
            self._ever_connected = self._ever_connected or ok
        if ok:
            log.info("simulator connected to MQTT broker %s:%s", self.host, self.port)
        else:
            log.warning("MQTT broker %s:%s refused the simulator: %s", self.host, self.port, reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._status.connected = False
        if reason_code.is_failure:
            log.warning("simulator lost the MQTT broker %s:%s: %s (reconnecting)", self.host, self.port, reason_code)

    def start(self) -> None:
        """Connect in the background (paho's network thread); returns at once."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        drain(self.client, self._last, timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, spec: MachineSpec, ts_ns: int, values: Mapping[str, object]) -> bool:
        """Queue one machine's message; False (and counted) when paho's queue is full."""
        info = self.client.publish(topic_for(spec), payload_for(ts_ns, values), qos=self.qos)
        ok = info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
        with self._lock:
            self._last = info
            if ok:
                self._status.published += 1
            else:
                self._status.dropped += 1
        return ok

    def status(self) -> PublisherStatus:
        with self._lock:
            return PublisherStatus(**self._status.__dict__)
