"""Security by default outside demo mode (gwanje.security): every way to weaken the MQTT or
OPC UA transport is refused at start with a message that says what to set; and through the
CLI a process really refuses to start (exit 3), an unreadable certificate is a configuration
error (exit 2)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gwanje.config import Secrets, TlsConfig, load_config
from gwanje.security import mqtt_problems, opcua_problems, security_problems

REPO = Path(__file__).resolve().parents[2]
PASSWORD = {"GWANJE_MQTT_USERNAME": "gw", "GWANJE_MQTT_PASSWORD": "pw-x"}


def prod(url: str = "mqtts://broker.plant:8883", tls: TlsConfig | None = None, **endpoint_updates):
    config = load_config(REPO / "config", env={"GWANJE_DEMO": "0", "GWANJE_MQTT_URL": url})
    mqtt = config.system.mqtt.model_copy(update={"tls": tls})
    eps = [ep.model_copy(update=endpoint_updates) for ep in config.system.opcua.endpoints]
    opcua = config.system.opcua.model_copy(update={"endpoints": eps})
    return dataclasses.replace(config, system=config.system.model_copy(update={"mqtt": mqtt, "opcua": opcua}))


SECURE_EP = dict(security_policy="Basic256Sha256", security_mode="SignAndEncrypt")
OPCUA_LOGIN = {"GWANJE_OPCUA_USERNAME": "op", "GWANJE_OPCUA_PASSWORD": "pw-y"}


def test_verified_tls_with_a_password_or_a_client_certificate_is_accepted():
    assert mqtt_problems(prod(tls=TlsConfig(ca_file="/etc/ca.pem")), Secrets.from_env(PASSWORD)) == []
    assert mqtt_problems(prod(tls=TlsConfig(ca_file="system")), Secrets.from_env(PASSWORD)) == []
    # a client certificate alone is a credential
    cert = TlsConfig(ca_file="/etc/ca.pem", cert_file="/etc/c.pem", key_file="/etc/c.key")
    assert mqtt_problems(prod(tls=cert), Secrets.from_env({})) == []
    # and the whole check, with a secure OPC UA endpoint and a login
    cfg = prod(tls=cert, **SECURE_EP)
    assert security_problems(cfg, Secrets.from_env({**OPCUA_LOGIN, "GWANJE_SECRET_KEY": "k" * 32, "GWANJE_COMMAND_KEY": "c" * 32}),
                             ("collect", "serve")) == []


@pytest.mark.parametrize("url, tls, env, says", [
    ("mqtt://broker.plant:1883", TlsConfig(ca_file="/etc/ca.pem"), PASSWORD, "must use TLS"),
    ("mqtts://broker.plant:8883", TlsConfig(ca_file="/etc/ca.pem", insecure=True), PASSWORD, "insecure is not allowed"),
    ("mqtts://broker.plant:8883", None, PASSWORD, "ca_file is required"),
    ("mqtts://broker.plant:8883", TlsConfig(cert_file="/c.pem", key_file="/c.key"), {}, "ca_file is required"),
    ("mqtts://broker.plant:8883", TlsConfig(ca_file="/etc/ca.pem"), {}, "credentials missing"),
    ("mqtts://broker.plant:8883", TlsConfig(ca_file="/etc/ca.pem"), {"GWANJE_MQTT_USERNAME": "gw"},
     "GWANJE_MQTT_PASSWORD is not"),
    ("mqtts://broker.plant:8883", TlsConfig(ca_file="/etc/ca.pem", cert_file="/c.pem"), {}, "go together"),
])
def test_each_weak_mqtt_setting_is_refused_outside_demo(url, tls, env, says):
    problems = mqtt_problems(prod(url, tls), Secrets.from_env(env))
    assert any(says in p for p in problems), problems
    assert all("pw-x" not in p for p in problems)
    # demo mode accepts anything
    demo = dataclasses.replace(prod(url, tls), system=prod(url, tls).system.model_copy(update={"demo": True}))
    assert security_problems(demo, Secrets.from_env(env), ("collect",)) == []


@pytest.mark.parametrize("updates, env, says", [
    ({}, OPCUA_LOGIN, "security_policy Basic256Sha256 and security_mode"),
    (dict(security_policy="Basic256Sha256", security_mode="None"), OPCUA_LOGIN, "security_mode"),
    (SECURE_EP, {}, "a user login is required"),
    (SECURE_EP, {"GWANJE_OPCUA_USERNAME": "op"}, "no password"),
    ({**SECURE_EP, "user_certificate": "/u.der"}, {}, "go together"),
])
def test_each_weak_opcua_setting_is_refused_outside_demo(updates, env, says):
    problems = opcua_problems(prod(**updates), Secrets.from_env(env))
    assert problems and any(says in p for p in problems), problems


def test_opcua_user_certificate_or_per_endpoint_login_is_a_user():
    cfg = prod(**SECURE_EP, user_certificate="/u.der", user_private_key="/u.pem")
    assert opcua_problems(cfg, Secrets.from_env({})) == []
    per_endpoint = {"GWANJE_OPCUA_USERNAME_CHANGWON_1": "user-a", "GWANJE_OPCUA_PASSWORD_CHANGWON_1": "pw-a-71",
                    "GWANJE_OPCUA_USERNAME_CHANGWON_2": "user-c", "GWANJE_OPCUA_PASSWORD_CHANGWON_2": "pw-c-72"}
    secrets = Secrets.from_env(per_endpoint)
    assert opcua_problems(prod(**SECURE_EP), secrets) == []
    assert secrets.opcua_login("changwon-2") == ("user-c", "pw-c-72")
    assert "pw-a-71" not in repr(secrets) and "pw-c-72" not in repr(secrets)
    # an endpoint without its own login uses the common one
    both = Secrets.from_env({**OPCUA_LOGIN, "GWANJE_OPCUA_USERNAME_CHANGWON_1": "user-a",
                             "GWANJE_OPCUA_PASSWORD_CHANGWON_1": "pw-a-71"})
    assert both.opcua_login("changwon-1") == ("user-a", "pw-a-71") and both.opcua_login("changwon-2") == ("op", "pw-y")
    # the simulator serves OPC UA: it needs the security settings, not a login
    assert opcua_problems(prod(**SECURE_EP), Secrets.from_env({}), client=False) == []


def _app_with_tls(tmp_path: Path, tls_block: str) -> subprocess.CompletedProcess:
    text = (REPO / "config" / "system.yaml").read_text(encoding="utf-8")
    assert "\n  max_payload_bytes: 262144\n" in text
    cfg = tmp_path / "config"
    cfg.mkdir()
    for f in (REPO / "config").glob("*.yaml"):
        (cfg / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (cfg / "system.yaml").write_text(text.replace("\n  max_payload_bytes: 262144\n",
                                                  "\n  max_payload_bytes: 262144" + tls_block), encoding="utf-8")
    full = {k: v for k, v in os.environ.items() if not k.startswith("GWANJE_")}
    full.update({"GWANJE_DEMO": "0", "GWANJE_MQTT_URL": "mqtts://127.0.0.1:1", **PASSWORD, **OPCUA_LOGIN})
    return subprocess.run([sys.executable, str(REPO / "app.py"), "collect", "--config", str(cfg),
                           "--data-dir", str(tmp_path / "data")], env=full, capture_output=True, text=True,
                          timeout=60)


def test_collect_refuses_the_shipped_plain_config_outside_demo(tmp_path):
    r = _app_with_tls(tmp_path, "\n")
    # the shipped config: no mqtt.tls and plain OPC UA endpoints
    assert r.returncode == 3, r.stderr
    assert "ca_file is required" in r.stderr and "security_policy Basic256Sha256" in r.stderr
    assert "pw-x" not in r.stderr + r.stdout and "pw-y" not in r.stderr + r.stdout


def test_insecure_tls_refused_by_the_cli(tmp_path):
    r = _app_with_tls(tmp_path, "\n  tls: {ca_file: system, insecure: true}\n")
    assert r.returncode == 3, r.stderr
    assert "refusing to start outside demo mode" in r.stderr and "insecure is not allowed" in r.stderr
