"""Outside demo mode every page and every Dash request needs a login, and every action that
changes state needs a role: tried the way a browser (or an attacker) does it, over HTTP
through the Flask test client of a real app, with a real EmbeddedStore and AlarmService."""
from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from werkzeug.security import generate_password_hash

from alerts.rules import AlarmRules
from alerts.service import AlarmService
from dashboards import context, create_app
from dashboards.auth import ACTIONS, ROLES, AuthConfigError, LoginThrottle, parse_users
from dashboards.data import DataLayer
from gwanje.config import load_config
from runtime.health import add_routes
from gwanje.model import Event, Sample
from tests.alerts.helpers import Clock
from tests.dashboards.conftest import REPO
from tests.engine.conftest import kst
from tests.dashboards.helpers import dash_call
from tests.fixtures.prom import metric_value

S = 10**9
# cheap hashes: the tests check the gate, not the hash cost
HASH = generate_password_hash("correct horse", method="pbkdf2:sha256:1000")
USERS = {"alice": "supervisor", "olga": "operator", "vic": "viewer", "erin": "engineer"}
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_USERS": ",".join(f"{u}:{r}:{HASH}" for u, r in USERS.items())}
T0 = kst(2026, 9, 21, 23)  # a Monday evening: that day's day shift (06:00-14:00) is closed
SHIFT = "2026-09-21/day"
STOP = kst(2026, 9, 21, 8)  # cnc-101 went down at 08:00
RULES = AlarmRules.model_validate({"rules": [
    {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
     "h": {"limit": 7.0, "priority": "high"},
     "message": {"ko": "{machine_name} 진동 {level} {value}", "en": "{machine_name} vibration {level} {value}"}},
]})
ALARM = "vib.h:changwon-1/cnc-1/cnc-101/vibration"
EN = {"lang": "en", "kiosk": False}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    assert cfg.system.demo is False
    store = EmbeddedStore(tmp_path_factory.mktemp("auth") / "ui.duckdb")
    clock = Clock(T0)
    svc = AlarmService(cfg, store, clock=clock, rules=RULES)
    store.write_events([Event("state", STOP, "changwon-1", "cnc-1", "cnc-101", "", {"state": "down"})])
    layer = DataLayer(cfg, store, ttl_s=0.0, clock=clock)
    runtime = SimpleNamespace(alarms=svc, status=lambda: {})
    app = create_app(cfg, store, runtime, env=ENV, data=layer)
    add_routes(app.server, runtime.status)  # /healthz /readyz /metrics, as app.py does for the UI process
    yield SimpleNamespace(app=app, cfg=cfg, store=store, svc=svc, clock=clock, layer=layer, runtime=runtime)
    store.close()


@pytest.fixture
def client(site):
    # another test may have built an app since (create_app sets the pages' context)
    context.set_context(site.cfg, site.layer, site.runtime)
    return site.app.server.test_client()


def login(client, name, password="correct horse", next_url="/", addr="10.0.0.1"):
    return client.post("/login", data={"username": name, "password": password, "next": next_url},
                       environ_base={"REMOTE_ADDR": addr})


def test_pages_redirect_to_login_and_dash_requests_are_refused(client):
    r = client.get("/machine/changwon-1/cnc-1/cnc-101?lang=en")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?lang=en&next=%2Fmachine%2Fchangwon-1")
    assert client.get("/_dash-layout").status_code == 401
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.get("/login").status_code == 200


def test_wrong_password_and_unknown_user_are_refused(client):
    r = login(client, "alice", "wrong")
    assert r.status_code == 401 and "사용자 또는 비밀번호가 틀립니다" in r.get_data(as_text=True)
    assert login(client, "mallory", "x").status_code == 401
    assert client.get("/").status_code == 302


def test_login_opens_the_pages_and_the_header_names_the_user(client):
    r = login(client, "alice")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    # the page itself (Dash renders it in a callback): the header names the user, offers logout
    import dash

    from tests.dashboards.helpers import by_id, text

    with client.application.test_request_context("/"):
        import flask

        flask.session.update({"user": {"name": "alice", "role": "supervisor"}, "csrf": "t0ken"})
        lay = dash.page_registry["dashboards.pages.overview"]["layout"](lang="en")
    assert "alice" in text(lay)
    form = by_id(lay, "gw-logout-form")  # a form posting to /logout, with the session's token
    assert (form.method, form.action) == ("post", "/logout?lang=en")
    assert by_id(form, "gw-logout-token").value == "t0ken" and by_id(form, "gw-logout").type == "submit"


