"""The LOT pages (/lots, /lot/<LOT>, /trace) over a real EmbeddedStore holding a hand-built
history with a split and a merge (tests/dashboards/lot_records.py has the expectations,
computed by hand)."""
from __future__ import annotations

import csv
import io

import dash
import pytest

from dashboards import context, create_app
from dashboards.data import DataLayer
from dashboards.lots_data import load_descendants, load_lot
from tests.dashboards import lot_records as R
from tests.dashboards.helpers import by_class, by_id, dash_call, text, walk

EN = {"lang": "en", "kiosk": False}


@pytest.fixture(scope="module")
def site(plant_config, tmp_path_factory):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path_factory.mktemp("lots") / "ui.duckdb")
    events, samples = R.records()
    store.write_events(events)
    store.write_samples(samples)
    layer = DataLayer(plant_config, store, ttl_s=0.0, clock=lambda: R.NOW)
    app = create_app(plant_config, store, data=layer)
    yield app, layer, store
    store.close()


@pytest.fixture
def app(site, plant_config):
    app, layer, _ = site
    context.set_context(plant_config, layer, None)  # another module may have built an app since
    return app


def page(name: str):
    return dash.page_registry[f"dashboards.pages.{name}"]["layout"]


def rows_of(node, ident) -> list[list[str]]:
    table = by_id(node, ident)
    assert table is not None, ident
    return [[text(td) for td in tr.children] for tr in walk(table)
            if type(tr).__name__ == "Tr" and tr.children and type(tr.children[0]).__name__ == "Td"]


def test_lots_page_counts_wip_and_waiting_per_process(app):
    lay = page("lots")(lang="en")
    wip = {r[0]: r[1:] for r in rows_of(lay, "lots-wip")}
    assert wip["Forging"] == ["0", "0", "–", "–"]
    assert wip["CNC machining"] == ["1", "1", "6 h 30 m", "6 h 30 m"]
    assert wip["Injection molding"] == ["0", "0", "–", "–"]
    assert wip["Assembly"] == ["1", "2", "1 h 30 m", "2 h 00 m"]
    assert wip["Press"] == ["0", "0", "–", "–"]


def test_lots_page_lists_held_first_in_process_and_recently_done(app):
    lay = page("lots")(lang="en")
    held = rows_of(lay, "lots-held")
    assert [r[0] for r in held] == ["SH-C2"] and held[0][-1] == "ON HOLD"
    inproc = rows_of(lay, "lots-inproc")
    # the held LOT first, then the rest by how long they have run
    assert [r[0] for r in inproc] == ["SH-C2", "HS-M"]
    assert inproc[0][1:6] == ["Forged shaft", "CNC machining", "CNC machining line 1 · Machining center 2",
                              "2026-09-21 09:30", "100 / 0"]
    links = {a.children: a.href for a in by_class(by_id(lay, "lots-inproc"), "gw-machine-link")}
    assert links["CNC machining line 1 · Machining center 2"] == "/machine/changwon-1/cnc-1/cnc-102?lang=en"
    # newest first: C1 done 11:00, then P (consumed 09:30), I1 and I2 (consumed 10:00, by number)
    assert [r[0] for r in rows_of(lay, "lots-done")] == ["SH-C1", "HS-I1", "HS-I2", "SH-P"]


def test_lots_search_by_number_and_product(app):
    from dashboards.pages.lots import refresh as fn

    out = fn(None, "c1", "", EN)
    assert [r[0] for r in rows_of(out, "lots-results")] == ["SH-C1"]
    out = fn(None, "", "housing", EN)
    assert sorted(r[0] for r in rows_of(out, "lots-results")) == ["HS-I1", "HS-I2", "HS-I3", "HS-I4", "HS-M"]
    out = fn(None, "HS-I", "", EN)  # a prefix: the four injection LOTs, not HS-M
    assert sorted(r[0] for r in rows_of(out, "lots-results")) == ["HS-I1", "HS-I2", "HS-I3", "HS-I4"]
    assert text(by_id(out, "lots-result-count")) == "4 LOTs found"


