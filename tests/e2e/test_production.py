"""The production split deployment of docker-compose.yml end to end (issue 10, "Tests"), every
piece a real server or a real `app.py` process, in production mode (GWANJE_DEMO=0):

- the broker PKI and password file from `python -m runtime.pki`; mosquitto on the shipped
  deploy/mosquitto/mosquitto.conf + aclfile (TLS only, one user per role);
- influxd, and redis-server with a password (the serves' shared cache);
- config/ with system.yaml = deploy/compose/system.yaml, only hosts, ports and paths rewritten
  (mqtts://localhost:<port>, the CA, the OPC UA urls and the simulator's pinned certificates);
- `app.py simulate` (gwanje-plc; OPC UA Basic256Sha256 SignAndEncrypt), `app.py certs` then
  `app.py collect --instance a|b` (gwanje-collect), and two control rooms: `app.py serve` and
  gunicorn runtime.wsgi:server with 2 workers (gwanje-serve), both on the same redis and keys.

Two changes to the shipped config, both test knobs: machine cnc-101 is a real device (not
simulated), so the test publishes its values as the PLC and raises an alarm when it wants;
and no shift calendar, so the alarm is never suppressed as a planned stop.

Tests: data from both sites and both protocols reaches influxd; an acknowledge in one browser
(serve 1) shows in another (serve 2) within 2 s, with the audit row; a viewer's direct
callback call is refused and changes nothing; serve's /status lists both collects' sources;
no log and no error page holds any of the secrets."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as paho
import pytest
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from dashboards.auth import hash_password
from gwanje.model import NS_PER_S, now_ns
from storage.influx import InfluxStore
from tests.dashboards.helpers import dash_call
from tests.e2e.production import (MQTT_USERS, Http, Mosquitto, Process, compose_config, run_app, run_pki,
                                  secret)
from tests.fixtures.browser import CHROMIUM_FLAGS, find_chromium
from tests.fixtures.common import find_binary, free_port, missing, wait_for, wait_port
from tests.fixtures.redis_server import RedisServer

pytestmark = pytest.mark.services

ALARM = "cnc-vibration.hh:changwon-1/cnc-1/cnc-101/vibration"
ROW = {"id": ALARM, "site_id": "changwon-1", "line_id": "cnc-1"}
OPERATOR, VIEWER, ADMIN = "oh-operator", "vi-viewer", "ahn-admin"
START_S = 90  # generous: the suite shares 2 cores with everything else under test


class Deployment:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.procs: dict[str, Process] = {}
        self.outputs: dict[str, str] = {}  # one-shot commands (pki, certs)
        self.extra_logs: list = []  # server logs (mosquitto, redis, influxd)
        self.ready_s: dict[str, float] = {}
        self.serve_urls: list[str] = []
        self.t0 = now_ns()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {n}\n{p.output()[-tail:]}" for n, p in self.procs.items())


class PlcDevice:
    """cnc-101's PLC: publishes as gwanje-plc over TLS, twice a second, until stopped."""

    def __init__(self, port: int, ca: str, password: str) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-plc-{port}")
        c.tls_set(ca_certs=ca)
        c.username_pw_set("gwanje-plc", password)
        c.connect("localhost", port)
        c.loop_start()
        self.c = c
        self.vibration = 2.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            body = {"ts": now_ns(), "values": {"state": 3, "vibration": self.vibration, "spindle_speed": 8000.0,
                                               "spindle_load": 50.0}}
            self.c.publish("gwanje/changwon-1/cnc-1/cnc-101", json.dumps(body), qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, influxd):
    tmp = tmp_path_factory.mktemp("production")
    d = Deployment()
    s = d.secrets
    pw = {prefix: secret(prefix.lower()) for prefix in MQTT_USERS}
    pki_env = {}
    for prefix, user in MQTT_USERS.items():
        pki_env.update({f"{prefix}_USERNAME": user, f"{prefix}_PASSWORD": pw[prefix]})
        s[f"{prefix}_PASSWORD"] = pw[prefix]
    s.update(GWANJE_COMMAND_KEY=secret("cmdkey"), GWANJE_SECRET_KEY=secret("sesskey"),
             GWANJE_INFLUX_TOKEN=secret("influxtoken"), GWANJE_REDIS_PASSWORD=secret("redispw"),
             GWANJE_OPCUA_PASSWORD=secret("opcuapw"))
    users = {OPERATOR: ("operator", secret("op-pw")), VIEWER: ("viewer", secret("vi-pw")),
             ADMIN: ("admin", secret("ad-pw"))}
    for name, (_, upw) in users.items():
        s[f"user:{name}"] = upw
    d.users = users

    pki = tmp / "pki"
    d.outputs["pki"] = run_pki(pki, pki_env)
    d.ca = str(pki / "ca.pem")
    broker_dir = tmp / "mosquitto"
    d.broker = Mosquitto(find_binary("mosquitto"), broker_dir, pki)
    d.extra_logs.append(d.broker.log_path)
    rdir = tmp / "redis"
    rdir.mkdir()
    d.redis = RedisServer(find_binary("redis-server"), rdir, password=s["GWANJE_REDIS_PASSWORD"]).start()
    d.extra_logs.append(rdir / "redis.log")
    d.extra_logs.append(influxd.dir / "influxd.log")

    sim_data = tmp / "sim-data"
    cfg = compose_config(tmp, mqtt_port=d.broker.port, ca_file=pki / "ca.pem", influx_url=influxd.url,
                         database="production", sim_data=sim_data)
    plant = yaml.safe_load((cfg / "plant.yaml").read_text(encoding="utf-8"))
    line = next(ln for site in plant["sites"] if site["id"] == "changwon-1" for ln in site["lines"] if ln["id"] == "cnc-1")
    next(m for m in line["machines"] if m["id"] == "cnc-101")["simulated"] = False
    (cfg / "plant.yaml").write_text(yaml.safe_dump(plant, allow_unicode=True), encoding="utf-8")
    (cfg / "shifts.yaml").unlink()
    d.config_dir = cfg
    d.system = yaml.safe_load((cfg / "system.yaml").read_text(encoding="utf-8"))

    common = {"GWANJE_DEMO": "0", "GWANJE_CONFIG_DIR": str(cfg), "GWANJE_COMMAND_KEY": s["GWANJE_COMMAND_KEY"],
              "GWANJE_INFLUX_TOKEN": s["GWANJE_INFLUX_TOKEN"], "GWANJE_OPCUA_USERNAME": "gwanje-collect",
              "GWANJE_OPCUA_PASSWORD": s["GWANJE_OPCUA_PASSWORD"]}
    logs = tmp / "logs"
    logs.mkdir()
    d.log_dir = logs
    store = InfluxStore(influxd.url, "production")
    d.store = store
    plc = None
    try:
        sim_health = free_port()
        d.procs["simulate"] = Process.app(
            "simulate", "simulate", "--health-port", str(sim_health), log_dir=logs,
            env={**common, "GWANJE_DATA_DIR": str(sim_data), "GWANJE_MQTT_USERNAME": "gwanje-plc",
                 "GWANJE_MQTT_PASSWORD": pw["PLC_MQTT"]})
        # compose: the collectors wait for simulate to be healthy (its OPC UA certificates made)
        certs = [sim_data / "opcua" / name / "server_cert.der" for name in ("changwon-1", "changwon-2")]
        assert wait_for(lambda: all(c.exists() for c in certs) and
                        _ready(sim_health), START_S, interval=0.2), d.logs()
        collect_env = {**common, "GWANJE_MQTT_USERNAME": "gwanje-collect", "GWANJE_MQTT_PASSWORD": pw["COLLECT_MQTT"]}
        health = {}
        for inst in ("a", "b"):
            data = tmp / f"collect-{inst}-data"
            d.outputs[f"certs-{inst}"] = run_app("certs", env={**collect_env, "GWANJE_DATA_DIR": str(data)})
            health[inst] = free_port()
        for inst in ("a", "b"):
            d.procs[f"collect-{inst}"] = Process.app(
                f"collect-{inst}", "collect", "--instance", inst, "--health-port", str(health[inst]), log_dir=logs,
                env={**collect_env, "GWANJE_DATA_DIR": str(tmp / f"collect-{inst}-data")})
        serve_env = {**common, "GWANJE_MQTT_USERNAME": "gwanje-serve", "GWANJE_MQTT_PASSWORD": pw["SERVE_MQTT"],
                     "GWANJE_SECRET_KEY": s["GWANJE_SECRET_KEY"],
                     "GWANJE_USERS": ",".join(f"{n}:{role}:{hash_password(p)}" for n, (role, p) in users.items()),
                     "GWANJE_REDIS_URL": d.redis.url, "GWANJE_REDIS_PASSWORD": s["GWANJE_REDIS_PASSWORD"]}
        ports = [free_port(), free_port()]
        d.procs["serve-1"] = Process.app("serve-1", "serve", log_dir=logs,
                                         env={**serve_env, "GWANJE_DATA_DIR": str(tmp / "serve-1-data"),
                                              "GWANJE_PORT": str(ports[0])})
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        d.procs["serve-2"] = Process("serve-2", [gunicorn, "-w", "2", "-b", f"127.0.0.1:{ports[1]}", "--timeout", "60",
                                                 "runtime.wsgi:server"], log_dir=logs,
                                     env={**serve_env, "GWANJE_DATA_DIR": str(tmp / "serve-2-data")})
        plc = PlcDevice(d.broker.port, d.ca, pw["PLC_MQTT"])
        d.plc = plc
        pending = {inst: d.procs[f"collect-{inst}"] for inst in ("a", "b")}
        deadline = time.monotonic() + START_S
        while pending and time.monotonic() < deadline:
            for inst, p in list(pending.items()):
                assert p.alive(), d.logs()
                if _ready(health[inst]):
                    d.ready_s[inst] = time.monotonic() - p.started
                    del pending[inst]
            time.sleep(0.05)
        assert not pending, (pending, _readyz(health), d.logs())
        print("collect start -> /readyz 200: " + ", ".join(f"{i} {t:.1f} s" for i, t in d.ready_s.items()))
        for port, name in zip(ports, ("serve-1", "serve-2")):
            wait_port(port, timeout=START_S, proc=d.procs[name].proc)
            d.serve_urls.append(f"http://127.0.0.1:{port}")
        yield d
    finally:
        if plc is not None:
            plc.stop()
        for p in d.procs.values():
            if p.alive():
                p.stop()
        store.close()
        d.redis.stop()
        d.broker.stop()


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _readyz(health: dict) -> dict:
    out = {}
    for inst, port in health.items():
        try:
            out[inst] = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).text
        except requests.RequestException as e:
            out[inst] = repr(e)
    return out


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium for independent browser contexts (two displays, two cookie jars),
    under the app's real Content-Security-Policy."""
    exe = find_chromium()
    if exe is None:
        missing("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install playwright)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


def logged_in(dep: Deployment, serve: int, user: str) -> Http:
    h = Http(dep.serve_urls[serve])
    r = h.login(user, dep.users[user][1])
    assert r.status_code == 302, (r.status_code, r.text[:500])
    return h


def active_rows(h: Http) -> list[dict]:
    r = dash_call(h, "alarms-grid.rowData", {"alarm-group.value": "none", "page-ctx.data": {"lang": "en"}},
                  ["refresh.n_intervals"])
    if r.status_code != 200:
        return []
    return r.json()["response"]["alarms-grid"]["rowData"]


def alarm_row(h: Http):
    return next((r for r in active_rows(h) if r["id"] == ALARM), None)


def audits(dep: Deployment) -> list[dict]:
    try:
        return [e.data for e in dep.store.events("audit", dep.t0 - NS_PER_S, now_ns() + NS_PER_S)]
    except Exception:
        return []


def test_both_sites_both_protocols_both_instances_reach_influxdb(deployment):
    d = deployment
    # (site, line, machine, signal): MQTT and OPC UA machines of site 1 (collect a) and site 2 (collect b)
    wanted = [("changwon-1", "cnc-1", "cnc-102", "spindle_speed"), ("changwon-1", "forge-1", "forge-101", "forging_force"),
              ("changwon-2", "injection-1", "imm-101", "mold_temp"), ("changwon-2", "assembly-1", "asm-101", "state"),
              ("changwon-1", "cnc-1", "cnc-101", "vibration")]  # the test's PLC

    def missing_ones():
        out = []
        for site, line, machine, signal in wanted:
            try:
                got = d.store.latest(site=site, line=line, machine=machine)
            except Exception:
                got = []
            if not any(x.signal == signal and x.ts >= d.t0 for x in got):
                out.append((machine, signal))
        return out

    assert wait_for(lambda: not missing_ones(), 60, interval=0.5), (missing_ones(), d.logs())


def test_ack_in_one_browser_shows_in_the_other_within_2s_with_audit(deployment, chromium):
    d = deployment
    d.plc.vibration = 9.6  # above HH (9.0) for longer than its on_delay_s (5 s)
    h1 = logged_in(d, 0, OPERATOR)
    row = wait_for(lambda: (r := alarm_row(h1)) and r["state"] == "unack_active" and r, 60, interval=0.5)
    assert row, (active_rows(h1), d.logs())
    pages = []
    contexts = [chromium.new_context(viewport={"width": 1920, "height": 1080}) for _ in range(2)]
    try:
        for i, ctx in enumerate(contexts):
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            page.goto(d.serve_urls[i] + f"/alarms?alarm={quote(ALARM, safe='')}&lang=en")
            page.wait_for_url("**/login**")
            page.fill("input[name=username]", OPERATOR)
            page.fill("input[name=password]", d.users[OPERATOR][1])
            page.click("button[type=submit]")
            page.wait_for_url("**/alarms**")
            pages.append(page)
        p1, p2 = pages
        status_cell = f'.ag-center-cols-container [row-id="{ALARM}"] [col-id="status"]'
        p1.wait_for_selector("#alarms-grid .ag-row-selected")
        p2.wait_for_selector(status_cell)
        assert p2.inner_text(status_cell) == "Unacknowledged"
        p1.click("#alarm-ack")
        clicked = time.monotonic()
        shown = wait_for(lambda: p2.inner_text(status_cell) == "Acknowledged", 2.0, interval=0.02)
        took = time.monotonic() - clicked
        print(f"ack in browser 1 (serve 1) -> shown in browser 2 (serve 2): {took * 1000:.0f} ms")
        assert shown, (p2.inner_text(status_cell), took, d.logs())
        assert wait_for(lambda: p1.inner_text("#alarm-feedback") == "1 done", 10), p1.inner_text("#alarm-feedback")
        acked_by = p2.inner_text(f'.ag-center-cols-container [row-id="{ALARM}"] [col-id="acked_by"]')
        assert acked_by == OPERATOR
    finally:
        for ctx in contexts:
            ctx.close()
    got = wait_for(lambda: [a for a in audits(d) if a["action"] == "alarm.acknowledge" and a["ok"]
                            and a["target"] == ALARM], 15, interval=0.3)
    assert got, audits(d)
    assert (got[0]["user"], got[0]["role"], got[0]["before"], got[0]["after"]) == (
        OPERATOR, "operator", "unack_active", "ack_active")


def test_a_viewers_direct_callback_call_is_refused_and_changes_nothing(deployment):
    d = deployment
    h = logged_in(d, 1, VIEWER)
    before = wait_for(lambda: alarm_row(h), 30, interval=0.5)
    assert before, active_rows(h)
    n_audit = len(audits(d))
    for button in ("alarm-ack", "alarm-shelve", "alarm-oos"):
        r = dash_call(h, "alarm-feedback.children", {
            f"{button}.n_clicks": 1, "alarms-grid.selectedRows": [ROW], "alarm-user.value": OPERATOR,
            "alarm-comment.value": "", "alarm-shelve-for.value": 3600, "alarm-action-done.data": 0,
            "page-ctx.data": {"lang": "en", "kiosk": False}}, [f"{button}.n_clicks"])
        assert r.status_code == 200, r.text
        assert r.json()["response"]["alarm-feedback"]["children"] == "Not allowed for your role", r.text
    time.sleep(1.0)  # anything sent would have reached collect and come back by now
    after = alarm_row(h)
    assert (after["state"], after["acked_by"], after["shelved_until"]) == (
        before["state"], before["acked_by"], before["shelved_until"]), (before, after)
    assert not [a for a in audits(d)[n_audit:] if a["ok"] and a["user"] == VIEWER], audits(d)[n_audit:]


def _texts(node) -> list[str]:
    """Every text of a Dash component tree, in order."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for n in node for t in _texts(n)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children")) if "props" in node else []
    return []


def test_status_lists_the_sources_of_both_collect_instances(deployment):
    d = deployment
    h = logged_in(d, 0, ADMIN)
    mqtt = f"mqtt localhost:{d.broker.port}"
    prev = None

    def rows():
        nonlocal prev
        r = dash_call(h, "status-body.children", {"page-ctx.data": {"lang": "en"}, "status-prev.data": prev},
                      ["refresh.n_intervals"])
        if r.status_code != 200:
            return {}
        resp = r.json()["response"]
        prev = resp["status-prev"]["data"]  # what the page keeps between refreshes: the data rates
        texts = _texts(resp["status-body"]["children"])
        # a source row: instance, source, kind, connection, data rate (samples/s), ...
        return {(texts[i], texts[i + 1]): texts[i + 2:i + 5] for i in range(len(texts) - 4)
                if texts[i] in ("a", "b") and texts[i + 2] in ("mqtt", "opcua")}, texts

    want = {("a", mqtt), ("a", "opcua:changwon-1"), ("b", mqtt), ("b", "opcua:changwon-2")}

    def good():
        got, texts = rows() or ({}, [])
        ok = set(got) == want and all(v[1] == "Connected" and v[2] not in ("—", "0.0") for v in got.values())
        return ok and (got, texts)

    seen = wait_for(good, 30, interval=1.0)
    assert seen, rows()
    got, texts = seen
    print("serve /status sources:", got)
    # the control bus table: both collects online, each with its own lines
    i = texts.index("Collect processes (control bus)")
    assert [texts[k:k + 2] for k in range(i, len(texts) - 1) if texts[k] in ("a", "b")] == [["a", "Online"],
                                                                                           ["b", "Online"]]


def test_no_secret_in_any_log_or_error_page(deployment):
    d = deployment
    pages = {}
    anon = Http(d.serve_urls[0])
    # a failed login carrying another user's real password
    r = anon.login(OPERATOR, d.users[VIEWER][1])
    assert r.status_code == 401
    pages["failed login"] = r.text
    h = logged_in(d, 1, OPERATOR)
    for name, path, code in (("404", "/assets/no-such-file.js", 404),
                             ("400", "/machine/changwon-1/cnc-1/cnc-101'; DROP MEASUREMENT samples;--", 400),
                             ("400 alarm", "/alarms?alarm=../../etc/passwd", 400)):
        r = h.get(path)
        assert r.status_code == code, (path, r.status_code)
        pages[name] = r.text + json.dumps(dict(r.headers))
    r = h.post("/_dash-update-component", data=b'{"output": "alarm-feedback.children", "inputs": 7}',
               headers={"Content-Type": "application/json"})
    assert r.status_code >= 400, r.status_code
    pages[f"bad callback {r.status_code}"] = r.text
    # an exception inside Dash (a callback nobody declared): 500 with an error id, no trace
    r = h.post("/_dash-update-component", json={"output": "no-such.children", "inputs": [], "changedPropIds": [],
                                                "outputs": {"id": "no-such", "property": "children"}})
    assert r.status_code == 500 and "error_id" in r.text and "Traceback" not in r.text, (r.status_code, r.text)
    pages["500"] = r.text + json.dumps(dict(r.headers))
    texts = dict(pages)
    for n, p in d.procs.items():
        texts[f"log {n}"] = p.output()
    texts.update({f"output {n}": o for n, o in d.outputs.items()})
    for path in d.extra_logs:
        if path.exists():
            texts[f"log {path.name}"] = path.read_text(encoding="utf-8", errors="replace")
    print("error pages scanned:", sorted(pages))
    assert len(texts) >= 10
    leaks = [(where, label) for where, text in texts.items() for label, value in d.secrets.items() if value in text]
    assert not leaks, leaks
    for p in d.procs.values():
        assert p.alive(), p.output()[-3000:]
