"""runtime.pki (the broker PKI and password file docker-compose.yml creates) against a real
mosquitto: its certificates and its "$7$" password file are what the broker accepts, and a
client verifying the server with its CA connects; a wrong password or another CA is refused."""
from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from collectors.mqtt import make_client
from gwanje.config import Secrets, TlsConfig
from runtime.pki import mosquitto_hash
from tests.fixtures.common import find_binary, free_port, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[2]


def _pki(out: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.pki", str(out), *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_mosquitto_hash_is_mosquitto_passwd_format():
    h = mosquitto_hash("secret", salt=b"\x00" * 12)
    kind, it, salt, digest = h.split("$")[1:]
    assert (kind, it, salt) == ("7", "101", "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # 64 bytes of PBKDF2-SHA512, base64


def test_password_comes_from_the_environment_only(tmp_path):
    r = _pki(tmp_path / "pki", {}, "--user", "GWANJE_NOPE")
    assert r.returncode != 0 and "GWANJE_NOPE_USERNAME and GWANJE_NOPE_PASSWORD" in r.stderr


@pytest.fixture
def broker(tmp_path):
    pw = "pw-Ünïcode-7f3a"
    out = tmp_path / "pki"
    r = _pki(out, {"T_MQTT_USERNAME": "collect", "T_MQTT_PASSWORD": pw},
             "--dns", "localhost", "--client", "collect", "--user", "T_MQTT")
    assert r.returncode == 0, r.stderr
    assert pw not in r.stdout + r.stderr
    for key in ("ca.key", "server.key", "collect.key", "passwd"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600, key
    assert pw not in (out / "passwd").read_text()
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"""user {getpass.getuser()}
listener {port} 127.0.0.1
cafile {out}/ca.pem
certfile {out}/server.pem
keyfile {out}/server.key
allow_anonymous false
password_file {out}/passwd
""")
    proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    yield port, out, pw
    stop_process(proc)


def _connect(port: int, ca: Path, user: str, pw: str, host: str = "localhost") -> str:
    settings = type("Settings", (), {"tls": TlsConfig(ca_file=str(ca))})()
    c = make_client(settings, Secrets.from_env({"GWANJE_MQTT_USERNAME": user, "GWANJE_MQTT_PASSWORD": pw}), "t-" + os.urandom(4).hex(), tls=True)
    done = threading.Event()
    out: dict = {}

    def on_connect(client, userdata, flags, rc, props=None):
        out["rc"] = str(rc)
        done.set()
    c.on_connect = on_connect
    try:
        c.connect(host, port, 10)
    except Exception as e:  # TLS failures surface here
        return f"error: {e}"
    c.loop_start()
    done.wait(10)
    c.loop_stop()
    c.disconnect()
    return out.get("rc", "no answer")


def test_a_client_with_the_ca_and_the_password_connects(broker):
    port, out, pw = broker
    assert _connect(port, out / "ca.pem", "collect", pw) == "Success"


def test_wrong_password_is_refused(broker):
    port, out, _ = broker
    assert _connect(port, out / "ca.pem", "collect", "wrong") != "Success"


def test_another_ca_is_refused(broker, tmp_path):
    port, _, pw = broker
    other = tmp_path / "other"
    assert _pki(other, {}, "--dns", "localhost").returncode == 0
    assert _connect(port, other / "ca.pem", "collect", pw).startswith("error")


def test_rerun_keeps_the_ca(broker):
    _, out, _ = broker
    before = (out / "ca.pem").read_bytes()
    assert _pki(out, {}, "--dns", "localhost").returncode == 0
    assert (out / "ca.pem").read_bytes() == before
