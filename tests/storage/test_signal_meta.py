"""Units and display names reach the store when collect starts (signal_meta), so a Grafana
panel or a SQL user can show them next to the series ids."""
from __future__ import annotations

import copy

import pytest

from gwanje.config import Secrets
from gwanje.model import now_ns
from gwanje.signal_meta import signal_meta_events
from tests.engine.conftest import PLANT, SHIFTS_8H, make_config
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services


def plant_with_units() -> dict:
    plant = copy.deepcopy(PLANT)
    plant["machine_classes"]["cnc"]["signals"].append(
        {"id": "spindle_load", "name": {"ko": "주축 부하", "en": "Spindle load"}, "unit": "%", "range": [0, 120]})
    return plant


def test_collect_start_writes_every_signals_unit_and_names(mosquitto, tmp_path):
    from runtime.process import Runtime

    config = make_config(tmp_path, SHIFTS_8H, plant_with_units())
    rt = Runtime(config, tmp_path / "data", Secrets.from_env({}), mqtt_url=mosquitto.url)
    before = now_ns()
    rt.start_collect()
    try:
        def rows():
            with rt.store._cursor() as cur:
                return cur.execute("SELECT machine, signal, unit, name_ko, name_en, kind, range_min, range_max, ts "
                                   "FROM signal_meta ORDER BY machine, signal").fetchall()

        got = wait_for(lambda: len(rows()) == 18 and rows(), timeout=10)
        assert got, rows()
        assert ("m1", "spindle_load", "%", "주축 부하", "Spindle load", "analog", 0.0, 120.0) in [r[:8] for r in got]
        assert ("press", "state", "", "상태", "State", "state", None, None) in [r[:8] for r in got]
        assert all(r[8] >= before for r in got)
    finally:
        rt.stop()


def test_signal_meta_records_are_one_per_machine_and_signal(tmp_path):
    config = make_config(tmp_path, SHIFTS_8H, plant_with_units())
    evs = signal_meta_events(config, 5)
    assert len(evs) == 3 * 6 and len({e.identity for e in evs}) == len(evs)
    e = next(e for e in evs if e.machine == "m2" and e.key == "spindle_load")
    assert (e.kind, e.site, e.line, e.ts) == ("signal_meta", "s1", "l1", 5)
    assert e.data == {"unit": "%", "name_ko": "주축 부하", "name_en": "Spindle load", "kind": "analog",
                      "range_min": 0.0, "range_max": 120.0}
