"""/quality against a real DuckDB EmbeddedStore holding the hand-made records of
tests/dashboards/quality_records.py (expected values computed by hand there): the data
functions (capability, violations on the right points, the default machine, the drivers of a
detection, the newest model per key), the alarms page's link of a quality alarm, and the page in
a real headless Chromium in Korean and English at 1920x1080 and 1024x768 (screenshots to
/tmp/shots-quality/)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alerts.lifecycle import from_event
from dashboards import create_app
from dashboards.data import DataLayer
from dashboards.quality_data import (capability, characteristics, cpk_level, default_machine, load_quality_data,
                                     parse_hours, window_at)
from tests.dashboards import quality_records as R
from tests.fixtures.browser import open_page

SHOTS = Path("/tmp/shots-quality")


@pytest.fixture(scope="module")
def qstore(tmp_path_factory):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path_factory.mktemp("quality") / "q.duckdb")
    store.write_events(R.records())
    yield store
    store.close()


@pytest.fixture(scope="module")
def layer(plant_config, qstore):
    return DataLayer(plant_config, qstore, ttl_s=0.2, clock=lambda: R.NOW)


@pytest.fixture(scope="module")
def qd(layer, qstore, plant_config):
    from dashboards.alarm_banner import StoreAlarms

    return load_quality_data(layer, 8, StoreAlarms(qstore, plant_config).active())


# ----------------------------------------------------------------------------- data
def test_characteristics_read_from_quality_yaml(plant_config):
    chars = {c.id: c for c in characteristics(plant_config)}
    assert list(chars) == ["bore_dia", "part_weight", "burr_height"]
    assert chars["part_weight"].chart == "xbar_r" and chars["part_weight"].subgroup == 5
    assert (chars["burr_height"].lsl, chars["burr_height"].usl) == (None, 0.12)


def test_hours_parameter():
    assert [parse_hours(x) for x in (None, "1", "72", "0", "73", "x", "8.5")] == [8, 1, 72, 8, 8, 8, 8]


def test_capability_of_a_tiny_imr_set_by_hand(qd):
    pts = qd.spc["bore_dia"][R.CNC2]
    assert [p.x for p in pts] == list(R.BORE_X)
    cap = capability(pts, 24.980, 25.020)
    assert cap.n == 5
    assert cap.mean == pytest.approx(25.004)
    assert cap.sigma_within == pytest.approx(0.004)
    assert cap.sigma_overall == pytest.approx(0.0093808, rel=1e-4)
    assert cap.cp == pytest.approx(1.6667, rel=1e-4)
    assert cap.cpk == pytest.approx(1.3333, rel=1e-4)
    assert cap.pp == pytest.approx(0.71067, rel=1e-4)
    assert cap.ppk == pytest.approx(0.56854, rel=1e-4)


def test_capability_of_xbar_r_and_one_sided_limits(qd):
    pts = qd.spc["part_weight"][R.IMM1]
    cap = capability(pts, 47.40, 48.60)
    assert cap.cp == pytest.approx(1.0) and cap.cpk == pytest.approx(1.0)
    assert cap.sigma_overall == pytest.approx(0.1 * 5 ** 0.5)
    assert cap.pp == pytest.approx(0.8944, rel=1e-4) and cap.ppk == pytest.approx(0.8944, rel=1e-4)
    assert cpk_level(cap.cpk) == "warn" and cpk_level(cap.ppk) == "bad" and cpk_level(1.4) == "normal"
    one = capability(pts, None, 48.60)  # USL only: no Cp, Cpk one-sided
    assert one.cp is None and one.cpk == pytest.approx(1.0)
    assert capability([], 1, 2).cpk is None


def test_violations_are_on_their_points_and_pick_the_default_machine(qd, plant_config):
    pts = qd.spc["bore_dia"][R.CNC2]
    assert [p.rules for p in pts] == [(), (), (), (), (1,)]
    assert pts[4].ts == R.T_BORE + 40 * R.M
    assert [p.rules for p in qd.spc["part_weight"][R.IMM1]] == [(), (), (9,)]
    assert qd.spc["burr_height"] == {}
    machines = [R.CNC1, R.CNC2]
    # cnc-101 has newer points, but cnc-102 the most recent violation
    assert default_machine(qd.spc["bore_dia"], machines) == R.CNC2
    assert default_machine({R.CNC1: qd.spc["bore_dia"][R.CNC1]}, machines) == R.CNC1
    assert default_machine({}, machines) == R.CNC1


def test_detections_take_the_drivers_of_the_window_at_or_before_the_raise(qd):
    by_id = {d.id: d for d in qd.detections}
    assert set(by_id) == {R.ANOMALY_ID, R.RISK_ID, R.SPC_ID}  # vib.h is not a quality alarm
    an = by_id[R.ANOMALY_ID]
    assert an.window_ts == R.W_TS[2] and an.drivers[0] == ("vibration", 0.6)
    assert an.state == "unack_active"
    risk = by_id[R.RISK_ID]
    assert risk.window_ts == R.W_TS[3]
    assert [s for s, _ in risk.drivers[:3]] == ["bore_dia", "vibration", "spindle_load"]
    spc = by_id[R.SPC_ID]
    assert spc.state == "normal" and spc.raised_ts == R.T_BORE + 40 * R.M and spc.priority == "high"
    assert [d.id for d in qd.detections] == [R.RISK_ID, R.ANOMALY_ID, R.SPC_ID]  # newest raise first
    ws = qd.windows[R.CNC2]
    assert window_at(ws, R.W_TS[0] - 1) is None and window_at(ws, R.W_TS[1]).ts == R.W_TS[1]


def test_models_newest_per_key(qd):
    rows = {r.key: r for r in qd.models}
    assert set(rows) == {"anomaly:cnc", "risk:cnc"}
    assert rows["risk:cnc"].version == 2 and rows["risk:cnc"].auc == 0.87 and rows["risk:cnc"].windows == 1500
    assert rows["anomaly:cnc"].auc is None


# ----------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def site(plant_config, qstore, layer, dash_server):
    return dash_server(create_app(plant_config, qstore, data=layer))


def test_a_quality_alarm_row_links_to_quality_for_its_machine(site, qstore):
    # the app is built (site): its pages are imported, their strings registered
    from dashboards.pages.alarms import quality_link

    states = {e.key: from_event(e) for e in qstore.latest_events("alarm")}
    assert quality_link(states[R.ANOMALY_ID], "en") == (
        "[Quality](/quality?lang=en&site=changwon-1&line=cnc-1&machine=cnc-102)")
    assert quality_link(states["vib.h:changwon-1/cnc-1/cnc-102/vibration"], "en") == ""


def _traces(page, graph_id):
    js = ("(id) => document.querySelector('#' + id + ' .js-plotly-plot').data"
          ".map(t => ({meta: t.meta || '', n: (t.x || []).length, x: t.x, text: t.customdata || []}))")
    return page.evaluate(js, graph_id)


@pytest.mark.services
@pytest.mark.parametrize("lang,width,height", [("ko", 1920, 1080), ("en", 1920, 1080), ("ko", 1024, 768),
                                               ("en", 1024, 768)])
def test_quality_page_in_the_browser(site, browser, lang, width, height):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, site.url + f"/quality?lang={lang}", width, height) as page:
        page.wait_for_selector("#spc-graph-bore_dia .main-svg")
        page.wait_for_selector("#spc-graph-part_weight .main-svg")
        # the default machine of bore_dia: cnc-102, the most recent violation
        assert "gw-chip-on" in page.get_attribute("#spc-pick-bore_dia-cnc-102", "class")
        tr = {t["meta"]: t for t in _traces(page, "spc-graph-bore_dia") if t["meta"]}
        assert tr["violations"]["n"] == 1 and tr["violations"]["x"][0].startswith("2026-09-21 10:40")
        assert ("rule 1" if lang == "en" else "규칙 1") in tr["violations"]["text"][0]
        assert tr["r_violations"]["n"] == 0
        # the marked point is drawn (a red marker in the violations trace)
        assert page.locator("#spc-graph-bore_dia .scatterlayer .trace .point").count() >= 6
        tw = {t["meta"]: t for t in _traces(page, "spc-graph-part_weight") if t["meta"]}
        assert tw["violations"]["n"] == 0 and tw["r_violations"]["n"] == 1
        # empty state says what is missing
        empty = page.inner_text("#spc-empty-burr_height")
        assert ("20 subgroups of 5 parts" in empty) if lang == "en" else ("부분군 20개" in empty)
        cap = page.inner_text("#cap-bore_dia-cnc-102")
        assert "1.67" in cap and "1.33" in cap and "0.71" in cap and "0.57" in cap
        assert "gw-q-warn" in page.get_attribute("#cap-part_weight-imm-101 .gw-q-cpk", "class")
        assert "gw-q-bad" in page.get_attribute("#cap-part_weight-imm-101 .gw-q-ppk", "class")
        risk = page.inner_text("#quality-risk-panel")
        if lang == "en":
            assert "Reject risk" in risk and "risk" in risk
        else:
            assert "불량 위험" in risk
        row = page.inner_text("#risk-cnc-102")
        assert "42.0 %" in row
        names = ("Bore diameter", "Vibration", "Spindle load") if lang == "en" else ("보어 지름", "진동", "주축 부하")
        assert all(n in row for n in names) and ("Feed rate" not in row and "이송 속도" not in row)
        assert "gw-q-bad" in page.get_attribute("#anomaly-cnc-102 .gw-q-val", "class")
        det = page.inner_text("#quality-detections")
        assert det.count("cnc-102") == 0  # names, not ids
        assert ("Anomaly (cnc)" in det) if lang == "en" else ("이상 탐지 (cnc)" in det)
        assert "AUC 0.87" in page.inner_text("#quality-models")
        # nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"quality-{lang}-{width}.png"), full_page=True)


@pytest.mark.services
def test_the_machine_page_links_to_quality_for_that_machine(site, browser):
    with open_page(browser, site.url + "/machine/changwon-1/cnc-1/cnc-101?lang=en") as page:
        link = page.locator("#quality-link")
        assert link.inner_text() == "Quality"
        link.click()
        page.wait_for_url("**/quality?**machine=cnc-101**")
        page.wait_for_selector("#spc-graph-bore_dia .main-svg")
        # the machine asked for, not the default (cnc-102 with the violation)
        assert "gw-chip-on" in page.get_attribute("#spc-pick-bore_dia-cnc-101", "class")
        assert page.locator("#anomaly-cnc-101").count() == 1 and page.locator("#anomaly-cnc-102").count() == 0
        page.screenshot(path=str(SHOTS / "quality-en-machine-cnc-101.png"), full_page=True)


@pytest.mark.services
def test_nav_and_kiosk(site, browser):
    with open_page(browser, site.url + "/?lang=ko") as page:
        page.click("#gw-nav a:text-is('품질')")
        page.wait_for_url("**/quality?lang=ko")
        page.wait_for_selector("#spc-graph-bore_dia .main-svg")
    with open_page(browser, site.url + "/quality?lang=ko&kiosk=1", 1920, 1080) as page:
        page.wait_for_selector("#spc-graph-bore_dia .main-svg")
        assert page.locator("#gw-nav").count() == 0
        page.screenshot(path=str(SHOTS / "quality-ko-kiosk.png"), full_page=True)


@pytest.mark.services
def test_empty_store_says_what_is_missing(plant_config, dash_server, browser, tmp_path):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "empty.duckdb")
    try:
        app = create_app(plant_config, store, data=DataLayer(plant_config, store, ttl_s=0.2, clock=lambda: R.NOW))
        server = dash_server(app)
        with open_page(browser, server.url + "/quality?lang=en&hours=24") as page:
            page.wait_for_selector("#quality-models")
            assert "baseline needs 25 subgroups of 5 parts" in page.inner_text("#spc-empty-bore_dia")
            assert "No quality windows yet" in page.inner_text("#quality-anomaly")
            assert "No quality alarms in the last 24 h" in page.inner_text("#quality-detections")
            assert "No model trained yet" in page.inner_text("#quality-models")
            assert "gw-chip-on" in page.get_attribute("#quality-hours-24", "class")
            page.screenshot(path=str(SHOTS / "quality-en-empty.png"), full_page=True)
    finally:
        store.close()
