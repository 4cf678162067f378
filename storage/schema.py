"""The typed measurements: the schema a user of InfluxQL, Grafana or DuckDB SQL queries.

Pure code, no I/O. The `event` measurement (the `events` table in DuckDB) keeps every record
with its data as JSON: the system's own source of truth, the one it reads back. Next to it,
each event of a kind listed in MEASUREMENTS is also written as a point of a typed
measurement, in the same write, with the figures a user filters and aggregates as tags and
typed fields:

    state       -> machine_state   counts -> counts   oee_shift -> oee_shift
    alarm       -> alarm           lot    -> lot      signal_meta -> signal_meta
    audit       -> audit           lot_step, lot_index, lot_link, lot_hold (docs/lots.md)

DuckDB gets the same logical schema as views over `events` (sql_views()), so a user's SQL
mirrors their InfluxQL: same names, same columns, plus `time` (TIMESTAMPTZ) and `ts` (ns).
docs/schema.md lists every column.

Types never change (InfluxDB fixes a field's type per shard and refuses a point that writes
it as another): each field declares one type and a value is converted to it or left out —
an integral float for an integer field becomes that integer, an int for a float field a
float; a bool, a text for a number, a number for a text, a non-finite or out-of-range number
is left out (NULL in DuckDB) and counted by the store (`typed_field_wrong_type`), and the
event itself is stored as always. None is left out. A point left with no field at all is not
written (line protocol needs one; the view leaves such rows out too).

Tags hold only bounded values: names from config (site, line, machine, signal, alarm id,
rule), mapped states, priorities, alarm states, the shift id (the shift key with its date,
which grows every day, is the field shift_key) and the record level. A typed point's identity
is its tags and time, like its event's: the tags taken from data (state, priority, alarm
state) are fixed for one event identity, so rewriting an event rewrites its typed point.
InfluxDB merges the fields of a rewritten point (a field the new version lacks keeps its old
value) where DuckDB's view shows the record as it is: the engine's rewrites only add fields
(a state interval gets end_ns and duration_s when it closes, and keeps prev_state).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from gwanje.model import Event
from storage.checks import MAX_NAME_LEN, name_problem

TAG, FLOAT, INT, STR, BOOL = "tag", "float", "integer", "string", "boolean"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Column:
    """One tag or field. Its value comes from the event attribute `attr`, or the data key
    `key` converted to `type`, or — for derived ones — the pair (py, sql): py(event) gives
    the typed value or None, sql is the same value as an expression over the events table."""

    name: str
    type: str
    key: Optional[str] = None
    attr: Optional[str] = None
    py: Optional[Callable[[Event], Any]] = None
    sql: Optional[str] = None
    doc: str = ""


@dataclass(frozen=True)
class Measurement:
    name: str
    kind: str  # the event kind it is made of
    columns: tuple[Column, ...]
    doc: str = ""

    @property
    def tags(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.type == TAG)

    @property
    def fields(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.type != TAG)


# ---------------------------------------------------------------- conversion
def to_type(v: Any, type_: str) -> Any:
    """v as a value of the field type, or None (left out): see the module docstring."""
    t = type(v)
    if type_ == FLOAT:
        if t is float:
            return v if math.isfinite(v) else None
        if t is int:
            try:
                return float(v)
            except OverflowError:
                return None
        return None
    if type_ == INT:
        if t is int:
            return v if _INT_MIN <= v <= _INT_MAX else None
        if t is float and math.isfinite(v) and v == int(v) and _INT_MIN <= v < 2.0**63:
            return int(v)
        return None
    if type_ in (STR, TAG):
        # JSON carries a NUL as \u0000; line protocol and InfluxQL users are better off without
        return v if t is str and "\x00" not in v else None
    if type_ == BOOL:
        return v if t is bool else None
    raise ValueError(f"unknown type {type_}")


def _int_literal(p: str) -> str:
    return f"regexp_matches(json_extract_string(data, {p}), '^-?[0-9]+$')"


def _path(key: str) -> str:
    return f"'$.{key}'"


def typed_sql(key: str, type_: str) -> str:
    """to_type(data[key], type_) as DuckDB SQL over the events table's JSON column."""
    p = _path(key)
    jt = f"json_type(data, {p})"
    if type_ == FLOAT:
        return f"CASE WHEN {jt} IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(json_extract(data, {p}) AS DOUBLE) END"
    if type_ == INT:
        d = f"CAST(json_extract(data, {p}) AS DOUBLE)"
        # an integer literal beyond 64 bits reads as DOUBLE: out of range, as in to_type
        return (f"CASE WHEN {jt} IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(json_extract_string(data, {p}) AS BIGINT) "
                f"WHEN {jt} = 'DOUBLE' AND NOT {_int_literal(p)} AND {d} = floor({d}) "
                f"AND {d} >= -9223372036854775808.0 AND {d} < 9223372036854775808.0 THEN CAST({d} AS BIGINT) END")
    if type_ == STR:
        v = f"json_extract_string(data, {p})"
        return f"CASE WHEN {jt} = 'VARCHAR' AND strpos({v}, chr(0)) = 0 THEN {v} END"
    if type_ == TAG:
        # what storage.checks.name_problem refuses in a name, left out as in typed_point
        v = f"json_extract_string(data, {p})"
        return (f"CASE WHEN {jt} = 'VARCHAR' AND strpos({v}, chr(0)) = 0 AND length({v}) <= {MAX_NAME_LEN} "
                f"AND NOT regexp_matches({v}, '[\\n\\r]|\\\\([,= ]|$)') THEN {v} END")
    if type_ == BOOL:
        return f"CASE WHEN {jt} = 'BOOLEAN' THEN CAST(json_extract(data, {p}) AS BOOLEAN) END"
    raise ValueError(f"unknown type {type_}")


