"""Control-room security outside demo mode, tried over HTTP the way a browser (or an attacker)
does it: argon2 passwords, the audit log and its admin page, wall-display tokens, security
headers, generic error pages. Real app (Flask test client), real EmbeddedStore."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher
from dash import Input, Output
from werkzeug.security import generate_password_hash

from dashboards import audit_log, auth, context, create_app
from dashboards.audit_log import AuditWriter
from dashboards.auth import AuthConfigError, parse_display_tokens
from dashboards.data import DataLayer
from gwanje.audit import audit_event
from gwanje.config import load_config
from runtime.health import add_routes
from gwanje.model import Event
from storage.embedded import EmbeddedStore
from tests.dashboards.conftest import REPO
from tests.dashboards.helpers import dash_call
from tests.engine.conftest import kst
from tests.fixtures.prom import metric_value

S = 10**9
PASSWORD = "correct horse"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # cheap: the tests check the gate
ARGON = FAST.hash(PASSWORD)
LEGACY = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
USERS = {"ada": ("admin", ARGON), "olga": ("operator", ARGON), "vic": ("viewer", ARGON),
         "sam": ("supervisor", ARGON), "leo": ("operator", LEGACY)}
WALL = "w" * 30
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_DISPLAY_TOKENS": f"wall-1:{WALL},wall-2:{'z' * 24}",
       "GWANJE_USERS": ",".join(f"{u}:{r}:{h}" for u, (r, h) in USERS.items())}
T0 = kst(2026, 9, 21, 23)
STOP = kst(2026, 9, 21, 8)
SHIFT = "2026-09-21/day"
EN = {"lang": "en", "kiosk": False}


class FlakyStore(EmbeddedStore):
    """A real store whose writes fail while `down` (the store away for a while)."""

    down = 0

    def write_events(self, events):
        if self.down:
            self.down -= 1
            raise ConnectionError("store away")
        return super().write_events(events)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore(tmp_path_factory.mktemp("sec") / "ui.duckdb")
    store.write_events([Event("state", STOP, "changwon-1", "cnc-1", "cnc-101", "", {"state": "down"})])
    env = dict(ENV)
    layer = DataLayer(cfg, store, ttl_s=0.0, clock=lambda: T0)
    runtime = SimpleNamespace(status=lambda: {})
    app = create_app(cfg, store, runtime, env=env, data=layer)

    @app.callback(Output("boom-out", "children"), Input("boom-in", "value"))
    def boom(value):  # a callback with a bug
        raise RuntimeError("secret detail of the bug")

    @app.server.route("/boom-page")
    def boom_page():
        raise RuntimeError("secret detail of the page bug")

    add_routes(app.server, runtime.status)
    yield SimpleNamespace(app=app, cfg=cfg, store=store, layer=layer, runtime=runtime, env=env)
    store.close()


@pytest.fixture
def client(site):
    context.set_context(site.cfg, site.layer, site.runtime)
    return site.app.server.test_client()


def login(client, name, password=PASSWORD, addr="10.0.0.1"):
    return client.post("/login", data={"username": name, "password": password, "next": "/"},
                       environ_base={"REMOTE_ADDR": addr})


def audit_rows(site, **match):
    evs = site.store.events("audit", 0, 2**62)
    return [e.data for e in evs if all(e.data.get(k) == v for k, v in match.items())]


# ----------------------------------------------------------------------------- passwords
def test_argon2_and_legacy_hashes_both_verify_and_wrong_passwords_do_not():
    assert auth.verify(ARGON, PASSWORD) and auth.verify(LEGACY, PASSWORD)
    assert not auth.verify(ARGON, "wrong") and not auth.verify(LEGACY, "wrong")
    assert not auth.verify("$argon2id$garbage", PASSWORD) and not auth.verify("not-a-hash", PASSWORD)
    users = auth.parse_users(ENV["GWANJE_USERS"])
    assert auth.check(users, "ada", PASSWORD).role == "admin"
    assert auth.check(users, "nobody", PASSWORD) is None
    # the dummy an unknown name is checked against is argon2 as well (same kind of work)
    assert auth._dummy_hash().startswith("$argon2id$")
    assert auth.legacy_users(users) == ["leo"]


def test_the_hash_command_prints_an_argon2id_hash_that_verifies():
    r = subprocess.run([sys.executable, "-m", "dashboards.auth", "hash", "--stdin"], input="s3cret pass\n",
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    h = r.stdout.strip()
    assert h.startswith("$argon2id$") and "s3cret" not in h
    assert auth.verify(h, "s3cret pass") and not auth.verify(h, "s3cret")


def test_a_legacy_hash_is_warned_about_once_per_user_at_start(caplog):
    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore()
    try:
        with caplog.at_level(logging.WARNING, "gwanje.ui.auth"):
            create_app(cfg, store, env=ENV)
        warned = [r.getMessage() for r in caplog.records if "rehash" in r.getMessage()]
        assert len(warned) == 1 and "leo" in warned[0] and "python -m dashboards.auth hash" in warned[0]
        assert LEGACY not in caplog.text
    finally:
        store.close()


def test_legacy_and_argon2_users_both_log_in(client):
    assert login(client, "leo").status_code == 302
    assert login(client, "olga").status_code == 302
    assert login(client, "olga", "nope").status_code == 401


# ----------------------------------------------------------------------------- audit log
def test_login_logout_and_failed_login_are_audited_without_the_password(client, site):
    assert login(client, "olga", "hunter2-typo", addr="10.1.1.1").status_code == 401
    assert login(client, "x" * 500 + "mallory", "pw-guess", addr="10.1.1.1").status_code == 401
    assert login(client, "olga", addr="10.1.1.1").status_code == 302
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/logout").get_data(as_text=True)).group(1)
    assert client.post("/logout", data={"csrf": token}).status_code == 302
    failed = audit_rows(site, action="login_failed", client="10.1.1.1")
    assert [(r["user"], r["ok"], r["detail"]) for r in failed[:1]] == [("olga", False, "bad_credentials")]
    assert len(failed[1]["user"]) <= 64  # the name as typed, truncated
    assert [r["role"] for r in audit_rows(site, action="login", user="olga", client="10.1.1.1")] == ["operator"]
    assert len(audit_rows(site, action="logout", user="olga")) >= 1
    dump = json.dumps(site.store.events("audit", 0, 2**62, limit=100_000), default=str)
    assert "hunter2" not in dump and "pw-guess" not in dump and PASSWORD not in dump and "$argon2" not in dump


def reason(client, value):
    key = '{"line":"cnc-1","machine":"cnc-101","site":"changwon-1","start":"%d","type":"gw-reason"}.value' % STOP
    return dash_call(client, "gw-reason-saved", {key: value, "page-ctx.data": EN}, [key],
                     match={"site": "changwon-1", "line": "cnc-1", "machine": "cnc-101", "start": str(STOP)})


def test_downtime_reasons_are_audited_with_before_and_after(client, site):
    login(client, "olga")
    assert reason(client, "material").status_code == 200
    assert reason(client, "mechanical/spindle").status_code == 200
    rows = audit_rows(site, action="shift.downtime_reason", user="olga")
    assert [(r["before"], r["after"]) for r in rows[-2:]] == [(None, "material"), ("material", "mechanical/spindle")]
    assert rows[-1]["target"] == f"changwon-1/cnc-1/cnc-101 stop {STOP}" and rows[-1]["role"] == "operator"
    login(client, "vic")
    reason(client, "material")
    assert audit_rows(site, action="shift.downtime_reason", user="vic", ok=False)


def test_recompute_is_audited_with_the_shift_and_a_summary(client, site):
    login(client, "sam")
    params = {"site": "changwon-1", "line": "cnc-1", "machine": None, "shift": SHIFT}
    r = dash_call(client, "shift-recompute-out.children", {"shift-recompute-btn.n_clicks": 1,
                                                           "shift-params.data": params, "page-ctx.data": EN},
                  ["shift-recompute-btn.n_clicks"])
    assert r.status_code == 200 and "Recomputed" in r.get_data(as_text=True)
    (row,) = audit_rows(site, action="shift.recompute", user="sam")
    assert row["target"] == f"changwon-1/cnc-1 {SHIFT}" and row["before"] is None
    assert row["after"]["records"] > 0 and "availability" in row["after"]


def test_an_audit_entry_the_store_refuses_is_retried_and_then_written():
    store = FlakyStore()
    try:
        w = AuditWriter(store, retry_s=0.01)
        store.down = 2  # this write and the first retry fail
        ev = audit_event("login", "olga", "operator")
        assert w.write(ev) is False and w.pending() == 1
        from tests.fixtures.common import wait_for

        assert wait_for(lambda: w.pending() == 0, timeout=10)
        assert [e.key for e in store.events("audit", 0, 2**62)] == [ev.key]
    finally:
        store.close()


def test_an_audit_entry_given_up_is_logged_and_counted(caplog):
    store = FlakyStore()
    try:
        w = AuditWriter(store, max_attempts=3, retry_s=3600)  # retries driven by hand here
        store.down = 99
        with caplog.at_level(logging.WARNING, "gwanje.ui.audit"):
            w.write(audit_event("logout", "olga", "operator"))
            assert w.flush() == 1
            assert w.flush() == 0
        assert "lost after 3 attempts" in caplog.text and "logout by olga" in caplog.text
        assert w.rejects.counts() == {"audit_lost_store_down": 1}
    finally:
        store.close()


# ----------------------------------------------------------------------------- the admin page
def audit_page(client, output="audit-body.children", **values):
    vals = {"audit-from.value": "", "audit-to.value": "", "audit-user.value": "", "audit-action.value": [],
            "page-ctx.data": EN, **values}
    return dash_call(client, output, vals, ["audit-from.value"])


def test_the_audit_page_shows_entries_to_admins_only(client, site):
    login(client, "olga", "typo")  # a failed login to find
    for name in ("vic", "olga", "sam"):
        login(client, name)
        r = audit_page(client)
        assert r.status_code == 200 and "Not allowed for your role" in r.get_data(as_text=True)
        assert "login_failed" not in r.get_data(as_text=True)
        r = audit_page(client, "audit-csv.data", **{"audit-csv-btn.n_clicks": 1})
        out = r.get_json()["response"]
        assert "audit-csv" not in out and out["audit-msg"]["children"] == "Not allowed for your role"
    login(client, "ada")
    r = audit_page(client, **{"audit-action.value": ["login_failed"], "audit-user.value": "olg",
                              "audit-from.value": "2020-01-01"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "login_failed" in body and "bad_credentials" in body
    assert '"login"' not in body.replace("login_failed", "")
    r = audit_page(client, "audit-csv.data", **{"audit-csv-btn.n_clicks": 1, "audit-from.value": "2020-01-01"})
    csv = r.get_json()["response"]["audit-csv"]["data"]
    assert csv["filename"].endswith(".csv") and csv["content"].startswith("time,user,role,action,target,ok")
    lines = csv["content"].splitlines()[1:]
    times = [ln.split(",")[0] for ln in lines]
    assert times == sorted(times, reverse=True) and any(",login_failed," in ln for ln in lines)


def test_the_audit_page_layout_says_not_allowed_to_an_operator(client, site):
    import dash

    from tests.dashboards.helpers import by_id, text

    page = dash.page_registry["dashboards.pages.admin_audit"]["layout"]
    for role, allowed in (("operator", False), ("viewer", False), ("admin", True)):
        with client.application.test_request_context("/admin/audit"):
            import flask

            flask.session.update({"user": {"name": "x", "role": role}})
            lay = page(lang="en")
        assert (by_id(lay, "audit-denied") is None) == allowed, role
        assert ("Not allowed for your role" in text(lay)) != allowed
    # the nav offers the page only to a role that may see it
    with client.application.test_request_context("/"):
        import flask

        flask.session.update({"user": {"name": "x", "role": "operator"}})
        nav = dash.page_registry["dashboards.pages.overview"]["layout"](lang="en")
    assert "Audit log" not in text(by_id(nav, "gw-nav"))


def test_a_bad_audit_filter_is_refused_before_any_query(client, site):
    login(client, "ada")
    for field, value in (("audit-from.value", "2026-13-45"), ("audit-user.value", "x' OR '1'='1"),
                         ("audit-action.value", ["drop"])):
        assert audit_page(client, **{field: value}).status_code == 400, field


# ----------------------------------------------------------------------------- wall displays
def test_a_display_token_opens_a_read_only_kiosk_session_that_is_audited(client, site):
    r = client.get(f"/display?token={WALL}", environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert r.status_code == 302 and r.headers["Location"].endswith("kiosk=1")
    assert "Max-Age" not in r.headers["Set-Cookie"] and "Expires" not in r.headers["Set-Cookie"]
    assert client.get("/").status_code == 200
    assert audit_rows(site, action="login", user="display:wall-1", client="10.2.2.2")
    # never acts, whatever its role could
    assert "Not allowed" in reason(client, "material").get_data(as_text=True)
    with client.application.test_request_context("/"):
        import flask

        flask.session.update({"user": {"name": "display:wall-1", "role": "admin"}, "display": "wall-1"})
        with pytest.raises(auth.NotAllowed):
            auth.authorize("alarm.acknowledge")
    # no expiry after session_hours: it lasts while the token is in the environment
    with client.session_transaction() as s:
        s["login_at"] -= 400 * 3600
    assert client.get("/").status_code == 200
    # the path form works too
    assert client.get("/display/" + "z" * 24).status_code == 302


def test_removing_or_changing_a_display_token_ends_its_sessions(client, site):
    assert client.get(f"/display?token={WALL}").status_code == 302
    assert client.get("/").status_code == 200
    site.env["GWANJE_DISPLAY_TOKENS"] = f"wall-1:{'n' * 30}"  # rotated
    try:
        assert client.get("/").status_code == 302
        assert client.get(f"/display?token={WALL}").status_code == 403
    finally:
        site.env["GWANJE_DISPLAY_TOKENS"] = ENV["GWANJE_DISPLAY_TOKENS"]
    assert client.get(f"/display?token={WALL}").status_code == 302
    site.env["GWANJE_DISPLAY_TOKENS"] = f"wall-2:{'z' * 24}"  # wall-1 removed
    try:
        assert client.get("/").status_code == 302
    finally:
        site.env["GWANJE_DISPLAY_TOKENS"] = ENV["GWANJE_DISPLAY_TOKENS"]


def test_a_wrong_display_token_is_refused_counted_and_audited(client, site):
    assert client.get("/display?token=" + "w" * 29).status_code == 403
    assert client.get("/display").status_code == 403
    assert client.get("/").status_code == 302
    assert audit_rows(site, action="login_failed", user="display:?")
    login(client, "ada")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert metric_value(metrics, "gwanje_rejects_total", source="dashboard-login", reason="bad_display_token") >= 1


@pytest.mark.parametrize("text,msg", [("wall-1:short", "shorter than 24"), ("wall-1", "expected name:token"),
                                      (f"a:{WALL},a:{'q' * 30}", "given twice"), (f"a:{WALL},b:{WALL}", "given twice")])
def test_a_bad_display_token_list_refuses_to_start_without_showing_tokens(text, msg):
    with pytest.raises(AuthConfigError, match=msg) as e:
        parse_display_tokens(text)
    assert WALL not in str(e.value) and "short" not in str(e.value).replace("shorter", "")


# ----------------------------------------------------------------------------- headers, errors
def test_every_response_carries_the_security_headers(client):
    for r in (client.get("/login"), client.get("/"), client.get("/healthz"),
              client.post("/_dash-update-component", json={})):
        h = r.headers
        assert "script-src 'self' 'sha256-" in h["Content-Security-Policy"], r.request.path
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"] and "'unsafe-eval'" not in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "same-origin" and "camera=()" in h["Permissions-Policy"]
        assert h["Strict-Transport-Security"].startswith("max-age=")


def test_demo_mode_sends_no_hsts(plant_config):
    store = EmbeddedStore()
    try:
        app = create_app(plant_config, store)
        h = app.server.test_client().get("/").headers
        assert "Strict-Transport-Security" not in h and h["X-Frame-Options"] == "DENY"
    finally:
        store.close()


def test_errors_show_a_generic_message_with_an_id_that_is_in_the_log(client, caplog):
    login(client, "olga")
    with caplog.at_level(logging.ERROR, "gwanje.ui.security"):
        r = dash_call(client, "boom-out.children", {"boom-in.value": "x"}, ["boom-in.value"])
        page = client.get("/boom-page")
    assert r.status_code == 500
    body = r.get_json()
    assert body["error"] == "internal error" and re.fullmatch(r"[0-9a-f]{12}", body["error_id"])
    assert page.status_code == 500
    text = page.get_data(as_text=True)
    page_id = re.search(r"Error id: ([0-9a-f]{12})", text).group(1)
    for resp in (r, page):
        assert "secret detail" not in resp.get_data(as_text=True) and "Traceback" not in resp.get_data(as_text=True)
    assert body["error_id"] in caplog.text and page_id in caplog.text and "secret detail of the bug" in caplog.text


def test_the_audit_record_helper_is_a_no_op_outside_an_app():
    assert audit_log.record("login", user="x") is None
