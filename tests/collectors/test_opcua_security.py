"""OPC UA security as a plant sets it up, against a real asyncua server that ONLY offers
Basic256Sha256 SignAndEncrypt, demands a username/password and trusts exactly the client
certificates it was given:

  `python app.py certs` (a subprocess: the CLI itself) creates our application certificate
  under the data dir; the server trusts it; `python app.py trust-server --fingerprint` makes
  us trust the server's; GWANJE_DEMO=0. Then the collector (built like `collect` builds it,
  with the certificate defaults of the data dir) subscribes and the samples reach the
  pipeline and the store. Each way it can go wrong is refused with a status that names the
  cause: wrong password, our certificate not trusted by the server, security None against
  this server, an unknown server certificate; the password appears in no log or status."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from collectors import build_collectors
from collectors.opcua import OpcuaCollector
from collectors.opcua_certs import create_certificate
from collectors.opcua_trust import fingerprint
from gwanje.config import Secrets, load_config
from runtime.pipeline import Pipeline
from storage.embedded import EmbeddedStore
from tests.collectors.test_opcua import PLANT, TINY_FORCE, ListSink, tiny_server
from tests.fixtures.common import wait_for
from tests.fixtures.opcua import SERVER_URI, make_certificate

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "operator", "opc-pw-93kf"
# the tiny plant of test_opcua, its OPC UA machine only (no broker in this test)
OPCUA_PLANT = "\n".join(ln for ln in PLANT.splitlines() if "source: mqtt" not in ln) + "\n"
SYSTEM = """\
mqtt: {{sparkplug: false}}
opcua:
  endpoints:
    - name: plc
      url: "{url}"
      security_policy: Basic256Sha256
      security_mode: SignAndEncrypt
      publishing_ms: 50
      sampling_ms: 0
      reconnect_min_s: 0.2
      reconnect_max_s: 1.0
