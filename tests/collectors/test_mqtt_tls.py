"""The MQTT collector over mqtts:// against a real mosquitto that demands TLS with client
certificates and a username/password: the configured CA, certificate and key are used, the
credentials come from Secrets, a wrong password is refused and never logged."""
from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import ipaddress
import json
import logging
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttCollector
from gwanje.config import Secrets, TlsConfig
from gwanje.model import Sample
from tests.collectors import demo_config
from tests.collectors.test_mqtt import ListSink
from tests.fixtures.common import find_binary, free_port, stop_process, wait_for, wait_port

USER, PASSWORD = "gwanje", "pw-7f3a-비밀"


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool, names=("localhost", "127.0.0.1")):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        san = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def make_pki(d: Path) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def write(name: str, key, cert) -> None:
        (d / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("gwanje test CA", ca_key, None, None, ca=True)
    write("ca", ca_key, ca)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, key, _cert(name, key, ca.subject, ca_key, ca=False))
    # signed by the same CA, but for another name: a broker reached under a name not in its certificate
    key = ec.generate_private_key(ec.SECP256R1())
    write("elsewhere", key, _cert("elsewhere", key, ca.subject, ca_key, ca=False, names=("broker.elsewhere.invalid",)))
    # another CA, which did not sign the broker's certificate
    other_key = ec.generate_private_key(ec.SECP256R1())
    write("other-ca", other_key, _cert("another CA", other_key, None, None, ca=True))
    # (the tls_broker fixture adds "mismatch_port", its listener with the "elsewhere" certificate,
    # and "identity_port", where the client certificate's CN is the user name: no password)
    return {n: d / n for n in ("ca", "server", "client", "elsewhere", "other-ca")}


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    binary = find_binary("mosquitto")
    passwd_tool = find_binary("mosquitto_passwd")
    d = tmp_path_factory.mktemp("mosquitto-tls")
    pki = make_pki(d)
    subprocess.run([passwd_tool, "-c", "-b", str(d / "passwd"), USER, PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, mismatch_port, identity_port = free_port(), free_port(), free_port()
    (d / "acl").write_text(f"user {USER}\ntopic readwrite gwanje/#\ntopic readwrite spBv1.0/#\n"
                           f"user client\ntopic readwrite gwanje/#\ntopic readwrite spBv1.0/#\n")
    # a second listener presents a certificate for another name (the same CA signed it)
    (d / "mosquitto.conf").write_text(f"""\
user {getpass.getuser()}
per_listener_settings false
allow_anonymous false
password_file {d}/passwd
acl_file {d}/acl
max_queued_messages 100000
log_dest file {d}/mosquitto.log
listener {port} 127.0.0.1
cafile {pki['ca']}.pem
certfile {pki['server']}.pem
keyfile {pki['server']}.key
require_certificate true
listener {mismatch_port} 127.0.0.1
cafile {pki['ca']}.pem
certfile {pki['elsewhere']}.pem
keyfile {pki['elsewhere']}.key
require_certificate true
listener {identity_port} 127.0.0.1
cafile {pki['ca']}.pem
certfile {pki['server']}.pem
keyfile {pki['server']}.key
require_certificate true
use_identity_as_username true
""")
    proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    wait_port(mismatch_port, proc=proc)
    wait_port(identity_port, proc=proc)
    pki["mismatch_port"], pki["identity_port"] = mismatch_port, identity_port
    yield port, pki
    stop_process(proc)


def tls_config(pki):
    return demo_config(tls=TlsConfig(ca_file=f"{pki['ca']}.pem", cert_file=f"{pki['client']}.pem",
                                     key_file=f"{pki['client']}.key"), reconnect_min_s=0.2, reconnect_max_s=1.0)


@pytest.mark.services
def test_mqtts_with_client_certificate_and_password(tls_broker):
    port, pki = tls_broker
    sink = ListSink()
    secrets = Secrets.from_env({"GWANJE_MQTT_USERNAME": USER, "GWANJE_MQTT_PASSWORD": PASSWORD})
    c = MqttCollector(tls_config(pki), sink, secrets, url=f"mqtts://127.0.0.1:{port}",
                      client_id=f"gwanje-tls-{uuid.uuid4().hex[:8]}")
    c.start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv311)
    pub.tls_set(ca_certs=f"{pki['ca']}.pem", certfile=f"{pki['client']}.pem", keyfile=f"{pki['client']}.key")
    pub.username_pw_set(USER, PASSWORD)
    try:
        assert wait_for(lambda: c.status().connected), c.status()
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        ts_ms = int(time.time() * 1000) - 1000
        payload = json.dumps({"ts": ts_ms, "values": {"tonnage": 512.5}}).encode()

        def delivered() -> bool:  # republish until the subscription is in place
            pub.publish("gwanje/changwon-2/press-2/press-204", payload, qos=1).wait_for_publish(2)
            return wait_for(lambda: bool(sink.samples), 0.5)

        assert wait_for(delivered, 10)
        assert c.subscribed and "subscribed to 2 topic filter(s)" in c.status().detail
        assert set(sink.samples) == {Sample("changwon-2", "press-2", "press-204", "tonnage", 512.5, ts_ms * 1_000_000)}
    finally:
        pub.disconnect()
        pub.loop_stop()
        c.stop()


@pytest.mark.services
def test_wrong_password_is_refused_and_never_logged(tls_broker, caplog):
    port, pki = tls_broker
    wrong = "wrong-pw-Zq9"
    secrets = Secrets.from_env({"GWANJE_MQTT_USERNAME": USER, "GWANJE_MQTT_PASSWORD": wrong})
    c = MqttCollector(tls_config(pki), ListSink(), secrets, url=f"mqtts://127.0.0.1:{port}",
                      client_id=f"gwanje-tls-{uuid.uuid4().hex[:8]}")
    caplog.set_level(logging.DEBUG)
    c.start()
    try:
        assert wait_for(lambda: "broker refused: bad username or password" in c.status().detail, 10), c.status()
        assert not c.status().connected
    finally:
        c.stop()
    assert wrong not in caplog.text and wrong not in repr(c.status())


def _collector(pki, port, tls=None, env=None, host="127.0.0.1"):
    secrets = Secrets.from_env({"GWANJE_MQTT_USERNAME": USER, "GWANJE_MQTT_PASSWORD": PASSWORD} if env is None else env)
    config = tls_config(pki) if tls is None else demo_config(tls=tls, reconnect_min_s=0.2, reconnect_max_s=0.5)
    config = dataclasses.replace(config, system=config.system.model_copy(update={"demo": False}))
    return MqttCollector(config, ListSink(), secrets, url=f"mqtts://{host}:{port}",
                         client_id=f"gwanje-tls-{uuid.uuid4().hex[:8]}")


def _refused_with(c: MqttCollector, says: str, caplog) -> str:
    """Start c, wait until its status names the cause and it tried again; the cause was
    logged once (repeats at DEBUG), and c never connected."""
    caplog.set_level(logging.DEBUG, logger="gwanje")
    c.start()
    try:
        assert wait_for(lambda: says in c.status().detail, 15), c.status()
        assert wait_for(lambda: any("(again)" in r.getMessage() and says in r.getMessage() for r in caplog.records), 15)
        assert not c.status().connected and c.status().samples_in == 0
    finally:
        c.stop()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and says in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    return c.status().detail


@pytest.mark.services
@pytest.mark.parametrize("ca", ["other-ca", "system"])
def test_broker_certificate_from_another_ca_is_not_trusted(tls_broker, caplog, ca):
    port, pki = tls_broker
    ca_file = f"{pki[ca]}.pem" if ca != "system" else "system"  # our test CA is in no OS trust store
    c = _collector(pki, port, TlsConfig(ca_file=ca_file, cert_file=f"{pki['client']}.pem",
                                        key_file=f"{pki['client']}.key"))
    _refused_with(c, "TLS: server certificate not trusted (certificate verify failed: ", caplog)


@pytest.mark.services
def test_broker_certificate_for_another_name_is_a_name_mismatch(tls_broker, caplog):
    port, pki = tls_broker
    c = _collector(pki, pki["mismatch_port"])
    _refused_with(c, "TLS: server name mismatch", caplog)
    # the same broker, same CA, with the right certificate: connected (the CA itself is fine)
    ok = _collector(pki, port)
    ok.start()
    try:
        assert wait_for(lambda: ok.status().connected, 10), ok.status()
    finally:
        ok.stop()


@pytest.mark.services
def test_broker_that_requires_a_client_certificate_says_so(tls_broker, caplog):
    port, pki = tls_broker
    c = _collector(pki, port, TlsConfig(ca_file=f"{pki['ca']}.pem"))
    _refused_with(c, "TLS: client certificate required/refused", caplog)


@pytest.mark.services
def test_client_certificate_alone_is_a_credential_where_the_broker_maps_it_to_a_user(tls_broker, caplog):
    """On the listener with use_identity_as_username the certificate's CN is the user: no
    password, data flows. On the password listener the same collector is not authorized."""
    port, pki = tls_broker
    cert_only = TlsConfig(ca_file=f"{pki['ca']}.pem", cert_file=f"{pki['client']}.pem", key_file=f"{pki['client']}.key")
    c = _collector(pki, pki["identity_port"], cert_only, env={})
    c.start()
    pub = _publisher(pki, pki["identity_port"])
    try:
        assert wait_for(lambda: c.status().connected and c.subscribed, 10), c.status()
        ts_ms = int(time.time() * 1000) - 1000
        pub.publish("gwanje/changwon-2/press-2/press-204", json.dumps({"ts": ts_ms, "values": {"tonnage": 7.5}}),
                    qos=1).wait_for_publish(5)
        assert wait_for(lambda: c.sink.samples, 10), c.status()
    finally:
        pub.disconnect()
        pub.loop_stop()
        c.stop()
    _refused_with(_collector(pki, port, cert_only, env={}), "broker refused: not authorized", caplog)


def _publisher(pki, port):
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv311)
    pub.tls_set(ca_certs=f"{pki['ca']}.pem", certfile=f"{pki['client']}.pem", keyfile=f"{pki['client']}.key")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


@pytest.mark.services
def test_insecure_is_refused_by_the_client_factory_outside_demo(tls_broker):
    port, pki = tls_broker
    with pytest.raises(ValueError, match="insecure"):
        _collector(pki, port, TlsConfig(ca_file=f"{pki['ca']}.pem", insecure=True))
