"""The control room in a real headless Chromium against a real EmbeddedStore: what an operator
sees on the overview, the drill-down, the languages, the wall display and the tablet."""
from __future__ import annotations

import time

import pytest

from dashboards import create_app
from dashboards.data import DataLayer
from dashboards.sample_data import code_for, plant_history
from gwanje.model import NS_PER_S, MachineState, Sample
from tests.fixtures.browser import open_page

pytestmark = pytest.mark.services

T0 = 1_700_000_000 * NS_PER_S  # 2023-11-15 07:13:20 in Seoul; the app's clock is pinned at T0 + 3 s
R, I, D, S, P = (MachineState.RUNNING, MachineState.IDLE, MachineState.DOWN, MachineState.SETUP,
                 MachineState.PLANNED_STOP)
# cnc-1 shows every state once (and one more running); everything else runs
STATES = {"changwon-1/cnc-1/cnc-101": R, "changwon-1/cnc-1/cnc-102": R, "changwon-1/cnc-1/cnc-103": I,
          "changwon-1/cnc-1/cnc-104": D, "changwon-1/cnc-1/cnc-105": S, "changwon-1/cnc-1/cnc-106": P}
STALE = "changwon-1/cnc-2/cnc-203"  # silent for 120 s (stale_after_s is 10)


@pytest.fixture(scope="module")
def site(plant_config, dash_server):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    states = {"/".join(m.key): STATES.get("/".join(m.key), R) for m in plant_config.machines()}
    store.write_samples(plant_history(plant_config, T0, duration_s=600, period_s=10.0, states=states,
                                      silent={STALE: 120.0}))
    data = DataLayer(plant_config, store, ttl_s=0.2, clock=lambda: T0 + 3 * NS_PER_S)
    server = dash_server(create_app(plant_config, store, data=data))
    yield server, store
    store.close()


def tile_classes(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        ".gw-tile", "els => Object.fromEntries(els.map(e => [new URL(e.href).pathname, e.className]))")


def test_overview_shows_every_machine_in_the_state_written(site, browser, plant_config, screenshot_dir):
    server, _ = site
    with open_page(browser, server.url + "/?lang=ko") as page:
        classes = tile_classes(page)
        expected = {f"/machine/{m.site}/{m.line}/{m.machine}" for m in plant_config.machines()}
        assert set(classes) == expected and len(expected) == 36
        assert "gw-state-running" in classes["/machine/changwon-1/cnc-1/cnc-101"]
        assert "gw-state-idle" in classes["/machine/changwon-1/cnc-1/cnc-103"]
        assert "gw-state-down" in classes["/machine/changwon-1/cnc-1/cnc-104"]
        assert "gw-state-setup" in classes["/machine/changwon-1/cnc-1/cnc-105"]
        assert "gw-state-planned_stop" in classes["/machine/changwon-1/cnc-1/cnc-106"]
        assert "gw-state-running" in classes["/machine/changwon-2/forge-2/forge-203"]
        body = page.inner_text("body")
        for site_ in plant_config.plant.sites:
            assert site_.name.ko in body
            for ln in site_.lines:
                assert ln.name.ko in body
        assert page.inner_text("#line-changwon-1-cnc-1 .gw-line-summary") == "가동 2/6대"
        assert page.inner_text("#line-changwon-1-cnc-2 .gw-line-summary") == "가동 4/5대"
        page.screenshot(path=str(screenshot_dir / "overview-1920x1080.png"))


def test_a_silent_machine_is_shown_stale_not_in_its_last_state(site, browser):
    server, _ = site
    with open_page(browser, server.url + "/?lang=ko") as page:
        tile = page.locator('a.gw-tile[href^="/machine/changwon-1/cnc-2/cnc-203"]')
        assert "gw-state-stale" in tile.get_attribute("class")
        state = tile.locator(".gw-tile-state").inner_text()
        assert "통신 끊김" in state and "123초" in state  # silent 120 s before T0, clock at T0 + 3 s
        assert "가동" not in state


def test_clicking_a_tile_opens_the_machine_page_with_trends(site, browser, screenshot_dir):
    server, _ = site
    with open_page(browser, server.url + "/?lang=ko") as page:
        page.click('a.gw-tile[href^="/machine/changwon-1/cnc-1/cnc-104"]')
        page.wait_for_url("**/machine/changwon-1/cnc-1/cnc-104?lang=ko")
        page.wait_for_selector(".gw-trend-graph .main-svg")
        # the cnc class has 9 numeric signals: 3 counters + 6 analog (bore_dia, the gauge, since issue 13)
        assert page.locator(".gw-trend-card").count() == 9
        assert page.locator(".gw-trend-graph .scatterlayer .trace").count() == 9
        crumbs = page.inner_text(".gw-breadcrumbs")
        assert "공장 전체" in crumbs and "창원 제1실증공장" in crumbs and "CNC 가공 1라인" in crumbs
        assert "비가동" in page.inner_text(".gw-hero .gw-tile-state")
        page.click("text=주축 회전수 (rpm)")
        page.wait_for_url("**/signal/changwon-1/cnc-1/cnc-104/spindle_speed?lang=ko&window=15m")
        assert page.inner_text(".gw-window-active") == "15분"
        page.wait_for_selector(".gw-trend-big .main-svg")
        page.screenshot(path=str(screenshot_dir / "signal-1920x1080.png"))


