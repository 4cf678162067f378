"""Outside demo mode in a real headless Chromium: sign in, see your name, sign out with the
header's button (a form POST with the session's token), and be signed out for real."""
from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from dashboards import create_app
from gwanje.config import load_config
from tests.dashboards.conftest import REPO

pytestmark = pytest.mark.services

HASH = generate_password_hash("correct horse", method="pbkdf2:sha256:1000")
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_USERS": f"olga:operator:{HASH}"}


@pytest.fixture(scope="module")
def server(dash_server):
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore()
    yield dash_server(create_app(cfg, store, env=ENV))
    store.close()


def test_sign_in_and_out_with_the_header_button(server, browser):
    page = browser.new_page()
    try:
        page.goto(server.url + "/status?lang=en")
        page.wait_for_url("**/login?lang=en&next=%2Fstatus%3Flang%3Den")
        page.fill("input[name=username]", "olga")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url("**/status?lang=en")
        page.wait_for_selector(".gw-main")
        assert page.inner_text(".gw-user-name") == "olga"
        # the session cookie a browser keeps: Secure, HttpOnly, SameSite=Lax, expiring
        (cookie,) = [c for c in browser.cookies(server.url) if c["name"] == "session"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
        page.click("#gw-logout")
        page.wait_for_url("**/login?lang=en")
        # signed out on the server: the page asks for the login again
        page.goto(server.url + "/status?lang=en")
        page.wait_for_url("**/login?**")
    finally:
        page.close()
