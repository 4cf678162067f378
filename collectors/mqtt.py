"""The MQTT collector: one paho-mqtt 2.x client that subscribes to the plant's topics and hands
decoded Samples (collectors.payloads) to a SampleSink.

Delivery: QoS 1 with a persistent session (clean_session false, stable client id), so the
broker keeps our messages while we are away. A message is acknowledged (PUBACK) only after its
samples reached the sink — and, when the sink's submit() takes `on_done` (runtime.pipeline),
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
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any, Optional
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from collectors.base import SampleSink, SourceStatus
from collectors.payloads import MessageDecoder
from collectors.sparkplug import NAMESPACE, OTHER_INSTANCE, rebirth_request
from gwanje.config import Config, Secrets, TlsConfig
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


SYSTEM_CA = "system"  # mqtt.tls.ca_file: verify the broker against the OS trust store


class GwanjeMqttClient(paho.Client):
    """paho's client, remembering the last socket/TLS error: paho reports a failed connect
    only as on_connect_fail (no exception) and a TLS alert after the handshake (a broker
    that refuses our client certificate, TLS 1.3) only as a lost connection. last_error is
    what explain_connect_error turns into a status line naming the cause."""

    last_error: Optional[BaseException] = None
    # Buffered reads (issue 11): paho reads a packet with at least four recv() calls (command
    # byte, each remaining-length byte, the body) and one select() per packet. We read what
    # the socket has, up to RECV_CHUNK, and serve paho's small reads from that buffer;
    # loop_read goes on while whole packets wait in the buffer, since select() cannot see them.
    RECV_CHUNK = 256 * 1024
    _rbuf = b""
    _roff = 0

    def reconnect(self) -> Any:
        self.last_error = None
        self._rbuf, self._roff = b"", 0  # bytes of the old connection mean nothing on a new one
        try:
            return super().reconnect()
        except Exception as e:
            self.last_error = e
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        off = self._roff
        buf = self._rbuf
        if off >= len(buf):
            try:
                buf = super()._sock_recv(max(bufsize, self.RECV_CHUNK))
            except BlockingIOError:
                raise
            except OSError as e:
                self.last_error = e
                raise
            if not buf:
                return buf  # the connection closed
            off = 0
        end = off + bufsize
        if end >= len(buf):
            self._rbuf, self._roff = b"", 0
            return buf[off:] if off else buf
        self._rbuf, self._roff = buf, end
        return buf[off:end]

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        """paho's dispatch, without matching every topic against message_callback_add filters
        when there are none (the collector registers none; 5 % of a single-sample message's
        cost): on_message is called under the same mutex, with the same error handling."""
        root = getattr(self._on_message_filtered, "_root", None)
        if root is None or getattr(root, "_children", True):
            return super()._handle_on_message(message)
        on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

    def loop_read(self, max_packets: int = 1) -> Any:
        rc = super().loop_read(max_packets)
        while rc == paho.MQTT_ERR_SUCCESS and self._roff < len(self._rbuf) and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc


def configure_tls(c: paho.Client, t: Optional[TlsConfig], *, strict: bool = False) -> None:
    """TLS for a paho client from system.yaml mqtt.tls: the broker's certificate is verified
    against ca_file (a PEM bundle) or, with ca_file "system" or none, the OS trust store, and
    its name against the url's host; cert_file + key_file are our client certificate.
    strict (outside demo mode): tls.insecure (no hostname check) is refused."""
    ca = t.ca_file if t else None
    c.tls_set(ca_certs=None if ca in (None, "", SYSTEM_CA) else ca, certfile=t.cert_file if t else None,
              keyfile=t.key_file if t else None, cert_reqs=ssl.CERT_REQUIRED)
    if t and t.insecure:
        if strict:
            raise ValueError("mqtt.tls.insecure (no check of the broker's name) is refused outside demo mode")
        log.warning("mqtt.tls.insecure: the broker's certificate name is NOT checked (demo/lab use only)")
        c.tls_insecure_set(True)


def make_client(settings: Any, secrets: Secrets, client_id: str, *, tls: bool, clean_session: bool = True,
                manual_ack: bool = False, strict: bool = False) -> paho.Client:
    """A paho client with the plant broker's credentials (environment) and TLS settings
    (system.yaml mqtt.tls): the one place every MQTT connection of Gwanje — collector, control
    bus, discovery — is configured, so TLS and authentication mean the same everywhere.
    strict: outside demo mode (refuses tls.insecure). The client's last_error (a
    GwanjeMqttClient) feeds explain_connect_error."""
    c = GwanjeMqttClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, protocol=paho.MQTTv311, manual_ack=manual_ack)
    if secrets.mqtt_username:
        c.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    if tls:
        configure_tls(c, settings.tls, strict=strict)
    return c


# OpenSSL verify codes (X509_V_ERR_*) that mean "the name is wrong", not "the issuer is unknown"
_NAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_EXPIRED = {9, 10}  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
# TLS alerts a broker sends when it wants (another) client certificate
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN",
                       "CERTIFICATE_REVOKED", "CERTIFICATE_EXPIRED", "ACCESS_DENIED", "HANDSHAKE_FAILURE")


def explain_connect_error(e: Optional[BaseException], host: str = "", port: int = 0) -> str:
    """A failed connection attempt (socket or TLS error) -> one line naming the cause, for
    status().detail and the log. Pure; no credentials are ever part of these errors."""
    where = f"{host}:{port}" if host else "the broker"
    if e is None:
        return f"cannot connect to {where}"
    if isinstance(e, ssl.SSLCertVerificationError):
        msg = e.verify_message or str(e)
        if e.verify_code in _NAME_MISMATCH:
            return f"TLS: server name mismatch ({msg}; the url's host must be in the broker certificate)"
        if e.verify_code in _EXPIRED:
            return f"TLS: server certificate expired or not yet valid ({msg})"
        return f"TLS: server certificate not trusted (certificate verify failed: {msg}; check mqtt.tls.ca_file)"
    if isinstance(e, ssl.SSLError):
        reason = (e.reason or "").upper()
        if any(a in reason for a in _CLIENT_CERT_ALERTS):
            return (f"TLS: client certificate required/refused by the broker ({e.reason}; "
                    f"check mqtt.tls.cert_file/key_file)")
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
            return f"TLS: {where} does not speak TLS on this port ({e.reason})"
        return f"TLS: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused: nothing listening on {where}"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the broker host {host!r} ({e})"
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"timed out connecting to {where}"
    if isinstance(e, ConnectionResetError):
        return f"the broker closed the connection during set-up ({where})"
    return f"network error: {type(e).__name__}: {e}"


def explain_refusal(reason_code: Any, sent_password: bool = False) -> str:
    """A CONNACK refusal -> one line naming the cause (never the credentials themselves).
    Mosquitto answers a wrong password with "not authorized" (MQTT 3.1.1 code 5), not "bad
    user name or password" (4): when we sent a password, that is what it most likely means."""
    name = str(reason_code)
    low = name.lower()
    if "user name or password" in low or "username or password" in low:
        return "broker refused: bad username or password (GWANJE_MQTT_USERNAME/PASSWORD)"
    if "not authorized" in low:
        if sent_password:
            return ("broker refused: bad username or password, or this user may not connect "
                    "(not authorized; GWANJE_MQTT_USERNAME/PASSWORD)")
        return "broker refused: not authorized (this user or client certificate may not connect)"
    if "identifier" in low:
        return f"broker refused: client id not accepted ({name})"
    return f"broker refused the connection: {name}"


