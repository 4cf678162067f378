"""The MQTT collector: one paho-mqtt 2.x client that subscribes to the plant's topics and hands
decoded Samples (collectors.payloads) to a SampleSink.

Delivery: QoS 1 with a persistent session (clean_session false, stable client id), so the
broker keeps our messages while we are away. A message is acknowledged (PUBACK) only after its
samples reached the sink — and, when the sink's submit() takes `on_done` (gwanje.pipeline),
only once the sink is done with them (stored or spooled), so a crash loses nothing the broker
would not redeliver (at-least-once; stores are idempotent). Brokers stop sending once a
client holds their in-flight limit of unacknowledged messages (mosquitto max_inflight_messages,
default 20; EMQX max_inflight): with ack after store, deployments should raise it (20000, docs/deploy.md)
so a writer flush interval does not pace ingest. Subscriptions are made in on_connect, which runs on every reconnect; paho's loop
thread reconnects by itself with exponential back-off (mqtt.reconnect_min_s .. reconnect_max_s).

on_message runs on paho's network thread: it only decodes and calls sink.submit (which never
blocks) — no I/O, no waiting — so the loop keeps up with the broker (field notes: a lagging
subscriber makes mosquitto drop messages). Credentials come from Secrets and are never logged.

Sparkplug B host duties (collectors.sparkplug decides, this module sends): the rebirth
requests the decoder queues go out as NCMD right after the message that caused them (QoS 0,
as the specification says for commands; paho's publish only queues); with
mqtt.sparkplug.host_id set, spBv1.0/STATE/<host_id> is our will ({"online": false}, retained)
and is published {"online": true} (retained, the will's timestamp, as Sparkplug 3.0 wants) once
the broker granted our subscriptions, so edge nodes that wait for their primary host see us.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import threading
import time
from typing import Any, Optional
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from collectors.base import SampleSink, SourceStatus
from collectors.payloads import MessageDecoder
from collectors.sparkplug import NAMESPACE, rebirth_request
from gwanje.config import Config, Secrets
from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.collectors.mqtt")

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:port] or mqtts://host[:port] -> (host, port, tls)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        raise ValueError(f"MQTT url {url!r}: bad port") from None
    if u.scheme not in _DEFAULT_PORTS or not u.hostname:
        raise ValueError(f"MQTT url {url!r}: expected mqtt://host:port or mqtts://host:port")
    if u.username or u.password:
        # credentials in a URL end up in logs and process lists: environment only
        raise ValueError("MQTT url must not carry credentials; use GWANJE_MQTT_USERNAME/PASSWORD")
    return u.hostname, port or _DEFAULT_PORTS[u.scheme], u.scheme == "mqtts"


def make_client(settings: Any, secrets: Secrets, client_id: str, *, tls: bool, clean_session: bool = True,
                manual_ack: bool = False) -> paho.Client:
    """A paho client with the plant broker's credentials (environment) and TLS settings
    (system.yaml mqtt.tls): the one place every MQTT connection of Gwanje — collector, control
    bus, discovery — is configured, so TLS and authentication mean the same everywhere."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=clean_session, protocol=paho.MQTTv311, manual_ack=manual_ack)
    if secrets.mqtt_username:
        c.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    if tls:
        t = settings.tls
        c.tls_set(ca_certs=t.ca_file if t else None, certfile=t.cert_file if t else None,
                  keyfile=t.key_file if t else None)
        if t and t.insecure:
            c.tls_insecure_set(True)
    return c


def _reports_done(sink: SampleSink) -> bool:
    try:
        return "on_done" in inspect.signature(sink.submit).parameters
    except (TypeError, ValueError, AttributeError):
        return False


