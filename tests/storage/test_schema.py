"""The typed measurements (storage/schema.py, docs/schema.md) as a user meets them.

Written by the real engine and alarm lifecycle through the stores, read back with the stock
`influx` CLI (Debian's influxdb-client) from a real influxd, and with SQL from DuckDB: every
example in docs/schema.md runs in both and gives the same answer, which for the questions the
test plant was built for is also the known one (tests/storage/plantdata.py). Field types are
checked per encoded line for arbitrary values and against influxd itself, which refuses a
field that changes type. The Grafana dashboard in deploy/ parses and every query in it runs.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwanje.model import NS_PER_S, Event
from storage.checks import event_json
from storage.embedded import EmbeddedStore
from storage.influx import InfluxStore
from storage.lineprotocol import encode_events
from storage.schema import BY_KIND, FIELD_TYPES, MEASUREMENTS, TAG, typed_point
from tests.fixtures.common import find_binary
from tests.storage.plantdata import PlantData, build, kst_ns

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "schema.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "gwanje-overview.json"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SQL_TYPE = {"tag": "VARCHAR", "float": "DOUBLE", "integer": "BIGINT", "string": "VARCHAR", "boolean": "BOOLEAN"}


# ------------------------------------------------------------------ helpers
def influx_cli(server, db: str, q: str) -> list[dict]:
    """Rows (tags merged into columns) of a query run by the stock influx CLI."""
    r = subprocess.run([find_binary("influx"), "-host", "127.0.0.1", "-port", str(server.http_port),
                        "-database", db, "-execute", q, "-format", "json", "-precision", "ns"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{q}\n{r.stdout}{r.stderr}"
    rows = []
    for res in json.loads(r.stdout)["results"]:
        assert "error" not in res, f"{q}: {res['error']}"
        for s in res.get("series", []) or []:
            for v in s["values"]:
                rows.append({**(s.get("tags") or {}), **dict(zip(s["columns"], v))})
    return rows


def sql_rows(store: EmbeddedStore, q: str) -> list[dict]:
    with store._cursor() as cur:
        cur.execute(q)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def norm(v):
    if isinstance(v, datetime):
        return (v - EPOCH) // timedelta(microseconds=1) * 1000
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return round(float(v), 6)
    return v


def answer(rows: list[dict], cols: list[str]) -> list[tuple]:
    return sorted((tuple(norm(r.get(c)) for c in cols) for r in rows), key=repr)


def doc_examples() -> list[tuple[str, str, str]]:
    """(question, InfluxQL, SQL) for every example in docs/schema.md."""
    out = []
    for section in DOC.read_text(encoding="utf-8").split("\n### ")[1:]:
        title = section.split("\n", 1)[0].strip()
        i = re.search(r"```influxql\n(.+?)```", section, re.S)
        s = re.search(r"```sql\n(.+?)```", section, re.S)
        assert bool(i) == bool(s), f"docs/schema.md: {title} needs both an InfluxQL and a SQL example"
        if i:
            out.append((title, i.group(1).strip(), s.group(1).strip()))
    return out


def day_ns(d) -> int:
    return kst_ns(d, 0)


# ------------------------------------------------------------------ the plant, written once
@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> PlantData:
    return build(tmp_path_factory.mktemp("plant"), time.time_ns())


@pytest.fixture(scope="module")
def duck(plant):
    s = EmbeddedStore()
    s.write_events(plant.events)
    yield s
    s.close()


@pytest.fixture(scope="module")
def influx_db(plant, influxd):
    s = InfluxStore(influxd.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=10).start()
    s.write_events(plant.events)
    yield s.database
    s._query(f'DROP DATABASE "{s.database}"', write=True)
    s.close()


EXAMPLES = doc_examples()


def test_the_docs_have_the_examples_the_issue_asks_for():
    titles = [t for t, _, _ in EXAMPLES]
    assert len(titles) >= 8, titles
    assert any("Downtime" in t for t in titles) and any("OEE by line" in t for t in titles) \
        and any("Critical alarms" in t for t in titles)


def test_the_docs_list_every_column_of_every_measurement_with_its_type():
    text = DOC.read_text(encoding="utf-8")
    for m in MEASUREMENTS:
        section = text.split(f"### `{m.name}`", 1)
        assert len(section) == 2, f"docs/schema.md has no section for {m.name}"
        rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (\w+) \| ([^|]*) \|$", section[1].split("\n### ", 1)[0], re.M)
        documented = {name: (kind.strip(), sql, meaning.strip()) for name, kind, sql, meaning in rows}
        assert documented == {c.name: ("tag" if c.type == TAG else f"field {c.type}", SQL_TYPE[c.type], c.doc)
                              for c in m.columns}, m.name


@pytest.mark.services
@pytest.mark.parametrize("question,influxql,sql", EXAMPLES, ids=[t for t, _, _ in EXAMPLES])
def test_each_docs_example_answers_the_same_in_influxql_and_duckdb_sql(question, influxql, sql, plant,
                                                                         influxd, influx_db, duck):
    got_sql = sql_rows(duck, sql)
    got_influx = influx_cli(influxd, influx_db, influxql)
    assert got_sql and got_influx, f"{question}: no answer (influx {got_influx}, sql {got_sql})"
    cols = list(got_sql[0])
    assert set(cols) <= set(got_influx[0]), (cols, list(got_influx[0]))
    assert answer(got_influx, cols) == answer(got_sql, cols), question


@pytest.mark.services
def test_the_docs_answers_are_the_ones_the_plant_was_built_for(plant, influxd, influx_db):
    ex = {t: i for t, i, _ in EXAMPLES}
    down = influx_cli(influxd, influx_db, next(v for k, v in ex.items() if k.startswith("Downtime")))
    assert {(r["machine"], r["time"]): r["down_min"] for r in down} == \
        {(m, day_ns(d)): v for (m, d), v in plant.down_min.items()}

    raised = influx_cli(influxd, influx_db, next(v for k, v in ex.items() if k.startswith("Critical alarms")))
    assert {r["time"]: r["raised"] for r in raised} == {day_ns(d): n for d, n in plant.critical_raised.items()}

    oee = influx_cli(influxd, influx_db, next(v for k, v in ex.items() if k.startswith("OEE by line")))
    expected = {(e.line, e.ts): e.data["oee"] for e in plant.engine_events
                if e.kind == "oee_shift" and e.line and not e.machine}
    assert len(expected) == 4  # two lines, two shifts
    assert {(r["line"], r["time"]): r["oee"] for r in oee} == expected

    lots = influx_cli(influxd, influx_db, next(v for k, v in ex.items() if k.startswith("The LOT")))
    assert {r["machine"]: (r["lot"], r["product"]) for r in lots} == \
        {m: (f"BR-{plant.days[1]:%m%d}", "bracket") for m in ("m1", "m2", "press")}


@pytest.mark.services
def test_a_user_filters_by_state_and_shift_and_aggregates_typed_fields_with_the_cli(plant, influxd, influx_db):
    q = lambda s: influx_cli(influxd, influx_db, s)  # noqa: E731
    # filter on a tag (state) and on a field (duration), aggregate a float field
    assert q('SELECT count("duration_s") AS n, sum("duration_s") AS s FROM "machine_state" '
             "WHERE \"state\" = 'down' AND \"machine\" = 'm1'")[0] | {"time": 0} == {"time": 0, "n": 2, "s": 75 * 60.0}
    assert q("SELECT \"code\" FROM \"machine_state\" WHERE \"state\" = 'down' AND \"duration_s\" > 2400")[0]["code"] == "4"
    # integer counts sum as integers, exactly what the engine counted
    total = sum(e.data["good"] for e in plant.engine_events if e.kind == "counts" and e.machine == "press")
    assert q("SELECT sum(\"good\") AS g FROM \"counts\" WHERE \"machine\" = 'press'")[0]["g"] == total
    # by shift id and level; a site record is the one without a line tag
    site = q("SELECT \"oee\", \"shift_key\" FROM \"oee_shift\" WHERE \"shift\" = 'day' AND \"line\" = ''")
    assert sorted(r["shift_key"] for r in site) == [f"{d}/day" for d in plant.days]
    # alarms by priority and transition, with who acknowledged
    acks = q("SELECT \"user_name\" FROM \"alarm\" WHERE \"event\" = 'acknowledged' AND \"priority\" = 'critical'")
    assert sorted(r["user_name"] for r in acks) == ["kim", "kim", "lee"]


@pytest.mark.services
def test_influxdb_reports_each_typed_field_with_the_schemas_type(influxd, influx_db):
    for m in MEASUREMENTS:
        rows = influx_cli(influxd, influx_db, f'SHOW FIELD KEYS FROM "{m.name}"')
        reported = {r["fieldKey"]: r["fieldType"] for r in rows}
        assert reported, m.name
        assert reported == {k: FIELD_TYPES[m.name][k] for k in reported}, m.name
        tags = {r["tagKey"] for r in influx_cli(influxd, influx_db, f'SHOW TAG KEYS FROM "{m.name}"')}
        assert tags <= {c.name for c in m.tags}, m.name


@pytest.mark.services
def test_the_app_reads_back_the_same_events_as_before(plant, influx_db, influxd, duck):
    """The `event` measurement stays the source of truth: every reader sees the same records."""
    reader = InfluxStore(influxd.url, influx_db)
    a, b = kst_ns(plant.days[0], 0), kst_ns(plant.days[1], 23)
    for kind in ("state", "counts", "oee_shift", "alarm", "lot", "signal_meta"):
        got = [sorted(s.events(kind, a - 2 * 86400 * NS_PER_S, b), key=lambda e: e.identity) for s in (reader, duck)]
        assert got[0] and got[0] == got[1], kind
    reader.close()


# ------------------------------------------------------------------ Grafana
def grafana_queries(dash: dict) -> list[str]:
    panels = list(dash["panels"])
    for p in list(panels):
        panels += p.get("panels", [])
    out = [t["query"] for p in panels for t in p.get("targets", [])]
    out += [v["query"] if isinstance(v["query"], str) else v["query"]["query"]
            for v in dash["templating"]["list"] if v.get("type") == "query"]
    return out


def grafana_to_influxql(q: str) -> str:
    """Grafana's macros and variables as Grafana sends them (one value selected)."""
    return (q.replace("$timeFilter", "time > now() - 7d").replace("$__interval", "1h")
            .replace("$site", "s1").replace("$machine", "m1"))