def test_lot_page_shows_its_route_with_the_parent_step_and_yields(app):
    lay = page("lot")(lot="SH-C1", lang="en")
    fig = by_id(lay, "lot-timeline").figure
    bars = {tr["name"]: tr["y"] for tr in fig["data"]}
    assert bars == {"SH-P": ["Forging · Forging line 1 · Forging press 1"],
                    "SH-C1": ["CNC machining · CNC machining line 1 · Machining center 1"]}
    steps = rows_of(lay, "lot-steps")
    assert [(r[0], r[1], r[3], r[4], r[5], r[8], r[9], r[10]) for r in steps] == [
        ("SH-P", "Forging", "2026-09-21 06:00", "2026-09-21 08:00", "2 h 00 m", "480", "20", "96.0 %"),
        ("SH-C1", "CNC machining", "2026-09-21 09:00", "2026-09-21 11:00", "2 h 00 m", "234", "6", "97.5 %")]
    # plan 10080 s = 2 h 48 m: 7200 / 10080 = 71 %
    assert steps[1][6:8] == ["2 h 48 m", "71 %"]
    parents = by_id(lay, "lot-parents")
    assert [(a.children, a.href) for a in by_class(parents, "gw-lot-link")] == [("SH-P", "/lot/SH-P?lang=en")]
    assert text(by_id(lay, "lot-children")) == "none"


def test_lot_page_step_has_the_machines_signals_and_alarms_during_it(app):
    lay = page("lot")(lot="SH-C1", lang="en")
    graph = by_id(lay, "lot-step-graph-0")
    speed = next(tr for tr in graph.figure["data"] if tr["name"].startswith("Spindle"))
    assert len([y for y in speed["y"] if y is not None]) == 120 and speed["y"][0] == 8000.0
    step = by_id(lay, "lot-step-0")
    assert "Machining center 1 vibration high 7.5" in text(step)
    assert "later alarm" not in text(step)


def test_merged_lot_shows_where_its_material_came_from(app):
    lay = page("lot")(lot="HS-M", lang="ko")
    fig = by_id(lay, "lot-timeline").figure
    assert {tr["name"] for tr in fig["data"]} == {"HS-M", "HS-I1", "HS-I2"}
    assert sorted(a.children for a in by_class(by_id(lay, "lot-parents"), "gw-lot-link")) == ["HS-I1", "HS-I2"]
    assert {y for tr in fig["data"] for y in tr["y"]} >= {"사출 · 사출 1라인 · 사출기 1호기", "조립 · 사출품 조립 1라인 · 조립 1호기"}


def test_descendants_and_their_csv(app, site):
    _, layer, _ = site
    d = load_lot(layer, "SH-P")
    assert [(c, p, g) for c, p, g in load_descendants(layer, d.lot)] == [("SH-C1", "SH-P", 1), ("SH-C2", "SH-P", 1)]
    lay = page("lot")(lot="SH-P", lang="en")
    assert [r[0] for r in rows_of(lay, "lot-descendants")] == ["SH-C1", "SH-C2"]
    from dashboards.pages.lot import descendants_csv

    out = descendants_csv("SH-P", "en")
    assert out["filename"] == "lot_SH-P_descendants.csv"
    rows = list(csv.DictReader(io.StringIO(out["content"].lstrip("\ufeff"))))
    assert [(r["lot"], r["parent"], r["generation"], r["status"], r["machine"]) for r in rows] == [
        ("SH-C1", "SH-P", "1", "done", "changwon-1/cnc-1/cnc-101"),
        ("SH-C2", "SH-P", "1", "in_process", "changwon-1/cnc-1/cnc-102")]


def test_trace_of_the_forging_machine_finds_the_parent_lot_and_exports_it(app):
    lay = page("trace")(site="changwon-1", line="forge-1", machine="forge-101", start="2026-09-21 05:00",
                        end="2026-09-21 12:00", lang="en")
    rows = rows_of(lay, "trace-rows")
    assert [(r[0], r[2], r[6], r[7], r[8]) for r in rows] == [("SH-P", "Forging", "480", "20", "96.0 %")]
    from dashboards.pages.trace import trace_csv

    params = by_id(lay, "trace-params").data
    out = trace_csv(params, "en")
    rows = list(csv.DictReader(io.StringIO(out["content"].lstrip("\ufeff"))))
    assert [(r["lot"], r["process"], r["machine"], r["start"], r["end"], r["good"], r["reject"], r["yield"])
            for r in rows] == [("SH-P", "forging", "forge-101", "2026-09-21 06:00:00", "2026-09-21 08:00:00",
                                "480", "20", "0.9600")]
    # a step still open that began before the window counts; one that ended before it does not
    lay = page("trace")(site="changwon-1", line="cnc-1", machine="cnc-102", start="2026-09-21 11:00", lang="en")
    assert [r[0] for r in rows_of(lay, "trace-rows")] == ["SH-C2"]
    lay = page("trace")(site="changwon-1", line="forge-1", machine="forge-101", start="2026-09-21 09:00", lang="en")
    assert text(by_id(lay, "trace-rows")) == "No LOTs"


