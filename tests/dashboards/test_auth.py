"""Outside demo mode every page and every Dash request needs a login (Flask test client)."""
from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from dashboards import create_app
from dashboards.auth import AuthConfigError, parse_users
from gwanje.config import load_config
from tests.dashboards.conftest import REPO

# cheap hashes: the test checks the gate, not the hash cost
HASH_ALICE = generate_password_hash("correct horse", method="pbkdf2:sha256:1000")
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_USERS": f"alice:supervisor:{HASH_ALICE}"}


@pytest.fixture(scope="module")
def client():
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    assert cfg.system.demo is False
    store = EmbeddedStore()
    app = create_app(cfg, store, env=ENV)
    yield app.server.test_client()
    store.close()


def test_pages_redirect_to_login_and_dash_requests_are_refused(client):
    r = client.get("/machine/changwon-1/cnc-1/cnc-101?lang=en")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?lang=en&next=%2Fmachine%2Fchangwon-1")
    assert client.get("/_dash-layout").status_code == 401
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/login").status_code == 200


def test_wrong_password_and_unknown_user_are_refused(client):
    r = client.post("/login", data={"username": "alice", "password": "wrong", "next": "/"})
    assert r.status_code == 401 and "사용자 또는 비밀번호가 틀립니다" in r.get_data(as_text=True)
    assert client.post("/login", data={"username": "mallory", "password": "x"}).status_code == 401
    assert client.get("/").status_code == 302


def test_login_opens_the_pages_and_never_redirects_off_site(client):
    r = client.post("/login", data={"username": "alice", "password": "correct horse", "next": "//evil.example/x"})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    # the page itself (Dash renders it in a callback): the header names the user, offers logout
    import dash
    from tests.dashboards.helpers import by_id, text

    with client.application.test_request_context("/"):
        import flask

        flask.session["user"] = {"name": "alice", "role": "supervisor"}
        lay = dash.page_registry["dashboards.pages.overview"]["layout"](lang="en")
    assert "alice" in text(lay) and by_id(lay, "gw-logout").href == "/logout"
    client.get("/logout")
    assert client.get("/").status_code == 302


def test_missing_secret_or_users_refuse_to_start():
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore()
    try:
        with pytest.raises(AuthConfigError, match="GWANJE_SECRET_KEY"):
            create_app(cfg, store, env={"GWANJE_USERS": ENV["GWANJE_USERS"]})
        with pytest.raises(AuthConfigError, match="GWANJE_USERS"):
            create_app(cfg, store, env={"GWANJE_SECRET_KEY": "k" * 32})
    finally:
        store.close()


def test_user_list_parsing_keeps_colons_in_hashes_and_hides_them():
    users = parse_users("a:operator:pbkdf2:sha256:1000$s$h, b:viewer:scrypt:1:2:3$x$y")
    assert users["a"].pw_hash == "pbkdf2:sha256:1000$s$h" and users["b"].role == "viewer"
    assert "pbkdf2" not in repr(users["a"])
    with pytest.raises(AuthConfigError, match="entry 2"):
        parse_users("a:r:h,broken")
