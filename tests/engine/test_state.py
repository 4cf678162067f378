"""State intervals from PLC codes and liveness: exact boundaries, gaps, unmapped codes."""
from gwanje.model import NS_PER_S, MachineState as S
from gwanje.state import StateInterval, StateTracker, merge_intervals

MAP = {3.0: S.RUNNING, 1.0: S.IDLE, 4.0: S.DOWN, 5.0: S.SETUP, 0.0: S.PLANNED_STOP, "RUN": S.RUNNING}
TO = 30 * NS_PER_S


def run(feed: list[tuple]) -> tuple[StateTracker, list[StateInterval]]:
    """feed: (second, code) for state samples or (second,) for any other sample."""
    t = StateTracker(MAP, TO)
    out = []
    for item in feed:
        if len(item) == 1:
            out += t.feed(item[0] * NS_PER_S)
        else:
            out += t.feed(item[0] * NS_PER_S, item[1], True, *item[2:])
    return t, out


def iv(a, b, st, code=None):
    return StateInterval(a * NS_PER_S, b * NS_PER_S, st, code)


def test_changes_close_intervals_exactly():
    t, out = run([(0, 3.0), (1, 3.0), (2, 3.0), (3, 4.0), (4, 4.0), (5, 3.0)])
    assert out == [iv(0, 3, S.RUNNING, 3.0), iv(3, 5, S.DOWN, 4.0)]
    assert (t.state, t.since_ns) == (S.RUNNING, 5 * NS_PER_S)


def test_gap_longer_than_timeout_is_unknown_for_its_whole_length():
    # running until 10 s, silent until 100 s (90 s > 30 s timeout), then running again
    t, out = run([(0, 3.0), (10, 3.0), (100, 3.0), (101, 3.0)])
    assert out == [iv(0, 10, S.RUNNING, 3.0), iv(10, 100, S.UNKNOWN)]
    assert (t.state, t.since_ns) == (S.RUNNING, 100 * NS_PER_S)


def test_gap_within_timeout_keeps_the_state():
    t, out = run([(0, 4.0), (30, 4.0), (31, 3.0)])  # exactly 30 s apart: not a gap
    assert out == [iv(0, 31, S.DOWN, 4.0)]


def test_after_a_gap_only_liveness_is_unknown_until_a_state_sample():
    t, out = run([(0, 3.0), (100,), (105,), (110, 4.0)])
    # the running interval [0, 0] is empty and not reported; the gap and the wait are unknown
    assert out == [iv(0, 100, S.UNKNOWN), iv(100, 110, S.UNKNOWN)]
    assert t.state == S.DOWN


def test_liveness_from_other_signals_bridges_state_samples():
    # state only at 0 and 100 s, counters every 20 s: no gap, running throughout
    t, out = run([(0, 3.0)] + [(s,) for s in range(20, 100, 20)] + [(100, 4.0)])
    assert out == [iv(0, 100, S.RUNNING, 3.0)]


def test_unmapped_and_bad_codes_are_unknown_and_counted():
    t, out = run([(0, 3.0), (1, 99.0), (2, "RUN"), (3, "3"), (4, 3.0, True), (5, 3.0)])
    assert out == [iv(0, 1, S.RUNNING, 3.0), iv(1, 2, S.UNKNOWN, 99.0), iv(2, 3, S.RUNNING, "RUN"),
                   iv(3, 4, S.RUNNING, "3"), iv(4, 5, S.UNKNOWN)]
    assert t.unmapped == 1


def test_late_samples_are_ignored_and_counted():
    t, out = run([(0, 3.0), (10, 4.0), (5, 1.0), (11, 4.0)])
    assert out == [iv(0, 10, S.RUNNING, 3.0)]
    assert t.late == 1 and t.state == S.DOWN


def test_open_intervals_live_and_stale():
    t, _ = run([(0, 3.0), (25, 3.0)])
    assert t.open_intervals(50 * NS_PER_S) == [iv(0, 50, S.RUNNING, 3.0)]
    # 125 s after the last sample (> 30 s): running until the last sample, then unknown
    assert t.open_intervals(150 * NS_PER_S) == [iv(0, 25, S.RUNNING, 3.0), iv(25, 150, S.UNKNOWN)]
    assert StateTracker(MAP, TO).open_intervals(5) == []


def test_merge_intervals():
    a = [iv(0, 5, S.RUNNING, 3.0), iv(5, 9, S.RUNNING, 3.0), iv(9, 12, S.DOWN, 4.0)]
    assert merge_intervals(a) == [iv(0, 9, S.RUNNING, 3.0), iv(9, 12, S.DOWN, 4.0)]
