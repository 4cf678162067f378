"""The OEE page and the shift report, built and their callbacks called directly, over a real
EmbeddedStore holding what the engine wrote for the test plant's day shift."""
from __future__ import annotations

import csv
import dataclasses
import io
import sys

import dash
import pytest

from dashboards import context, create_app
from dashboards.components.oee import load_scope, timeline_figure
from dashboards.data import DataLayer
from gwanje.model import NS_PER_S
from tests.dashboards.helpers import by_class, by_id, by_type, text
from tests.engine.conftest import SHIFTS_8H, kst, make_config
from tests.engine.test_engine import KEY, SHIFT_END, SHIFT_START, live_once, plant_samples

REASONS = [{"id": "mechanical", "name": {"ko": "기계", "en": "Mechanical"},
            "children": [{"id": "spindle", "name": {"ko": "주축", "en": "Spindle"}}]},
           {"id": "material", "name": {"ko": "자재", "en": "Material"}}]
NOW = SHIFT_END + 2 * 3600 * NS_PER_S  # 16:00, the day shift is closed


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from storage.embedded import EmbeddedStore

    cfg = make_config(tmp_path_factory.mktemp("cfg"), shifts={**SHIFTS_8H, "reasons": REASONS})
    store = EmbeddedStore()
    _, events = live_once()
    store.write_samples(plant_samples())
    store.write_events(events)
    a = create_app(cfg, store, data=DataLayer(cfg, store, ttl_s=0.0, clock=lambda: NOW))
    yield a, cfg, store
    store.close()


def page(name: str):
    return dash.page_registry[f"dashboards.pages.{name}"]["layout"]


def kpis(layout) -> dict[str, str]:
    return {c.className.split()[1].removeprefix("gw-kpi-"): text(c.children[1]) for c in by_class(layout, "gw-kpi")}


def test_oee_page_of_a_closed_shift_shows_the_stored_figures(app):
    lay = page("oee")(site="s1", line="l1", shift=KEY, lang="en")
    # line l1 = its output machine m2: the issue's example, 78.0 / 90.0 / 88.9 / 97.5 %
    assert kpis(lay) == {"oee_short": "78.0 %", "availability": "90.0 %", "performance": "88.9 %",
                         "quality": "97.5 %"}
    assert "Line output machine: M2" in text(lay) and "Bottleneck: M2" in text(lay)
    assert text(by_id(lay, "oee-source")) == "From the shift's closing record"
    rows = by_class(lay, "gw-oee-row")
    assert [text(r.children[0]) for r in rows] == ["M1", "M2"]
    assert text(rows[0].children[1]) == "88.6 %"  # m1: 22869 / 25799
    assert "Closed" in text(by_id(lay, "oee-shift-title")) or "closed" in text(by_id(lay, "oee-shift-title"))
    losses = by_id(lay, "oee-losses").figure["data"][0]
    assert dict(zip(losses["y"], losses["x"]))["Breakdowns"] == 45.0
    # the one breakdown of m2 (45 min) has no reason yet
    pareto = by_id(lay, "oee-pareto").figure["data"][0]
    assert (pareto["x"], pareto["y"]) == (["Unassigned"], [45.0])


def test_timeline_has_every_state_interval(app):
    _, cfg, _ = app
    scope = load_scope(cfg, context.data(), "s1", "l1", KEY, now_ns=NOW)
    fig = timeline_figure(cfg, scope, "en")
    down = next(tr for tr in fig["data"] if tr["name"] == "Down")
    # m2's 45 min breakdown from 07:00 (ms on the date axis)
    assert list(zip(down["y"], down["base"], down["x"])) == [("M2", "2026-11-24 07:00:00", 45 * 60 * 1000.0)]
    unknown = next(tr for tr in fig["data"] if tr["name"] == "Unknown")
    assert list(zip(unknown["y"], unknown["base"])) == [("M1", "2026-11-24 08:59:59")]


def test_running_shift_comes_from_records(app):
    _, cfg, _ = app
    scope = load_scope(cfg, context.data(), "s1", "l1", None, now_ns=kst(2026, 11, 24, 10))
    assert scope.source == "records" and scope.live and scope.shift.key == KEY
    m2 = scope.machines[("s1", "l1", "m2")]
    # 06:00-10:00: A = 195 / 240, P = 390 x 30 s / 195 min = 1.0 (as the engine's snapshot)
    assert (round(m2.availability, 4), round(m2.performance, 4)) == (0.8125, 1.0)


