"""Who is on call: weekly rotations in the plant's time zone, with overrides.

A rotation hands over every week at a local weekday and time (e.g. Monday 08:30 Asia/Seoul);
the member on duty is members[weeks since the first handover % len(members)]. An override
(holiday cover, a swap) names who is on duty between two local times and wins over the
rotation. `next_up` is who the escalation goes to: the member after the one on duty. Pure.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal, Optional
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    member: str
    start: datetime  # local time of the plant when naive
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> "Override":
        if self.end <= self.start:
            raise ValueError("override end must be after its start")
        return self


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    members: list[str] = Field(min_length=1)
    handover_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    handover_time: time = time(8, 30)
    # the date of a handover day on which members[0] starts (anchors the rotation)
    start: date
    overrides: list[Override] = []

    @model_validator(mode="after")
    def _anchor(self) -> "Rotation":
        if WEEKDAYS[self.start.weekday()] != self.handover_day:
            raise ValueError(f"start {self.start} is a {WEEKDAYS[self.start.weekday()]}, not the handover day "
                             f"{self.handover_day}")
        return self


def _local(dt: datetime, tz: ZoneInfo) -> datetime:
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)


def _week_index(r: Rotation, ts_ns: int, tz: ZoneInfo) -> int:
    now = datetime.fromtimestamp(ts_ns / 1e9, tz)
    anchor = datetime.combine(r.start, r.handover_time, tz)
    # calendar weeks of local wall time, so a DST change does not shift the handover hour
    naive_now = now.replace(tzinfo=None)
    return int((naive_now - anchor.replace(tzinfo=None)) // timedelta(weeks=1))


def on_duty(r: Rotation, ts_ns: int, tz: str) -> str:
    z = ZoneInfo(tz)
    now = datetime.fromtimestamp(ts_ns / 1e9, z)
    for o in r.overrides:
        if _local(o.start, z) <= now < _local(o.end, z):
            return o.member
    return r.members[_week_index(r, ts_ns, z) % len(r.members)]


def next_up(r: Rotation, ts_ns: int, tz: str, steps: int = 1) -> str:
    """The member `steps` after the one the rotation has on duty (overrides aside: the
    escalation goes to the next of the regular rotation, who knows the plant this week)."""
    z = ZoneInfo(tz)
    duty = on_duty(r, ts_ns, tz)
    base = _week_index(r, ts_ns, z) % len(r.members)
    if duty in r.members:
        base = r.members.index(duty)
    return r.members[(base + steps) % len(r.members)]


def duty_roster(r: Rotation, start_ns: int, weeks: int, tz: str) -> list[tuple[str, str]]:
    """(local handover time ISO, member) for the next `weeks` handovers — for the UI."""
    z = ZoneInfo(tz)
    idx = _week_index(r, start_ns, z)
    anchor = datetime.combine(r.start, r.handover_time, z)
    out = []
    for i in range(idx, idx + weeks):
        at = (anchor.replace(tzinfo=None) + timedelta(weeks=i)).replace(tzinfo=z)
        out.append((at.isoformat(), r.members[i % len(r.members)]))
    return out


def who(r: Optional[Rotation], ts_ns: int, tz: str, steps: int = 0) -> Optional[str]:
    if r is None:
        return None
    return on_duty(r, ts_ns, tz) if steps == 0 else next_up(r, ts_ns, tz, steps)
