"""Every id and time range a URL or form hands the control room, checked against the plant
model before any query. Pure: the config and the shift ids in, a reason (or None) out.

An id must first have the shape of an id (letters, digits, `_ . -`, at most 64 characters;
an alarm id is `<rule>:<site>[/<line>[/<machine>]]/<signal>`), then name something the
config has (a site, a line of that site, a machine of that line, a signal of that machine).
A value of any other parameter must at least not look like an injection attempt: no quotes,
`;`, backslash, NUL or other control characters, no `../`, no SQL/InfluxQL comment or
keyword, at most MAX_VALUE characters. A refusal names its reason (for the counters), never
echoes the value.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Iterable, Mapping, Optional

from gwanje.audit import AUDIT_ACTIONS
from gwanje.config import Config

MAX_ID = 64
MAX_VALUE = 300
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
SHIFT_KEY = re.compile(r"^(\d{4}-\d{2}-\d{2})/([A-Za-z0-9][A-Za-z0-9_\-]{0,31})$")
# what no id, language, flag or time in this system contains
_BAD_CHARS = re.compile(r"['\"`;\\<>{}|$\x00-\x1f\x7f]")
_KEYWORDS = re.compile(r"(?i)(--|/\*|\*/|\b(select|insert|update|delete|drop|union|alter|create|grant|exec|"
                       r"truncate|show|into|from|where|sleep|benchmark|waitfor)\b|\b(or|and)\s+\S+\s*=)")
PARAMS = ("site", "line", "machine", "signal", "alarm", "shift", "window", "from", "to", "lang", "kiosk", "user",
          "action", "start", "end", "lot")
TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


def hostile(value: Any, max_len: int = MAX_VALUE) -> Optional[str]:
    """Why a free parameter value is refused, or None."""
    if not isinstance(value, str):
        return "not_text"
    if len(value) > max_len:
        return "overlong"
    if _BAD_CHARS.search(value):
        return "bad_character"
    if ".." in value:
        return "path_traversal"
    if _KEYWORDS.search(value):
        return "query_keyword"
    return None


def id_shape(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return "not_text"
    if len(value) > MAX_ID:
        return "overlong"
    bad = hostile(value)
    if bad:
        return bad
    return None if ID.match(value) else "bad_id_shape"


class PlantIds:
    """The ids the plant model has. shift_ids: the shift ids of shifts.yaml; rolling: the
    windows the OEE pages accept instead of a shift key ("last-8h"); windows: trend windows."""

    def __init__(self, config: Config, shift_ids: Iterable[str] = (), rolling: Iterable[str] = (),
                 windows: Iterable[str] = ()) -> None:
        self.config = config
        self.shift_ids = frozenset(shift_ids)
        self.rolling = frozenset(rolling)
        self.windows = frozenset(windows)

    # ------------------------------------------------------------------ ids
    def site(self, site: Any) -> Optional[str]:
        return id_shape(site) or (None if self.config.site(site) else "unknown_site")

    def line(self, site: Any, line: Any) -> Optional[str]:
        return self.site(site) or id_shape(line) or (None if self.config.line(site, line) else "unknown_line")

    def machine(self, site: Any, line: Any, machine: Any) -> Optional[str]:
        return (self.line(site, line) or id_shape(machine)
                or (None if self.config.machine(site, line, machine) else "unknown_machine"))

    def signal(self, site: Any, line: Any, machine: Any, signal: Any) -> Optional[str]:
        bad = self.machine(site, line, machine) or id_shape(signal)
        if bad:
            return bad
        spec = self.config.machine(site, line, machine)
        return None if spec is not None and spec.signal(signal) is not None else "unknown_signal"

    def scope(self, site: Any = None, line: Any = None, machine: Any = None) -> Optional[str]:
        """site / line / machine as optional query parameters: each one given must exist, and
        a line needs its site, a machine its line."""
        if machine not in (None, ""):
            return self.machine(site, line, machine)
        if line not in (None, ""):
            return self.line(site, line)
        if site not in (None, ""):
            return self.site(site)
        return None

    def alarm(self, alarm_id: Any) -> Optional[str]:
        """`rule:site/line/machine/signal` (fewer levels for a line or site alarm, an empty
        signal for a rule that watches none, `system:<name>` for a system alarm); the place must
        be of the plant, the signal an id."""
        if not isinstance(alarm_id, str):
            return "not_text"
        if len(alarm_id) > 4 * MAX_ID + 8:
            return "overlong"
        bad = hostile(alarm_id)
        if bad:
            return bad
        rule, sep, where = alarm_id.partition(":")
        if not sep or not RULE.match(rule):
            return "bad_alarm_id"
        parts = where.split("/")
        if len(parts) == 1:  # a system alarm of no place ("system:spool_full")
            return "bad_alarm_id" if id_shape(parts[0]) else None
        # the last part is the signal, empty for a rule that watches none
        if len(parts) > 4 or any(id_shape(p) for p in parts[:-1]) or (parts[-1] and id_shape(parts[-1])):
            return "bad_alarm_id"
        place = parts[:-1]
        if len(place) == 3:
            return self.machine(*place)
        if len(place) == 2:
            return self.line(*place)
        return self.site(place[0])

    @staticmethod
    def lot(value: Any) -> Optional[str]:
        """A LOT number as a URL carries it (/lot/<LOT>): an id's shape, letters, digits and
        `_ . -`, 1..64 characters (a LOT the plant never made is the page's "not found")."""
        return id_shape(value)

    def shift(self, key: Any) -> Optional[str]:
        """A shift occurrence "2026-11-24/day" (a real date, a shift of shifts.yaml) or a rolling window."""
        if not isinstance(key, str):
            return "not_text"
        if key in self.rolling:
            return None
        m = SHIFT_KEY.match(key)
        if not m:
            return hostile(key) or "bad_shift"
        try:
            date.fromisoformat(m.group(1))
        except ValueError:
            return "bad_shift"
        return None if m.group(2) in self.shift_ids else "unknown_shift"

    def window(self, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            return "not_text"
        return None if value in self.windows else (hostile(value) or "unknown_window")

    # ------------------------------------------------------------------ times
    @staticmethod
    def time(value: Any) -> Optional[str]:
        """A local date or date and time as the audit page's filter takes it ("2026-09-21",
        "2026-09-21T08:00")."""
        if not isinstance(value, str) or len(value) > 19:
            return "bad_time"
        if parse_time(value) is None:
            return hostile(value) or "bad_time"
        return None

    @staticmethod
    def time_range(start_ns: Any, end_ns: Any, max_span_ns: int = 366 * 86_400 * 10**9) -> Optional[str]:
        if not isinstance(start_ns, int) or not isinstance(end_ns, int) or isinstance(start_ns, bool):
            return "bad_time"
        if end_ns <= start_ns:
            return "empty_time_range"
        if end_ns - start_ns > max_span_ns:
            return "time_range_too_long"
        return None

    # ------------------------------------------------------------------ a whole page request
    def query(self, params: Mapping[str, Any]) -> Optional[str]:
        """The query string of a page: the parameters with a meaning are checked as what they
        are, every other value as a free value."""
        for name, value in params.items():
            bad = (None if name in PARAMS else id_shape(name)) or self._param(name, value, params)
            if bad:
                return f"{name}:{bad}"
        return None

    def _param(self, name: str, value: Any, params: Mapping[str, Any]) -> Optional[str]:
        if name in ("site", "line", "machine"):
            return self.scope(params.get("site"), params.get("line"), params.get("machine"))
        if name == "signal":
            return self.signal(params.get("site"), params.get("line"), params.get("machine"), value)
        if name == "alarm":
            return self.alarm(value) if value != "" else None
        if name == "shift":
            return self.shift(value) if value != "" else None
        if name == "window":
            return self.window(value)
        if name == "action":
            return None if all(a in AUDIT_ACTIONS for a in str(value).split(",") if a) else "unknown_action"
        if name == "lot":
            return self.lot(value)
        if name in ("from", "to", "start", "end"):
            return self.time(value) if value != "" else None
        return hostile(value)

    def path(self, variables: Mapping[str, Any]) -> Optional[str]:
        """The variables of a page path template (/machine/<site>/<line>/<machine>)."""
        v = variables
        if "signal" in v:
            return self.signal(v.get("site"), v.get("line"), v.get("machine"), v.get("signal"))
        if "machine" in v:
            return self.machine(v.get("site"), v.get("line"), v.get("machine"))
        if "line" in v:
            return self.line(v.get("site"), v.get("line"))
        if "site" in v:
            return self.site(v.get("site"))
        if "lot" in v:
            return self.lot(v.get("lot"))
        return next((bad for bad in (id_shape(x) for x in v.values()) if bad), None)


def parse_time(value: str) -> Optional[datetime]:
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None