"""


def app(*args: str, data: Path, config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWANJE_")}
    env["GWANJE_DEMO"] = "0"
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args, "--config", str(config),
                           "--data-dir", str(data)], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """(server, config, data dir): the certificates made and trusted both ways, by the CLI."""
    tmp = tmp_path_factory.mktemp("opcua-security")
    data, cfg_dir = tmp / "data", tmp / "config"
    cfg_dir.mkdir()
    (cfg_dir / "plant.yaml").write_text(OPCUA_PLANT, encoding="utf-8")
    (cfg_dir / "system.yaml").write_text(SYSTEM.format(url="opc.tcp://127.0.0.1:1/unused"), encoding="utf-8")

    made = app("certs", data=data, config=cfg_dir)
    assert made.returncode == 0, made.stderr
    cert, key = data / "pki" / "own" / "cert.der", data / "pki" / "own" / "key.pem"
    printed = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", made.stdout)
    assert printed and printed.group(1) == fingerprint(cert.read_bytes()), made.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "trust this certificate on every OPC UA server" in made.stdout

    tiny_config = load_config(cfg_dir, env={})
    server_cert = make_certificate(tmp, "server", SERVER_URI, server=True)
    # an X.509 user certificate the server maps to a user (instead of a password)
    user_cert = create_certificate(tmp / "user")[0]
    server = tiny_server((tiny_config, tiny_config.endpoint("plc")), credentials=(USER, PASSWORD),
                         certificate=server_cert, sign_only_too=False, trusted_clients=[cert],
                         user_certificates=[user_cert]).start()
    (cfg_dir / "system.yaml").write_text(SYSTEM.format(url=server.url), encoding="utf-8")
    # we trust the server: the operator compares the fingerprint, then confirms it
    trusted = app("trust-server", "plc", "--fingerprint", fingerprint(server_cert[0].read_bytes()),
                  data=data, config=cfg_dir)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    config = load_config(cfg_dir, env={"GWANJE_DEMO": "0"})
    assert not config.system.demo
    yield server, config, data, tmp
    server.stop()


def secrets(password: str = PASSWORD) -> Secrets:
    return Secrets.from_env({"GWANJE_OPCUA_USERNAME": USER, "GWANJE_OPCUA_PASSWORD": password})


def refused(col: OpcuaCollector, says: str) -> str:
    col.start()
    try:
        assert wait_for(lambda: says in col.status().detail, 20), col.status()
        st = col.status()
        assert not st.connected and st.samples_in == 0
    finally:
        col.stop()
    return st.detail


def test_signed_and_encrypted_login_collects_into_the_store(plant, tmp_path, caplog):
    server, config, data, _ = plant
    caplog.set_level(logging.DEBUG, logger="gwanje")
    store = EmbeddedStore(tmp_path / "store.duckdb")
    pipeline = Pipeline(store, flush_interval_s=0.05)
    pipeline.start()
    [col] = build_collectors(config, pipeline, secrets(), data_dir=data)
    # the certificate defaults to the data dir's, where `app.py certs` put it
    assert col.endpoint.certificate == str(data / "pki" / "own" / "cert.der")
    col.start()
    try:
        assert wait_for(lambda: col.status().connected, 20), col.status()
        server.write(TINY_FORCE, 777.5)

        def stored():
            return [s for s in store.latest(machine="m-1") if s.signal == "forging_force" and s.value == 777.5]

        assert wait_for(stored, 20), (col.status(), store.latest())
    finally:
        col.stop()
        pipeline.stop()
        store.close()
    assert PASSWORD not in caplog.text + repr(col.status())


def _with_endpoint(config, **updates):
    [ep] = config.system.opcua.endpoints
    ep = ep.model_copy(update=updates)
    return dataclasses.replace(config, system=config.system.model_copy(
        update={"opcua": config.system.opcua.model_copy(update={"endpoints": [ep]})}))


def test_x509_user_certificate_logs_in_without_a_password(plant, tmp_path):
    server, config, data, tmp = plant
    user = tmp / "user"
    cfg = _with_endpoint(config, user_certificate=str(user / "cert.der"), user_private_key=str(user / "key.pem"))
    sink = ListSink()
    [col] = build_collectors(cfg, sink, Secrets.from_env({}), data_dir=data)
    col.start()
    try:
        assert wait_for(lambda: col.status().connected, 20), col.status()
        server.write(TINY_FORCE, 778.5)
        assert wait_for(lambda: [s for s in sink.of("m-1", "forging_force") if s.value == 778.5], 20)
    finally:
        col.stop()
    # a user certificate the server does not know: refused, and said so
    stranger = create_certificate(tmp_path / "stranger")[0]
    cfg = _with_endpoint(config, user_certificate=str(stranger), user_private_key=str(tmp_path / "stranger" / "key.pem"))
    [col] = build_collectors(cfg, ListSink(), Secrets.from_env({}), data_dir=data)
    refused(col, "server refused our user certificate (BadUserAccessDenied")


def test_wrong_password_is_named(plant, caplog):
    server, config, data, _ = plant
    caplog.set_level(logging.DEBUG, logger="gwanje")
    [col] = build_collectors(config, ListSink(), secrets("wrong-pw-xx81"), data_dir=data)
    detail = refused(col, "bad user or password (BadUserAccessDenied")
    assert "wrong-pw-xx81" not in caplog.text + detail


def test_our_certificate_not_trusted_by_the_server_is_named(plant):
    server, config, data, tmp = plant
    other = tmp / "other-own"
    create_certificate(other)  # a valid certificate the server was never given
    ep = config.endpoint("plc").model_copy(update={"certificate": str(other / "cert.der"),
                                                   "private_key": str(other / "key.pem")})
    col = OpcuaCollector(config, ep, ListSink(), secrets(), trust_dir=data / config.system.opcua.trust_dir)
    refused(col, "server rejected our certificate (BadCertificateUntrusted)")


def test_security_none_against_a_server_that_requires_encryption_is_named(plant):
    server, config, data, _ = plant
    demo = dataclasses.replace(config, system=config.system.model_copy(update={"demo": True}))
    ep = config.endpoint("plc").model_copy(update={"security_policy": "None", "security_mode": "None"})
    col = OpcuaCollector(demo, ep, ListSink(), secrets())
    detail = refused(col, "server requires SignAndEncrypt (no matching endpoint")
    assert "Basic256Sha256/SignAndEncrypt" in detail


def test_sign_only_against_a_server_that_requires_encryption_is_named(plant):
    server, config, data, _ = plant
    config = _with_endpoint(config, security_mode="Sign")
    [col] = build_collectors(config, ListSink(), secrets(), data_dir=data)
    refused(col, "server requires SignAndEncrypt (no matching endpoint for our Basic256Sha256/Sign")


def test_unknown_server_certificate_is_refused_before_our_password_is_sent(plant, tmp_path):
    server, config, data, _ = plant
    # a fresh trust list: in production nobody has confirmed this server yet
    [col] = build_collectors(config, ListSink(), secrets(), data_dir=tmp_path)
    col.endpoint = col.endpoint.model_copy(update={"certificate": str(data / "pki" / "own" / "cert.der"),
                                                   "private_key": str(data / "pki" / "own" / "key.pem")})
    refused(col, "unknown server certificate, refused")


def test_certs_refuses_to_overwrite_without_force(tmp_path):
    cfg = ROOT / "config"
    first = app("certs", "--out", str(tmp_path / "own"), "--days", "30", data=tmp_path / "data", config=cfg)
    assert first.returncode == 0, first.stderr
    der = (tmp_path / "own" / "cert.der").read_bytes()
    again = app("certs", "--out", str(tmp_path / "own"), data=tmp_path / "data", config=cfg)
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "own" / "cert.der").read_bytes() == der
    forced = app("certs", "--out", str(tmp_path / "own"), "--force", data=tmp_path / "data", config=cfg)
    assert forced.returncode == 0 and (tmp_path / "own" / "cert.der").read_bytes() != der
    # what asyncua's client checks: the application URI and this host's name in the SAN
    import socket

    from cryptography import x509

    cert = x509.load_der_x509_certificate((tmp_path / "own" / "cert.der").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    host = socket.gethostname()
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:{host}:gwanje:collector"]
    assert san.get_values_for_type(x509.DNSName) == [host]
    assert cert.public_key().key_size == 2048


@pytest.mark.parametrize("error, says", [
    ("BadSecurityChecksFailed", "server rejected our certificate (BadSecurityChecksFailed)"),
    ("BadCertificateUriInvalid", "server rejected our certificate (BadCertificateUriInvalid)"),
    ("BadIdentityTokenRejected", "bad user or password (BadIdentityTokenRejected"),
    ("BadSecurityPolicyRejected", "no matching endpoint"),
])
def test_the_other_status_codes_servers_answer_with_are_named(error, says):
    """Other stacks (Siemens, B&R, Kepware) refuse with these where asyncua says
    BadCertificateUntrusted / BadUserAccessDenied."""
    from asyncua import ua

    from collectors.opcua import explain_connect_error
    from gwanje.config import OpcuaEndpoint

    ep = OpcuaEndpoint(name="plc", url="opc.tcp://plc:4840", **{"security_policy": "Basic256Sha256",
                                                                 "security_mode": "SignAndEncrypt"})
    assert says in explain_connect_error(getattr(ua.uaerrors, error)(), ep)