# browsers drop tabs and newlines inside URLs, so "/\t/x" becomes "//x": another site
@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil", "/\r/evil", "//evil", "https://evil",
                                    "/\\evil", "\\\\evil", " //evil", "/ /evil", "http:evil", "//evil/\t",
                                    "/\x00/evil", "/\u2028/evil"])
def test_login_never_redirects_off_site(client, target):
    page = client.get("/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" value="/"' in page
    r = login(client, "alice", next_url=target)
    assert r.status_code == 302 and r.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/%09/evil", "/machine/changwon-1/cnc-1/cnc-101?lang=en&window=1h"])
def test_login_keeps_a_same_site_path(client, target):
    r = login(client, "alice", next_url=target)
    assert r.status_code == 302 and r.headers["Location"] == target
    # what a browser makes of it: still a path of this site
    loc = re.sub(r"[\t\n\r]", "", r.headers["Location"])
    assert not urlsplit(loc).netloc and loc.startswith("/") and not loc.startswith("//")


def test_a_cross_site_get_cannot_log_out(client):
    login(client, "alice")
    # what <img src="https://gwanje/logout"> on another site makes the browser do
    r = client.get("/logout")
    assert r.status_code == 200 and 'method="post"' in r.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still logged in
    # a forged form post (no token) is refused too
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/").status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/logout").get_data(as_text=True)).group(1)
    r = client.post("/logout", data={"csrf": token})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert client.get("/").status_code == 302
    # logged out already: the button leads to the login page
    assert client.get("/logout").status_code == 302


def test_session_cookie_is_secure_http_only_same_site_and_expires(client, site):
    r = login(client, "alice")
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    hours = site.cfg.system.ui.session_hours
    assert hours == 12
    assert f"Max-Age={int(hours * 3600)}" in cookie or "Expires=" in cookie
    # absolute expiry from the login, however busy the user has been since
    with client.session_transaction() as s:
        s["login_at"] -= int(hours * 3600) + 1
    assert client.get("/").status_code == 302
    assert client.post("/_dash-update-component", json={}).status_code == 401


def test_a_session_older_than_its_login_time_record_is_not_accepted(client):
    login(client, "alice")
    with client.session_transaction() as s:
        del s["login_at"]  # a cookie signed before sessions carried their login time
    assert client.get("/").status_code == 302


def test_login_is_throttled_per_user_and_address(client):
    for _ in range(5):
        assert login(client, "olga", "guess", addr="10.9.9.9").status_code == 401
    # the sixth try from there is refused even with the right password
    r = login(client, "olga", addr="10.9.9.9")
    assert r.status_code == 429 and "Retry-After" in r.headers
    # olga at her own terminal is not locked out by someone guessing elsewhere
    assert login(client, "olga", addr="10.0.0.7").status_code == 302
    metrics = client.get("/metrics").get_data(as_text=True)
    assert metric_value(metrics, "gwanje_rejects_total", source="dashboard-login", reason="throttled") == 1
    assert metric_value(metrics, "gwanje_rejects_total", source="dashboard-login", reason="bad_credentials") >= 1


def test_throttle_lets_the_pair_try_again_after_the_back_off():
    t = [0.0]
    th = LoginThrottle(limit=5, window_s=300, lockout_s=300, clock=lambda: t[0])
    key = ("olga", "10.9.9.9")
    for _ in range(4):  # at 0, 100, 200, 300 s
        th.failed(key)
        t[0] += 100
    th.failed(key)  # at 400 s: those at 0 and 100 s are 5 min old, three count
    th.failed(key)
    assert th.locked_for(key) == 0
    th.failed(key)  # five within 5 min
    assert th.locked_for(key) == 300
    t[0] += 299
    assert th.locked_for(key) == 1
    t[0] += 1
    assert th.locked_for(key) == 0
    th.failed(key)  # a clean slate after the back-off
    assert th.locked_for(key) == 0
    for _ in range(3):
        th.failed(key)
    th.succeeded(key)  # the right password: counting starts again
    th.failed(key)
    assert th.locked_for(key) == 0


