"""Shift calendar: the demo plant's shifts, breaks, night shift, weekends, holidays, DST."""
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gwanje.config import ConfigError, load_config
from gwanje.model import NS_PER_S
from gwanje.shifts import load_shifts, parse_shifts

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
SEOUL = ZoneInfo("Asia/Seoul")
H = 3600 * NS_PER_S


def local(ts: int, tz=SEOUL) -> str:
    return datetime.fromtimestamp(ts / NS_PER_S, tz).strftime("%m-%d %H:%M")


@pytest.fixture(scope="module")
def demo():
    return load_shifts(load_config(REPO_CONFIG, env={}))


def test_demo_shifts_and_breaks(demo):
    day, aft, night = demo.shifts_on(date(2026, 11, 24))  # a Tuesday
    assert [(s.shift_id, s.name.ko, local(s.start_ns), local(s.end_ns)) for s in (day, aft, night)] == [
        ("day", "주간", "11-24 06:00", "11-24 14:00"),
        ("afternoon", "오후", "11-24 14:00", "11-24 22:00"),
        ("night", "야간", "11-24 22:00", "11-25 06:00"),  # crosses midnight
    ]
    assert [(local(a), (b - a) // (60 * NS_PER_S)) for a, b in day.breaks] == [("11-24 10:00", 10), ("11-24 12:00", 60)]
    assert [(local(a), (b - a) // (60 * NS_PER_S)) for a, b in aft.breaks] == [("11-24 15:00", 10), ("11-24 18:00", 30)]
    # the 03:00 meal break belongs to the night shift that began the evening before
    assert [(local(a), (b - a) // (60 * NS_PER_S)) for a, b in night.breaks] == [("11-25 03:00", 30)]
    assert all(s.working for s in (day, aft, night))
    assert night.key == "2026-11-24/night"


def test_shift_at_after_midnight_is_yesterdays_night(demo):
    ts = int(datetime(2026, 11, 25, 2, 0, tzinfo=SEOUL).timestamp()) * NS_PER_S
    s = demo.shift_at(ts)
    assert s.key == "2026-11-24/night"
    assert demo.shift_by_key("2026-11-24/night") == s
    assert demo.shift_by_key("garbage") is None and demo.shift_by_key("2026-11-24/nope") is None


def test_sunday_and_holidays_are_not_worked(demo):
    assert [s.working for s in demo.shifts_on(date(2026, 11, 29))] == [False] * 3  # Sunday
    assert [s.working for s in demo.shifts_on(date(2026, 12, 25))] == [False] * 3  # holiday
    # Saturday's night shift runs into Sunday morning and is worked: it is Saturday's
    assert demo.shifts_on(date(2026, 11, 28))[2].working is True
    sunday_day = demo.shifts_on(date(2026, 11, 29))[0]
    assert sunday_day.planned_stops() == [(sunday_day.start_ns, sunday_day.end_ns)]


def test_planned_stops_of_a_day(demo):
    start = int(datetime(2026, 11, 24, 6, tzinfo=SEOUL).timestamp()) * NS_PER_S
    stops = demo.planned_stops(start, start + 24 * H)
    # breaks 10 + 60 + 10 + 30 + 30 = 140 min; the three shifts cover the whole day
    assert sum(b - a for a, b in stops) == 140 * 60 * NS_PER_S


def test_time_outside_every_shift_is_planned_stop():
    cal = parse_shifts({"shifts": [{"id": "d", "name": {"ko": "주", "en": "D"}, "start": "08:00", "end": "17:00"}]},
                       "Asia/Seoul")
    start = int(datetime(2026, 11, 24, 0, tzinfo=SEOUL).timestamp()) * NS_PER_S
    # 00:00-08:00 and 17:00-24:00 = 15 h without a shift
    assert sum(b - a for a, b in cal.planned_stops(start, start + 24 * H)) == 15 * H
    assert cal.shift_at(start) is None


BERLIN = {
    "timezone": "Europe/Berlin",
    "shifts": [
        {"id": "day", "name": {"ko": "주간", "en": "Day"}, "start": "06:00", "end": "14:00"},
        {"id": "night", "name": {"ko": "야간", "en": "Night"}, "start": "22:00", "end": "06:00"},
    ],
    "breaks": [{"start": "02:00", "end": "02:45"}],
}


@pytest.mark.parametrize("day,night_hours,break_min", [
    (date(2026, 3, 28), 7, 45),  # 29 March 02:00 -> 03:00: the night has 7 h; 02:00-02:45 does not
    # exist and reads as 03:00-03:45 CEST (fold=0), still inside the shift
    (date(2026, 10, 24), 9, 45),  # 25 October 03:00 -> 02:00: the night has 9 h
    (date(2026, 6, 1), 8, 45),
])
def test_dst_nights_in_berlin(day, night_hours, break_min):
    cal = parse_shifts(BERLIN, "Asia/Seoul")
    d, n = cal.shifts_on(day)
    assert (d.end_ns - d.start_ns) == 8 * H
    assert (n.end_ns - n.start_ns) == night_hours * H
    assert local(n.start_ns, ZoneInfo("Europe/Berlin"))[-5:] == "22:00"
    assert local(n.end_ns, ZoneInfo("Europe/Berlin"))[-5:] == "06:00"
    assert sum(b - a for a, b in n.breaks) == break_min * 60 * NS_PER_S
    # consecutive shifts tile the days without overlap across the transition
    nxt = cal.shifts_on(date.fromordinal(day.toordinal() + 1))[0]
    assert nxt.start_ns == n.end_ns


@pytest.mark.parametrize("raw,message", [
    ({"shifts": [{"id": "d", "name": {"ko": "a", "en": "a"}, "start": "6:00", "end": "14:00"}]}, "HH:MM"),
    ({"shifts": [{"id": "d", "name": {"ko": "a", "en": "a"}, "start": "06:00", "end": "14:00", "colour": 1}]},
     "Extra inputs"),
    ({"shifts": [{"id": "a", "name": {"ko": "a", "en": "a"}, "start": "06:00", "end": "14:00"},
                 {"id": "b", "name": {"ko": "b", "en": "b"}, "start": "13:00", "end": "20:00"}]}, "overlap"),
    ({"shifts": []}, "at least 1"),
    ({"timezone": "Mars/Olympus", "shifts": [{"id": "d", "name": {"ko": "a", "en": "a"}, "start": "06:00",
                                              "end": "14:00"}]}, "unknown time zone"),
    ({"shifts": [{"id": "d", "name": {"ko": "a", "en": "a"}, "start": "06:00", "end": "14:00"}],
      "small_stop_s": -1}, "greater than 0"),
])
def test_bad_shift_config_is_an_error_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as e:
        parse_shifts(raw, "Asia/Seoul", "shifts.yaml")
    assert "shifts.yaml" in str(e.value) and message in str(e.value)


def test_missing_shifts_yaml_means_one_all_day_shift(tmp_path):
    from tests.engine.conftest import make_config

    cal = load_shifts(make_config(tmp_path, shifts=None))
    (s,) = cal.shifts_on(date(2026, 11, 24))
    assert s.end_ns - s.start_ns == 24 * H and s.working


def test_load_config_rejects_a_bad_shifts_yaml(tmp_path):
    """check-config and every process start refuse a shifts.yaml with a typo, naming it."""
    from tests.engine.conftest import SHIFTS_8H, make_config

    with pytest.raises(ConfigError) as e:
        make_config(tmp_path, shifts={**SHIFTS_8H, "comm_timeout": 30})
    assert "shifts.yaml: comm_timeout: Extra inputs are not permitted" in str(e.value)


from hypothesis import given, settings, strategies as st  # noqa: E402

DEMO_SHIFTS = {"shifts": [
    {"id": "day", "name": {"ko": "주간", "en": "Day"}, "start": "06:00", "end": "14:00"},
    {"id": "afternoon", "name": {"ko": "오후", "en": "Afternoon"}, "start": "14:00", "end": "22:00"},
    {"id": "night", "name": {"ko": "야간", "en": "Night"}, "start": "22:00", "end": "06:00"}]}


@settings(max_examples=150, deadline=None)
@given(day=st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 30)),
       tz=st.sampled_from(["Asia/Seoul", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                           "America/Santiago"]))
def test_shifts_tile_every_day_in_every_time_zone(day, tz):
    """Three shifts cover 06:00 to 06:00 the next day without gap or overlap, whatever the
    zone's daylight-saving rules (Lord Howe shifts by 30 min); the day has 23, 24 or 25 h."""
    cal = parse_shifts({**DEMO_SHIFTS, "timezone": tz}, "Asia/Seoul")
    today = cal.shifts_on(day)
    tomorrow = cal.shifts_on(date.fromordinal(day.toordinal() + 1))
    edges = [today[0].start_ns] + [s.end_ns for s in today]
    assert [s.start_ns for s in today] == edges[:-1]  # each starts where the previous ended
    assert today[-1].end_ns == tomorrow[0].start_ns
    length_h = (edges[-1] - edges[0]) / H
    assert length_h in (23, 23.5, 24, 24.5, 25)
    for s in today:
        assert cal.shift_at(s.start_ns).key == s.key and cal.shift_at(s.end_ns - 1).key == s.key
