"""The shift report in a real headless Chromium on a tablet viewport: a supervisor reads the
line's OEE, assigns a reason to the breakdown and exports the CSV."""
from __future__ import annotations

import pytest

from dashboards import create_app
from dashboards.data import DataLayer
from tests.engine.conftest import SHIFTS_8H, kst, make_config
from tests.engine.test_engine import KEY, SHIFT_END, SHIFT_START, live_once, plant_samples
from tests.engine.test_pages import REASONS

pytestmark = pytest.mark.services
NOW = SHIFT_END + 2 * 3600 * 1_000_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory, dash_server):
    from storage.embedded import EmbeddedStore

    cfg = make_config(tmp_path_factory.mktemp("cfg"), shifts={**SHIFTS_8H, "reasons": REASONS})
    store = EmbeddedStore()
    _, events = live_once()
    store.write_samples(plant_samples())
    store.write_events(events)
    server = dash_server(create_app(cfg, store, data=DataLayer(cfg, store, ttl_s=0.0, clock=lambda: NOW)))
    yield server, store
    store.close()


def test_supervisor_assigns_a_reason_and_exports_csv(served, browser, screenshot_dir):
    server, store = served
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 1024, "height": 768})
        page.goto(f"{server.url}/shift-report?site=s1&line=l1&shift={KEY}&lang=en")
        page.wait_for_selector(".gw-kpi")
        assert page.inner_text(".gw-kpi-oee_short .gw-kpi-value") == "78.0 %"
        assert page.inner_text(".gw-kpi-availability .gw-kpi-value") == "90.0 %"
        rows = page.locator(".gw-stops-table tbody tr")
        assert rows.count() == 1 and "45.0" in rows.first.inner_text()
        page.click(".gw-reason-pick")
        page.get_by_text("Mechanical › Spindle", exact=True).click()
        page.wait_for_function("document.querySelector('.gw-reason-saved').innerText === 'Saved'")
        saved = store.events("downtime_reason", SHIFT_START, SHIFT_END, "s1", "l1", "m2")
        assert [(e.ts, e.data["reason"], e.data["user"]) for e in saved] == \
            [(kst(2026, 11, 24, 7), "mechanical/spindle", "demo")]
        page.screenshot(path=str(screenshot_dir / "shift-report-1024x768.png"))
        with page.expect_download() as dl:
            page.click("#shift-csv-btn")
        content = open(dl.value.path(), encoding="utf-8-sig").read()
        assert dl.value.suggested_filename == "shift-report_s1_l1_2026-11-24_day.csv"
        header, *lines = content.strip().splitlines()
        assert header.startswith("site,line,machine,name,shift,oee,availability,performance,quality")
        assert [ln.split(",")[2] for ln in lines] == ["m1", "m2"]
    finally:
        page.close()
