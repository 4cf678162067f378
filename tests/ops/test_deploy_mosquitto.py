"""The production broker config we ship (deploy/mosquitto/mosquitto.conf + aclfile), started
as it is on a real mosquitto (only the file paths and the port rewritten): TLS only, nobody
anonymous, and each role may read and write exactly its topics — the collector reads the
plant's data and the command topic of the control bus, serve sends commands and reads
status/alarms/replies, a PLC cannot read commands, serve cannot inject plant data."""
from __future__ import annotations

import dataclasses
import getpass
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from collectors.mqtt import make_client
from gwanje.config import Secrets, TlsConfig
from tests.collectors import demo_config
from tests.collectors.test_mqtt_tls import make_pki
from tests.fixtures.common import find_binary, free_port, stop_process, wait_for, wait_port

pytestmark = pytest.mark.services

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
USERS = {"gwanje-plc": "pw-plc-1a", "gwanje-collect": "pw-collect-2b", "gwanje-serve": "pw-serve-3c"}


@pytest.fixture(scope="module")
def shipped_broker(tmp_path_factory):
    binary, passwd_tool = find_binary("mosquitto"), find_binary("mosquitto_passwd")
    d = tmp_path_factory.mktemp("deploy-mosquitto")
    pki = make_pki(d)
    for f, src in (("ca.pem", "ca.pem"), ("server.pem", "server.pem"), ("server.key", "server.key")):
        (d / f).write_bytes((d / src).read_bytes())
    for i, (user, pw) in enumerate(USERS.items()):
        subprocess.run([passwd_tool, *(["-c"] if i == 0 else []), "-b", str(d / "passwd"), user, pw],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (d / "aclfile").write_text((DEPLOY / "aclfile").read_text())
    (d / "data").mkdir()
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    for old, new in (("/mosquitto/certs/", f"{d}/"), ("/mosquitto/config/", f"{d}/"),
                     ("/mosquitto/data/", f"{d}/data/"), ("listener 8883", f"listener {port} 127.0.0.1"),
                     ("log_dest stdout", f"log_dest file {d}/mosquitto.log")):
        assert old in conf, old
        conf = conf.replace(old, new)
    (d / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n" + conf)
    proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    yield port, pki
    stop_process(proc)


class Peer:
    """One role's client, made by the one MQTT client factory with verification on (strict)."""

    def __init__(self, port: int, pki, user: str | None, subscribe: tuple[str, ...] = ()) -> None:
        settings = demo_config(tls=TlsConfig(ca_file=f"{pki['ca']}.pem")).system.mqtt
        env = {"GWANJE_MQTT_USERNAME": user, "GWANJE_MQTT_PASSWORD": USERS[user]} if user else {}
        self.client = make_client(settings, Secrets.from_env(env), f"{user}-{uuid.uuid4().hex[:6]}", tls=True,
                                  strict=True)
        self.got: list[tuple[str, bytes]] = []
        self.refused: list[str] = []
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = lambda c, u, f, rc, p: (
            self.refused.append(str(rc)) if rc.is_failure else
            (c.subscribe([(t, 1) for t in subscribe]) if subscribe else self.ready.set()))
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self._got(m.topic, m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _got(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.got.append((topic, payload))

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.got]

    def publish(self, topic: str) -> None:
        self.client.publish(topic, b"x", qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_shipped_acl_gives_each_role_its_topics_only(shipped_broker):
    port, pki = shipped_broker
    collect = Peer(port, pki, "gwanje-collect", ("gwanje/#", "spBv1.0/#", "gwanje-sys/cmd/#"))
    serve = Peer(port, pki, "gwanje-serve", ("gwanje-sys/status/#", "gwanje-sys/alarms/#", "gwanje-sys/reply/#",
                                             "gwanje/#"))
    plc = Peer(port, pki, "gwanje-plc", ("gwanje-sys/#", "spBv1.0/STATE/#"))
    peers = (collect, serve, plc)
    try:
        assert all(p.ready.wait(10) for p in peers), [p.refused for p in peers]
        # not allowed: serve injecting plant data, the PLC sending a command, the PLC faking status
        serve.publish("gwanje/site/line/machine")
        plc.publish("gwanje-sys/cmd/ack")
        plc.publish("gwanje-sys/status/collect-1")
        # allowed, each after the refused ones (mosquitto handles them in order)
        plc.publish("gwanje/changwon-1/forge-1/forge-101")
        serve.publish("gwanje-sys/cmd/ack")
        for t in ("gwanje-sys/status/collect-1", "gwanje-sys/alarms/a1", "gwanje-sys/reply/r1"):
            collect.publish(t)
        assert wait_for(lambda: collect.topics() == ["gwanje/changwon-1/forge-1/forge-101", "gwanje-sys/cmd/ack"]), \
            collect.topics()
        want = ["gwanje-sys/status/collect-1", "gwanje-sys/alarms/a1", "gwanje-sys/reply/r1"]
        assert wait_for(lambda: serve.topics() == want), serve.topics()  # no plant data for serve
        # the PLC (subscribed to gwanje-sys/#) reads none of the control bus: the first message
        # it gets is the primary host's STATE, published after all of them
        collect.publish("spBv1.0/STATE/gwanje")
        assert wait_for(lambda: plc.topics()), "the PLC's allowed subscription got nothing"
        assert plc.topics() == ["spBv1.0/STATE/gwanje"]
    finally:
        for p in peers:
            p.close()


def test_shipped_broker_refuses_anonymous_and_plain_clients(shipped_broker):
    port, pki = shipped_broker
    anonymous = Peer(port, pki, None)
    try:
        assert wait_for(lambda: anonymous.refused), "anonymous client was let in"
        assert "not authorized" in anonymous.refused[0].lower()
    finally:
        anonymous.close()