# ---------------------------------------------------------------- derived columns
def _code(e: Event) -> Optional[str]:
    """A PLC state code as text: numbers as the PLC sent them (3, not 3.0), text as is."""
    v = e.data.get("code")
    if type(v) is str:
        return v
    if type(v) is int:
        return str(v) if _INT_MIN <= v <= _INT_MAX else None
    if type(v) is float and math.isfinite(v):
        return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)
    return None


_CODE_P = "'$.code'"
_CODE_D = f"CAST(json_extract(data, {_CODE_P}) AS DOUBLE)"
_CODE_SQL = (
    "CASE json_type(data, '$.code') WHEN 'VARCHAR' THEN json_extract_string(data, '$.code') "
    "WHEN 'UBIGINT' THEN CAST(TRY_CAST(json_extract_string(data, '$.code') AS BIGINT) AS VARCHAR) "
    "WHEN 'BIGINT' THEN CAST(TRY_CAST(json_extract_string(data, '$.code') AS BIGINT) AS VARCHAR) "
    f"WHEN 'DOUBLE' THEN CASE WHEN {_int_literal(_CODE_P)} THEN NULL "
    f"WHEN {_CODE_D} = floor({_CODE_D}) AND abs({_CODE_D}) < 1e15 "
    f"THEN CAST(CAST({_CODE_D} AS BIGINT) AS VARCHAR) ELSE CAST({_CODE_D} AS VARCHAR) END END")


def _duration_s(e: Event) -> Optional[float]:
    end = to_type(e.data.get("end_ns"), INT)
    return (end - e.ts) / 1e9 if end is not None else None


def _flags(e: Event) -> Optional[str]:
    v = e.data.get("flags")
    if isinstance(v, list) and all(type(x) is str for x in v):
        return ",".join(v)
    return None


_FLAGS_SQL = ("CASE WHEN json_type(data, '$.flags') = 'ARRAY' AND NOT list_has_any(json_type(data, '$.flags[*]'), "
              "['UBIGINT', 'BIGINT', 'DOUBLE', 'BOOLEAN', 'NULL', 'ARRAY', 'OBJECT']) "
              "THEN array_to_string(CAST(json_extract(data, '$.flags') AS VARCHAR[]), ',') END")


