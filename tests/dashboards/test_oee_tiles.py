"""Current-shift OEE on the control room: overview tiles and line heads, the line page, the
machine page and their refresh callbacks, built and called directly over a real EmbeddedStore
holding what gwanje.engine.Engine wrote for an hour of hand-designed 1 Hz samples.

The hour (test plant of tests/engine: shift 06:00-14:00, ideal cycle 30 s for m1 and m2,
line l1's output machine is m2), clock pinned at 07:00:
- m2: 06:00-06:30 running, 50 parts; 06:30-06:36 down (6 min breakdown); 06:36-07:00
  running, 40 parts of which 9 rejects.
  A = 54 / 60 = 90.0 %, P = 90 x 30 s / 54 min = 2700 / 3240 = 83.3 %,
  Q = 81 / 90 = 90.0 %, OEE = 0.9 x 0.8333 x 0.9 = 67.5 %.
- m1: running all hour, 130 parts, no rejects: A 100 %, P = 130 x 30 / 3600 = 108.3 % (the
  ideal cycle in config is too long), Q 100 %, OEE 108.3 % -> shown as is, with a warning mark.
- press (line p1): PLC planned stop all hour: no planned production time -> "–".
- bottleneck of l1: the machine with the lowest OEE, m2.
"""
from __future__ import annotations

import dash
import pytest

from dashboards import context, create_app
from dashboards.components import callbacks
from dashboards.components.tiles import PlantOee, fmt_ratio
from dashboards.data import DataLayer
from gwanje.engine import Engine
from gwanje.model import NS_PER_S as NS
from tests.dashboards.helpers import by_class, by_id, by_type, text
from tests.engine.conftest import DOWN, MIN, PLANNED, RUN, Segment, kst, make_config, scenario

NOW = kst(2026, 11, 24, 7)  # a Tuesday, one hour into the day shift
START = kst(2026, 11, 24, 5, 55)  # data from 05:55, so 06:00 is not the first reading
CTX_EN = {"lang": "en"}


def _samples():
    pre = Segment(5 * MIN, RUN, 10)
    # one more reading at 07:00:00: the engine writes a minute's counts when the minute closes
    tick = Segment(1, RUN)
    m2 = scenario(("s1", "l1", "m2"), START, [pre, Segment(30 * MIN, RUN, 50), Segment(6 * MIN, DOWN),
                                               Segment(24 * MIN, RUN, 40, 9), tick])
    m1 = scenario(("s1", "l1", "m1"), START, [pre, Segment(60 * MIN, RUN, 130), tick])
    press = scenario(("s1", "p1", "press"), START, [Segment(65 * MIN, PLANNED)], bits=16)
    return sorted(m1 + m2 + press, key=lambda s: s.ts)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from storage.embedded import EmbeddedStore

    cfg = make_config(tmp_path_factory.mktemp("cfg"))
    store = EmbeddedStore()
    samples = _samples()
    eng = Engine(cfg, clock=None)
    events = []
    for i in range(0, len(samples), 5000):
        events += eng.on_samples(samples[i:i + 5000])
    store.write_samples(samples)
    store.write_events(events)
    layer = DataLayer(cfg, store, ttl_s=60.0, clock=lambda: NOW)
    a = create_app(cfg, store, data=layer)
    yield a, cfg, store, layer
    store.close()


def page(name: str):
    return dash.page_registry[f"dashboards.pages.{name}"]["layout"]


def tile_oee(layout) -> dict[str, str]:
    return {t.id["machine"]: text(by_class(t, "gw-tile-oee")) for t in by_type(layout, "gw-tile")}


def test_ratio_format():
    assert fmt_ratio(0.675) == "67.5 %"
    assert fmt_ratio(1.0833) == "108.3 % ⚠"  # never clipped to 100 %
    assert fmt_ratio(1.0) == "100.0 %"
    assert fmt_ratio(None) == "–"  # no denominator: not 0 %