def test_the_grafana_dashboard_is_a_dashboard_model_on_the_influxql_datasource():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        assert p["datasource"]["type"] == "influxdb", p["title"]
        for t in p["targets"]:
            assert t["rawQuery"] is True and t["refId"] and t["datasource"]["type"] == "influxdb"
    measurements = {m.name for m in MEASUREMENTS}
    used = set(re.findall(r'FROM "(\w+)"', " ".join(grafana_queries(dash))))
    assert used and used <= measurements, used - measurements
    assert {"machine_state", "counts", "oee_shift", "alarm", "signal_meta"} <= used


@pytest.mark.services
def test_every_grafana_query_runs_on_influxd(influxd, influx_db):
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for q in grafana_queries(dash):
        rows = influx_cli(influxd, influx_db, grafana_to_influxql(q))
        assert rows, f"no data for {q}"


# ------------------------------------------------------------------ field types, for any value
NUMBERS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4))
NAMES = st.sampled_from(["s1", "창원 1", "a,b=c d", ""])


@st.composite
def events(draw) -> Event:
    m = draw(st.sampled_from(MEASUREMENTS))
    data = {}
    for c in m.columns:
        if c.key is not None and draw(st.booleans()):
            data[c.key] = draw(NUMBERS if c.type != TAG else st.one_of(st.text(max_size=6), NUMBERS))
    if m.kind == "state" and draw(st.booleans()):
        data["code"] = draw(NUMBERS)
    if m.kind == "oee_shift" and draw(st.booleans()):
        data["flags"] = draw(st.one_of(st.lists(st.text(max_size=5), max_size=3), NUMBERS,
                                       st.lists(NUMBERS, max_size=2)))
    key = draw(st.sampled_from(["", "2026-11-24/day", "1-2", "a:b", "x/"]))
    return Event(m.kind, draw(st.integers(-(2**62), 2**62)), draw(NAMES), draw(NAMES), draw(NAMES), key, data)