def test_missing_secret_or_users_refuse_to_start():
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore()
    try:
        with pytest.raises(AuthConfigError, match="GWANJE_SECRET_KEY"):
            create_app(cfg, store, env={"GWANJE_USERS": ENV["GWANJE_USERS"]})
        with pytest.raises(AuthConfigError, match="GWANJE_USERS"):
            create_app(cfg, store, env={"GWANJE_SECRET_KEY": "k" * 32})
        with pytest.raises(AuthConfigError, match="entry 2: unknown role"):
            create_app(cfg, store, env={**ENV, "GWANJE_USERS": f"a:operator:{HASH},b:Viewer:{HASH}"})
    finally:
        store.close()


def test_user_list_parsing_keeps_colons_in_hashes_and_hides_them():
    users = parse_users("a:operator:pbkdf2:sha256:1000$s$h, b:viewer:scrypt:1:2:3$x$y")
    assert users["a"].pw_hash == "pbkdf2:sha256:1000$s$h" and users["b"].role == "viewer"
    assert "pbkdf2" not in repr(users["a"])
    with pytest.raises(AuthConfigError, match="entry 2"):
        parse_users("a:operator:h,broken")


@pytest.mark.parametrize("role", ["Viewer", "supervsior", "root", " ", "viewer "])
def test_a_role_outside_the_ladder_refuses_to_start_and_names_only_the_position(role):
    with pytest.raises(AuthConfigError) as e:
        parse_users(f"a:operator:h1,b:{role}:pbkdf2:sha256:1000$salt$secret")
    msg = str(e.value)
    assert msg.startswith("GWANJE_USERS entry 2: unknown role") and "viewer < operator" in msg
    assert "secret" not in msg and "salt" not in msg


def test_a_user_named_twice_is_an_error():
    with pytest.raises(AuthConfigError, match="entry 3: user named twice"):
        parse_users("a:admin:h1,b:viewer:h2,a:viewer:h3")


def test_every_action_needs_a_role_of_the_ladder():
    assert ROLES == ("viewer", "operator", "supervisor", "engineer", "admin")
    assert set(ACTIONS.values()) <= set(ROLES)


# ----------------------------------------------------------------------------- actions over HTTP
def press(client, button, rows, comment="reason"):
    """An alarm button pressed on /alarms (or a request crafted to look like it)."""
    return dash_call(client, "alarm-feedback.children",
                     {f"{button}.n_clicks": 1, "alarms-grid.selectedRows": rows, "alarm-user.value": "typed",
                      "alarm-comment.value": comment, "alarm-shelve-for.value": 3600,
                      "alarm-action-done.data": 0, "page-ctx.data": EN}, [f"{button}.n_clicks"])


def feedback(r) -> str:
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["response"]["alarm-feedback"]["children"]


@pytest.fixture
def alarm(site):
    site.clock.t += S
    site.store.write_events(site.svc.on_samples([
        Sample("changwon-1", "cnc-1", "cnc-101", "vibration", 7.5, site.clock.t)]))
    assert site.svc.get(ALARM).status.value == "unack_active"
    yield [{"id": ALARM, "site_id": "changwon-1", "line_id": "cnc-1"}]
    # back to normal for the next test, whatever this one left
    site.clock.t += 60 * S
    site.store.write_events(site.svc.on_samples([
        Sample("changwon-1", "cnc-1", "cnc-101", "vibration", 1.0, site.clock.t)]))
    s = site.svc.get(ALARM)
    state = s.status.value if s else "normal"
    if state == "out_of_service":
        site.svc.return_to_service(ALARM, "alice", "test end")
    elif state == "shelved":
        site.svc.unshelve(ALARM, "alice", "test end")
    after = site.svc.get(ALARM)
    if after is not None and after.unacknowledged:
        site.svc.acknowledge(ALARM, "alice")


def test_a_viewer_cannot_act_on_alarms_by_calling_the_callback(client, site, alarm, caplog):
    login(client, "vic")
    with caplog.at_level(logging.WARNING, "gwanje.rejects"):
        for button in ("alarm-ack", "alarm-ack-line", "alarm-add-comment", "alarm-shelve", "alarm-oos"):
            assert feedback(press(client, button, alarm)) == "Not allowed for your role"
    s = site.svc.get(ALARM)
    assert s.status.value == "unack_active" and not s.acked_by and not s.last_comment
    assert "not_allowed" in caplog.text and "vic" in caplog.text and "alarm." in caplog.text
    metrics = client.get("/metrics").get_data(as_text=True)
    assert metric_value(metrics, "gwanje_rejects_total", source="dashboard-actions", reason="not_allowed") == 5