def _reports_done(sink: SampleSink, param: str = "on_done") -> bool:
    try:
        return param in inspect.signature(sink.submit).parameters
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
        # done with the samples (runtime.pipeline.Pipeline's on_done), a message is acknowledged
        # only once its samples are in the store or the disk spool, so a crash (kill -9) of this
        # process between receiving and storing loses nothing: the broker redelivers.
        self.ack_after_store = (self.settings.qos == 1 and not self.settings.clean_start
                                and _reports_done(sink))
        # ... and then a full queue may hold the network loop a moment (storage.backpressure_ms)
        # instead of spilling to the spool: the broker keeps what we have not acknowledged
        self._wait = self.ack_after_store and _reports_done(sink, "wait")
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
        self._cause_logged = ""  # the last failure cause logged (each cause once, until a connection works)
        self._last_bug_log = -1e9
        self._lock = threading.Lock()
        sp = self.settings.sparkplug
        self.state_topic = f"{NAMESPACE}/STATE/{sp.host_id}" if sp.enabled and sp.host_id else None
        self._state_ts = 0  # ms: the timestamp of the STATE will of the coming connection
        self.rebirths_requested = 0  # NCMD rebirth requests published
        self.skipped: Counter[str] = Counter()  # messages of other collect instances' lines
        self._sent_password = bool(secrets.mqtt_username and secrets.mqtt_password)
        self._client = self._make_client(secrets)
        self._started = False

    # ------------------------------------------------------------------ set-up
    def _make_client(self, secrets: Secrets) -> paho.Client:
        s = self.settings
        c = make_client(s, secrets, self.client_id, tls=self.tls, clean_session=s.clean_start,
                        manual_ack=self.ack_after_store, strict=not self.config.system.demo)
        c.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        # paho's own outgoing queue is unused (we only subscribe); inflight bounds redelivery bursts
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
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
                clock_offsets_s=self.decoder.clock.offsets(), rebirths_requested=self.rebirths_requested,
                skipped=dict(self.skipped))

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
            self._refused = explain_refusal(reason_code, sent_password=self._sent_password)
            self.detail = self._refused
            self._log_cause(self._refused)
            return
        self._refused = ""
        self._cause_logged = ""
        with self._lock:
            self.connects += 1
            self.connected = True
        self.subscribed = False
        self._session = f"connected (session present: {bool(flags.session_present)})"
        self.detail = self._session
        qos = self.settings.qos
        stale = list(self.config.stale_subscriptions)
        if stale and flags.session_present:
            # a scaled-out instance whose persistent session still holds filters of lines it
            # no longer owns (gwanje.partition): the broker would keep queueing them for us
            client.unsubscribe(stale)
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
            err = getattr(client, "last_error", None)
            if not self._refused and isinstance(err, ssl.SSLError):
                # a TLS alert after the handshake: the broker refused our client certificate
                self._refused = explain_connect_error(err, self.host, self.port)
            self.detail = self._refused or f"disconnected ({reason_code})"
            self.detail += "; reconnecting"
            if self._refused:
                self._log_cause(self._refused)
            else:
                log.warning("%s: %s", self.name, self.detail)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        """A connection attempt failed before MQTT (TCP, TLS handshake): say why."""
        cause = explain_connect_error(getattr(client, "last_error", None), self.host, self.port)
        self._refused = ""
        self.detail = f"{cause}; reconnecting"
        self._log_cause(cause)

    def _log_cause(self, cause: str) -> None:
        """Each failure cause once at WARNING (repeats at DEBUG) until a connection succeeds."""
        if cause != self._cause_logged:
            self._cause_logged = cause
            log.warning("%s: %s", self.name, cause)
        else:
            log.debug("%s: %s (again)", self.name, cause)

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
            if r == OTHER_INSTANCE:  # another collect instance's line (wide Sparkplug filter)
                with self._lock:
                    self.skipped[r] += 1
                log.debug("%s: skipped %r: a line of another collect instance", self.name, topic[:200])
            else:
                self.rejects.reject(r, topic)
        with self._lock:
            self.messages_in += 1
            if samples:
                self.samples_in += len(samples)
                self.last_data_ns = time.time_ns()
        if samples:
            try:
                if self._wait:
                    self.sink.submit(samples, on_done=functools.partial(self._ack, client, msg), wait=True)
                elif self.ack_after_store:
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
