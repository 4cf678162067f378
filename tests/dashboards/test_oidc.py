"""Optional OpenID Connect login against a real provider process (tests/peers/oidc_provider:
authlib's authorization server with the OpenID Connect code grant and PKCE, RS256 id tokens)
on a free port: the redirect, state and nonce, the role mapped from a claim, the same session
as a password login, audited; every way the callback can be forged is refused."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from dashboards import context, create_app
from dashboards.data import DataLayer
from dashboards.oidc import role_of
from gwanje.config import OidcConfig, load_config
from storage.embedded import EmbeddedStore
from tests.dashboards.conftest import REPO
from tests.fixtures.common import free_port, stop_process, wait_port

pytestmark = pytest.mark.services

CLIENT_ID, SECRET = "gwanje-ui", "provider-shared-secret-0123456789"
CALLBACK = "http://localhost/login/oidc/callback"
PEOPLE = {"kim": {"groups": ["plant-operators"]}, "lee": {"groups": ["plant-viewers", "plant-supervisors"]},
          "eve": {"groups": ["marketing"]}}
ROLE_MAP = {"plant-viewers": "viewer", "plant-operators": "operator", "plant-supervisors": "supervisor",
            "plant-admins": "admin"}


@pytest.fixture(scope="module")
def provider():
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "AUTHLIB_INSECURE_TRANSPORT": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.peers.oidc_provider", "--port", str(port),
                             "--client-id", CLIENT_ID, "--client-secret", SECRET, "--redirect-uri", CALLBACK,
                             "--users", json.dumps(PEOPLE)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def make_site(issuer, secret=SECRET):
    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    ui = cfg.system.ui.model_copy(update={"oidc": OidcConfig(issuer=issuer, client_id=CLIENT_ID, role_map=ROLE_MAP,
                                                             redirect_url=CALLBACK)})
    cfg = dataclasses.replace(cfg, system=cfg.system.model_copy(update={"ui": ui}))
    store = EmbeddedStore()
    layer = DataLayer(cfg, store, ttl_s=0.0)
    runtime = SimpleNamespace(status=lambda: {})
    env = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_OIDC_CLIENT_SECRET": secret}  # no password users at all
    app = create_app(cfg, store, runtime, env=env, data=layer)
    return SimpleNamespace(app=app, cfg=cfg, store=store, layer=layer, runtime=runtime)


@pytest.fixture(scope="module")
def site(provider):
    s = make_site(provider)
    yield s
    s.store.close()


@pytest.fixture
def client(site, monkeypatch):
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the test provider speaks plain HTTP
    context.set_context(site.cfg, site.layer, site.runtime)
    return site.app.server.test_client()


def start(client, nxt="/status?lang=en"):
    r = client.get("/login/oidc", query_string={"next": nxt})
    assert r.status_code == 302, r.get_data(as_text=True)
    return r.headers["Location"]


def at_provider(auth_url, user):
    """The user signs in at the provider, which sends the browser back with a code."""
    r = requests.get(auth_url + "&user=" + user, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    back = urlsplit(r.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return back.path + "?" + back.query


def audit(site, **match):
    return [e.data for e in site.store.events("audit", 0, 2**62) if all(e.data.get(k) == v for k, v in match.items())]


def test_login_page_offers_single_sign_on(client):
    assert 'id="gw-login-sso"' in client.get("/login?lang=en").get_data(as_text=True)


def test_an_operator_signs_in_through_the_provider_and_gets_a_session(client, site, provider):
    url = start(client)
    q = parse_qs(urlsplit(url).query)
    assert url.startswith(provider + "/authorize?")
    assert q["client_id"] == [CLIENT_ID] and q["response_type"] == ["code"] and q["code_challenge_method"] == ["S256"]
    assert q["state"][0] and q["nonce"][0] and "openid" in q["scope"][0]
    r = client.get(at_provider(url, "kim"))
    assert r.status_code == 302 and r.headers["Location"] == "/status?lang=en"
    assert client.get("/status?lang=en").status_code == 200
    with client.session_transaction() as s:
        assert s["user"] == {"name": "kim", "role": "operator"} and s["csrf"] and s["login_at"]
    (row,) = audit(site, action="login", user="kim")
    assert row["role"] == "operator" and row["detail"] == "oidc"
    assert SECRET not in json.dumps(site.store.events("audit", 0, 2**62), default=str)


def test_several_mapped_claim_values_give_the_highest_role(client):
    client.get(at_provider(start(client), "lee"))
    with client.session_transaction() as s:
        assert s["user"] == {"name": "lee", "role": "supervisor"}
    assert role_of(["x", "plant-admins", "plant-viewers"], ROLE_MAP) == "admin"
    assert role_of("plant-operators", ROLE_MAP) == "operator" and role_of(["x"], ROLE_MAP) is None


def test_a_claim_mapping_to_no_role_is_refused_and_logged(client, site, caplog):
    r = client.get(at_provider(start(client), "eve"))
    assert r.status_code == 403
    assert client.get("/").status_code == 302
    assert "unmapped_role" in caplog.text
    assert audit(site, action="login_failed", detail="oidc unmapped_role")


def test_a_forged_state_is_refused(client, site):
    back = at_provider(start(client), "kim")
    forged = back.replace("state=", "state=x")
    assert client.get(forged).status_code == 403
    assert client.get("/").status_code == 302
    assert audit(site, action="login_failed", detail="oidc state_mismatch")


def test_a_code_cannot_be_replayed(client, site):
    back = at_provider(start(client), "kim")
    assert client.get(back).status_code == 302
    client.get("/logout")
    other = site.app.server.test_client()
    assert other.get(back).status_code == 403  # no login started in that browser
    assert audit(site, action="login_failed", detail="oidc no_login_started")


def test_an_id_token_with_another_nonce_is_refused(client, site):
    back = at_provider(start(client), "kim")
    with client.session_transaction() as s:
        s["oidc"] = {**s["oidc"], "nonce": "not-the-nonce-sent"}
    assert client.get(back).status_code == 403
    assert [r for r in audit(site, action="login_failed") if r["detail"].startswith("oidc bad_claims")]


def test_a_wrong_client_secret_is_refused_by_the_provider(provider, monkeypatch):
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    s = make_site(provider, secret="not-the-secret-0123456789")
    try:
        context.set_context(s.cfg, s.layer, s.runtime)
        c = s.app.server.test_client()
        r = c.get(at_provider(start(c), "kim"))
        assert r.status_code == 403
        assert [a for a in audit(s, action="login_failed") if a["detail"].startswith("oidc token_refused")]
    finally:
        s.store.close()


def test_without_the_client_secret_the_app_refuses_to_start(provider):
    from dashboards.auth import AuthConfigError

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    ui = cfg.system.ui.model_copy(update={"oidc": OidcConfig(issuer=provider, client_id=CLIENT_ID, role_map=ROLE_MAP)})
    cfg = dataclasses.replace(cfg, system=cfg.system.model_copy(update={"ui": ui}))
    store = EmbeddedStore()
    try:
        with pytest.raises(AuthConfigError, match="GWANJE_OIDC_CLIENT_SECRET"):
            create_app(cfg, store, env={"GWANJE_SECRET_KEY": "k" * 32})
    finally:
        store.close()