class MqttCollector:
    """collectors.base.Collector for an MQTT broker (JSON unified namespace + Sparkplug B)."""

    kind = "mqtt"

    def __init__(self, config: Config, sink: SampleSink, secrets: Secrets, url: Optional[str] = None,
                 client_id: Optional[str] = None, decoder: Optional[MessageDecoder] = None) -> None:
        self.config = config
        self.settings = config.system.mqtt
        self.sink = sink
        # ack after store: with QoS 1, a persistent session and a sink that reports when it is
        # done with the samples (gwanje.pipeline.Pipeline's on_done), a message is acknowledged
        # only once its samples are in the store or the disk spool, so a crash (kill -9) of this
        # process between receiving and storing loses nothing: the broker redelivers.
        self.ack_after_store = (self.settings.qos == 1 and not self.settings.clean_start
                                and _reports_done(sink))
        url = url or self.settings.url
        if not url:
            raise ValueError("no MQTT broker url (system.yaml mqtt.url or GWANJE_MQTT_URL)")
        self.host, self.port, self.tls = parse_broker_url(url)
        self.name = f"mqtt {self.host}:{self.port}"
        self.client_id = client_id or self.settings.client_id
        self.decoder = decoder or MessageDecoder(config)
        self.rejects = Rejects(self.name)
        self.messages_in = 0
        self.samples_in = 0
        self.connects = 0
        self.last_data_ns: Optional[int] = None
        self.connected = False
        self.subscribed = False  # the broker granted at least one subscription on this connection
        self._session = ""
        self.detail = "not started"
        self._refused = ""
        self._last_bug_log = -1e9
        self._lock = threading.Lock()
        sp = self.settings.sparkplug
        self.state_topic = f"{NAMESPACE}/STATE/{sp.host_id}" if sp.enabled and sp.host_id else None
        self._state_ts = 0  # ms: the timestamp of the STATE will of the coming connection
        self.rebirths_requested = 0  # NCMD rebirth requests published
        self._client = self._make_client(secrets)
        self._started = False

    # ------------------------------------------------------------------ set-up
    def _make_client(self, secrets: Secrets) -> paho.Client:
        s = self.settings
        c = make_client(s, secrets, self.client_id, tls=self.tls, clean_session=s.clean_start,
                        manual_ack=self.ack_after_store)
        c.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        # paho's own outgoing queue is unused (we only subscribe); inflight bounds redelivery bursts
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        if self.state_topic:
            self._set_state_will(c)
        # a bug in a callback must be logged, never kill the network thread
        c.suppress_exceptions = True
        return c

    # ------------------------------------------------------------------ Collector
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.detail = f"connecting to {self.host}:{self.port}"
        # connect_async + loop_start: returns at once; the loop thread retries the first
        # connection too, so a broker that is down at start-up is not an error
        self._client.connect_async(self.host, self.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._started:
            return
        self._started = False
        if self.state_topic and self.connected:
            # a clean disconnect sends no will: say offline ourselves, before going
            info = self._client.publish(self.state_topic, self._state_payload(False), qos=1, retain=True)
            try:
                info.wait_for_publish(min(timeout, 2.0))
            except (RuntimeError, ValueError):  # not sent (the connection went meanwhile): the will says it
                pass
        self._client.disconnect()
        # loop_stop joins without a timeout; do it in a helper thread so stop() keeps its bound
        t = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        t.start()
        t.join(timeout)
        self.connected = False
        self.detail = "stopped"

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(
                name=self.name, kind=self.kind, connected=self.connected,
                subscribed=self.connected and self.subscribed, samples_in=self.samples_in,
                messages_in=self.messages_in, reconnects=max(0, self.connects - 1),
                last_data_ns=self.last_data_ns, rejects=self.rejects.counts(), detail=self.detail,
                clock_offsets_s=self.decoder.clock.offsets(), rebirths_requested=self.rebirths_requested)

    # ------------------------------------------------------------------ Sparkplug host
    def _state_payload(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self._state_ts}).encode()

    def _set_state_will(self, client: paho.Client) -> None:
        self._state_ts = time.time_ns() // 1_000_000
        client.will_set(self.state_topic, self._state_payload(False), qos=1, retain=True)

    def _send_rebirths(self, client: paho.Client) -> None:
        sp = self.decoder.sparkplug
        if sp is None:
            return
        for group, edge in sp.take_rebirths():
            client.publish(f"{NAMESPACE}/{group}/NCMD/{edge}", rebirth_request(time.time_ns() // 1_000_000), qos=0)
            with self._lock:
                self.rebirths_requested += 1
            log.info("%s: asked Sparkplug edge node %s/%s for a rebirth", self.name, group, edge)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            # kept until a connection succeeds, so the status says why we keep reconnecting
            self._refused = f"broker refused the connection: {reason_code}"
            self.detail = self._refused
            log.warning("%s: %s", self.name, self.detail)
            return
        self._refused = ""
        with self._lock:
            self.connects += 1
            self.connected = True
        self.subscribed = False
        self._session = f"connected (session present: {bool(flags.session_present)})"
        self.detail = self._session
        qos = self.settings.qos
        client.subscribe([(topic, qos) for topic in self.settings.subscriptions])
        log.info("%s: %s", self.name, self.detail)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Any) -> None:
        # a broker's ACL may refuse a filter while accepting the connection: without this the
        # status would say "connected" and no data would ever come
        refused = [t for t, rc in zip(self.settings.subscriptions, reason_codes) if rc.is_failure]
        if refused:
            self.detail = f"{self._session}; the broker refused the subscription to {refused}"
            log.error("%s: %s", self.name, self.detail)
        else:
            self.detail = f"{self._session}; subscribed to {len(reason_codes)} topic filter(s)"
        self.subscribed = len(refused) < len(reason_codes)
        if self.state_topic and self.subscribed:
            client.publish(self.state_topic, self._state_payload(True), qos=1, retain=True)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected = False
        self.subscribed = False
        if self.state_topic:
            self._set_state_will(client)  # the next connection's will and birth share a new timestamp
        if self._started:
            self.detail = self._refused or f"disconnected ({reason_code})"
            self.detail += "; reconnecting"
            log.warning("%s: %s", self.name, self.detail)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers should refuse these; never trust that
            self.messages_in += 1
            self.rejects.reject("bad_topic")
            self._ack(client, msg)
            return
        try:
            samples, reasons = self.decoder.decode(topic, msg.payload)
        except Exception:  # a decoder bug: count it, keep the loop alive, keep the next message
            self._log_bug("decoding a message on %r failed", topic[:200])
            samples, reasons = [], ["decoder_error"]
        self._send_rebirths(client)
        for r in reasons:
            self.rejects.reject(r, topic)
        with self._lock:
            self.messages_in += 1
            if samples:
                self.samples_in += len(samples)
                self.last_data_ns = time.time_ns()
        if samples:
            try:
                if self.ack_after_store:
                    self.sink.submit(samples, on_done=functools.partial(self._ack, client, msg))
                else:
                    self.sink.submit(samples)
            except Exception:  # the sink's contract is "never raises": a bug, so count it loudly
                self._log_bug("the sample sink failed; %d samples lost", len(samples))
                self.rejects.reject("sink_error", topic)
                self._ack(client, msg)
        else:
            self._ack(client, msg)

    def _log_bug(self, msg: str, *args: Any) -> None:
        """A traceback for a bug, at most one per interval: a broken sink or decoder fails on
        every message, and must not flood the log (the count is in the rejects)."""
        now = time.monotonic()
        if now - self._last_bug_log >= self.rejects.log_interval_s:
            self._last_bug_log = now
            log.exception("%s: " + msg, self.name, *args)

    def _ack(self, client: paho.Client, msg: paho.MQTTMessage) -> None:
        """PUBACK a message whose samples the sink is done with (manual-ack mode only)."""
        if self.ack_after_store:
            client.ack(msg.mid, msg.qos)