def test_shelving_and_out_of_service_need_a_supervisor(client, site, alarm):
    login(client, "olga")
    assert feedback(press(client, "alarm-shelve", alarm)) == "Not allowed for your role"
    assert feedback(press(client, "alarm-oos", alarm)) == "Not allowed for your role"
    assert site.svc.get(ALARM).status.value == "unack_active"
    assert feedback(press(client, "alarm-add-comment", alarm, "checked the bearing")) == "1 done"
    assert feedback(press(client, "alarm-ack", alarm)) == "1 done"
    # the session's user acts, not the name typed in the form
    assert site.svc.get(ALARM).acked_by == "olga"
    login(client, "alice")
    assert feedback(press(client, "alarm-shelve", alarm, "sensor fault")) == "1 done"
    assert site.svc.get(ALARM).status.value == "shelved"
    assert feedback(press(client, "alarm-unshelve", alarm)) == "1 done"


def test_engineers_and_admins_rank_above_supervisors(client, site, alarm):
    login(client, "erin")
    assert feedback(press(client, "alarm-oos", alarm, "sensor replaced")) == "1 done"
    assert site.svc.get(ALARM).status.value == "out_of_service"
    assert feedback(press(client, "alarm-ris", alarm)) == "1 done"


def reason(client, value="material"):
    ident = {"type": "gw-reason", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101", "start": str(STOP)}
    match = {k: v for k, v in ident.items() if k != "type"}
    key = '{"line":"cnc-1","machine":"cnc-101","site":"changwon-1","start":"%d","type":"gw-reason"}.value' % STOP
    return dash_call(client, "gw-reason-saved", {key: value, "page-ctx.data": EN}, [key], match=match)


def reasons_stored(site) -> list:
    return site.store.events("downtime_reason", STOP - S, T0 + S, "changwon-1", "cnc-1", "cnc-101")


def saved_text(r) -> str:
    assert r.status_code == 200, r.get_data(as_text=True)
    (out,) = r.get_json()["response"].values()
    return out["children"]


def test_a_viewer_cannot_give_a_downtime_reason(client, site):
    value = "mechanical/spindle"
    login(client, "vic")
    assert saved_text(reason(client, value)) == "Not allowed for your role"
    assert reasons_stored(site) == []
    login(client, "olga")
    assert saved_text(reason(client, value)) != "Not allowed for your role"
    assert [(e.data["reason"], e.data["user"]) for e in reasons_stored(site)] == [(value, "olga")]


def recompute(client):
    params = {"site": "changwon-1", "line": "cnc-1", "machine": None, "shift": SHIFT}
    r = dash_call(client, "shift-recompute-out.children", {"shift-recompute-btn.n_clicks": 1,
                                                           "shift-params.data": params, "page-ctx.data": EN},
                  ["shift-recompute-btn.n_clicks"])
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["response"]["shift-recompute-out"]["children"]


def test_recompute_of_a_shift_needs_a_supervisor(client, site):
    def stored():
        return site.store.events("oee_shift", kst(2026, 9, 21, 6), kst(2026, 9, 21, 6) + 1, "changwon-1", "cnc-1")

    for name in ("vic", "olga"):
        login(client, name)
        assert recompute(client) == "Not allowed for your role"
    assert stored() == []
    login(client, "alice")
    assert recompute(client).startswith("Recomputed")
    assert stored() != []


def test_serve_with_an_unknown_role_refuses_to_start_with_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "GWANJE_DEMO": "0", "GWANJE_SECRET_KEY": "k" * 32, "GWANJE_DATA_DIR": str(tmp_path),
           "GWANJE_COMMAND_KEY": "c" * 32,
           "GWANJE_USERS": f"a:admin:{HASH},b:Supervisor:{HASH}", "GWANJE_PORT": "1"}
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "serve"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3, r.stderr
    assert "GWANJE_USERS entry 2: unknown role (one of viewer < operator < supervisor < engineer < admin)" in r.stderr
    assert HASH not in r.stderr and "Traceback" not in r.stderr
