"""Releasing a held LOT outside demo mode: a supervisor (or above) may, an operator may not —
refused on the server whatever the browser sends — and both are in the audit log. Over HTTP
through the Flask test client of a real app with a real EmbeddedStore."""
from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from dashboards import context, create_app
from dashboards.data import DataLayer
from gwanje.config import load_config
from tests.dashboards import lot_records as R
from tests.dashboards.conftest import REPO
from tests.dashboards.helpers import dash_call

HASH = generate_password_hash("correct horse", method="pbkdf2:sha256:1000")
USERS = {"alice": "supervisor", "olga": "operator"}
ENV = {"GWANJE_SECRET_KEY": "k" * 32, "GWANJE_USERS": ",".join(f"{u}:{r}:{HASH}" for u, r in USERS.items())}
EN = {"lang": "en", "kiosk": False}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    store = EmbeddedStore(tmp_path_factory.mktemp("lotauth") / "ui.duckdb")
    events, samples = R.records()
    store.write_events(events)
    store.write_samples(samples)
    layer = DataLayer(cfg, store, ttl_s=0.0, clock=lambda: R.NOW)
    app = create_app(cfg, store, env=ENV, data=layer)
    yield app, cfg, layer, store
    store.close()


@pytest.fixture
def client(site):
    app, cfg, layer, _ = site
    context.set_context(cfg, layer, None)
    return app.server.test_client()


def login(client, name):
    r = client.post("/login", data={"username": name, "password": "correct horse", "next": "/"},
                    environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert r.status_code in (302, 303), r.status_code


def release(client, comment):
    r = dash_call(client, "lot-release-out", {"lot-release-btn.n_clicks": 1, "lot-release-comment.value": comment,
                                               "lot-ctx.data": {"lot": "SH-C2"}, "page-ctx.data": EN},
                  ["lot-release-btn.n_clicks"])
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["response"]


def holds(store):
    return store.events("lot_hold", R.T0, R.NOW + 1, key="SH-C2")


def audits(store):
    return [e.data for e in store.events("audit", 0, 2**62) if e.data["action"] == "lot.release"]


def test_an_operator_cannot_release_and_is_audited(client, site):
    store = site[3]
    login(client, "olga")
    page = client.get("/lot/SH-C2")
    assert page.status_code == 200
    out = release(client, "looks fine to me")
    assert out["lot-release-out"]["children"] == "Not allowed for your role"
    (h,) = holds(store)
    assert h.data["status"] == "held"
    assert [(a["user"], a["role"], a["target"], a["ok"], a["detail"]) for a in audits(store)] == [
        ("olga", "operator", "SH-C2", False, "not_allowed")]


def test_the_operator_sees_no_release_form(client, site):
    from dashboards.pages.lot import may_release

    login(client, "olga")
    with site[0].server.test_request_context("/lot/SH-C2"):
        import flask

        flask.session["user"] = {"name": "olga", "role": "operator"}
        assert may_release() is False
        flask.session["user"] = {"name": "alice", "role": "supervisor"}
        assert may_release() is True


def test_a_supervisor_releases_with_a_reason_and_it_is_audited(client, site):
    store = site[3]
    login(client, "alice")
    out = release(client, "   ")
    assert out["lot-release-out"]["children"] == "Enter a reason for the release"
    assert holds(store)[0].data["status"] == "held"
    out = release(client, "rejects were a gauge fault, re-measured")
    assert out["lot-release-out"]["children"] == "Hold released (1)"
    (h,) = holds(store)  # the same identity, rewritten
    assert h.ts == R.HOLD_TS and (h.site, h.line, h.machine) == R.CNC2
    d = h.data
    assert (d["status"], d["released_by"], d["released_role"], d["comment"], d["reason"]) == (
        "released", "alice", "supervisor", "rejects were a gauge fault, re-measured", "reject_spike")
    assert isinstance(d["released_ns"], int)
    shown = str(out["lot-hold-list"]["children"])  # the hold list as the page redraws it
    assert "RELEASED" in shown and "Released by alice (supervisor)" in shown and "gauge fault" in shown
    ok = [a for a in audits(store) if a["ok"]]
    assert [(a["user"], a["role"], a["target"]) for a in ok] == [("alice", "supervisor", "SH-C2")]
    assert ok[0]["before"] == [{"ts": R.HOLD_TS, "reason": "reject_spike", "status": "held"}]
    assert ok[0]["after"][0]["status"] == "released"
    # nothing held any more: a second press changes nothing
    assert release(client, "again")["lot-release-out"]["children"] == "Nothing on hold"
