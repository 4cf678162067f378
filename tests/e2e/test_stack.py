"""End to end, as deployed: `app.py simulate`, `app.py collect` and `app.py serve` as separate
processes on a real mosquitto and a real InfluxDB. Samples from an MQTT machine and an OPC UA
machine reach the store, and the control room in headless Chromium shows every configured line
with live machine states."""
from __future__ import annotations


import pytest

from gwanje.config import load_config
from gwanje.model import NS_PER_S, now_ns
from storage.influx import InfluxStore
from tests.e2e.stack import Proc, make_config
from tests.fixtures.common import wait_for

LIVE_STATES = {"running", "idle", "down", "setup", "planned_stop"}



@pytest.mark.services
def test_simulated_sites_reach_influxdb_and_the_control_room(tmp_path, mosquitto, influxd, browser):
    cfg_dir = make_config(tmp_path, mosquitto.url, {"kind": "influxdb",
                                                     "influxdb": {"url": influxd.url, "database": "e2e"}})
    config = load_config(cfg_dir, env={})
    data = tmp_path / "data"
    procs = [Proc("simulate", cfg_dir, tmp_path / "sim-data"), Proc("collect", cfg_dir, data),
             Proc("serve", cfg_dir, tmp_path / "ui-data")]
    store = InfluxStore(influxd.url, "e2e")
    try:
        t0 = now_ns()

        def fresh(site, line, machine, signal):
            try:
                got = store.latest(site=site, line=line, machine=machine)
            except Exception:
                return None
            return next((s for s in got if s.signal == signal and s.ts >= t0 - 5 * NS_PER_S), None)

        mqtt_sample = wait_for(lambda: fresh("changwon-1", "cnc-1", "cnc-101", "spindle_speed"), 45, interval=0.5)
        opcua_sample = wait_for(lambda: fresh("changwon-1", "forge-1", "forge-101", "forging_force"), 45, interval=0.5)
        logs = "\n".join(f"--- {p.proc.args[2]}\n{p.output()[-3000:]}" for p in procs)
        assert mqtt_sample is not None, logs
        assert opcua_sample is not None, logs
        assert config.machine("changwon-1", "cnc-1", "cnc-101").definition.source == "mqtt"
        assert config.machine("changwon-1", "forge-1", "forge-101").definition.source == "opcua"
        # every machine of both sites reports, through either protocol
        assert wait_for(lambda: len({(s.site, s.line, s.machine) for s in store.latest(since_ns=t0)}) == 36, 30, interval=0.5)

        page = browser.new_page()
        try:
            page.goto(f"http://127.0.0.1:{config.system.ui.port}/?lang=en")
            page.wait_for_selector(".gw-tile", timeout=30_000)
            for site in config.plant.sites:
                for line in site.lines:
                    assert page.get_by_text(line.name.en, exact=True).count() >= 1, line.id

            def live_classes():
                classes = page.eval_on_selector_all(
                    ".gw-tile", "els => els.map(e => [new URL(e.href).pathname, e.className])")
                states = {path: cls.split("gw-state-")[-1].split()[0] for path, cls in classes}
                return states if len(states) == 36 and set(states.values()) <= LIVE_STATES else None

            states = wait_for(live_classes, 30, interval=0.5)
            assert states, page.eval_on_selector_all(".gw-tile", "els => els.map(e => e.className)")
            lines_seen = {tuple(path.split("/")[2:4]) for path in states}
            assert lines_seen == {(s.id, ln.id) for s in config.plant.sites for ln in s.lines}
            page.screenshot(path=str(tmp_path / "e2e-overview.png"))
        finally:
            page.close()
        for p in procs:
            assert p.alive(), p.output()[-3000:]
    finally:
        for p in procs:
            p.stop()
        store.close()