def _joined(key: str) -> tuple[Callable[[Event], Optional[str]], str]:
    """(py, sql) of a derived text column: data[key], a list of texts, joined with ","."""
    def py(e: Event) -> Optional[str]:
        v = e.data.get(key)
        if isinstance(v, list) and all(type(x) is str for x in v):
            return ",".join(v)
        return None

    p = _path(key)
    sql = (f"CASE WHEN json_type(data, {p}) = 'ARRAY' AND NOT list_has_any(json_type(data, '$.{key}[*]'), "
           "['UBIGINT', 'BIGINT', 'DOUBLE', 'BOOLEAN', 'NULL', 'ARRAY', 'OBJECT']) "
           f"THEN array_to_string(CAST(json_extract(data, {p}) AS VARCHAR[]), ',') END")
    return py, sql


def _shift(e: Event) -> str:
    # "2026-11-24/day" -> "day"; a recomputed window that is no calendar shift -> "custom"
    return e.key.split("/", 1)[1] if "/" in e.key else "custom"


def _level(e: Event) -> str:
    return "machine" if e.machine else "line" if e.line else "site"


def _attr(name: str, attr: str, type_: str = TAG, doc: str = "") -> Column:
    return Column(name, type_, attr=attr, doc=doc)


def _tag(name: str, key: str, doc: str = "") -> Column:
    return Column(name, TAG, key=key, doc=doc)


def _f(name: str, type_: str, doc: str = "", key: Optional[str] = None) -> Column:
    return Column(name, type_, key=key or name, doc=doc)


def _place(line_doc: str = "line id", machine_doc: str = "machine id", site_doc: str = "site id") -> tuple[Column, ...]:
    return (_attr("site", "site", doc=site_doc), _attr("line", "line", doc=line_doc),
            _attr("machine", "machine", doc=machine_doc))


_PLACE = _place()

