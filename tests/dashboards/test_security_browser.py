"""Outside demo mode in a real headless Chromium: the admin's audit page shows the login and
logout just made, an operator is refused it, and with the Content-Security-Policy every page
still works without a single CSP violation in the console."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from dashboards import create_app
from gwanje.config import load_config
from tests.dashboards.conftest import REPO

pytestmark = pytest.mark.services
BROWSER_ENFORCES_CSP = True  # tests.fixtures.browser: this module runs under the app's real CSP

HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("correct horse")
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_USERS": f"ada:admin:{HASH},olga:operator:{HASH}",
       "GWANJE_DISPLAY_TOKENS": "wall-1:" + "t" * 32}
PAGES = ["/?lang=en", "/alarms?lang=en", "/machine/changwon-1/cnc-1/cnc-101?lang=en", "/oee?lang=en",
         "/shift-report?lang=en", "/status?lang=en", "/admin/audit?lang=en", "/?lang=en&kiosk=1"]


@pytest.fixture(scope="module")
def server(dash_server):
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore()
    yield dash_server(create_app(cfg, store, env=ENV))
    store.close()


def watch(page) -> list[str]:
    """Console errors and CSP violations the page reports."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: seen.append(f"pageerror: {e}"))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('CSP violation ' + e.violatedDirective + ' ' + e.blockedURI))")
    return seen


def sign_in(page, url, name):
    page.goto(url + "/login?lang=en&next=%2F%3Flang%3Den")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_selector(".gw-main")


def test_the_admin_sees_the_login_and_logout_in_the_audit_log(server, browser):
    page = browser.new_page()
    try:
        sign_in(page, server.url, "olga")
        page.click("#gw-logout")
        page.wait_for_url("**/login?lang=en")
        sign_in(page, server.url, "ada")
        page.goto(server.url + "/admin/audit?lang=en")
        page.wait_for_selector(".gw-audit-row")
        rows = page.eval_on_selector_all(".gw-audit-row", "els => els.map(e => [...e.children].map(c => c.innerText))")
        seen = [(r[1], r[3]) for r in rows]  # user, action
        assert ("olga", "login") in seen and ("olga", "logout") in seen and ("ada", "login") in seen
        assert seen.index(("ada", "login")) < seen.index(("olga", "logout")) < seen.index(("olga", "login"))
        with page.expect_download() as dl:
            page.click("#audit-csv-btn")
        text = open(dl.value.path(), encoding="utf-8").read()
        assert text.startswith("time,user,role,action") and "olga,operator,logout" in text
    finally:
        page.close()


def test_an_operator_is_refused_the_audit_page(server, browser):
    page = browser.new_page()
    try:
        sign_in(page, server.url, "olga")
        page.goto(server.url + "/admin/audit?lang=en")
        page.wait_for_selector("#audit-denied")
        assert page.inner_text("#audit-denied") == "Not allowed for your role"
        assert page.query_selector(".gw-audit-row") is None
        assert "Audit log" not in page.inner_text("#gw-nav")
        page.click("#gw-logout")
        page.wait_for_url("**/login?lang=en")
    finally:
        page.close()


def test_every_page_works_under_the_csp_without_violations(server, browser):
    page = browser.new_page()
    try:
        seen = watch(page)
        sign_in(page, server.url, "ada")
        for url in PAGES:
            page.goto(server.url + url)
            page.wait_for_selector(".gw-main")
            page.wait_for_selector(".gw-clock-time:not(:empty)")  # callbacks ran: the clock ticks
        page.goto(server.url + "/alarms?lang=en")
        page.wait_for_selector(".ag-root")  # AG Grid rendered
        page.goto(server.url + "/machine/changwon-1/cnc-1/cnc-101?lang=en")
        page.wait_for_selector(".js-plotly-plot")  # plotly drew
        bad = [s for s in seen if "Content Security Policy" in s or "CSP violation" in s or "pageerror" in s]
        assert bad == [], bad
    finally:
        page.close()


def test_a_wall_display_signs_in_with_its_token(server, browser):
    page = browser.new_page()
    try:
        page.goto(server.url + "/display?token=" + "t" * 32)
        page.wait_for_selector(".gw-kiosk .gw-main")
        assert "kiosk=1" in page.url
    finally:
        page.close()