def test_overview_line_card_and_tiles_show_the_current_shift(app):
    lay = page("overview")(lang="en")
    l1 = by_id(lay, {"type": "gw-line-oee", "site": "s1", "line": "l1"})
    assert text(l1) == "OEE 67.5 % A 90.0 % P 83.3 % Q 90.0 % Bottleneck M2"
    p1 = by_id(lay, {"type": "gw-line-oee", "site": "s1", "line": "p1"})
    assert text(p1) == "OEE – A – P – Q – Bottleneck –"
    assert tile_oee(lay) == {"m1": "OEE 108.3 % ⚠", "m2": "OEE 67.5 %", "press": "OEE –"}
    m1 = next(t for t in by_type(lay, "gw-tile") if t.id["machine"] == "m1")
    assert "gw-oee-over" in by_class(m1, "gw-tile-oee")[0].className


@pytest.mark.services
def test_browser_overview_shows_oee_on_the_line_card(app, browser, dash_server):
    # before the dead-store test below: the pages read the context of the last app built
    server = dash_server(app[0])
    page = browser.new_page()
    try:
        page.goto(server.url + "/?lang=en")
        page.wait_for_selector("#line-s1-l1 .gw-line-oee")
        line_oee = page.inner_text("#line-s1-l1 .gw-line-oee")
        assert " ".join(line_oee.split()) == "OEE 67.5 % A 90.0 % P 83.3 % Q 90.0 % Bottleneck M2"
        tile = page.locator('a.gw-tile[href*="/machine/s1/l1/m1"] .gw-tile-oee')
        assert " ".join(tile.inner_text().split()) == "OEE 108.3 % ⚠"
    finally:
        page.close()


@pytest.mark.services
def test_on_the_wall_a_line_head_stays_one_row_and_the_bottleneck_name_gives_way(app, browser, dash_server, tmp_path):
    """A bottleneck with a long name on a wall screen: the line's name, the OEE strip and the
    running count stay on one row (a second row per line pushed the demo plant off a 1080
    screen), the bottleneck's name is cut with an ellipsis instead."""
    import copy

    from storage.embedded import EmbeddedStore
    from tests.engine.conftest import PLANT

    plant = copy.deepcopy(PLANT)
    for ln in plant["sites"][0]["lines"]:
        for m in ln["machines"]:
            m["name"]["en"] = f"Horizontal machining centre with pallet changer {m['id']}"
    cfg = make_config(tmp_path, plant=plant)
    store = EmbeddedStore()
    samples = _samples()
    eng = Engine(cfg, clock=None)
    store.write_samples(samples)
    store.write_events([e for i in range(0, len(samples), 5000) for e in eng.on_samples(samples[i:i + 5000])])
    server = dash_server(create_app(cfg, store, data=DataLayer(cfg, store, ttl_s=60.0, clock=lambda: NOW)))
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 960, "height": 1080})  # half of a wall: one site of two
        page.goto(server.url + "/?lang=en&kiosk=1")
        page.wait_for_function("(document.querySelector('#line-s1-l1 .gw-bottleneck') || {}).innerText"
                               "?.includes('Horizontal')")
        tops = page.eval_on_selector("#line-s1-l1 .gw-line-head", """h => Array.from(h.children)
            .map(c => Math.round(c.getBoundingClientRect().top))""")
        assert max(tops) - min(tops) <= 4, tops
        cut = page.eval_on_selector("#line-s1-l1 .gw-bottleneck .gw-v", "v => v.scrollWidth > v.clientWidth")
        assert cut
    finally:
        page.close()
        context.set_context(app[1], app[3])  # the pages read the context of the last app built
        store.close()