_SECONDS = {  # oee_shift, seconds (docs/oee.md)
    "planned_s": "planned production time: run + breakdown + other stops + setup",
    "run_s": "run time: running + small stops",
    "running_s": "running", "small_stop_s": "small stops (shorter than small_stop_s)",
    "breakdown_s": "breakdowns (down)", "other_stop_s": "other stops (idle, longer than a small stop)",
    "setup_s": "setup and changeover", "planned_stop_s": "planned stops (breaks, calendar, planned_stop code)",
    "unknown_s": "no data or an unmapped code", "ideal_s": "ideal cycle time of the parts made",
    "ideal_reject_s": "ideal cycle time of the rejects",
    "ideal_startup_reject_s": "ideal cycle time of the startup rejects",
}
_COUNTS = {
    "total": "parts made", "good": "good parts", "reject": "rejected parts",
    "startup_reject": "rejects in the startup window after a setup",
    "gap_total": "parts revealed after a data gap (in total, not in performance)",
    "small_stops": "number of small stops", "stops": "number of breakdowns and other stops",
    "counter_faults": "counter jumps refused as implausible",
}

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("machine_state", "state", (
        *_PLACE,
        _tag("state", "state", "mapped state: running, idle, down, setup, planned_stop, unknown"),
        Column("code", STR, py=_code, sql=_CODE_SQL, doc="the PLC code as sent (a number without .0, or text)"),
        _f("end_ns", INT, "interval end, ns since epoch; missing while the interval is open"),
        Column("duration_s", FLOAT, py=_duration_s, sql=f"(CAST(({typed_sql('end_ns', INT)}) AS HUGEINT) - ts) / 1e9",
               doc="end - start in seconds; missing while open"),
        _f("prev_state", STR, "the state of the interval before, when known"),
    ), "one point per state interval, time = its start; written when it opens and again, with "
       "end_ns and duration_s, when it closes"),
    Measurement("counts", "counts", (
        *_PLACE,
        _f("total", INT, "parts made in the minute"), _f("good", INT, "good parts"), _f("reject", INT, "rejected parts"),
        _f("ideal_s", FLOAT, "ideal cycle time of the parts made (s)"),
        _f("gap_total", INT, "parts revealed after a data gap (in total, not in performance)"),
        _f("faults", INT, "counter jumps refused as implausible"),
    ), "parts per machine and UTC minute, time = the minute; minutes with parts (or counter faults) only"),
    Measurement("oee_shift", "oee_shift", (
        *_place('missing ("") on a site record', 'missing ("") on a line or site record'),
        Column("shift", TAG, py=_shift,
               sql="CASE WHEN strpos(key, '/') > 0 THEN substr(key, strpos(key, '/') + 1) ELSE 'custom' END",
               doc='the shift id from shifts.yaml ("day"); "custom" for a recomputed window'),
        Column("level", TAG, py=_level,
               sql="CASE WHEN machine <> '' THEN 'machine' WHEN line <> '' THEN 'line' ELSE 'site' END",
               doc="machine, line or site"),
        _attr("shift_key", "key", STR, 'the shift occurrence, "2026-11-24/day"'),
        _f("end_ns", INT, "shift end, ns"),
        *(_f(n, FLOAT, "ratio 0..1; missing when undefined (no planned time, no run time, no parts)")
          for n in ("availability", "performance", "quality", "oee")),
        *(_f(n, FLOAT, f"seconds: {d}") for n, d in _SECONDS.items()),
        *(_f(n, INT, d) for n, d in _COUNTS.items()),
        Column("flags", STR, py=_flags, sql=_FLAGS_SQL,
               doc="comma-separated: performance_over_100, low_coverage, counts_without_run, "
                   "counts_inconsistent, counter_fault"),
        _f("output", STR, "line records: the output machine"),
        _f("bottleneck", STR, "line records: the bottleneck machine"),
    ), "OEE per shift (ISO 22400), time = shift start; one record per machine, line and site"),
    Measurement("alarm", "alarm", (
        *_place("line id; missing for a site or system alarm", "machine id; missing for a line, site or system alarm",
                "site id; missing for a system alarm (spool full, data refused)"),
        _attr("alarm", "key", doc="the alarm id, rule:site/line/machine/signal"),
        _tag("rule", "rule", "the rule id from alarms.yaml"),
        _tag("priority", "priority", "critical, high, medium, low"),
        _tag("state", "state", "ISA-18.2 state after the transition: normal, unack_active, ack_active, "
                               "rtn_unack, shelved, suppressed, out_of_service"),
        _f("event", STR, "the transition: raised, returned, acknowledged, shelved, unshelved, shelve_expired, "
                         "suppressed, unsuppressed, removed_from_service, returned_to_service, commented"),
        _f("active", BOOL, "the process condition"),
        _f("value", FLOAT, "the value seen when raised"),
        _f("signal", STR, "the signal the rule watches, if any"),
        _f("user_name", STR, "who acted (operator actions); not `user`, an InfluxQL keyword", key="user"),
        _f("comment", STR, "the operator's comment (shelve reason, note)"),
        _f("message_ko", STR, "the alarm text in Korean"), _f("message_en", STR, "the alarm text in English"),
        _f("raised_ts", INT, "start of the episode, ns"), _f("shelved_until", INT, "ns"),
    ), "one point per ISA-18.2 lifecycle transition, time = the transition"),
    Measurement("lot", "lot", (
        *_PLACE, _f("lot", STR, "the LOT number"), _f("product", STR, "the product it names (shifts.yaml products)"),
    ), "one point per LOT change, time = the change"),
    Measurement("lot_step", "lot_step", (
        *_PLACE,
        _tag("process", "process", "the machine's line process (plant.yaml): forging, cnc, injection, assembly, press"),
        _attr("lot", "key", STR, "the LOT number"),
        _f("product", STR, "the product (shifts.yaml products)"),
        _f("step", INT, "the step's index in the product's route (0 = first); missing when not on the route"),
        _f("end_ns", INT, "step end, ns; missing while the step is open"),
        Column("duration_s", FLOAT, py=_duration_s, sql=f"(CAST(({typed_sql('end_ns', INT)}) AS HUGEINT) - ts) / 1e9",
               doc="end - start in seconds; missing while open"),
        _f("total", INT, "parts made in the step"), _f("good", INT, "good parts"), _f("reject", INT, "rejected parts"),
        _f("planned_qty", INT, "the LOT's planned quantity"),
        _f("plan_s", FLOAT, "planned duration: planned quantity x the machine's ideal cycle (s)"),
        _f("counted_ns", INT, "the counts include the machine's samples up to this time, ns"),
    ), "one point per LOT step (one LOT on one machine for one stretch of time), time = its start; "
       "rewritten while open (at most once a minute) and when it closes, with end_ns and duration_s (docs/lots.md)"),
    Measurement("lot_index", "lot_index", (
        *_place("line of the LOT's first step", "machine of the LOT's first step", "site of the LOT's first step"),
        _attr("lot", "key", STR, "the LOT number"),
        _f("product", STR, "the product"),
        _f("status", STR, "in_process, waiting, done, consumed"),
        _f("process", STR, "in_process: where it is; waiting: the process it waits for; done/consumed: the last"),
        _f("machine_path", STR, "site/line/machine of the open or last step", key="machine"),
        _f("since_ns", INT, "status since, ns"), _f("last_ns", INT, "last activity, ns"),
        _f("steps", INT, "steps closed"), _f("good", INT, "good parts of the latest step"),
        _f("reject", INT, "rejects of the latest step"), _f("planned_qty", INT, "planned quantity"),
        Column("parents", STR, py=_joined("parents")[0], sql=_joined("parents")[1], doc="comma-separated parent LOTs"),
        Column("children", STR, py=_joined("children")[0], sql=_joined("children")[1],
               doc="comma-separated child LOTs"),
        Column("route", STR, py=_joined("route")[0], sql=_joined("route")[1], doc="the route's processes, comma-separated"),
    ), "the live LOT index: one point per LOT, time = its first start, rewritten on every change; the newest "
       "version is the current (InfluxDB keeps one point per LOT, DuckDB one row)"),
    Measurement("lot_link", "lot_link", (
        *_place("line where the child started", "machine where the child started", "site where the child started"),
        _tag("kind", "kind", "split (the child has one parent) or merge (several)"),
        _f("parent", STR, "the parent LOT"), _f("child", STR, "the child LOT"),
    ), "the genealogy: one point per parent and child, time = the child's first start plus the parent's "
       "position in ns (a merge's links are distinct points)"),
    Measurement("lot_hold", "lot_hold", (
        *_PLACE,
        _tag("reason", "reason", "reject_spike or alarm"),
        _f("lot", STR, "the LOT held"), _f("status", STR, "held or released"),
        _f("detail", STR, "why, in words"), _f("step_ns", INT, "start of the step it happened in, ns"),
        _f("alarm", STR, "the alarm id (reason alarm)"), _f("priority", STR, "the alarm's priority"),
        _f("total", INT, "parts in the reject window (reason reject_spike)"), _f("reject", INT, "rejects in it"),
        _f("released_by", STR, "who released it"), _f("released_role", STR, "their role"),
        _f("released_ns", INT, "when, ns"), _f("comment", STR, "why it was released"),
    ), "one point per hold, time = when the LOT was put on hold; a release rewrites it with status released"),
    Measurement("signal_meta", "signal_meta", (
        *_PLACE,
        _attr("signal", "key", doc="the signal id"),
        _f("unit", STR, '"" when unitless'), _f("name_ko", STR, "display name in Korean"),
        _f("name_en", STR, "display name in English"),
        _f("kind", STR, "analog, counter, state, text"),
        _f("range_min", FLOAT, "display range, low end; missing when none is configured"),
        _f("range_max", FLOAT, "display range, high end"),
    ), "units and display names of every configured signal, written at every collect start "
       "(a config change shows from the next start; last() is the current)"),
    Measurement("audit", "audit", (
        *_place("line id, when the entry names one", "machine id, when the entry names one",
                'site id; "_plant" for an entry of no site (a login)'),
        _tag("action", "action", "login, logout, login_failed, alarm.acknowledge, alarm.shelve, alarm.unshelve, "
                                 "alarm.comment, alarm.out_of_service, alarm.return_to_service, "
                                 "shift.downtime_reason, shift.recompute, lot.release, config.reload, command.refused"),
        _f("user_name", STR, "who acted (for a failed login the name as typed); not `user`, an InfluxQL keyword",
           key="user"),
        _f("role", STR, "their role then"),
        _f("target", STR, "what was acted on: an alarm id, a machine and stop, a scope and shift"),
        _f("ok", BOOL, "false: refused or failed"),
        _f("detail", STR, "how or why: password, display token, oidc, not_allowed, bad_credentials, ..."),
        _f("client", STR, "the client address (or process) it came from"),
        _f("request_id", STR, "the request or command id, when there is one"),
        _attr("audit_id", "key", STR, "the entry's unique id (the event key)"),
    ), "one point per audit entry (gwanje/audit.py), time = when it happened; before and after stay in the "
       "entry's JSON (the `event` measurement, DuckDB `events`)"),
)