def test_unknown_lot_says_not_found_and_hostile_ids_are_refused(app):
    lay = page("lot")(lot="SH-NOPE", lang="en")
    assert text(by_id(lay, "lot-not-found")) == "LOT not found: SH-NOPE"
    c = app.server.test_client()
    assert c.get("/lot/SH-C1").status_code == 200
    for bad in ("/lot/a'b", "/lot/" + "A" * 65, "/lot/x%3Cscript%3E", "/lot/SH..P", "/lot/%20SH",
                "/trace?site=changwon-1&line=forge-1&machine=forge-101&start=2026-09-21%27--"):
        assert c.get(bad).status_code == 400, bad
    for lot in ("x' OR 1=1", "../etc", {"x": 1}, "A" * 65):
        r = dash_call(c, "lot-desc-csv", {"lot-desc-csv-btn.n_clicks": 1, "lot-ctx.data": {"lot": lot},
                                          "page-ctx.data": EN}, ["lot-desc-csv-btn.n_clicks"])
        assert r.status_code == 400, lot
    r = dash_call(c, "lot-desc-csv", {"lot-desc-csv-btn.n_clicks": 1, "lot-ctx.data": {"lot": "SH-P"},
                                      "page-ctx.data": EN}, ["lot-desc-csv-btn.n_clicks"])
    assert r.status_code == 200 and "SH-C2" in r.get_json()["response"]["lot-desc-csv"]["data"]["content"]


def test_machine_tile_links_its_lot(app):
    lay = page("overview")(lang="en")
    tile = next(c for c in walk(lay) if getattr(c, "id", None) == {"type": "gw-tile", "site": "changwon-1",
                                                                    "line": "cnc-1", "machine": "cnc-102"})
    (a,) = by_class(tile, "gw-tile-lot-link")
    assert (a.children, a.href) == ("SH-C2", "/lot/SH-C2?lang=en")
    lay = page("machine")(site="changwon-1", line="cnc-1", machine="cnc-102", lang="en", kiosk="1")
    assert [a.href for a in by_class(lay, "gw-tile-lot-link")] == ["/lot/SH-C2?lang=en&kiosk=1"]
    assert by_id(lay, "machine-trace-link").href == "/trace?lang=en&kiosk=1&site=changwon-1&line=cnc-1&machine=cnc-102"


def test_the_live_tile_refresh_keeps_the_lot_link(app):
    from dashboards.components import callbacks

    ident = {"type": "gw-tile", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-102"}
    _, kids, _ = callbacks.refresh_tiles(1, {"lang": "ko", "kiosk": True}, [ident], [])
    (a,) = by_class(kids[0], "gw-tile-lot-link")
    assert (a.children, a.href) == ("SH-C2", "/lot/SH-C2?lang=ko&kiosk=1")


def test_search_and_trace_values_from_the_browser_are_checked_before_any_query(app):
    c = app.server.test_client()
    base = {"refresh.n_intervals": 1, "lots-product.value": "", "page-ctx.data": EN}
    ok = dash_call(c, "lots-body", {**base, "lots-search.value": "SH-C"}, ["lots-search.value"])
    assert ok.status_code == 200 and "SH-C1" in ok.get_data(as_text=True)
    for bad in ("x' OR '1'='1", "a;drop table events", "A" * 65):
        r = dash_call(c, "lots-body", {**base, "lots-search.value": bad}, ["lots-search.value"])
        assert r.status_code == 400, bad
    params = {"site": "changwon-1", "line": "forge-1", "machine": "forge-101", "start": R.T0, "end": R.NOW}
    r = dash_call(c, "trace-csv", {"trace-csv-btn.n_clicks": 1, "trace-params.data": params, "page-ctx.data": EN},
                  ["trace-csv-btn.n_clicks"])
    assert r.status_code == 200 and "SH-P" in r.get_json()["response"]["trace-csv"]["data"]["content"]
    for bad in ({**params, "machine": "forge-999"}, {**params, "start": "0 OR 1"}, {**params, "end": R.T0 - 1}):
        r = dash_call(c, "trace-csv", {"trace-csv-btn.n_clicks": 1, "trace-params.data": bad, "page-ctx.data": EN},
                      ["trace-csv-btn.n_clicks"])
        assert r.status_code == 400, bad


def test_kiosk_lots_page_has_no_form_but_keeps_the_refresh_inputs(app):
    lay = page("lots")(lang="ko", kiosk="1")
    filters = by_class(lay, "gw-lots-filters")[0]
    assert filters.style == {"display": "none"}
    assert by_id(lay, "lots-search") is not None and by_id(lay, "lots-wip") is not None
    lay = page("lot")(lot="SH-C2", lang="ko", kiosk="1")
    assert by_id(lay, "lot-release-btn") is None  # a wall display never acts
    assert "보류 중" in text(by_id(lay, "lot-hold-panel"))
    lay = page("lot")(lot="SH-C2", lang="ko")
    assert by_id(lay, "lot-release-btn") is not None  # demo mode: open
