"""The LOT pages in a real headless Chromium against a real EmbeddedStore holding the
hand-built split/merge history (tests/dashboards/lot_records.py): from a machine tile's LOT
to the LOT's route, then to its parent. Screenshots of /lots and /lot/<LOT> in Korean at
1920x1080 and 1024x768 go to the test's screenshot dir and to /tmp/lotshots/."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboards import create_app
from dashboards.data import DataLayer
from tests.dashboards import lot_records as R
from tests.fixtures.browser import open_page

pytestmark = pytest.mark.services
SHOTS = Path("/tmp/lotshots")


@pytest.fixture(scope="module")
def site(plant_config, dash_server, tmp_path_factory):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path_factory.mktemp("lotsb") / "ui.duckdb")
    events, samples = R.records()
    store.write_events(events)
    store.write_samples(samples)
    data = DataLayer(plant_config, store, ttl_s=0.2, clock=lambda: R.NOW)
    server = dash_server(create_app(plant_config, store, data=data))
    yield server
    store.close()


def test_from_the_tile_lot_to_its_route_and_its_parent(site, browser):
    with open_page(browser, site.url + "/?lang=ko") as page:
        lot = page.locator('a.gw-tile[href^="/machine/changwon-1/cnc-1/cnc-102"] .gw-tile-lot-link')
        assert lot.inner_text() == "SH-C2"
        lot.click()
        # the LOT's page, not the machine's (the tile is a link of its own)
        page.wait_for_url("**/lot/SH-C2?lang=ko")
        page.wait_for_selector("#lot-timeline .main-svg")
        # the route across two processes: the parent's forging step and its own CNC step
        assert page.locator("#lot-timeline .barlayer .trace").count() == 2
        ticks = page.eval_on_selector_all("#lot-timeline .ytick text", "els => els.map(e => e.textContent)")
        assert any(t.startswith("단조") for t in ticks) and any(t.startswith("CNC 가공") for t in ticks)
        steps = page.inner_text("#lot-steps")
        assert "SH-P" in steps and "96.0 %" in steps and "단조기 1호기" in steps
        assert "보류 중" in page.inner_text("#lot-hold-panel")
        page.click("#lot-parents a.gw-lot-link")
        page.wait_for_url("**/lot/SH-P?lang=ko")
        # the new page, not the one it came from (which has a descendants box too)
        page.wait_for_selector("h1.gw-page-title:text-is('LOT SH-P')")
        page.wait_for_selector("#lot-descendants")
        desc = page.inner_text("#lot-descendants")
        assert "SH-C1" in desc and "SH-C2" in desc


def test_a_hostile_lot_url_is_refused_and_an_unknown_one_says_so(site, browser):
    page = browser.new_page()
    try:
        r = page.goto(site.url + "/lot/SH%27--")
        assert r.status == 400
        page.goto(site.url + "/lot/SH-NOPE?lang=ko")
        page.wait_for_selector("#lot-not-found")
        assert page.inner_text("#lot-not-found") == "LOT을 찾을 수 없습니다: SH-NOPE"
    finally:
        page.close()


@pytest.mark.parametrize("width,height", [(1920, 1080), (1024, 768)])
def test_screenshots_of_the_lot_pages(site, browser, screenshot_dir, width, height):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path, ready in (("lots", "/lots?lang=ko", "#lots-wip"),
                              ("lot-SH-C1", "/lot/SH-C1?lang=ko", "#lot-timeline .main-svg"),
                              ("lot-HS-M", "/lot/HS-M?lang=ko", "#lot-timeline .main-svg")):
        with open_page(browser, site.url + path, width, height) as page:
            page.wait_for_selector(ready)
            page.wait_for_timeout(300)
            # nothing wider than the screen: a table scrolls in its own box, the page does not
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            shot = screenshot_dir / f"{name}-{width}x{height}.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, SHOTS / shot.name)
            assert overflow <= 0, f"{path} at {width}px is {overflow}px wider than the screen"