def test_shift_report_reason_and_csv(app):
    _, cfg, store = app
    mod = dash.page_registry["dashboards.pages.shift_report"]
    lay = mod["layout"](site="s1", shift=KEY, lang="ko")
    picks = by_type(lay, "gw-reason")
    # stops of at least 5 min: only m2's breakdown (the twelve 2 min stops are small stops)
    assert [(p.id["machine"], int(p.id["start"])) for p in picks] == [("m2", kst(2026, 11, 24, 7))]
    assert [o["label"] for o in picks[0].options] == ["기계", "기계 › 주축", "자재"]
    module = sys.modules["dashboards.pages.shift_report"]  # the module as Dash loaded it
    assert module.save_reason(picks[0].id, "mechanical/spindle", "kim", now=SHIFT_END) == "saved"
    assert module.save_reason(picks[0].id, "not-a-reason", "kim", now=SHIFT_END) == "save_failed"
    assert module.save_reason({**picks[0].id, "machine": "ghost"}, "material", "kim", now=SHIFT_END) == "save_failed"
    assert module.save_reason("garbage", "material", "kim", now=SHIFT_END) == "save_failed"
    # a start time where no stop began (07:50: m2 running 07:45-08:00): nothing is stored
    forged = {**picks[0].id, "start": str(kst(2026, 11, 24, 7, 50))}
    assert module.save_reason(forged, "material", "kim", now=SHIFT_END) == "save_failed"
    lay = dash.page_registry["dashboards.pages.oee"]["layout"](site="s1", line="l1", shift=KEY, lang="ko")
    pareto = by_id(lay, "oee-pareto").figure["data"][0]
    assert (pareto["x"], pareto["y"]) == (["기계 › 주축"], [45.0])
    # the picker shows the saved reason
    lay = mod["layout"](site="s1", shift=KEY, lang="ko")
    assert by_type(lay, "gw-reason")[0].value == "mechanical/spindle"

    out = module.export_csv({"site": "s1", "line": None, "shift": KEY}, "en")
    assert out["filename"] == "shift-report_s1_2026-11-24_day.csv"
    rows = list(csv.DictReader(io.StringIO(out["content"].lstrip("\ufeff"))))
    by_machine = {r["machine"]: r for r in rows}
    assert set(by_machine) == {"m1", "m2", "press"}
    assert (by_machine["m2"]["oee"], by_machine["m2"]["availability"], by_machine["m2"]["reject"]) == \
        ("0.7800", "0.9000", "18")
    assert by_machine["press"]["total"] == "7500"


@pytest.mark.parametrize("params", [
    {"site": "nope"}, {"site": "s1", "line": "nope"}, {"site": "s1", "shift": "2026-13-99/day"},
    {"site": "<script>", "shift": "'; drop table events; --"},
])
def test_unknown_or_hostile_parameters_show_not_found(app, params):
    for name in ("oee", "shift_report"):
        lay = page(name)(lang="en", **params)
        assert "gw-oee-row" not in str(lay)


def test_parameters_of_the_wrong_type_fall_back_to_the_default_view(app):
    # what a hand-edited URL can produce: the page shows the first site's current shift
    lay = page("oee")(lang="en", site=["s1"], line={"x": 1}, shift=3)
    assert len(by_class(lay, "gw-oee-row")) == 3


def test_store_down_shows_the_store_error_not_a_traceback(app):
    _, cfg, store = app
    from storage.embedded import EmbeddedStore

    dead = EmbeddedStore()
    dead.close()
    context.set_context(cfg, DataLayer(cfg, dead, ttl_s=0.0, clock=lambda: NOW))
    try:
        lay = page("oee")(site="s1", line="l1", shift=KEY, lang="en")
        assert "Storage not answering" in text(lay)
    finally:
        context.set_context(cfg, DataLayer(cfg, store, ttl_s=0.0, clock=lambda: NOW))


def test_rolling_window(app):
    _, cfg, _ = app
    # the last 8 h at 16:00: 08:00-16:00; planned = 08:00-14:00 minus the 10:00-10:30 break
    # = 330 min, plus m2 running after the shift until its last sample at 14:05:59 (359 s:
    # running is production even outside a shift); the silence after it, outside every
    # shift, is planned stop, not unknown
    scope = load_scope(cfg, context.data(), "s1", "l1", "last-8h", now_ns=NOW)
    assert scope.live and scope.source == "records"
    m2 = scope.machines[("s1", "l1", "m2")]
    assert (m2.planned_s, m2.unknown_s) == (330 * 60 + 359, 0.0)
    # data ended 14:05:59; m2's 45 min breakdown (07:00-07:45) is before the window
    assert m2.breakdown_s == 0.0 and m2.small_stop_s == 24 * 60
    lay = page("oee")(site="s1", line="l1", shift="last-8h", lang="en")
    assert text(by_id(lay, "oee-shift-title")).startswith("Last 8 h")


