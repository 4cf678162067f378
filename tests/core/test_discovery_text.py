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