def field_types_of(line: str) -> tuple[str, dict[str, str]]:
    """(measurement, {field: type}) of one line-protocol line, by its syntax."""
    m = re.match(r"((?:[^ ,\\]|\\.)+)((?:[^ \\]|\\.)*) ", line)
    assert m, line
    rest = line[m.end():]
    fields, i = {}, 0
    while True:
        k = re.match(r"(\w+)=", rest[i:])
        assert k, line
        i += k.end()
        if rest[i] == '"':
            j = i + 1
            while rest[j] != '"':
                j += 2 if rest[j] == "\\" else 1
            fields[k.group(1)], i = "string", j + 1
        else:
            v = re.match(r"[^, ]+", rest[i:]).group(0)
            if v in ("true", "false"):
                fields[k.group(1)] = "boolean"
            elif re.fullmatch(r"-?\d+i", v):
                fields[k.group(1)] = "integer"
            else:
                assert re.fullmatch(r"-?\d+(\.\d+)?(e[+-]\d+)?|-?\d\.\d+e[+-]\d+", v) and ("." in v or "e" in v), line
                fields[k.group(1)] = "float"
            i += len(v)
        if rest[i] == " ":
            assert re.fullmatch(r" -?\d+", rest[i:]), line
            return m.group(1), fields
        assert rest[i] == ",", line
        i += 1


@settings(max_examples=300, deadline=None)
@given(st.lists(events(), max_size=8))
def test_every_typed_field_is_always_written_with_its_one_type(evs):
    enc = encode_events(evs)
    for line in enc.points:
        measurement, fields = field_types_of(line)
        if measurement == "event":
            assert fields == {"data": "string"}
            continue
        assert fields, line
        for name, t in fields.items():
            assert FIELD_TYPES[measurement][name] == t, (line, name)


