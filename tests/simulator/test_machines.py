"""The pure plant model: determinism, states and codes, counters, calendar, process signals.

Times are hand-picked wall-clock times in Asia/Seoul; the demo calendar (config/shifts.yaml)
has shifts at 06:00 / 14:00 / 22:00, breaks 10:00-10:10, 12:00-13:00, 15:00-15:10,
18:00-18:30, 03:00-03:30, and Sundays off. 2026-11-24 is a Tuesday, 2026-11-29 a Sunday.
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwanje.config import load_config
from simulator.machines import Plant

KST = ZoneInfo("Asia/Seoul")
S = 1_000_000_000
CONFIG = load_config(Path(__file__).resolve().parents[2] / "config")
KINETIC = ("spindle_speed", "spindle_load", "feed_rate", "forging_force", "stroke_rate", "injection_pressure",
           "screw_torque", "tonnage", "strokes_per_min", "cycle_time")
THERMAL = ("billet_temp", "melt_temp", "mold_temp", "die_temp")


def kst(*args: int) -> int:
    return int(datetime(*args, tzinfo=KST).timestamp()) * S


def running_codes(spec) -> set:
    return set(spec.klass.state_codes.running)


def all_codes(spec) -> set:
    sc = spec.klass.state_codes
    return {*sc.running, *sc.idle, *sc.down, *sc.setup, *sc.planned_stop}


def core(result):
    """What must not depend on how the plant was stepped: state, counters, LOT."""
    keys = ("state", "part_count_total", "part_count_good", "part_count_reject", "lot")
    return [(spec.key, {k: v[k] for k in keys}) for spec, v in result]


DAY0 = kst(2026, 11, 24, 6, 0)  # Tuesday, start of the day shift


@pytest.fixture(scope="module")
def day():
    """One working day of the demo plant, sampled every minute: [(ts, [(spec, values)])]."""
    plant = Plant(CONFIG, seed=7)
    return plant, [(DAY0 + i * 60 * S, plant.step(DAY0 + i * 60 * S)) for i in range(24 * 60)]


def series(day, machine: str, signal: str) -> list:
    _, rows = day
    return [next(v[signal] for spec, v in res if spec.machine == machine) for _, res in rows]


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_times_gives_identical_output():
    times = [DAY0, DAY0 + 1 * S, DAY0 + 7 * S, DAY0 + 3600 * S, DAY0 + 3601 * S, DAY0 + 5 * 3600 * S + 123]
    a, b = Plant(CONFIG, seed=11), Plant(CONFIG, seed=11)
    for t in times:
        assert a.step(t) == b.step(t)


def test_different_seed_gives_different_output():
    t = DAY0 + 2 * 3600 * S
    a, b = Plant(CONFIG, seed=1), Plant(CONFIG, seed=2)
    a.step(DAY0), b.step(DAY0)
    assert a.step(t) != b.step(t)
    # not only noise: the machines themselves behave differently
    assert core(a.step(t + S)) != core(b.step(t + S))


def test_stepping_granularity_does_not_change_what_happens():
    """Big jumps and irregular steps give the same states, counters and lots as small steps."""
    end = DAY0 + 13 * 3600 * S + 17 * S
    fine, jump = Plant(CONFIG, seed=3), Plant(CONFIG, seed=3)
    for t in range(DAY0, end, 45 * S):
        fine.step(t)
    jump.step(DAY0)
    assert core(fine.step(end)) == core(jump.step(end))


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2 * 3600 * S), min_size=1, max_size=30))
def test_any_step_sequence_ends_in_the_same_place(offsets):
    end = DAY0 + 2 * 3600 * S
    a, b = Plant(CONFIG, seed=5), Plant(CONFIG, seed=5)
    a.step(DAY0), b.step(DAY0)
    for off in sorted(offsets):
        a.step(DAY0 + off)
    assert core(a.step(end)) == core(b.step(end))


def test_clock_going_back_undoes_nothing():
    p = Plant(CONFIG, seed=7)
    p.step(DAY0)
    later = core(p.step(DAY0 + 3600 * S))
    assert core(p.step(DAY0 + 1800 * S)) == later


def test_jump_of_days_restarts_without_replaying_and_keeps_running():
    p = Plant(CONFIG, seed=7)
    p.step(DAY0)
    far = DAY0 + 10 * 86_400 * S + 3 * 3600 * S  # Friday 09:00, a working day
    res = p.step(far)
    assert len(res) == 36
    assert sum(v["state"] in running_codes(spec) for spec, v in res) >= 18


# ---------------------------------------------------------------------------- states
def test_state_is_always_one_of_the_configured_codes(day):
    _, rows = day
    for _, res in rows:
        for spec, v in res:
            assert v["state"] in all_codes(spec), (spec.machine, v["state"])
            assert isinstance(v["state"], int)  # a PLC code, never a state name


def test_every_machine_shows_running_down_setup_and_planned_over_a_day(day):
    _, rows = day
    seen: dict[str, set] = {}
    for _, res in rows:
        for spec, v in res:
            seen.setdefault(spec.machine, set()).add(v["state"])
    for spec, _ in rows[0][1]:
        sc = spec.klass.state_codes
        assert seen[spec.machine] & set(sc.running)
        assert seen[spec.machine] & set(sc.setup), spec.machine
        assert seen[spec.machine] & set(sc.planned_stop), spec.machine
    # failures are random: most machines, not necessarily all, break down on a given day
    down = [spec.machine for spec, _ in rows[0][1] if seen[spec.machine] & set(spec.klass.state_codes.down)]
    assert len(down) >= 30


def test_running_share_over_a_day_is_plausible(day):
    """Running share of the time a machine has a LOT; without one it waits for material
    (forge-1 makes more shafts than the CNC lines can take: its buffer fills, it waits)."""
    _, rows = day
    shares, with_lot, without = Counter(), Counter(), Counter()
    for _, res in rows:
        for spec, v in res:
            if v["lot"]:
                with_lot[spec.machine] += 1
                shares[spec.machine] += v["state"] in running_codes(spec)
            else:
                without[spec.machine] += 1
                # waiting for material is idle (or a break came while it waited)
                assert v["state"] in spec.klass.state_codes.idle + spec.klass.state_codes.planned_stop
    pct = {m: 100 * shares[m] / with_lot[m] for m in with_lot}
    assert all(55 <= p <= 90 for p in pct.values()), pct
    assert 62 <= statistics.mean(pct.values()) <= 85
    assert all(100 * n / len(rows) < 40 for n in without.values()), without
    assert len(with_lot) == 36


def test_breaks_are_planned_stops_and_only_breaks(day):
    _, rows = day
    breaks = [(kst(2026, 11, 24, 10, 0), kst(2026, 11, 24, 10, 10)), (kst(2026, 11, 24, 12, 0), kst(2026, 11, 24, 13, 0)),
              (kst(2026, 11, 24, 15, 0), kst(2026, 11, 24, 15, 10)), (kst(2026, 11, 24, 18, 0), kst(2026, 11, 24, 18, 30)),
              (kst(2026, 11, 25, 3, 0), kst(2026, 11, 25, 3, 30))]
    lunch_planned = 0
    for t, res in rows:
        in_break = any(a <= t < b for a, b in breaks)
        for spec, v in res:
            planned = v["state"] in spec.klass.state_codes.planned_stop
            assert not (in_break and v["state"] in running_codes(spec)), (spec.machine, t)
            assert in_break or not planned, (spec.machine, t)
        if t == kst(2026, 11, 24, 12, 30):
            lunch_planned = sum(v["state"] in spec.klass.state_codes.planned_stop for spec, v in res)
    # at 12:30 only machines still under repair or in a changeover are not on their lunch break
    assert lunch_planned >= 30


def test_sunday_is_a_planned_stop_and_everything_is_cold():
    p = Plant(CONFIG, seed=7)
    p.step(kst(2026, 11, 28, 20, 0))  # Saturday evening, working
    res = p.step(kst(2026, 11, 29, 11, 0))  # Sunday 11:00: five hours into the day off
    for spec, v in res:
        assert v["state"] in spec.klass.state_codes.planned_stop, spec.machine
        for sig in THERMAL:
            if sig in v:
                assert 18.0 < v[sig] < 30.0, (spec.machine, sig, v[sig])
        for sig in KINETIC:
            if sig in v:
                assert v[sig] == 0.0


def test_injection_starts_up_semi_automatic_after_a_setup(day):
    codes = series(day, "imm-101", "state") + series(day, "imm-102", "state")
    # Euromap-like: 10 automatic most of the time, 11 for the start-up parts after a changeover
    assert codes.count(10) > 10 * codes.count(11) > 0


# ---------------------------------------------------------------------------- counters
def test_counters_monotone_between_shift_resets_and_consistent(day):
    _, rows = day
    shift_starts = {kst(2026, 11, 24, 14, 0), kst(2026, 11, 24, 22, 0)}
    prev: dict = {}
    for t, res in rows:
        for spec, v in res:
            wrap = 2 ** spec.definition.counter_bits
            tot, good, rej = v["part_count_total"], v["part_count_good"], v["part_count_reject"]
            assert 0 <= tot < wrap and (good + rej) % wrap == tot
            if spec.machine in prev and t not in shift_starts:
                # a cycle takes at least 1.05 x ideal: a minute finishes at most 60 / (1.05 x ideal)
                # parts, plus one that was under way; (modulo 2**bits: a wrap counts on)
                made = (tot - prev[spec.machine]) % wrap
                assert made <= 60 / spec.definition.ideal_cycle_s + 1, (spec.machine, t)
            prev[spec.machine] = tot


@pytest.mark.parametrize("hh", [6, 14, 22])
def test_counters_reset_to_zero_at_shift_change(hh):
    p = Plant(CONFIG, seed=7)
    change = kst(2026, 11, 25, hh, 0)  # Wednesday
    p.step(change - 2 * 3600 * S)
    before = p.step(change - 1 * S)
    assert sum(v["part_count_total"] for _, v in before) > 1000
    at = p.step(change)
    assert all(v["part_count_total"] == v["part_count_good"] == v["part_count_reject"] == 0 for _, v in at)


def test_16_bit_counter_wraps_at_65536():
    p = Plant(CONFIG, seed=7)
    start = kst(2026, 11, 24, 6, 30)
    press = next(m for m in p.models if m.spec.machine == "press-101")  # one machine of the plant
    assert press.spec.definition.counter_bits == 16
    totals = []
    for i in range(3 * 360):  # 3 h, every 10 s
        press.advance(start + i * 10 * S)
        totals.append(press.values()["part_count_total"])
    assert totals[0] > 65_000 and max(totals) <= 65_535
    i = next(i for i in range(1, len(totals)) if totals[i] < totals[i - 1])
    # wrapped (before 14:00, so not a shift reset): continues from 0 upwards
    assert totals[i - 1] > 65_400 and totals[i] < 100
    assert totals[-1] > totals[i]


def test_performance_below_100_percent_and_rejects_1_to_3_percent():
    p = Plant(CONFIG, seed=7)
    t0 = kst(2026, 11, 24, 6, 0)
    run_s, parts, rejects = Counter(), Counter(), Counter()
    prev = {spec.machine: v for spec, v in p.step(t0)}
    for i in range(1, 4 * 360):  # 06:00-10:00 (the first break), every 10 s
        for spec, v in p.step(t0 + i * 10 * S):
            pv = prev[spec.machine]
            if pv["state"] in running_codes(spec) and v["state"] in running_codes(spec):
                run_s[spec.machine] += 10
            wrap = 2 ** spec.definition.counter_bits
            parts[spec.machine] += (v["part_count_total"] - pv["part_count_total"]) % wrap
            rejects[spec.machine] += (v["part_count_reject"] - pv["part_count_reject"]) % wrap
            prev[spec.machine] = v
    for spec in CONFIG.machines():
        perf = parts[spec.machine] * spec.definition.ideal_cycle_s / run_s[spec.machine]
        assert 0.75 < perf < 0.97, (spec.machine, perf)
    rate = sum(rejects.values()) / sum(parts.values())
    assert 0.01 <= rate <= 0.04, rate


def test_more_rejects_right_after_a_setup(day):
    """Startup rejects: the first parts after a changeover are rejected more often."""
    _, rows = day
    after, after_rej, rest, rest_rej = 0, 0, 0, 0
    for idx, (spec, _) in enumerate(rows[0][1]):
        if spec.definition.ideal_cycle_s < 20:
            continue  # fast machines make far more than the start-up parts in a minute
        setup = set(spec.klass.state_codes.setup)
        since_setup = 10**9
        for i in range(1, len(rows)):
            pv, v = rows[i - 1][1][idx][1], rows[i][1][idx][1]
            since_setup = 0 if pv["state"] in setup else since_setup + 1
            made = v["part_count_total"] - pv["part_count_total"]
            rej = v["part_count_reject"] - pv["part_count_reject"]
            if made < 0:
                continue  # shift reset
            if since_setup < 8:
                after, after_rej = after + made, after_rej + rej
            else:
                rest, rest_rej = rest + made, rest_rej + rej
    assert after > 100
    assert after_rej / after > 2 * rest_rej / rest


def test_lot_numbers_look_like_plc_lots_and_change_at_setups(day):
    lots = series(day, "cnc-101", "lot")
    # shaft children of forging LOTs: SH<YYMMDD>-<7 digits>-<n>, "" while waiting for one
    assert all(re.fullmatch(r"SH2611(24|25)-\d{7}-[12]", x) for x in lots if x)
    states = series(day, "cnc-101", "state")
    changes = [i for i in range(1, len(lots)) if lots[i] != lots[i - 1] and lots[i]]
    assert changes and all(states[i] == 5 for i in changes)  # 5: the CNC's setup code


# ---------------------------------------------------------------------------- process signals
def test_process_signals_follow_the_state(day):
    _, rows = day
    for _, res in rows:
        for spec, v in res:
            running = v["state"] in running_codes(spec)
            for sig in KINETIC:
                if sig in v:
                    assert (v[sig] > 0) if running else (v[sig] == 0.0), (spec.machine, sig, v)
            if "vibration" in v and not running:
                assert v["vibration"] < 0.5
            lo_hi = {s.id: s.range for s in spec.signals if s.range}
            for sig, (lo, hi) in lo_hi.items():
                if sig in v and sig not in THERMAL:
                    assert lo <= v[sig] <= hi, (spec.machine, sig, v[sig])


def test_believable_running_values(day):
    speed = [x for x in series(day, "cnc-101", "spindle_speed") if x > 0]
    assert 4400 < statistics.median(speed) < 9600
    melt = [m for m, s in zip(series(day, "imm-101", "melt_temp"), series(day, "imm-101", "state")) if s == 10]
    assert 215 < statistics.median(melt) < 265
    spm = [x for x in series(day, "press-101", "strokes_per_min") if x > 0]
    # ideal 3 s per stroke = 20 spm; the real press is 5-25 % slower
    assert all(15.5 < x < 19.2 for x in spm)


def test_spindle_failures_are_announced_by_vibration_creep(day):
    """Alarms need something to catch: some CNC breakdowns are preceded by rising vibration."""
    _, rows = day
    announced, running_vib = 0, []
    for idx, (spec, _) in enumerate(rows[0][1]):
        if spec.signal("vibration") is None:
            continue
        for i in range(1, len(rows)):
            pv, v = rows[i - 1][1][idx][1], rows[i][1][idx][1]
            if v["state"] == 3:
                running_vib.append(v["vibration"])
            if pv["state"] == 3 and v["state"] == 4:  # running -> down
                before = [rows[j][1][idx][1]["vibration"] for j in range(max(0, i - 30), i)]
                announced += max(before) > 5.0
    assert statistics.median(running_vib) < 3.0
    assert announced >= 5


def test_cooling_failures_are_announced_by_mold_temperature_drift(day):
    _, rows = day
    drifts = 0
    for idx, (spec, _) in enumerate(rows[0][1]):
        if spec.signal("mold_temp") is None:
            continue
        for i in range(90, len(rows)):
            pv, v = rows[i - 1][1][idx][1], rows[i][1][idx][1]
            if pv["state"] in (10, 11) and v["state"] == 30:
                # mold temperature while running in the hour before the breakdown
                temps = [rows[j][1][idx][1]["mold_temp"] for j in range(i - 60, i)
                         if rows[j][1][idx][1]["state"] in (10, 11)]
                drifts += temps[-1] - temps[0] > 7.0
    assert drifts >= 1


# ---------------------------------------------------------------------------- other configs
def test_a_class_the_simulator_does_not_know_still_simulates(tmp_path):
    (tmp_path / "plant.yaml").write_text("""