def test_one_plant_load_per_ttl_shared_by_every_caller(app):
    _, cfg, _, layer = app
    first = callbacks.plant_oee(cfg, layer)
    # later callers within the TTL (other tiles, displays, the line page) get the same object
    assert callbacks.plant_oee(cfg, layer) is first
    assert page("line")(site="s1", line="l1", lang="en") is not None
    assert callbacks.plant_oee(cfg, layer) is first


def test_the_running_shifts_oee_is_loaded_once_per_ttl_for_every_display(app, monkeypatch):
    """Displays refreshing the /oee page (and the tiles' plant OEE) on a moving clock share one
    load of the running shift per TTL: the store is asked once, not once per display."""
    from dashboards.components.oee import scope_from_params

    _, cfg, store, _ = app
    loads = []
    real = store.events

    def counting(kind, *a, **kw):  # the real store, counted: each load reads the state records once
        loads.append(kind) if kind == "state" else None
        return real(kind, *a, **kw)

    monkeypatch.setattr(store, "events", counting)
    clock = [NOW]
    layer = DataLayer(cfg, store, ttl_s=2.0, clock=lambda: clock[0])
    scopes = []
    for dt_ms in (0, 700, 1999):  # three displays within one TTL
        clock[0] = NOW + dt_ms * 1_000_000
        scopes.append(scope_from_params(cfg, layer, "s1", "l1", None)[0])
    assert len(loads) == 1 and scopes[0] is scopes[1] is scopes[2]
    assert scopes[0].now_ns == NOW  # computed for the start of the TTL, the same for every display
    assert fmt_ratio(scopes[0].scope_result.oee) == "67.5 %"
    clock[0] = NOW + 2 * NS  # one TTL later: loaded again
    assert scope_from_params(cfg, layer, "s1", "l1", None)[0].now_ns == NOW + 2 * NS and len(loads) == 2
    # the tiles' plant OEE loads the whole site once, and the /oee page of the site shares it
    callbacks.plant_oee(cfg, layer)
    clock[0] = NOW + 3 * NS
    assert scope_from_params(cfg, layer, "s1", None, None)[0] is not None
    assert len(loads) == 3


def test_refresh_callbacks_keep_the_oee(app):
    tiles = [{"type": "gw-tile", "site": "s1", "line": "l1", "machine": m} for m in ("m1", "m2")]
    classes, kids, _ = callbacks.refresh_tiles(1, CTX_EN, tiles, [])
    assert [text(by_class(k, "gw-tile-oee")) for k in kids] == ["OEE 108.3 % ⚠", "OEE 67.5 %"]
    crafted_tile = [{"type": "gw-tile", "site": "s1", "line": "l1", "machine": ["m1"]}]
    assert callbacks.refresh_tiles(1, CTX_EN, crafted_tile, [])[:2] == ([dash.no_update], [dash.no_update])
    lines = [{"type": "gw-line-oee", "site": "s1", "line": "l1"}, {"type": "gw-line-oee", "site": "x", "line": "y"}]
    machines = [{"type": "gw-machine-oee", "site": "s1", "line": "l1", "machine": "m1"}]
    out_lines, out_machines = callbacks.refresh_oee(1, {"lang": "ko"}, lines, machines)
    assert text(out_lines[0]) == "OEE 67.5 % A 90.0 % P 83.3 % Q 90.0 % 병목 2호기"
    assert out_lines[1] is dash.no_update  # an id naming no line of the config
    # a crafted id (unhashable names) names nothing and breaks nothing
    crafted = [{"type": "gw-machine-oee", "site": "s1", "line": "l1", "machine": {"x": 1}}]
    assert text(callbacks.refresh_oee(1, CTX_EN, [], crafted)[1][0]) == "OEE – A – P – Q –"
    assert text(out_machines[0]) == "OEE 108.3 % ⚠ A 100.0 % P 108.3 % ⚠ Q 100.0 %"


