"""LOT tracking through collect (Runtime.start_collect, a real mosquitto, the real store), the
path a plant's MES and PLCs take: LOT start and end messages over MQTT JSON (docs/payloads.md)
and the part counters. collect is stopped in the middle of the press LOT and started again on
the same data dir: the step records, the genealogy and the LOT index are the ones an
uninterrupted run gives — every part of the LOT once, counted across the restart.

Route (shifts.yaml of the test): product `plate` = press -> cnc. Press LOT PL-1 (planned 12)
makes 12 parts (1 reject) on the press, then continues as PL-1-A on m1 (6 planned, split) and
PL-1-B on m2; m1 makes 6 parts (all good)."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gwanje.config import Secrets, load_config
from gwanje.model import NS_PER_S
from tests.engine.conftest import PLANT, SHIFTS_8H
from tests.fixtures.common import free_port, wait_for

pytestmark = pytest.mark.services
S = NS_PER_S


def write_config(tmp: Path, mqtt_url: str) -> Path:
    d = tmp / "config"
    d.mkdir()
    p = copy.deepcopy(PLANT)
    for k in p["machine_classes"].values():
        k["signals"] += [{"id": "lot_product", "name": {"ko": "품목", "en": "Product"}, "kind": "text"},
                         {"id": "lot_qty", "name": {"ko": "수량", "en": "Quantity"}, "unit": "ea"},
                         {"id": "lot_parents", "name": {"ko": "모 LOT", "en": "Parents"}, "kind": "text"}]
    shifts = {**SHIFTS_8H, "products": [{"id": "plate", "lot_prefix": "PL", "route": ["press", "cnc"], "lot_qty": 12}]}
    (d / "plant.yaml").write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    (d / "shifts.yaml").write_text(yaml.safe_dump(shifts, allow_unicode=True), encoding="utf-8")
    (d / "system.yaml").write_text(yaml.safe_dump({
        "mqtt": {"url": mqtt_url, "client_id": f"gwanje-lots-{free_port()}"},
        "storage": {"kind": "embedded"}, "opcua": {"endpoints": []}}), encoding="utf-8")
    return d


class Device:
    def __init__(self, port: int) -> None:
        self.acked = 0
        self.sent = 0
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{free_port()}")
        c.on_publish = lambda *a: setattr(self, "acked", self.acked + 1)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def send(self, machine: str, ts: int, counts=None, **values) -> None:
        line = "p1" if machine == "press" else "l1"
        if counts is not None:
            values.update(zip(("part_count_total", "part_count_good", "part_count_reject"), counts))
        self.client.publish(f"gwanje/s1/{line}/{machine}", json.dumps({"ts": ts // 1_000_000, "values": values}),
                            qos=1)
        self.sent += 1

    def flush(self) -> None:
        assert wait_for(lambda: self.acked >= self.sent, 15), (self.acked, self.sent)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start(config, data: Path):
    from runtime.process import Runtime

    rt = Runtime(config, data, Secrets.from_env({}))
    rt.start_collect()
    assert wait_for(lambda: all(c.status().subscribed for c in rt.collectors), 20)
    return rt


def records(rt, kind: str, t0: int) -> dict:
    return {e.key: e.data for e in rt.store.events(kind, t0 - 10 * S, time.time_ns() + S)}


def test_lot_steps_genealogy_and_index_survive_a_restart_of_collect(mosquitto, tmp_path):
    config = load_config(write_config(tmp_path, mosquitto.url), env={})
    data = tmp_path / "data"
    t0 = (time.time_ns() - 900 * S) // S * S  # the press cycle is 3 s: one part per 10 s is plausible
    dev = Device(mosquitto.port)
    rt = start(config, data)
    try:
        dev.send("press", t0, (500, 480, 20), lot="PL-1", lot_product="plate", lot_qty=12, lot_parents="")
        for i in range(1, 7):  # 6 parts, the 3rd a reject
            dev.send("press", t0 + 10 * i * S, (500 + i, 480 + i - (i >= 3), 20 + (i >= 3)), lot="PL-1")
        dev.flush()
        assert wait_for(lambda: rt.pipeline.stats()["samples_written"] >= 7 * 4 + 3, 15), rt.pipeline.stats()
        assert wait_for(lambda: "PL-1" in records(rt, "lot_index", t0), 15)
        assert records(rt, "lot_index", t0)["PL-1"]["status"] == "in_process"
    finally:
        rt.stop()

    # the press makes its last 6 parts while collect is down: the broker keeps them (QoS 1,
    # persistent session) and hands them over at the restart
    for i in range(7, 13):
        dev.send("press", t0 + 10 * i * S, (500 + i, 480 + i - 1, 21), lot="PL-1")
    rt = start(config, data)
    try:
        dev.send("press", t0 + 130 * S, (512, 491, 21), lot="")
        dev.send("m1", t0 + 200 * S, (0, 0, 0), lot="PL-1-A", lot_product="plate", lot_qty=6, lot_parents="PL-1")
        dev.send("m2", t0 + 210 * S, (40, 40, 0), lot="PL-1-B", lot_product="plate", lot_qty=6, lot_parents="PL-1")
        for i in range(1, 7):  # m1: a part every 40 s (ideal cycle 30 s)
            dev.send("m1", t0 + (200 + 40 * i) * S, (i, i, 0), lot="PL-1-A")
        dev.send("m1", t0 + 460 * S, (6, 6, 0), lot="")
        dev.flush()

        def done():
            idx = records(rt, "lot_index", t0)
            return idx if idx.get("PL-1-A", {}).get("status") == "done" and "PL-1-B" in idx else None

        idx = wait_for(done, 20)
        assert idx, records(rt, "lot_index", t0)
        steps = records(rt, "lot_step", t0)
        p = steps["PL-1"]
        assert (p["total"], p["good"], p["reject"], p["end_ns"]) == (12, 11, 1, t0 + 130 * S), p
        assert (p["process"], p["step"], p["planned_qty"], p["plan_s"]) == ("press", 0, 12, 36.0)
        a = steps["PL-1-A"]
        assert (a["total"], a["good"], a["reject"], a["step"], a["end_ns"]) == (6, 6, 0, 1, t0 + 460 * S), a
        assert steps["PL-1-B"]["end_ns"] is None
        links = {(e.data["parent"], e.data["child"], e.data["kind"])
                 for e in rt.store.events("lot_link", t0 - S, time.time_ns())}
        assert links == {("PL-1", "PL-1-A", "split"), ("PL-1", "PL-1-B", "split")}
        # 11 good parts, children planned 6 + 6: all of PL-1 went on
        assert idx["PL-1"]["status"] == "consumed" and idx["PL-1"]["children"] == ["PL-1-A", "PL-1-B"]
        assert (idx["PL-1-B"]["status"], idx["PL-1-B"]["machine"]) == ("in_process", "s1/l1/m2")
        # the typed measurement a user queries (docs/schema.md)
        rows = rt.store._con.execute(
            "SELECT lot, process, good, reject, duration_s FROM lot_step WHERE lot = 'PL-1' ORDER BY ts").fetchall()
        assert rows == [("PL-1", "press", 11, 1, 130.0)]
    finally:
        rt.stop()
        dev.close()
