"""Page layouts and the live callbacks, called directly on an app over a real EmbeddedStore."""
from __future__ import annotations

import dataclasses

import dash
import pytest

from dashboards import context, create_app
from dashboards.components import callbacks
from dashboards.components.shell import nav_entries
from dashboards.data import DataLayer
from dashboards.sample_data import code_for
from gwanje.model import NS_PER_S, MachineState, Sample
from tests.dashboards.helpers import by_class, by_id, by_type, text

T0 = 1_700_000_000 * NS_PER_S  # 07:13:20 in Seoul
NOW = T0 + 5 * NS_PER_S
CNC1 = ("changwon-1", "cnc-1", "cnc-101")
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
IMM1 = ("changwon-2", "injection-1", "imm-101")


@pytest.fixture(scope="module")
def app(plant_config):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    cfg = plant_config
    samples = [
        Sample(*CNC1, "state", 3.0, T0), Sample(*CNC1, "part_count_total", 1234.0, T0),
        Sample(*CNC1, "part_count_reject", 12.0, T0), Sample(*CNC1, "lot", "L2411-07", T0),
        Sample(*CNC2, "state", 4.0, T0),
        Sample(*IMM1, "state", 77.0, T0),  # a code the injection class does not map
    ]
    samples += [Sample(*CNC1, "spindle_speed", 8000.0 + i, T0 - (29 - i) * NS_PER_S) for i in range(30)]
    store.write_samples(samples)
    a = create_app(cfg, store, data=DataLayer(cfg, store, ttl_s=0.0, clock=lambda: NOW))
    yield a
    store.close()


def page(path_module: str):
    return dash.page_registry[f"dashboards.pages.{path_module}"]["layout"]


def test_pages_are_registered_with_their_url_templates(app):
    paths = {p["module"]: p.get("path_template") or p["path"] for p in dash.page_registry.values()}
    assert paths["dashboards.pages.overview"] == "/"
    assert paths["dashboards.pages.site"] == "/site/<site>"
    assert paths["dashboards.pages.line"] == "/line/<site>/<line>"
    assert paths["dashboards.pages.machine"] == "/machine/<site>/<line>/<machine>"
    assert paths["dashboards.pages.signal"] == "/signal/<site>/<line>/<machine>/<signal>"


def test_overview_has_a_tile_for_every_machine_coloured_by_state(app):
    lay = page("overview")(lang="ko")
    tiles = {(t.id["site"], t.id["line"], t.id["machine"]): t for t in by_type(lay, "gw-tile")}
    assert len(tiles) == 36
    assert "gw-state-running" in tiles[CNC1].className.split()
    assert "gw-state-down" in tiles[CNC2].className.split()
    # unmapped code: fresh but unknown, and the tile says which code
    assert "gw-state-unknown" in tiles[IMM1].className.split()
    assert "미등록 코드 77" in text(tiles[IMM1])
    # nothing within the data layer's recent window (15 min): stale look, silent for 15+ minutes
    nodata = tiles[("changwon-2", "forge-2", "forge-203")]
    assert "gw-state-stale" in nodata.className.split() and "통신 끊김 15분 이상" in text(nodata)
    t1 = text(tiles[CNC1])
    assert "MC 1호기" in t1 and "가동" in t1 and "1,234" in t1 and "12" in t1 and "L2411-07" in t1
    assert tiles[CNC1].href == "/machine/changwon-1/cnc-1/cnc-101?lang=ko"


def test_overview_line_summaries_and_shell(app):
    lay = page("overview")(lang="ko")
    summaries = {(s.id["site"], s.id["line"]): text(s) for s in by_type(lay, "gw-line-summary")}
    assert len(summaries) == 8
    assert summaries[("changwon-1", "cnc-1")] == "가동 1/6대"
    assert summaries[("changwon-2", "injection-1")] == "가동 0/6대"
    assert by_id(lay, "alarm-banner") is not None
    assert by_id(lay, "gw-nav") is not None and by_id(lay, "clock") is not None
    assert "공장 전체" in text(by_class(lay, "gw-breadcrumbs"))


