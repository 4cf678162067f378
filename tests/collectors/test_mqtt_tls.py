"""The MQTT collector over mqtts:// against a real mosquitto that demands TLS with client
certificates and a username/password: the configured CA, certificate and key are used, the
credentials come from Secrets, a wrong password is refused and never logged."""
from __future__ import annotations

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


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool):
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
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
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
    return {n: d / n for n in ("ca", "server", "client")}


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    binary = find_binary("mosquitto")
    passwd_tool = find_binary("mosquitto_passwd")
    d = tmp_path_factory.mktemp("mosquitto-tls")
    pki = make_pki(d)
    subprocess.run([passwd_tool, "-c", "-b", str(d / "passwd"), USER, PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    (d / "mosquitto.conf").write_text(f"""\
user {getpass.getuser()}
listener {port} 127.0.0.1
cafile {pki['ca']}.pem
certfile {pki['server']}.pem
keyfile {pki['server']}.key
require_certificate true
allow_anonymous false
password_file {d}/passwd
max_queued_messages 100000
log_dest file {d}/mosquitto.log
""")
    proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
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
        assert wait_for(lambda: "refused" in c.status().detail, 10), c.status()
        assert not c.status().connected
    finally:
        c.stop()
    assert wrong not in caplog.text and wrong not in repr(c.status())
