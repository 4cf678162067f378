"""The alarm banner and the alarms page: layouts and callbacks called directly on an app over
a real EmbeddedStore and a real AlarmService."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import dash
import pytest

from alerts.rules import AlarmRules
from alerts.service import AlarmService
from dashboards import alarm_banner, context, create_app
from dashboards.data import DataLayer
from gwanje.config import load_config
from gwanje.model import Sample
from storage.embedded import EmbeddedStore
from tests.alerts.helpers import REPO, S, Clock

T0 = 1_790_000_000 * S
RULES = AlarmRules.model_validate({"rules": [
    {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
     "h": {"limit": 7.0, "priority": "high"}, "hh": {"limit": 9.0, "priority": "critical"},
     "message": {"ko": "{machine_name} 진동 {level} {value}", "en": "{machine_name} vibration {level} {value}"}},
]})
HH1 = "vib.hh:changwon-1/cnc-1/cnc-101/vibration"
H1 = "vib.h:changwon-1/cnc-1/cnc-101/vibration"
H2 = "vib.h:changwon-1/cnc-1/cnc-102/vibration"
KO = {"lang": "ko", "kiosk": False}
EN = {"lang": "en", "kiosk": False}


@pytest.fixture(scope="module")
def app():
    cfg = load_config(REPO / "config", env={})
    store = EmbeddedStore()
    a = create_app(cfg, store)
    yield cfg, a
    store.close()


@pytest.fixture
def env(app, tmp_path):
    cfg, _ = app
    store = EmbeddedStore(tmp_path / "ui.duckdb")
    clock = Clock(T0)
    svc = AlarmService(cfg, store, clock=clock, rules=RULES)
    # what create_app does with its arguments; the app (and its page modules) is built once
    context.set_context(cfg, DataLayer(cfg, store, ttl_s=0.0, clock=clock), SimpleNamespace(alarms=svc))
    yield SimpleNamespace(cfg=cfg, store=store, clock=clock, svc=svc, page=sys.modules["dashboards.pages.alarms"])
    store.close()


def feed(e, *samples):
    e.store.write_events(e.svc.on_samples(list(samples)))


def vib(machine, t_s, v):
    return Sample("changwon-1", "cnc-1", machine, "vibration", v, T0 + int(t_s * S))


def texts(node) -> list[str]:
    """Every string in a component tree, depth first."""
    if node is None:
        return []
    if isinstance(node, (str, int, float)):
        return [str(node)]
    if isinstance(node, (list, tuple)):
        return [x for n in node for x in texts(n)]
    return texts(getattr(node, "children", None))


def find(node, cid):
    if isinstance(node, (list, tuple)):
        for n in node:
            f = find(n, cid)
            if f is not None:
                return f
        return None
    if getattr(node, "id", None) == cid:
        return node
    kids = getattr(node, "children", None)
    return find(kids, cid) if kids is not None and not isinstance(kids, str) else None


def test_banner_shows_the_most_severe_unacknowledged_alarm_and_the_count(env):
    kids, cls, sig = alarm_banner.refresh_banner(1, KO)
    assert (kids, cls) == ([], "gw-alarm-banner")
    # unchanged since: nothing is sent, the page keeps what it shows
    assert alarm_banner.refresh_banner(2, KO, sig) == (dash.no_update,) * 3
    feed(env, vib("cnc-101", 1, 9.5), vib("cnc-102", 2, 7.5))  # HH1 + H1 at 1 s, H2 at 2 s
    kids, cls, _ = alarm_banner.refresh_banner(2, KO)
    assert cls == "gw-alarm-banner gw-alarm-banner-critical"
    top = find(kids, "gw-alarm-top")
    assert texts(top) == ["긴급", "MC 1호기 진동 HH 9.5", "미확인 알람 3건"]
    assert top.href == "/alarms?alarm=vib.hh%3Achangwon-1%2Fcnc-1%2Fcnc-101%2Fvibration&lang=ko"
    env.clock.t = T0 + 10 * S
    env.svc.acknowledge(HH1, "kim")
    kids, cls, _ = alarm_banner.refresh_banner(3, EN)
    # of the two high ones, the newest
    assert texts(find(kids, "gw-alarm-top")) == ["High", "Machining center 2 vibration H 7.5", "2 unacknowledged"]
    assert find(kids, "gw-alarm-mute") is None  # the mute toggle is for wall displays


def test_wall_display_gets_the_sound_hooks(env):
    feed(env, vib("cnc-101", 1, 9.5))
    kids, _, _ = alarm_banner.refresh_banner(1, {"lang": "ko", "kiosk": True})
    assert find(kids, "gw-alarm-crit").title == HH1  # the unacknowledged critical alarms the script watches
    assert texts(find(kids, "gw-alarm-mute")) == ["경보음 끄기"]


def test_flood_banner_when_more_than_ten_in_ten_minutes(env):
    # six machines over HH: 12 annunciations in cnc-1 within a second
    feed(env, *[vib(f"cnc-10{i}", 1, 9.5) for i in range(1, 7)])
    env.clock.t = T0 + 2 * S
    kids, cls, _ = alarm_banner.refresh_banner(1, EN)
    assert "gw-flood" in cls.split()
    assert texts(kids)[0] == "ALARM FLOOD: changwon-1/cnc-1 12 in 10 min"


def test_alarms_page_lists_and_selects_the_linked_alarm(env):
    feed(env, vib("cnc-101", 1, 9.5), vib("cnc-102", 1, 7.5))
    lay = dash.page_registry["dashboards.pages.alarms"]["layout"](lang="en", alarm=H2)
    grid = find(lay, "alarms-grid")
    assert [r["id"] for r in grid.rowData] == [HH1, H1, H2]  # critical first
    assert grid.rowData[0]["priority"] == "Critical" and grid.rowData[0]["status"] == "Unacknowledged"
    assert grid.selectedRows == {"ids": [H2]}
    rows, cols = env.page.refresh_active(1, "line", 0, EN)
    assert cols[0]["field"] == "group" and {r["group"] for r in rows} == {"Changwon Site 1 / CNC machining line 1"}


def press(env, button, rows, user, comment="", lang=KO, shelve_for=3600, done=0):
    """What the page sends when `button` is pressed with `rows` selected (n_clicks of the others None)."""
    buttons = ["alarm-ack", "alarm-ack-line", "alarm-shelve", "alarm-unshelve", "alarm-add-comment", "alarm-oos",
               "alarm-ris"]
    clicks = [1 if b == button else None for b in buttons]
    return env.page.act(*clicks, rows, user, comment, shelve_for, done, lang, trigger=button)


def test_operator_actions_from_the_page(env):
    feed(env, vib("cnc-101", 1, 7.5), vib("cnc-102", 1, 7.5))
    rows, _ = env.page.refresh_active(1, "none", 0, KO)
    r1, r2 = [r for r in rows if r["id"] == H1], [r for r in rows if r["id"] == H2]
    assert press(env, "alarm-ack", [], "kim")[0] == "알람을 먼저 선택하세요"
    assert press(env, "alarm-shelve", r1, "kim")[0] == "✗ 사유(코멘트)를 입력하세요"  # a shelf needs a reason
    assert press(env, "alarm-ack", r1, None)[0] == "✗ 작업자 이름을 입력하세요"
    assert press(env, "alarm-ack", r1, "x" * 65, lang=EN)[0] == "✗ Not accepted: user_too_long"
    # what a hand-made request could send instead of the dropdown's value
    assert press(env, "alarm-shelve", r1, "kim", "x", shelve_for=["1e9"])[0] == "✗ 보류 시간은 1분~24시간"
    assert press(env, "alarm-ack", [{"id": ["x"]}, "junk"], "kim")[0] == "알람을 먼저 선택하세요"
    assert press(env, "alarm-ack", r1, "kim", "베어링 점검")[0] == "1건 처리됨"
    assert env.svc.get(H1).status.value == "ack_active" and env.svc.get(H1).acked_by == "kim"
    assert press(env, "alarm-shelve", r2, "lee", "센서 불량")[0] == "1건 처리됨"
    assert env.svc.get(H2).status.value == "shelved" and env.svc.get(H2).shelved_until == T0 + 3600 * S
    # a broken sensor: its alarm out of service (with a reason), then back
    assert press(env, "alarm-oos", r1, "kim", "센서 교체 중")[0] == "1건 처리됨"
    assert env.svc.get(H1).status.value == "out_of_service"
    assert press(env, "alarm-ris", r1, "kim")[0] == "1건 처리됨"
    assert env.svc.get(H1).status.value == "unack_active"  # still over the limit: annunciated again
    hist = env.page.history_rows("센서", "24h", 1, KO, now_ns=T0 + 60 * S)
    assert [(h["event"], h["user"], h["alarm"]) for h in hist] == [("removed_from_service", "kim", H1),
                                                                   ("shelved", "lee", H2)]


def test_acknowledge_a_line_from_one_selected_row(env):
    feed(env, vib("cnc-101", 1, 7.5), vib("cnc-102", 1, 7.5))
    rows, _ = env.page.refresh_active(1, "none", 0, EN)
    assert press(env, "alarm-ack-line", rows[:1], "kim", lang=EN)[0] == "2 done"
    assert env.svc.banner() == (None, 0)


def test_read_only_without_the_live_service(env):
    feed(env, vib("cnc-101", 1, 9.5))
    context.set_context(env.cfg, DataLayer(env.cfg, env.store, ttl_s=0.0, clock=env.clock), None)
    # the store view shows what the service stored ...
    kids, _, _ = alarm_banner.refresh_banner(1, EN)
    assert texts(find(kids, "gw-alarm-top"))[1] == "Machining center 1 vibration HH 9.5"
    # ... but cannot act
    rows, _ = env.page.refresh_active(1, "none", 0, EN)
    assert press(env, "alarm-ack", rows[:1], "kim", lang=EN)[0] == "Read-only: no alarm service in this process"


def test_health_figures(env):
    for i, v in enumerate([7.5, 6.0, 7.5, 6.0, 7.5]):  # H1 raised 3 times within 4 s: chattering
        feed(env, vib("cnc-101", 1 + i, v))
        env.clock.t = T0 + (1 + i) * S
        env.svc.acknowledge(H1, "kim") if v > 7 else None
    fig, lists = env.page.health_view(1, EN, now_ns=T0 + 10 * S)
    assert [(tr["name"], sum(tr["y"])) for tr in fig["data"]] == [("changwon-1/cnc-1", 3)]
    txt = texts(lists)
    assert "No alarm flood" in txt and H1 in txt
    assert txt[txt.index("Top bad actors today"):][-2:] == [H1, "3"]


def test_delivery_log_from_the_store_in_a_ui_only_process(env):
    # what the notifier recorded (Event kind="notification"), read back by a UI without the service
    from gwanje.model import Event

    env.store.write_events([Event("notification", T0 - 60 * S, "changwon-1", "cnc-1", "cnc-101", H1,
                                  {"alarm_id": H1, "channel": "ops-slack", "target": "ops-slack", "level": 0,
                                   "attempt": 1, "outcome": "failed", "error": "delivery failed",
                                   "message_ko": "가", "message_en": "MC1 vibration H"})])
    context.set_context(env.cfg, DataLayer(env.cfg, env.store, ttl_s=0.0, clock=env.clock), None)
    rows = env.page.notification_rows(1, EN)
    # T0 - 60 s = 2026-09-21 14:12:20 UTC = 23:12:20 in Seoul
    assert rows == [{"time": "2026-09-21 23:12:20", "outcome": "failed", "channel": "ops-slack", "target": "ops-slack",
                     "level": 0, "attempt": 1, "message": "MC1 vibration H", "error": "delivery failed"}]


def test_outside_demo_mode_the_logged_in_user_acts_and_viewers_cannot(env):
    import flask

    prod = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    context.set_context(prod, DataLayer(prod, env.store, ttl_s=0.0, clock=env.clock), SimpleNamespace(alarms=env.svc))
    feed(env, vib("cnc-101", 1, 7.5))
    rows, _ = env.page.refresh_active(1, "none", 0, EN)
    web = flask.Flask("t")
    web.secret_key = "k" * 32
    with web.test_request_context("/"):
        flask.session["user"] = {"name": "viewer1", "role": "viewer"}
        assert press(env, "alarm-ack", rows, "kim", lang=EN)[0] == "Not allowed for your role"
        flask.session["user"] = {"name": "park", "role": "operator"}
        # the name typed in the form does not count: the session's user acknowledges
        assert press(env, "alarm-ack", rows, "kim", lang=EN)[0] == "1 done"
    assert env.svc.get(H1).acked_by == "park"
