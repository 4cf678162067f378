"""Shift calendar: which shift a moment belongs to, and which parts of it are planned stops.

Pure code, no I/O. Shifts, breaks, non-production weekdays and holidays come from
config/shifts.yaml (validated by `ShiftsDef`, unknown keys are errors) and are wall-clock times
in the plant's time zone. Every instant is converted through zoneinfo, never by adding hours,
so a plant that observes daylight saving time gets a 7 h or 9 h night shift on the transition
nights rather than a shifted calendar.

Rules, decided here once:
- A shift belongs to the calendar date on which it starts (the 22:00-06:00 night shift of
  Saturday is Saturday's). A shift whose date is a non-production weekday or a holiday is not
  worked: its whole time is a planned stop ("no orders"), so it never lowers availability.
- A break (a wall-clock range) applies to every shift occurrence it falls into; 03:00-03:30
  lies in the night shift that started the evening before.
- Wall times that do not exist (spring-forward gap) resolve like zoneinfo's fold=0: 02:30 on
  the Berlin spring night is read as 03:30 CEST; ambiguous times (fall back) take the first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, Optional
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gwanje.config import Config, ConfigError, Id, Names, ProcessType, check_timezone, check_unique

NS_PER_S = 1_000_000_000
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hhmm(v: str) -> str:
    if not isinstance(v, str) or not _HHMM.match(v):
        raise ValueError(f"expected a time HH:MM (00:00-23:59), got {v!r}")
    return v


def _to_time(v: str) -> time:
    h, m = v.split(":")
    return time(int(h), int(m))


class ShiftDef(_Strict):
    id: Id
    name: Names
    start: str  # HH:MM local; end <= start means the shift ends the next day
    end: str

    @field_validator("start", "end")
    @classmethod
    def _v(cls, v: str) -> str:
        return _hhmm(v)


class BreakDef(_Strict):
    start: str
    end: str
    name: Optional[Names] = None

    @field_validator("start", "end")
    @classmethod
    def _v(cls, v: str) -> str:
        return _hhmm(v)

    @model_validator(mode="after")
    def _nonempty(self) -> "BreakDef":
        if self.start == self.end:
            raise ValueError(f"break {self.start}-{self.end} is empty")
        return self


class ReasonDef(_Strict):
    """A node of the downtime reason tree (see gwanje/reasons.py)."""

    id: Id
    name: Names
    children: list["ReasonDef"] = []


ReasonDef.model_rebuild()


class ProductDef(_Strict):
    """A product recognised by its LOT number prefix (or named by the machine's `lot_product`
    signal), with its own ideal cycle per machine, its route (the processes a LOT of it goes
    through, in order: plant.yaml line `process` values) and its planned LOT quantity."""

    id: Id
    name: Optional[Names] = None
    lot_prefix: str = Field(min_length=1, max_length=64)
    ideal_cycle_s: dict[Id, float] = {}  # machine id -> seconds per part
    route: list[ProcessType] = []
    lot_qty: Optional[int] = Field(None, gt=0, le=10_000_000)  # planned quantity when the MES sends none

    @field_validator("route")
    @classmethod
    def _route(cls, v: list[str]) -> list[str]:
        for a, b in zip(v, v[1:]):
            if a == b:
                raise ValueError(f"route names process {a!r} twice in a row")
        return v

    @field_validator("ideal_cycle_s")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not s > 0:
                raise ValueError(f"ideal_cycle_s[{k}] must be > 0, got {s}")
        return v


class LotHoldsDef(_Strict):
    """When the engine puts a LOT on hold for review (gwanje/lots.py): a reject spike (rejects /
    parts over the last reject_window_s of a step, once at least reject_min_parts were made) or
    an alarm of alarm_priority or above raised on the machine during a step."""

    reject_ratio: float = Field(0.10, gt=0, le=1)
    reject_window_s: float = Field(900.0, gt=0, le=86400)
    reject_min_parts: int = Field(20, ge=1)
    alarm_priority: Literal["critical", "high", "medium", "low", "off"] = "high"


class LotsDef(_Strict):
    """LOT tracking (gwanje/lots.py, docs/lots.md)."""

    holds: LotHoldsDef = LotHoldsDef()
    # how far back the live LOT index is restored at a restart, and /lots looks
    lookback_days: float = Field(14.0, gt=0, le=366)


class PlannedStopDef(_Strict):
    """A planned stop from the calendar: planned maintenance or no orders for the whole plant,
    a site, a line or one machine. Times are plant wall-clock times ("2026-11-26 06:00")."""

    start: datetime
    end: datetime
    site: Optional[Id] = None
    line: Optional[Id] = None
    machine: Optional[Id] = None
    reason: Literal["maintenance", "no_orders", "other"] = "maintenance"
    note: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _order(self) -> "PlannedStopDef":
        if self.end <= self.start:
            raise ValueError(f"planned stop ends ({self.end}) before it starts ({self.start})")
        if self.machine and not self.line or self.line and not self.site:
            raise ValueError("a planned stop for a machine names its line, for a line its site")
        return self

    def applies(self, site: Optional[str], line: Optional[str], machine: Optional[str]) -> bool:
        return all(mine is None or mine == theirs for mine, theirs in
                   ((self.site, site), (self.line, line), (self.machine, machine)))


class ShiftsDef(_Strict):
    """config/shifts.yaml: the shift calendar and the engine's loss thresholds."""

    timezone: Optional[str] = None  # default: plant.yaml timezone
    shifts: list[ShiftDef] = Field(min_length=1)
    breaks: list[BreakDef] = []
    no_production_weekdays: list[Weekday] = []
    holidays: list[date] = []
    # a machine silent for longer than this is in state unknown for the whole silence
    comm_timeout_s: float = Field(30.0, gt=0)
    # an idle/down stop shorter than this is a small stop (a performance loss)
    small_stop_s: float = Field(300.0, gt=0)
    # rejects made within this time after a setup ends are startup rejects
    startup_window_s: float = Field(600.0, ge=0)
    # a part counter never counts more parts than the machine could make in the elapsed time
    # running this many times faster than its ideal cycle (gwanje.counters): more is a fault
    counter_margin: float = Field(2.0, ge=1.0, le=100.0)
    reasons: list[ReasonDef] = []
    products: list[ProductDef] = []
    lots: LotsDef = LotsDef()
    planned_stops: list[PlannedStopDef] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: Optional[str]) -> Optional[str]:
        return check_timezone(v) if v is not None else None

    @model_validator(mode="after")
    def _checks(self) -> "ShiftsDef":
        ids = [s.id for s in self.shifts]
        check_unique(ids, "shift")
        check_unique([p.id for p in self.products], "product")
        check_unique([p.lot_prefix for p in self.products], "product lot_prefix")
        # shifts must not overlap: one moment belongs to at most one shift
        spans = []
        for s in self.shifts:
            a, b = _minutes(s.start), _minutes(s.end)
            if b <= a:
                b += 1440
            spans.extend([(a, b, s.id), (a + 1440, b + 1440, s.id), (a - 1440, b - 1440, s.id)])
        spans.sort()
        for (a1, b1, i1), (a2, b2, i2) in zip(spans, spans[1:]):
            if a2 < b1 and i1 != i2:
                raise ValueError(f"shifts {i1} and {i2} overlap")
        return self


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class ShiftInstance:
    """One occurrence of a shift: [start_ns, end_ns) UTC ns, with its planned stops."""

    shift_id: str
    name: Names
    day: date  # the calendar date the shift starts on (plant time)
    start_ns: int
    end_ns: int
    working: bool
    breaks: tuple[tuple[int, int], ...]  # clipped to the shift, sorted, non-overlapping

    @property
    def key(self) -> str:
        """Stable identity of the shift occurrence, e.g. '2026-11-24/day'."""
        return f"{self.day.isoformat()}/{self.shift_id}"

    def planned_stops(self) -> list[tuple[int, int]]:
        """Calendar planned stops: the breaks, or the whole shift when it is not worked."""
        return [(self.start_ns, self.end_ns)] if not self.working else list(self.breaks)


