"""discover writes into the user's YAML as text: the new parts go under the right keys, in
the file's own indentation, and everything that was there stays (gwanje/discovery.py)."""
import pytest
import yaml

from gwanje.discovery import DiscoveryError, insert_under, set_key

BLOCK = ["# discovered", "- name: gw", "  url: opc.tcp://x:1/y"]


@pytest.mark.parametrize("text", [
    # indented sequence, comments around it, another key after it
    "# top\nmqtt:\n  url:\nopcua:\n  # ours\n  endpoints:\n    - name: a   # first\n      url: opc.tcp://a:1\n\n# next\nstorage: {kind: embedded}\n",
    # sequence not indented under its key
    "opcua:\n  endpoints:\n  - name: a\n    url: opc.tcp://a:1\nui: {}\n",
    # empty in flow style, and no endpoints at all, and no opcua at all
    "opcua:\n  endpoints: []   # none yet\n",
    "opcua:\n  trust_dir: t\n",
    "demo: true\n",
    "",
])
def test_an_endpoint_lands_in_opcua_endpoints_and_nothing_else_moves(text):
    new = insert_under(text, ("opcua", "endpoints"), BLOCK, "system.yaml")
    doc = yaml.safe_load(new)
    names = [e["name"] for e in doc["opcua"]["endpoints"]]
    assert names[-1] == "gw" and doc["opcua"]["endpoints"][-1]["url"] == "opc.tcp://x:1/y"
    before = yaml.safe_load(text) or {}
    for key, value in before.items():
        if key != "opcua":
            assert doc[key] == value
    kept = [ln for ln in text.splitlines() if "endpoints: []" not in ln]
    it = iter(new.splitlines())
    assert all(any(ln == n for n in it) for ln in kept)  # every line kept, in order


def test_a_flow_style_list_cannot_take_more_as_text():
    with pytest.raises(DiscoveryError, match="system.yaml: opcua.endpoints is written in flow style"):
        insert_under("opcua:\n  endpoints: [{name: a, url: u}]\n", ("opcua", "endpoints"), BLOCK, "system.yaml")


def test_set_key_replaces_or_adds_the_broker_url():
    assert yaml.safe_load(set_key("mqtt:\n  url:   # empty\n  qos: 1\n", "mqtt", "url", "mqtt://b:1", "c")) == \
        {"mqtt": {"url": "mqtt://b:1", "qos": 1}}
    assert yaml.safe_load(set_key("mqtt:\n  qos: 1\n", "mqtt", "url", "mqtt://b:1", "c"))["mqtt"]["url"] == "mqtt://b:1"
    assert yaml.safe_load(set_key("demo: true\n", "mqtt", "url", "mqtt://b:1", "c"))["mqtt"] == {"url": "mqtt://b:1"}


def test_a_machine_lands_in_a_line_and_a_line_in_a_site_the_config_already_has():
    """The shipped plant.yaml (sites and lines in block style, machines in flow style): a
    discovered machine goes under an existing line's machines, a discovered line under an
    existing site's lines; the rest of the file reads the same."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "config" / "plant.yaml").read_text(encoding="utf-8")
    machine = ["# discovered", "- id: robot-7", "  name: {ko: R7, en: R7}", "  class: cnc", "  source: mqtt",
               "  ideal_cycle_s: 1"]
    new = insert_under(text, ("sites", {"id": "changwon-2"}, "lines", {"id": "press-2"}, "machines"), machine,
                       "plant.yaml")
    line = ["- id: weld-1", "  name: {ko: 용접, en: Weld}", "  process: other", "  machines:",
            "  - {id: weld-101, name: {ko: W, en: W}, class: cnc, source: mqtt, ideal_cycle_s: 1}"]
    new = insert_under(new, ("sites", {"id": "changwon-1"}, "lines"), line, "plant.yaml")
    before, after = yaml.safe_load(text), yaml.safe_load(new)
    s1, s2 = after["sites"]
    press2 = next(ln for ln in s2["lines"] if ln["id"] == "press-2")
    assert press2["machines"][-1]["id"] == "robot-7"
    assert s1["lines"][-1]["id"] == "weld-1" and s1["lines"][-1]["machines"][0]["id"] == "weld-101"
    press2["machines"].pop()
    s1["lines"].pop()
    assert after == before
    with pytest.raises(DiscoveryError, match="block style"):
        insert_under(text, ("sites", {"id": "no-such-site"}, "lines"), line, "plant.yaml")