def test_line_page_header_rows_and_oee_link(app):
    lay = page("line")(site="s1", line="l1", lang="en")
    assert text(by_id(lay, {"type": "gw-line-oee", "site": "s1", "line": "l1"})) == \
        "OEE 67.5 % A 90.0 % P 83.3 % Q 90.0 % Bottleneck M2"
    rows = by_class(lay, "gw-machine-card")
    assert [text(by_class(r, "gw-tile-oee")) for r in rows] == ["OEE 108.3 % ⚠", "OEE 67.5 %"]
    link = by_id(lay, "line-oee-link")
    assert link.href == "/oee?lang=en&site=s1&line=l1" and text(link) == "Line OEE"


def test_machine_page_apq_and_reason_link(app):
    lay = page("machine")(site="s1", line="l1", machine="m2", lang="ko")
    apq = by_id(lay, {"type": "gw-machine-oee", "site": "s1", "line": "l1", "machine": "m2"})
    assert text(apq) == "OEE 67.5 % A 90.0 % P 83.3 % Q 90.0 %"
    link = by_id(lay, "assign-reasons-link")
    assert text(link) == "비가동 사유 입력"
    assert link.href == "/shift-report?lang=ko&site=s1&line=l1&machine=m2"
    en = page("machine")(site="s1", line="l1", machine="m2", lang="en")
    assert text(by_id(en, "assign-reasons-link")) == "Assign downtime reasons"


def test_store_down_shows_unavailable_not_zero(plant_config):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    create_app(plant_config, store)
    store.close()  # every query now raises
    lay = page("overview")(lang="en")
    heads = by_type(lay, "gw-line-oee")
    assert len(heads) == 8 and {text(h) for h in heads} == {"OEE unavailable"}
    assert {text(by_class(t, "gw-tile-oee")) for t in by_type(lay, "gw-tile")} == {"OEE unavailable"}
    lines, machines = callbacks.refresh_oee(
        1, CTX_EN, [{"type": "gw-line-oee", "site": "changwon-1", "line": "cnc-1"}],
        [{"type": "gw-machine-oee", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101"}])
    assert text(lines[0]) == "OEE unavailable" and text(machines[0]) == "OEE unavailable"
    assert "0.0 %" not in text(lay)


def test_plant_oee_lookup_of_unknown_names():
    oee = PlantOee(True)
    assert oee.machine("s1", "l1", {"evil": 1}) is None and oee.line(None, 3) is None


def test_mid_minute_the_running_minute_does_not_drag_performance_down(tmp_path):
    """At 07:00:40, with both machines still reporting, the stored minute counts end at 07:00
    (the 07:00 minute is still open), so the figures are those of 07:00 — not run time to
    07:00:40 against parts to 07:00 (m2's P would read 2700 / 3280 = 82.3 %)."""
    from storage.embedded import EmbeddedStore

    cfg = make_config(tmp_path)
    pre = Segment(5 * MIN, RUN, 10)
    tail = Segment(41, RUN)  # 07:00:00 .. 07:00:40, no part finished yet
    m2 = scenario(("s1", "l1", "m2"), START, [pre, Segment(30 * MIN, RUN, 50), Segment(6 * MIN, DOWN),
                                               Segment(24 * MIN, RUN, 40, 9), tail])
    m1 = scenario(("s1", "l1", "m1"), START, [pre, Segment(60 * MIN, RUN, 130), tail])
    samples = sorted(m1 + m2, key=lambda s: s.ts)
    eng = Engine(cfg, clock=None)
    events = eng.on_samples(samples)
    store = EmbeddedStore()
    try:
        store.write_samples(samples)
        store.write_events(events)
        layer = DataLayer(cfg, store, ttl_s=0.0, clock=lambda: NOW + 40 * 10**9)
        line = callbacks.plant_oee(cfg, layer).line("s1", "l1")
        r = line.result
        assert (round(r.availability, 4), round(r.performance, 4), round(r.quality, 4)) == (0.9, 0.8333, 0.9)
    finally:
        store.close()