def test_english_labels(site, browser):
    server, _ = site
    with open_page(browser, server.url + "/line/changwon-1/cnc-1?lang=en") as page:
        body = page.inner_text(".gw-root")
        for label in ("Changwon Site 1", "CNC machining line 1", "Machining center 1", "Running", "Idle",
                      "Down", "Setup", "Planned stop", "2/6 running", "Plant", "Overview"):
            assert label in body
        assert "가동" not in body and "공장 전체" not in body


def test_kiosk_mode_has_no_navigation_and_a_dark_theme(site, browser, screenshot_dir):
    server, _ = site
    with open_page(browser, server.url + "/?kiosk=1&lang=ko") as page:
        assert page.locator(".gw-kiosk").count() == 1
        assert page.locator("#gw-nav").count() == 0 and page.locator(".gw-breadcrumbs").count() == 0
        assert page.locator(".gw-lang").count() == 0
        assert page.locator("#alarm-banner").count() == 1
        bg = page.eval_on_selector(".gw-root", "e => getComputedStyle(e).backgroundColor")
        assert bg == "rgb(11, 15, 20)"
        assert page.locator(".gw-tile").count() == 36
        # a tile links to the machine page and keeps kiosk mode
        assert page.locator('a.gw-tile[href="/machine/changwon-1/cnc-1/cnc-101?lang=ko&kiosk=1"]').count() == 1
        page.screenshot(path=str(screenshot_dir / "kiosk-1920x1080.png"))


def test_tablet_layout_has_touch_sized_targets(site, browser, screenshot_dir):
    server, _ = site
    with open_page(browser, server.url + "/?lang=ko", 1024, 768) as page:
        heights = page.eval_on_selector_all(".gw-tile, .gw-nav-link, .gw-lang-link",
                                            "els => els.map(e => e.getBoundingClientRect().height)")
        assert len(heights) >= 36 and min(heights) >= 44
        # nothing wider than the screen: no sideways scrolling on the tablet
        assert page.evaluate("document.documentElement.scrollWidth") <= 1024
        page.screenshot(path=str(screenshot_dir / "overview-1024x768.png"), full_page=True)


def test_tiles_follow_the_store_live(site, browser, plant_config):
    server, store = site
    with open_page(browser, server.url + "/?lang=en") as page:
        sel = 'a.gw-tile[href^="/machine/changwon-1/cnc-1/cnc-102"]'
        assert "gw-state-running" in page.get_attribute(sel, "class")
        spec = plant_config.machine("changwon-1", "cnc-1", "cnc-102")
        store.write_samples([Sample("changwon-1", "cnc-1", "cnc-102", "state", code_for(spec, D), T0 + NS_PER_S)])
        deadline = time.monotonic() + 15  # refresh_ms is 2 s; generous for a loaded CI machine
        cls = ""
        while time.monotonic() < deadline:
            cls = page.get_attribute(sel, "class")
            if "gw-state-down" in cls:
                break
            time.sleep(0.2)
        assert "gw-state-down" in cls
        assert page.inner_text(f"{sel} .gw-tile-state") == "Down"
        assert page.inner_text("#line-changwon-1-cnc-1 .gw-line-summary") == "1/6 running"


def test_a_machine_whose_clock_runs_ahead_is_shown_clock_ahead_not_live(site, browser, screenshot_dir):
    server, store = site
    key = ("changwon-2", "injection-1", "imm-102")
    sel = f'a.gw-tile[href^="/machine/{"/".join(key)}"]'
    with open_page(browser, server.url + "/?lang=en") as page:
        assert "gw-state-running" in page.get_attribute(sel, "class")
        # its PLC clock jumps 10 min ahead: the newest sample (running) is stamped T0 + 600 s
        store.write_samples([Sample(*key, "state", 10.0, T0 + 600 * NS_PER_S)])
        deadline = time.monotonic() + 15  # refresh_ms is 2 s; generous for a loaded CI machine
        while time.monotonic() < deadline and "gw-state-stale" not in page.get_attribute(sel, "class"):
            time.sleep(0.2)
        assert "gw-state-stale" in page.get_attribute(sel, "class")  # hatched, not green
        assert page.inner_text(f"{sel} .gw-tile-state") == "CLOCK AHEAD 597 s"  # the app's clock: T0 + 3 s
        # the page's pixels in the tile's box: the tile re-renders on every refresh, which a
        # locator screenshot waits out as "not stable" on a loaded machine
        box = page.locator(sel).bounding_box()
        page.screenshot(path=str(screenshot_dir / "tile-clock-ahead.png"), clip=box)
