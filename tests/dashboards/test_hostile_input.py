"""Every id and time range from a URL or a callback is checked against the plant model before
any query: hostile inputs sent over real HTTP to a running app (werkzeug on a free port) over a
real EmbeddedStore answer 400, are counted, and no query reaches the store."""
from __future__ import annotations

import threading

import pytest
import requests

from dashboards import create_app
from dashboards.data import DataLayer
from gwanje.validate import PlantIds, hostile
from storage.embedded import EmbeddedStore

pytestmark = pytest.mark.services

READS = ("latest", "series", "samples", "events", "latest_events", "count_samples")


class CountingStore(EmbeddedStore):
    """The real store, counting every read that reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self._count_lock = threading.Lock()

    def _hit(self) -> None:
        with self._count_lock:
            self.reads += 1


for _name in READS:
    def _make(name):
        def method(self, *a, **kw):
            self._hit()
            return getattr(EmbeddedStore, name)(self, *a, **kw)
        return method
    setattr(CountingStore, _name, _make(_name))


@pytest.fixture(scope="module")
def running(plant_config, dash_server):
    store = CountingStore()
    app = create_app(plant_config, store, data=DataLayer(plant_config, store, ttl_s=0.0))
    server = dash_server(app)
    yield server, store, app
    store.close()


M = "/machine/changwon-1/cnc-1/cnc-101"
HOSTILE_PAGES = [
    M + "'; DROP MEASUREMENT samples;--",
    "/machine/changwon-1/cnc-1/no-such-machine",
    "/site/..%2F..%2Fetc%2Fpasswd",
    "/line/changwon-1/cnc-1%00",
    "/signal/changwon-1/cnc-1/cnc-101/vibration%22%20OR%201%3D1",
    "/signal/changwon-1/cnc-1/cnc-101/no_such_signal",
    "/machine/changwon-1/cnc-1/" + "a" * 5000,
    "/site/changwon-1%20UNION%20SELECT%20*%20FROM%20events",
    "/site/nowhere",
    "/oee?site=changwon-1&shift=2026-09-21/day'%20OR%20'1'='1",
    "/oee?site=nowhere",
    "/oee?site=changwon-1&line=cnc-1&machine=x%22",
    "/oee?line=cnc-1",  # a line without its site
    M + "?window=1h;DROP",
    M + "?window=1y",
    "/alarms?alarm=vib.h:changwon-1/cnc-1/cnc-101/vibration'--",
    "/alarms?alarm=../../etc/passwd",
    "/alarms?alarm=vib.h:nowhere/cnc-1/cnc-101/vibration",
    "/shift-report?site=changwon-1&shift=2026-02-30/day",
    "/shift-report?site=changwon-1&shift=2026-09-21/no-such-shift",
    "/?lang=en%00",
    "/status?x=SELECT%20*%20FROM%20events",
    "/admin/audit?from=2026-01-01';--",
    "/admin/audit?action=drop",
    "/admin/audit?action=login,config.nuke",
]
FINE_PAGES = [M, M + "?window=1h&lang=en", "/oee?site=changwon-1&line=cnc-1&shift=last-8h",
              "/alarms?alarm=vib.h:changwon-1/cnc-1/cnc-101/vibration", "/shift-report?site=changwon-1&shift=2026-09-21/day",
              "/signal/changwon-1/cnc-1/cnc-101/spindle_load", "/?lang=en&kiosk=1", "/admin/audit?from=2026-01-01"]


def test_hostile_page_requests_answer_400_and_query_nothing(running):
    server, store, app = running
    before = store.reads
    for url in HOSTILE_PAGES:
        r = requests.get(server.url + url, timeout=10, allow_redirects=False)
        assert r.status_code == 400, url
        assert "Traceback" not in r.text and "DROP" not in r.text
    assert store.reads == before
    counts = app.server.extensions["gwanje_rejects"][0].counts()
    assert sum(counts.values()) >= len(HOSTILE_PAGES), counts


def test_pages_with_real_ids_are_served(running):
    server, _, _ = running
    for url in FINE_PAGES:
        assert requests.get(server.url + url, timeout=10).status_code == 200, url


def callback(server, output, items, changed):
    deps = requests.get(server.url + "/_dash-dependencies", timeout=10).json()
    dep = next(d for d in deps if output in d["output"])
    values = dict(items)

    def spec_items(specs):
        return [{"id": s["id"] if not s["id"].startswith("{") else values.get(("id", s["id"]), s["id"]),
                 "property": s["property"], "value": values.get((s["id"], s["property"]))} for s in specs]

    outs = [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in dep["output"].strip(".").split("...")]
    body = {"output": dep["output"], "outputs": outs if dep["output"].startswith("..") else outs[0],
            "inputs": spec_items(dep["inputs"]), "state": spec_items(dep["state"]), "changedPropIds": changed}
    return requests.post(server.url + "/_dash-update-component", json=body, timeout=10)


EN = {"lang": "en", "kiosk": False}


def routing(server, pathname, search=""):
    return callback(server, "_pages_content", {("_pages_location", "pathname"): pathname,
                                               ("_pages_location", "search"): search}, ["_pages_location.pathname"])


def test_hostile_values_in_callbacks_are_refused_before_any_query(running):
    server, store, app = running
    # the control first: a real page through Dash's routing callback reads the store
    before = store.reads
    assert routing(server, M).status_code == 200
    assert store.reads > before
    refused = [
        routing(server, M + "'; DROP MEASUREMENT samples"),
        routing(server, "/machine/changwon-1/cnc-1/ghost"),
        routing(server, "/oee", "?site=changwon-1&shift=2026-09-21/day%27--"),
        routing(server, "/alarms", "?alarm=..%2F..%2Fetc"),
        callback(server, "oee-body.children", {("oee-tick", "n_intervals"): 1, ("page-ctx", "data"): EN,
                                               ("oee-params", "data"): {"site": "x' OR 1=1", "line": None,
                                                                        "machine": None, "shift": None}},
                 ["oee-tick.n_intervals"]),
        callback(server, "shift-csv.data", {("shift-csv-btn", "n_clicks"): 1, ("page-ctx", "data"): EN,
                                            ("shift-params", "data"): {"site": "changwon-1", "line": "cnc-1",
                                                                       "machine": None, "shift": "1;DROP"}},
                 ["shift-csv-btn.n_clicks"]),
        callback(server, "alarm-feedback.children", {("alarm-ack", "n_clicks"): 1, ("page-ctx", "data"): EN,
                                                     ("alarms-grid", "selectedRows"): [
                                                         {"id": "vib.h:../../x/y", "site_id": "changwon-1"}]},
                 ["alarm-ack.n_clicks"]),
        callback(server, "alarm-history-grid.rowData", {("alarm-search", "value"): "bearing\x00",
                                                        ("page-ctx", "data"): EN}, ["alarm-search.value"]),
        callback(server, "audit-body.children", {("audit-from", "value"): "2026-01-01' OR '1'='1",
                                                 ("page-ctx", "data"): EN}, ["audit-from.value"]),
    ]
    after_control = store.reads
    assert [r.status_code for r in refused] == [400] * len(refused), [r.text for r in refused]
    assert all(r.json()["error"] == "bad input" for r in refused)
    assert store.reads == after_control


def test_a_forged_pattern_id_is_refused(running):
    server, store, _ = running
    deps = requests.get(server.url + "/_dash-dependencies", timeout=10).json()
    dep = next(d for d in deps if "gw-reason-saved" in d["output"])
    ident = {"type": "gw-reason", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101; DROP", "start": "1"}
    out = dict(ident, type="gw-reason-saved")
    body = {"output": dep["output"], "outputs": {"id": out, "property": "children"},
            "inputs": [{"id": ident, "property": "value", "value": "material"}],
            "state": [{"id": "page-ctx", "property": "data", "value": EN}],
            "changedPropIds": [json_key(ident) + ".value"]}
    before = store.reads
    r = requests.post(server.url + "/_dash-update-component", json=body, timeout=10)
    assert r.status_code == 400 and store.reads == before


def json_key(ident):
    import json

    return json.dumps(ident, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("value", ["changwon-1", "cnc-101", "vibration", "2026-09-21", "last-8h", "en", "1"])
def test_plain_values_are_not_hostile(value):
    assert hostile(value) is None


@pytest.mark.parametrize("value", ["a'b", 'a"b', "a;b", "../x", "a\x00", "x" * 301, "1 OR 1=1", "a--", "/*x*/",
                                   "SELECT 1", "drop table", "a\\b", "a\nb", "union all"])
def test_injection_shapes_are_hostile(value):
    assert hostile(value) is not None


def test_ids_are_checked_against_the_plant(plant_config):
    ids = PlantIds(plant_config, ["day", "night"], ["last-8h"], ["15m", "1h"])
    assert ids.machine("changwon-1", "cnc-1", "cnc-101") is None
    assert ids.machine("changwon-1", "cnc-2", "cnc-101") == "unknown_machine"
    assert ids.alarm("vib.h:changwon-1/cnc-1/cnc-101/vibration") is None
    assert ids.alarm("vib.h:changwon-1/vibration") is None  # a site alarm
    assert ids.alarm("system:spool_full") is None and ids.alarm("down:changwon-1/cnc-1/cnc-101/") is None
    assert ids.alarm("system:") == "bad_alarm_id" and ids.alarm("vib:a/b/c/d/e") == "bad_alarm_id"
    assert ids.alarm("vib.h:busan-9/cnc-1/cnc-101/vibration") == "unknown_site"
    assert ids.shift("2026-09-21/day") is None and ids.shift("last-8h") is None
    assert ids.shift("2026-09-31/day") == "bad_shift" and ids.shift("2026-09-21/lunch") == "unknown_shift"
    assert ids.time_range(1, 2) is None and ids.time_range(2, 1) == "empty_time_range"
