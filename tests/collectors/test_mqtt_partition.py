"""A scaled-out collect instance's MQTT session (gwanje/partition.py) against a real mosquitto:
it subscribes only to its own lines, and when a line moves to another instance, the filter its
persistent session still holds is dropped on the next connect (otherwise the broker would go
on queueing that line's messages for it)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from collectors.mqtt import MqttCollector
from gwanje.config import Secrets, load_config
from gwanje.partition import for_instance
from tests.collectors.test_mqtt import ListSink, publisher
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
TS_MS = 1_700_000_000_000
NO_SECRETS = Secrets.from_env({})
B_REST = ["changwon-2/assembly-1", "changwon-2/press-2", "changwon-2/forge-2"]


def instance_config(tmp_path: Path, instances: list[dict], name: str):
    d = tmp_path / f"config-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(ROOT / "config", d)
    p = d / "system.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["collect"] = {"instances": instances}
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return for_instance(load_config(d, env={}), name)


def run(cfg, sink, broker) -> MqttCollector:
    c = MqttCollector(cfg, sink, NO_SECRETS, url=broker.url)
    c.start()
    assert wait_for(lambda: c.subscribed, timeout=10), c.status()
    return c


def body(v: float) -> bytes:
    return json.dumps({"values": {"part_count_total": v}, "ts": TS_MS}).encode()


def test_instance_gets_only_its_lines_and_drops_a_moved_line(mosquitto, tmp_path):
    before = instance_config(tmp_path, [
        {"name": "a", "sites": ["changwon-1"], "lines": ["changwon-2/injection-1"]},
        {"name": "b", "lines": B_REST}], "a")
    assert "gwanje/changwon-2/injection-1/#" in before.system.mqtt.subscriptions
    c = run(before, ListSink(), mosquitto)
    c.stop()
    # injection-1 moves to b; a restarts with the same client id and its persistent session
    after = instance_config(tmp_path, [
        {"name": "a", "sites": ["changwon-1"]},
        {"name": "b", "sites": ["changwon-2"]}], "a")
    assert after.system.mqtt.client_id == before.system.mqtt.client_id == "gwanje-collector-a"
    sink = ListSink()
    c = run(after, sink, mosquitto)
    try:
        with publisher(mosquitto.port) as publish:
            publish("gwanje/changwon-2/injection-1/imm-101", body(1.0))  # b's now
            publish("gwanje/changwon-2/press-2/press-201", body(2.0))  # b's always
            publish("gwanje/changwon-1/cnc-1/cnc-101", body(3.0))  # a's
        assert wait_for(lambda: [s.machine for s in sink.samples] == ["cnc-101"]), sink.samples
        st = c.status()
        # nothing of b's reached a: not even skipped (a broker delivers in order per session)
        assert st.messages_in == 1 and st.skipped == {} and st.rejects == {}, st
    finally:
        c.stop()