BY_KIND: dict[str, Measurement] = {m.kind: m for m in MEASUREMENTS}
# measurement name -> field name -> type
FIELD_TYPES: dict[str, dict[str, str]] = {m.name: {c.name: c.type for c in m.fields} for m in MEASUREMENTS}


def _check_names() -> None:
    """Measurement, tag and field names go into line protocol and queries unescaped."""
    import re

    ok = re.compile(r"^[a-z][a-z0-9_]*$")
    for m in MEASUREMENTS:
        names = [c.name for c in m.columns]
        bad = [n for n in [m.name, *names] if not ok.match(n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"storage.schema: bad or repeated names in {m.name}: {bad or names}")
        for c in m.columns:
            if (c.key is not None) + (c.attr is not None) + (c.py is not None) != 1 or (c.py is None) != (c.sql is None):
                raise ValueError(f"storage.schema: {m.name}.{c.name} needs one source (key, attr or py + sql)")


_check_names()


# ---------------------------------------------------------------- one event -> one point
@dataclass
class Point:
    measurement: str
    tags: dict[str, str]  # non-empty values only
    fields: dict[str, Any]  # typed, None left out
    ts: int
    problems: list[str]  # values left out that did not fit their type


def typed_point(e: Event) -> Optional[Point]:
    """The typed point of an event, or None for a kind without a typed measurement (or
    with no field to write). e must already be a storable event (checks.event_json)."""
    m = BY_KIND.get(e.kind)
    if m is None or not isinstance(e.data, dict):
        return None
    tags: dict[str, str] = {}
    fields: dict[str, Any] = {}
    problems: list[str] = []
    data = e.data
    for c in m.columns:
        if c.attr is not None:
            v = getattr(e, c.attr)
        elif c.py is not None:
            v = c.py(e)
            if v is not None and c.type == STR:
                v = to_type(v, STR)
        else:
            raw = data.get(c.key)
            v = to_type(raw, c.type)
            if v is None and raw is not None:
                problems.append(f"{m.name}.{c.name}")
        if v is None:
            continue
        if c.type == TAG:
            if v != "":
                if name_problem(v):  # a tag line protocol cannot carry: left out, counted
                    problems.append(f"{m.name}.{c.name}")
                    continue
                tags[c.name] = v
        else:
            fields[c.name] = v
    if not fields:
        return None
    return Point(m.name, tags, fields, e.ts, problems)


# ---------------------------------------------------------------- DuckDB views
def sql_views() -> str:
    """CREATE VIEW statements giving DuckDB the typed measurements over the events table."""
    out = []
    for m in MEASUREMENTS:
        cols = ["make_timestamptz(ts // 1000) AS time", "ts"]
        fields = []
        for c in m.columns:
            if c.attr is not None:
                expr = c.attr if c.type in (TAG, STR) else f"CAST({c.attr} AS BIGINT)"
            elif c.sql is not None:
                expr = f"({c.sql})"
                if c.type == STR:  # as to_type on the py side
                    expr = f"CASE WHEN strpos({expr}, chr(0)) = 0 THEN {expr} END"
            else:
                expr = typed_sql(c.key, c.type)  # type: ignore[arg-type]
            if c.type == TAG:
                expr = f"coalesce({expr}, '')"  # a missing tag reads as "" in InfluxQL too
            else:
                fields.append(c.name)
            cols.append(f"{expr} AS {c.name}")
        inner = (f"SELECT {', '.join(cols)} FROM events "
                 f"WHERE kind = '{m.kind}' AND json_type(data) = 'OBJECT'")
        has_field = " OR ".join(f"{f} IS NOT NULL" for f in fields)
        out.append(f"CREATE OR REPLACE VIEW {m.name} AS SELECT * FROM ({inner}) WHERE {has_field};")
    return "\n".join(out)