def test_recompute_a_closed_shift_on_demand(app):
    _, cfg, store = app
    module = sys.modules["dashboards.pages.shift_report"]
    # spoil m1's stored record, as a live path that missed data would have left it
    bad = store.events("oee_shift", SHIFT_START, SHIFT_START + 1, "s1", "l1", "m1", key=KEY)[0]
    store.write_events([dataclasses.replace(bad, data={**bad.data, "total": 1, "good": 1, "reject": 0})])
    context.data().cache.clear()
    scope = load_scope(cfg, context.data(), "s1", "l1", KEY, now_ns=NOW)
    assert scope.machines[("s1", "l1", "m1")].total == 1
    key, n = module.recompute({"site": "s1", "line": "l1", "shift": KEY}, "kim")
    # m1, m2 and the line record
    assert (key, n) == ("recomputed", 3)
    scope = load_scope(cfg, context.data(), "s1", "l1", KEY, now_ns=NOW)
    assert scope.source == "stored" and scope.machines[("s1", "l1", "m1")].total == 800
    # a running shift, a rolling window or no user: refused
    assert module.recompute({"site": "s1", "shift": "last-8h"}, "kim") == ("save_failed", 0)
    assert module.recompute({"site": "s1", "shift": KEY}, None) == ("save_failed", 0)
    lay = page("shift_report")(site="s1", shift=KEY, lang="en")
    assert by_id(lay, "shift-recompute-btn") is not None


def test_apq_line_for_tiles(app):
    from dashboards.components.oee import apq_line

    _, cfg, _ = app
    scope = load_scope(cfg, context.data(), "s1", None, KEY, now_ns=NOW)
    assert text(apq_line(scope.lines[("s1", "l1")].result, "en")) == "OEE 78.0 % A 90.0 % P 88.9 % Q 97.5 %"
    assert text(apq_line(None, "en")) == "OEE — A — P — Q —"


def test_one_machine_of_a_line(app):
    lay = page("oee")(site="s1", line="l1", machine="m1", shift=KEY, lang="en")
    # m1 alone: A = 25799 / 25799, P = 0.8954, Q = 0.99, OEE = 0.8864
    assert kpis(lay) == {"oee_short": "88.6 %", "availability": "100.0 %", "performance": "89.5 %",
                         "quality": "99.0 %"}
    assert [text(r.children[0]) for r in by_class(lay, "gw-oee-row")] == ["M1"]
    assert {y for trace in by_id(lay, "oee-timeline").figure["data"] for y in trace["y"]} == {"M1"}
    assert "Bottleneck" not in text(lay)
    # a machine the line does not have
    lay = page("oee")(site="s1", line="l1", machine="press", shift=KEY, lang="en")
    assert by_class(lay, "gw-oee-row") == []


def test_shift_report_of_one_machine(app):
    lay = page("shift_report")(site="s1", line="l1", machine="m2", shift=KEY, lang="en")
    assert kpis(lay)["oee_short"] == "78.0 %"
    assert [p.id["machine"] for p in by_type(lay, "gw-reason")] == ["m2"]
    module = sys.modules["dashboards.pages.shift_report"]
    out = module.export_csv({"site": "s1", "line": "l1", "machine": "m1", "shift": KEY}, "en")
    assert out["filename"] == "shift-report_s1_l1_m1_2026-11-24_day.csv"
    assert [r["machine"] for r in csv.DictReader(io.StringIO(out["content"].lstrip("\ufeff")))] == ["m1"]


def test_machine_names_link_to_the_machine_view(app):
    lay = page("oee")(site="s1", line="l1", shift=KEY, lang="en")
    links = [c.href for r in by_class(lay, "gw-oee-row") for c in [r.children[0].children]]
    assert links == [f"/oee?lang=en&site=s1&line=l1&machine=m1&shift={KEY.replace('/', '%2F')}",
                     f"/oee?lang=en&site=s1&line=l1&machine=m2&shift={KEY.replace('/', '%2F')}"]


def test_pareto_without_stops_says_so(app):
    lay = page("oee")(site="s1", line="p1", shift=KEY, lang="en")  # the press never stopped
    fig = by_id(lay, "oee-pareto").figure
    assert fig["data"] == [] and fig["layout"]["annotations"][0]["text"] == "No stops recorded"


def test_site_view_lists_every_line_with_its_bottleneck(app):
    lay = page("oee")(site="s1", shift=KEY, lang="en")
    rows = [[text(c) for c in r.children] for r in by_class(lay, "gw-line-row")]
    # l1: output m2 (78.0 %), bottleneck m2; p1: the press alone (82.9 %)
    assert rows == [["Line 1", "78.0 %", "90.0 %", "88.9 %", "97.5 %", "M2"],
                    ["Press", "82.9 %", "100.0 %", "83.3 %", "99.5 %", "Press"]]
    assert kpis(lay)["oee_short"] == "81.1 %"  # the site pools m2 and the press: 0.8114