def test_english_and_kiosk(app):
    lay = page("overview")(lang="en", kiosk="1")
    assert "gw-kiosk" in lay.className.split()
    assert by_id(lay, "gw-nav") is None and not by_class(lay, "gw-breadcrumbs")
    assert by_id(lay, "alarm-banner") is not None  # alarms still show on the wall
    tile = next(t for t in by_type(lay, "gw-tile") if t.id["machine"] == "cnc-101")
    assert "Machining center 1" in text(tile) and "Running" in text(tile)
    assert tile.href == "/machine/changwon-1/cnc-1/cnc-101?lang=en&kiosk=1"


def test_hostile_url_parameters_give_a_page_not_a_crash(app):
    lay = page("overview")(lang="<script>", kiosk="maybe")
    assert "gw-normal" in lay.className.split() and lay.lang == "ko"
    nf = page("site")(site="../../etc", lang="en")
    assert "Not found: ../../etc" in text(nf)
    assert "Not found" in text(page("machine")(site="changwon-1", line="cnc-1", machine="x" * 5000, lang="en"))
    # the state signal is not a trend, an unknown signal neither
    assert "Not found" in text(page("signal")(site="changwon-1", line="cnc-1", machine="cnc-101", signal="state", lang="en"))
    assert "Not found" in text(page("line")(site="changwon-1", line=None, lang="en"))


def test_site_and_line_pages(app):
    site = page("site")(site="changwon-2", lang="ko")
    assert len(by_type(site, "gw-tile")) == 17  # 6 + 4 + 4 + 3
    line = page("line")(site="changwon-1", line="cnc-1", lang="en")
    assert len(by_type(line, "gw-tile")) == 6
    sparks = by_type(line, "gw-spark")
    assert len(sparks) == 6 and {s.id["signal"] for s in sparks} == {"spindle_speed"}
    sp = next(s for s in sparks if s.id["machine"] == "cnc-101")
    assert sp.figure["data"][0]["y"] == [8000.0 + i for i in range(30)]
    crumbs = text(by_class(line, "gw-breadcrumbs"))
    assert "Plant" in crumbs and "Changwon Site 1" in crumbs and "CNC machining line 1" in crumbs


def test_machine_page_has_a_live_trend_per_numeric_signal(app):
    lay = page("machine")(site="changwon-1", line="cnc-1", machine="cnc-101", lang="ko")
    graphs = by_type(lay, "gw-trend")
    assert [g.id["signal"] for g in graphs] == ["part_count_total", "part_count_good", "part_count_reject",
                                                "spindle_speed", "spindle_load", "feed_rate", "vibration",
                                                "cycle_time", "bore_dia"]
    sp = next(g for g in graphs if g.id["signal"] == "spindle_speed")
    assert sp.id["window"] == 900 and sp.id["points"] == 600
    assert sp.figure["data"][0]["y"][-1] == 8029.0 and sp.figure["layout"]["uirevision"]
    assert sp.figure["data"][0]["x"][-1] == "2023-11-15 07:13:20.000"
    # the 15 min button is active (ui.trend_window_s is 900); a trend title opens the signal page
    assert [text(a) for a in by_class(lay, "gw-window-active")] == ["15분"]
    assert by_class(lay, "gw-trend-title")[3].href == (
        "/signal/changwon-1/cnc-1/cnc-101/spindle_speed?lang=ko&window=15m")
    hour = page("machine")(site="changwon-1", line="cnc-1", machine="cnc-101", lang="ko", window="1h")
    assert {g.id["window"] for g in by_type(hour, "gw-trend")} == {3600}
    empty = next(g for g in graphs if g.id["signal"] == "vibration")
    assert empty.figure["layout"]["annotations"][0]["text"] == "이 구간에 데이터가 없습니다"
    assert "L2411-07" in text(by_type(lay, "gw-tile"))