name: {ko: 시험, en: Test}
machine_classes:
  oven:
    name: {ko: 오븐, en: Oven}
    state_codes: {running: ["RUN"], down: ["ALARM"]}
    signals:
      - {id: state, name: {ko: 상태, en: State}, kind: state}
      - {id: part_count_total, name: {ko: 총, en: Total}, kind: counter}
      - {id: part_count_good, name: {ko: 양품, en: Good}, kind: counter}
      - {id: part_count_reject, name: {ko: 불량, en: Reject}, kind: counter}
      - {id: zone_temp, name: {ko: 온도, en: Zone temp}, range: [100, 300]}
      - {id: recipe, name: {ko: 레시피, en: Recipe}, kind: text}
sites:
  - id: s1
    name: {ko: "1", en: "1"}
    lines:
      - id: l1
        name: {ko: "1", en: "1"}
        process: assembly
        machines:
          - {id: o1, name: {ko: "1", en: "1"}, class: oven, source: mqtt, ideal_cycle_s: 60, counter_bits: 64}
""")
    cfg = load_config(tmp_path)
    p = Plant(cfg, seed=1)
    values = [p.step(DAY0 + i * 60 * S)[0][1] for i in range(600)]
    assert {v["state"] for v in values} <= {"RUN", "ALARM"}
    assert {v["state"] for v in values} == {"RUN", "ALARM"}
    for v in values:
        assert v["recipe"] == ""
        assert 100 <= v["zone_temp"] <= 300 if v["state"] == "RUN" else v["zone_temp"] == 100
    # no shifts.yaml: one all-day shift, reset at midnight only
    assert max(v["part_count_total"] for v in values) > 200


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=21 * 86_400 * S), st.booleans())
def test_timetable_agrees_with_the_engine_calendar(offset, fresh):
    """The simulator's planned stops are the engine's: same calendar, no shift of its own."""
    from gwanje.shifts import load_shifts
    from simulator.machines import Timetable

    cal = load_shifts(CONFIG)
    tt = Timetable(cal) if fresh else SHARED_TIMETABLE  # a window computed for another time too
    t = DAY0 + offset
    stops = cal.planned_stops(t - 86_400 * S, t + 86_400 * S)
    inside = next((b for a, b in stops if a <= t < b), None)
    assert tt.planned_end(t) == inside
    assert tt.is_shift_start(t) == any(s.start_ns == t for s in cal.shifts_between(t - S, t + S))
    assert tt.next_boundary(t) > t


def _shared_timetable():
    from gwanje.shifts import load_shifts
    from simulator.machines import Timetable

    return Timetable(load_shifts(CONFIG))


SHARED_TIMETABLE = _shared_timetable()