@pytest.mark.services
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=st.lists(events(), min_size=1, max_size=8))
def test_influxd_accepts_every_typed_write_into_one_database(typed_db, evs):
    # one database for every example: a field written as float once and integer another time
    # would be refused (field type conflict) and fail the write
    typed_db.write_events(evs)


@pytest.fixture(scope="module")
def typed_db(influxd):
    s = InfluxStore(influxd.url, f"t_{uuid.uuid4().hex[:12]}", timeout_s=10).start()
    yield s
    s._query(f'DROP DATABASE "{s.database}"', write=True)
    s.close()


@pytest.fixture(scope="module")
def scratch():
    s = EmbeddedStore()
    yield s
    s.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=st.lists(events(), max_size=8))
def test_duckdb_views_hold_what_the_influxdb_points_hold(scratch, evs):
    store = scratch
    with store._cursor() as cur:
        cur.execute("DELETE FROM events")
    if True:
        store.write_events(evs)
        kept = {}  # the last storable version of an identity wins, in both stores
        for e in evs:
            try:
                event_json(e)
            except ValueError:
                continue
            kept[e.identity] = e
        for m in MEASUREMENTS:
            want = []
            for e in kept.values():
                p = typed_point(e) if e.kind == m.kind else None
                if p is not None:
                    want.append({**{c.name: p.tags.get(c.name, "") for c in m.tags},
                                 **{c.name: p.fields.get(c.name) for c in m.fields}, "ts": e.ts})
            got = sql_rows(store, f"SELECT * EXCLUDE (time) FROM {m.name}")
            cols = ["ts", *(c.name for c in m.columns)]
            assert answer(got, cols) == answer(want, cols), m.name


def test_a_value_that_does_not_fit_its_field_is_left_out_and_counted_and_the_event_kept():
    e = Event("counts", 1_767_225_600 * NS_PER_S, "s1", "l1", "m1", "", {"total": 2.5, "good": 2.0, "reject": True})
    p = typed_point(e)
    assert p.fields == {"good": 2} and sorted(p.problems) == ["counts.reject", "counts.total"]
    store = EmbeddedStore()
    store.write_events([e])
    assert store.rejects.counts() == {"typed_field_wrong_type": 2}
    assert store.events("counts", e.ts, e.ts + 1) == [e]
    assert sql_rows(store, "SELECT total, good, reject FROM counts") == [{"total": None, "good": 2, "reject": None}]
    store.close()


def test_every_kind_with_a_typed_measurement_is_one_the_app_writes():
    assert set(BY_KIND) == {"state", "counts", "oee_shift", "alarm", "lot", "signal_meta", "audit",
                            "lot_step", "lot_index", "lot_link", "lot_hold"}


# ------------------------------------------------------------------ refusals name their records
@pytest.mark.services
def test_a_refused_typed_point_names_its_event_and_the_event_point_is_kept(influxd):
    """InfluxDB counts dropped points; an event is two points (event + typed). Refused.records
    must still name exactly the refused events, so the pipeline dead-letters those and nothing
    else, and a conflict in a typed measurement (another tool wrote `counts.total` as float)
    loses nothing of the system's own record."""
    import requests

    from storage.base import Refused

    db = f"t_{uuid.uuid4().hex[:12]}"
    requests.post(influxd.url + "/query", data={"q": f'CREATE DATABASE "{db}" WITH DURATION 2d'}).raise_for_status()
    store = InfluxStore(influxd.url, db).start()
    now = time.time_ns()
    old = Event("alarm", now - 3 * 86400 * NS_PER_S, "s1", "l1", "m1", "a:1", {"event": "raised", "priority": "high"})
    new = Event("alarm", now, "s1", "l1", "m1", "a:1", {"event": "returned", "priority": "high"})
    with pytest.raises(Refused) as err:
        store.write_events([old, new])
    assert err.value.reason == "beyond_retention" and err.value.records == [old]
    assert store.events("alarm", 0, now + 1) == [new]

    t = now - 60 * NS_PER_S
    requests.post(influxd.url + "/write", params={"db": db, "precision": "ns"},
                  data=f"counts,site=s1,line=l1,machine=m9 total=1.5 {t}").raise_for_status()
    counts = Event("counts", t + 60 * NS_PER_S, "s1", "l1", "m1", "", {"total": 3, "good": 3, "reject": 0})
    lot = Event("lot", t, "s1", "l1", "m1", "", {"lot": "BR-1", "product": "bracket"})
    with pytest.raises(Refused) as err:
        store.write_events([lot, counts])
    assert err.value.reason == "field_type_conflict" and err.value.records == [counts]
    assert store.events("counts", 0, now + 1) == [counts] and store.events("lot", 0, now + 1) == [lot]
    store._query(f'DROP DATABASE "{db}"', write=True)
    store.close()