def test_signal_page_window_selector(app):
    lay = page("signal")(site="changwon-1", line="cnc-1", machine="cnc-101", signal="spindle_speed",
                         lang="en", window="8h")
    (graph,) = by_type(lay, "gw-trend")
    assert graph.id["window"] == 8 * 3600
    active = by_class(lay, "gw-window-active")
    assert [text(a) for a in active] == ["8 h"]
    links = {text(a): a.href for a in by_class(lay, "gw-window-link")}
    assert links["1 h"] == "/signal/changwon-1/cnc-1/cnc-101/spindle_speed?lang=en&window=1h"
    # the language toggle keeps the window
    assert by_id(lay, "gw-lang-ko").href == "/signal/changwon-1/cnc-1/cnc-101/spindle_speed?lang=ko&window=8h"
    bad = page("signal")(site="changwon-1", line="cnc-1", machine="cnc-101", signal="spindle_speed",
                         lang="en", window="1y")
    assert by_type(bad, "gw-trend")[0].id["window"] == 15 * 60


def test_refresh_tiles_follows_the_store(app):
    ids = [{"type": "gw-tile", "site": s, "line": ln, "machine": m} for s, ln, m in (CNC1, CNC2)]
    line_ids = [{"type": "gw-line-summary", "site": "changwon-1", "line": "cnc-1"}]
    classes, kids, summaries = callbacks.refresh_tiles(1, {"lang": "en"}, ids, line_ids)
    assert classes == ["gw-tile gw-state-running", "gw-tile gw-state-down"]
    assert summaries == ["1/6 running"]
    spec = context.config().machine(*CNC2)
    context.data().store.write_samples([Sample(*CNC2, "state", code_for(spec, MachineState.RUNNING), T0 + NS_PER_S)])
    classes, kids, summaries = callbacks.refresh_tiles(2, {"lang": "en"}, ids, line_ids)
    assert classes == ["gw-tile gw-state-running", "gw-tile gw-state-running"]
    assert summaries == ["2/6 running"] and "Running" in text(kids[1])


def test_refresh_clock_shows_plant_time_and_data_age(app):
    context.data().store.write_samples([Sample(*CNC1, "spindle_load", 50.0, T0 + 2 * NS_PER_S)])
    clock, age, cls = callbacks.refresh_clock(1, {"lang": "ko"})
    assert clock == "2023-11-15 07:13:25"  # NOW in Asia/Seoul
    assert age == "최종 수신: 3초 전" and "gw-warn" not in cls  # newest sample of the plant: T0 + 2 s


def test_refresh_trends_sends_patches_of_x_and_y(app):
    ids = [{"type": "gw-trend", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101",
            "signal": "spindle_speed", "window": 900, "points": 600}]
    (patch,) = callbacks.refresh_trends(1, {"lang": "en"}, ids)
    ops = {tuple(o["location"]): o["params"]["value"] for o in patch.to_plotly_json()["operations"]}
    assert ops[("data", 0, "y")] == [8000.0 + i for i in range(30)]
    assert len(ops[("data", 0, "x")]) == 30 and ops[("layout", "annotations")] == []


def test_a_page_added_later_appears_in_the_nav(app):
    dash.page_registry["tests.fake_alarms"] = {"path": "/alarms", "nav": {"key": "app_title", "order": 20}}
    try:
        assert {"key": "app_title", "order": 20, "path": "/alarms"} in nav_entries()
        lay = page("overview")(lang="en")
        links = {text(a): a.href for a in by_class(lay, "gw-nav-link")}
        assert links["Gwanje"] == "/alarms?lang=en"
    finally:
        del dash.page_registry["tests.fake_alarms"]


