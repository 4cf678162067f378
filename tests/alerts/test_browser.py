"""In a real headless Chromium: the banner on a wall display, the beep of a new critical alarm
and its per-display mute, and acknowledging the alarm a notification link opens."""
from __future__ import annotations

import time
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from alerts.rules import AlarmRules
from alerts.service import AlarmService
from dashboards import create_app
from dashboards.data import DataLayer
from gwanje.config import load_config
from gwanje.model import Sample
from storage.embedded import EmbeddedStore
from tests.alerts.helpers import REPO

pytestmark = pytest.mark.services
WAIT_MS = 45_000  # generous: the suite shares 2 cores with everything else under test

RULES = AlarmRules.model_validate({"rules": [
    {"id": "vib", "type": "analog", "scope": {"line": ["cnc-1"]}, "signal": "vibration",
     "hh": {"limit": 9.0, "priority": "critical"},
     "message": {"ko": "{machine_name} 진동 {level} {value}", "en": "{machine_name} vibration {level} {value}"}},
]})
HH1 = "vib.hh:changwon-1/cnc-1/cnc-101/vibration"
HH2 = "vib.hh:changwon-1/cnc-1/cnc-102/vibration"


@pytest.fixture(scope="module")
def site(dash_server, tmp_path_factory):
    cfg = load_config(REPO / "config", env={})
    store = EmbeddedStore(tmp_path_factory.mktemp("ui") / "b.duckdb")
    svc = AlarmService(cfg, store, rules=RULES)
    app = create_app(cfg, store, SimpleNamespace(alarms=svc, status=lambda: {}),
                     data=DataLayer(cfg, store, ttl_s=0.2))
    yield dash_server(app), svc, store
    store.close()


def raise_hh(svc, store, machine: str) -> None:
    store.write_events(svc.on_samples([Sample("changwon-1", "cnc-1", machine, "vibration", 9.5, time.time_ns())]))


def test_wall_display_beeps_for_a_new_critical_alarm_unless_muted(site, browser):
    server, svc, store = site
    page = browser.new_page()
    try:
        page.goto(server.url + "/?kiosk=1&lang=en", timeout=WAIT_MS)
        page.wait_for_selector("#gw-alarm-mute", timeout=WAIT_MS)  # the wall display's banner is up, no alarm yet
        raise_hh(svc, store, "cnc-101")
        page.wait_for_selector("#gw-alarm-top", timeout=WAIT_MS)
        assert "Machining center 1 vibration HH 9.5" in page.inner_text("#gw-alarm-top")
        page.wait_for_function("window.gwanjeBeeps === 1", timeout=WAIT_MS)
        page.click("#gw-alarm-mute", timeout=WAIT_MS)
        page.wait_for_function("localStorage.getItem('gw-alarm-muted') === '1'", timeout=WAIT_MS)
        raise_hh(svc, store, "cnc-102")
        # the display has seen the new critical alarm (the sound script keeps what it processed)
        page.wait_for_function(f"(localStorage.getItem('gw-alarm-seen') || '').includes({HH2!r})", timeout=WAIT_MS)
        # muted on this display: no beep for the new one; and none again for the first one
        # on any of the refreshes since
        assert page.evaluate("window.gwanjeBeeps") == 1
        assert "2 unacknowledged" in page.inner_text("#gw-alarm-top")
    finally:
        page.close()


def test_notification_link_opens_the_alarm_selected_and_it_can_be_acknowledged(site, browser):
    server, svc, store = site
    if svc.get(HH2) is None:
        raise_hh(svc, store, "cnc-102")
    page = browser.new_page()
    try:
        page.goto(server.url + f"/alarms?alarm={quote(HH2, safe='')}&lang=en", timeout=WAIT_MS)
        page.wait_for_selector("#alarms-grid .ag-row-selected", timeout=WAIT_MS)
        assert "Machining center 2" in page.inner_text("#alarms-grid .ag-row-selected")
        page.fill("#alarm-user", "kim")
        page.click("#alarm-ack", timeout=WAIT_MS)
        page.wait_for_function("document.getElementById('alarm-feedback').innerText === '1 done'", timeout=WAIT_MS)
        assert svc.get(HH2).status.value == "ack_active" and svc.get(HH2).acked_by == "kim"
    finally:
        page.close()
