"""A machine whose clock runs ahead never looks live on a tile: its data age runs on the
control room's clock from when the data was first seen, and a newest sample stamped more than
clock.future_tolerance_s ahead shows as CLOCK AHEAD, never as the machine's state.

Hand-computed with a pinned clock over a real EmbeddedStore, through the tile refresh callback
the browser calls. Shipped config: stale_after_s 10, future_tolerance_s 30."""
from __future__ import annotations

import pytest

from dashboards import context, create_app
from dashboards.components import callbacks
from dashboards.data import DataLayer, build_snapshot
from gwanje.model import NS_PER_S, MachineState, Sample
from tests.dashboards.helpers import text

T0 = 1_700_000_000 * NS_PER_S
CNC = ("changwon-1", "cnc-1", "cnc-101")  # cnc class: 3 = running
CNC2 = ("changwon-1", "cnc-1", "cnc-102")
TILES = [{"type": "gw-tile", "site": s, "line": ln, "machine": m} for s, ln, m in (CNC, CNC2)]


@pytest.fixture()
def plant(plant_config, store):
    """(store, clock): an app whose data layer reads `store` at the time clock[0]."""
    clock = [T0]
    create_app(plant_config, store, data=DataLayer(plant_config, store, ttl_s=0.0, clock=lambda: clock[0]))
    return store, clock


def tiles(lang: str = "en") -> list[tuple[str, str]]:
    """(class, state line) of the CNC and CNC2 tiles, as the refresh callback sends them."""
    classes, kids, _ = callbacks.refresh_tiles(1, {"lang": lang}, TILES, [])
    return [(c, text(k[1])) for c, k in zip(classes, kids)]


def test_a_machine_stamped_10_min_ahead_that_goes_silent_is_never_shown_live(plant):
    store, clock = plant
    # cnc-101's PLC clock is 10 min fast; its last sample says running, then it dies.
    # cnc-102 is right and keeps talking.
    store.write_samples([Sample(*CNC, "state", 3.0, T0 + 600 * NS_PER_S), Sample(*CNC2, "state", 3.0, T0)])
    assert tiles() == [("gw-tile gw-state-stale", "CLOCK AHEAD 600 s"), ("gw-tile gw-state-running", "Running")]
    v = context.data().plant_snapshot().machine(*CNC)
    assert v.stale and v.ahead_s == 600.0 and v.age_s == 0.0 and v.state is MachineState.UNKNOWN
    assert v.code == 3.0  # kept for diagnosis

    clock[0] = T0 + 10 * NS_PER_S  # 10 s of wall time: not yet past the comm timeout
    store.write_samples([Sample(*CNC2, "state", 3.0, T0 + 10 * NS_PER_S)])
    assert tiles() == [("gw-tile gw-state-stale", "CLOCK AHEAD 590 s"), ("gw-tile gw-state-running", "Running")]

    clock[0] = T0 + 10_500_000_000  # 10.5 s after it was last heard: silent past stale_after_s
    assert tiles() == [("gw-tile gw-state-stale", "STALE 10 s"), ("gw-tile gw-state-running", "Running")]
    v = context.data().plant_snapshot().machine(*CNC)
    assert v.age_s == 10.5 and v.ahead_s == 589.5
    _, kids, _ = callbacks.refresh_tiles(1, {"lang": "en"}, TILES[:1], [])
    assert text(kids[0][2]) == "source clock 589 s ahead"  # why it says nothing new: a note under the state

    clock[0] = T0 + 590 * NS_PER_S  # within the tolerance of its stamp, still silent: stale, 590 s
    assert tiles("ko")[0] == ("gw-tile gw-state-stale", "통신 끊김 590초")
    clock[0] = T0 + 700 * NS_PER_S  # past its stamp
    assert tiles()[0] == ("gw-tile gw-state-stale", "STALE 700 s")


def test_a_sample_stamped_ahead_within_the_tolerance_ages_in_wall_time(plant):
    store, clock = plant
    store.write_samples([Sample(*CNC, "state", 3.0, T0 + 20 * NS_PER_S)])  # 20 s ahead: accepted at ingest
    assert tiles()[0] == ("gw-tile gw-state-running", "Running")  # heard now
    clock[0] = T0 + 10 * NS_PER_S
    assert tiles()[0] == ("gw-tile gw-state-running", "Running")
    clock[0] = T0 + 10_500_000_000  # silent for 10.5 s of wall time, though stamped 9.5 s ahead
    assert tiles()[0] == ("gw-tile gw-state-stale", "STALE 10 s")
    # talking again: fresh again
    store.write_samples([Sample(*CNC, "state", 3.0, T0 + 31 * NS_PER_S)])
    assert tiles()[0] == ("gw-tile gw-state-running", "Running")


def test_the_plants_last_update_runs_on_the_control_rooms_clock(plant):
    store, clock = plant
    store.write_samples([Sample(*CNC, "state", 3.0, T0 + 600 * NS_PER_S)])
    callbacks.refresh_tiles(1, {"lang": "en"}, TILES, [])  # a display saw it at T0
    clock[0] = T0 + 12 * NS_PER_S
    _, age, cls = callbacks.refresh_clock(1, {"lang": "en"})
    assert age.endswith("12 s ago") and "gw-warn" in cls


def test_pure_snapshot_a_newest_time_beyond_the_tolerance_is_clock_ahead(plant_config):
    at_edge = build_snapshot(plant_config, [Sample(*CNC, "state", 3.0, T0 + 30 * NS_PER_S)], T0).machine(*CNC)
    assert not at_edge.stale and at_edge.ahead_s is None and at_edge.state is MachineState.RUNNING
    assert at_edge.age_s == 0.0  # held now: heard by now at the latest
    beyond = build_snapshot(plant_config, [Sample(*CNC, "state", 3.0, T0 + 31 * NS_PER_S),
                                           Sample(*CNC, "spindle_speed", 1.0, T0 - 2 * NS_PER_S)], T0).machine(*CNC)
    assert beyond.stale and beyond.ahead_s == 31.0 and beyond.state is MachineState.UNKNOWN