def test_crafted_trend_ids_are_refused_not_queried(app):
    good = {"type": "gw-trend", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101",
            "signal": "spindle_speed", "window": 900, "points": 600}
    crafted = [
        {**good, "points": 10**9},  # a billion points
        {**good, "window": 10**9},  # thirty years
        {**good, "signal": "state"},  # not a trend
        {**good, "machine": "'; DROP TABLE samples; --"},
        "not even a dict",
    ]
    before = callbacks._rejects.counts().get("bad_trend_id", 0)
    out = callbacks.refresh_trends(1, {"lang": "en"}, crafted + [good])
    assert out[:5] == [dash.no_update] * 5
    assert out[5] is not dash.no_update
    assert callbacks._rejects.counts()["bad_trend_id"] == before + 5


def test_last_update_turns_to_a_warning_when_the_whole_plant_is_silent(app, plant_config):
    from dashboards.data import build_snapshot

    snap = build_snapshot(plant_config, [Sample(*CNC1, "state", 3.0, T0)], T0 + 30 * NS_PER_S)
    clock, age, cls = callbacks.clock_text(snap, T0 + 30 * NS_PER_S, "Asia/Seoul", "en")
    assert (clock, age) == ("2023-11-15 07:13:50", "Last data: 30 s ago") and "gw-warn" in cls
    fresh = build_snapshot(plant_config, [Sample(*CNC1, "state", 3.0, T0)], T0 + 10 * NS_PER_S)
    assert "gw-warn" not in callbacks.clock_text(fresh, T0 + 10 * NS_PER_S, "Asia/Seoul", "en")[2]
    empty = build_snapshot(plant_config, [], T0)
    assert callbacks.clock_text(empty, T0, "Asia/Seoul", "ko")[1] == "최종 수신: 데이터 없음"


def test_a_simulated_machine_says_so_on_its_tile_a_real_one_does_not(plant_config):
    from dashboards.components.tiles import tile_children
    from dashboards.data import MachineView

    spec = plant_config.machine(*CNC1)
    assert spec.simulated  # the shipped demo plant is simulated
    view = MachineView(*CNC1, state=MachineState.RUNNING, code=3.0, stale=False, age_s=1.0, total=None, good=None,
                       reject=None, lot=None, last_ts=T0)
    assert text(by_class(tile_children(view, spec, "en"), "gw-sim")) == "SIM"
    real = dataclasses.replace(spec, simulated=False)
    assert by_class(tile_children(view, real, "ko"), "gw-sim") == []
    assert text(by_class(tile_children(view, real, "ko"), "gw-tile-name")) == "MC 1호기"


def test_an_all_simulated_plant_says_so_once_in_the_header_a_mixed_one_on_each_simulated_tile(app, plant_config):
    """The demo plant is simulated throughout: one SIMULATED mark beside the plant name, and
    the tiles keep their room for the machine's name (on the wall the mark cut every name to
    "Machin…"). With one site's machines real, each simulated tile carries the mark instead."""
    from dashboards.components.tiles import simulation_marks
    from dashboards.components.views import _sim

    lay = page("overview")(lang="en", kiosk="1")
    assert text(by_class(lay, "gw-sim-plant")) == "SIMULATED"
    assert [c for c in by_class(lay, "gw-sim") if "gw-sim-plant" not in c.className] == []
    assert simulation_marks(plant_config) == (True, False)

    site2 = plant_config.plant.sites[1]
    real_site = site2.model_copy(update={"simulated": False})
    mixed = dataclasses.replace(plant_config, plant=plant_config.plant.model_copy(
        update={"sites": [plant_config.plant.sites[0], real_site]}))
    assert simulation_marks(mixed) == (False, True)
    sim_spec = next(m for m in mixed.machines() if m.site == plant_config.plant.sites[0].id)
    real_spec = next(m for m in mixed.machines() if m.site == site2.id)
    assert (_sim(mixed, sim_spec), _sim(mixed, real_spec)) == (True, False)
