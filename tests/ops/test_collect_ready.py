"""/readyz of a real `app.py collect` means "collecting": the store answers and every source is
connected AND subscribed. Against a real mosquitto, with the demo config's OPC UA endpoints not
served yet, collect is not ready and says which sources are missing; once `app.py simulate`
serves them (the OPC UA servers and the MQTT publisher of the simulated sites), it becomes
ready with every source subscribed, without a restart."""
from __future__ import annotations

import pytest
import requests

from runtime.health import readiness
from tests.e2e.stack import Proc, make_config
from tests.fixtures.common import free_port, wait_for


def test_a_connected_but_unsubscribed_source_is_not_ready():
    status = {"store": {"name": "embedded", "ok": True}, "pipeline": {},
              "sources": [{"name": "mqtt b:1883", "kind": "mqtt", "connected": True, "subscribed": False},
                          {"name": "opcua:a", "kind": "opcua", "connected": True, "subscribed": True}]}
    ok, details = readiness(status)
    assert not ok
    assert details["problems"] == ["mqtt source mqtt b:1883 connected but not subscribed"]
    status["sources"][0]["subscribed"] = True
    assert readiness(status)[0]


def _readyz(port: int) -> tuple[int, dict]:
    try:
        r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except requests.RequestException:
        return 0, {}
    return r.status_code, r.json()


@pytest.mark.services
def test_collect_is_ready_only_once_every_source_is_subscribed(tmp_path, mosquitto):
    cfg = make_config(tmp_path, mosquitto.url, {"kind": "embedded"})
    port = free_port()
    collect = Proc("collect", cfg, tmp_path / "data", "--health-port", str(port))
    sim = None
    try:
        # the broker is there, the OPC UA servers are not: answering, but not ready
        body = wait_for(lambda: (lambda r: r[1] if r[0] == 503 and any(
            s["kind"] == "mqtt" and s["subscribed"] for s in r[1].get("sources", [])) else None)(_readyz(port)), 60)
        assert body, collect.output()[-3000:]
        assert not body["ready"]
        missing = {s["name"] for s in body["sources"] if not s["subscribed"]}
        assert missing == {"opcua:changwon-1", "opcua:changwon-2"}, body
        assert all(any(name in p for p in body["problems"]) for name in missing), body

        sim = Proc("simulate", cfg, tmp_path / "sim-data")
        ready = wait_for(lambda: _readyz(port)[0] == 200, 60, interval=0.2)
        code, body = _readyz(port)
        assert ready, (body, collect.output()[-3000:])
        assert body["problems"] == []
        assert {s["name"] for s in body["sources"] if s["subscribed"]} == \
            {s["name"] for s in body["sources"]} and len(body["sources"]) == 3
        assert collect.alive()
    finally:
        if sim is not None:
            sim.stop()
        collect.stop()