def _wall_ns(d: date, t: time, tz: ZoneInfo) -> int:
    dt = datetime.combine(d, t, tzinfo=tz)
    # normalise a non-existent wall time through UTC (fold=0 semantics), exact to the ns
    return int(dt.astimezone(timezone.utc).timestamp()) * NS_PER_S


class ShiftCalendar:
    def __init__(self, spec: ShiftsDef, tz: str) -> None:
        self.spec = spec
        self.tz = ZoneInfo(spec.timezone or tz)
        self._off = set(spec.no_production_weekdays)
        self._holidays = set(spec.holidays)
        # the calendar is immutable: a date's shifts are computed once (zoneinfo is not free)
        self._days: dict[date, list[ShiftInstance]] = {}

    # ------------------------------------------------------------------ queries
    def shifts_on(self, d: date) -> list[ShiftInstance]:
        """The shifts that start on plant date d, in order."""
        hit = self._days.get(d)
        if hit is None:
            if len(self._days) > 4096:  # a calendar asked about years of dates stays small
                self._days.clear()
            hit = self._days[d] = self._compute_day(d)
        return list(hit)

    def _compute_day(self, d: date) -> list[ShiftInstance]:
        out = []
        working = _WEEKDAYS[d.weekday()] not in self._off and d not in self._holidays
        for s in self.spec.shifts:
            st, en = _to_time(s.start), _to_time(s.end)
            end_day = d + timedelta(days=1) if (en.hour, en.minute) <= (st.hour, st.minute) else d
            a, b = _wall_ns(d, st, self.tz), _wall_ns(end_day, en, self.tz)
            out.append(ShiftInstance(s.id, s.name, d, a, b, working, self._breaks_in(a, b, d)))
        out.sort(key=lambda x: x.start_ns)
        return out

    def _breaks_in(self, a: int, b: int, d: date) -> tuple[tuple[int, int], ...]:
        found = []
        for br in self.spec.breaks:
            bs, be = _to_time(br.start), _to_time(br.end)
            # a break may sit on the shift's start date or the next day (night shifts)
            for day in (d - timedelta(days=1), d, d + timedelta(days=1)):
                end_day = day + timedelta(days=1) if (be.hour, be.minute) <= (bs.hour, bs.minute) else day
                s, e = _wall_ns(day, bs, self.tz), _wall_ns(end_day, be, self.tz)
                s, e = max(s, a), min(e, b)
                if s < e:
                    found.append((s, e))
        return tuple(merge_ranges(found))

    def shifts_between(self, start_ns: int, end_ns: int) -> list[ShiftInstance]:
        """Every shift occurrence overlapping [start_ns, end_ns), in time order."""
        d0 = self.local_date(start_ns) - timedelta(days=1)
        d1 = self.local_date(end_ns)
        out, d = [], d0
        while d <= d1:
            out.extend(s for s in self.shifts_on(d) if s.end_ns > start_ns and s.start_ns < end_ns)
            d += timedelta(days=1)
        out.sort(key=lambda x: x.start_ns)
        return out

    def shift_at(self, ts_ns: int) -> Optional[ShiftInstance]:
        """The shift occurrence containing ts_ns, or None outside every shift."""
        for s in self.shifts_between(ts_ns, ts_ns + 1):
            if s.start_ns <= ts_ns < s.end_ns:
                return s
        return None

    def shift_by_key(self, key: str) -> Optional[ShiftInstance]:
        """The occurrence named like '2026-11-24/day' (ShiftInstance.key)."""
        try:
            day_s, sid = key.split("/", 1)
            d = date.fromisoformat(day_s)
        except ValueError:
            return None
        return next((s for s in self.shifts_on(d) if s.shift_id == sid), None)

    def _local_ns(self, dt: datetime) -> int:
        """A configured time as ns: naive means plant wall-clock time."""
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return int(dt.astimezone(timezone.utc).timestamp()) * NS_PER_S + dt.microsecond * 1000

    def local_date(self, ts_ns: int) -> date:
        return datetime.fromtimestamp(ts_ns / NS_PER_S, tz=self.tz).date()

    def planned_stops(self, start_ns: int, end_ns: int, site: Optional[str] = None, line: Optional[str] = None,
                      machine: Optional[str] = None) -> list[tuple[int, int]]:
        """Calendar planned-stop time within [start_ns, end_ns): breaks, non-working shifts,
        any time outside every shift (nobody is scheduled then) and the configured planned
        stops that apply to the machine (or, without one, to the whole plant), merged, sorted."""
        stops: list[tuple[int, int]] = [
            (self._local_ns(p.start), self._local_ns(p.end)) for p in self.spec.planned_stops
            if p.applies(site, line, machine)]
        cursor = start_ns
        for s in self.shifts_between(start_ns, end_ns):
            if s.start_ns > cursor:
                stops.append((cursor, min(s.start_ns, end_ns)))
            stops.extend(s.planned_stops())
            cursor = max(cursor, s.end_ns)
        if cursor < end_ns:
            stops.append((cursor, end_ns))
        return clip_ranges(merge_ranges(stops), start_ns, end_ns)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def clip_ranges(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    return [(max(a, start), min(b, end)) for a, b in ranges if min(b, end) > max(a, start)]


def parse_shifts(raw: dict[str, Any], plant_tz: str, where: str = "shifts.yaml") -> ShiftCalendar:
    try:
        spec = ShiftsDef.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{where}: {loc}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
    return ShiftCalendar(spec, plant_tz)


# the calendar used when a plant ships no shifts.yaml: one 24 h shift, every day worked
DEFAULT_SHIFTS: dict[str, Any] = {
    "shifts": [{"id": "all-day", "name": {"ko": "종일", "en": "All day"}, "start": "00:00", "end": "00:00"}],
}


def load_shifts(config: Config) -> ShiftCalendar:
    """Validate config/shifts.yaml (already read by load_config) into a ShiftCalendar."""
    raw = config.raw_extra.get("shifts")
    return parse_shifts(raw if raw is not None else DEFAULT_SHIFTS, config.plant.timezone,
                        str(config.directory / "shifts.yaml"))
