"""Counter deltas: resets, 16/32-bit wrap-around, negative jumps, gaps, garbage."""
import pytest

from gwanje.counters import CounterTracker
from gwanje.model import NS_PER_S

# (name, bits, ideal cycle s, [(seconds, reading)], expected deltas,
#  expected (resets, wraps, jumps, faults, rejected)); default margin 2: a machine makes at
#  most one part per ideal cycle / 2, plus one
CASES = [
    ("monotone", 32, 30, [(0, 10), (30, 11), (60, 11), (120, 14)], [0, 1, 0, 3], (0, 0, 0, 0, 0)),
    # the true 16-bit wrap: 65,530 -> 5 is 6 + 5 = 11 parts (30 s allow 21)
    ("wrap_16", 16, 3, [(0, 65530), (30, 5), (31, 6)], [0, 11, 1], (0, 1, 0, 0, 0)),
    # 32 bit: 4294967295 -> 0 is one part
    ("wrap_32", 32, 30, [(0, 4294967294), (30, 4294967295), (60, 0), (90, 1)], [0, 1, 1, 1], (0, 1, 0, 0, 0)),
    # reset to zero at shift change and counting again: 5000 -> 0 is a reset, then +2
    ("reset_to_zero", 32, 30, [(0, 5000), (1, 0), (30, 2)], [0, 0, 2], (1, 0, 0, 0, 0)),
    # the 16-bit press reset during an 8 h gap: 4,990 -> 0 would be a wrap of 60,546
    # parts, but 8 h allow at most 19,201 (3 s ideal, twice as fast): a reset, 0 parts
    ("reset_after_8h_gap_16", 16, 3, [(0, 4990), (8 * 3600, 0)], [0, 0], (1, 0, 0, 0, 0)),
    # ... and counted up to 10 since that reset: the 10 parts are real
    ("reset_after_8h_gap_then_parts", 16, 3, [(0, 4990), (8 * 3600, 10)], [0, 10], (1, 0, 0, 0, 0)),
    # reset and one part already made before the next reading: counted (1)
    ("reset_then_part", 16, 3, [(0, 30000), (1, 1)], [0, 1], (1, 0, 0, 0, 0)),
    # the forward jump: 100 -> 4,000,000 in 1 s is a counter fault, not production;
    # counting goes on from the new value
    ("forward_jump", 32, 3, [(0, 100), (1, 4_000_000), (2, 4_000_001)], [0, 0, 1], (0, 0, 0, 1, 0)),
    # a backwards jump to a large value (PLC program restored): not production, new baseline
    ("negative_jump", 32, 30, [(0, 5000), (1, 4000), (31, 4002)], [0, 0, 2], (0, 0, 1, 0, 0)),
    # one hour without readings, counter monotone: the 100 parts made meanwhile count (241 possible)
    ("gap_monotone", 32, 30, [(0, 100), (3600, 200)], [0, 100], (0, 0, 0, 0, 0)),
    # ... but 300 parts in that hour are more than the machine can make: a fault
    ("gap_too_many", 32, 30, [(0, 100), (3600, 400)], [0, 0], (0, 0, 0, 1, 0)),
    # across a one hour gap the counter was reset and counted to 90: 90 parts
    ("gap_with_reset", 32, 30, [(0, 5000), (3600, 90)], [0, 90], (1, 0, 0, 0, 0)),
    # 16-bit press across a 10 min gap wrapping: 65300 -> 100 is 336 parts (401 possible)
    ("gap_with_wrap_16", 16, 3, [(0, 65300), (600, 100)], [0, 336], (0, 1, 0, 0, 0)),
    # ... while 65000 -> 300 would need 836 parts: a reset to zero, then 300 parts
    ("gap_wrap_impossible_16", 16, 3, [(0, 65000), (600, 300)], [0, 300], (1, 0, 0, 0, 0)),
    # garbage is refused and does not move the baseline: 10 -> (-1, 2.5, 70000 > 16 bit) -> 12
    ("garbage", 16, 3, [(0, 10), (1, -1), (2, 2.5), (3, 70000), (4, 12)], [0, 0, 0, 0, 2], (0, 0, 0, 0, 3)),
    # 64-bit counters never wrap: a drop to a small value is a reset (values beyond 2**53
    # cannot be exact in a float sample, so the test stays below)
    ("no_wrap_64", 64, 30, [(0, 2**53), (1, 1)], [0, 1], (1, 0, 0, 0, 0)),
]


@pytest.mark.parametrize("name,bits,cycle,readings,deltas,stats", CASES, ids=[c[0] for c in CASES])
def test_counter_cases(name, bits, cycle, readings, deltas, stats):
    c = CounterTracker(bits, cycle)
    got = [c.feed(s * NS_PER_S, float(v)) for s, v in readings]
    assert got == deltas
    assert (c.resets, c.wraps, c.jumps, c.faults, c.rejected) == stats


def test_nan_and_inf_are_refused():
    c = CounterTracker(32, 30)
    assert [c.feed(0, 5.0), c.feed(1, float("nan")), c.feed(2, float("inf")), c.feed(3, 6.0)] == [0, 0, 0, 1]
    assert c.rejected == 2


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from([16, 32]), start=st.integers(0, 2**32 - 1),
       steps=st.lists(st.tuples(st.integers(1, 60), st.integers(0, 5), st.booleans()), min_size=1, max_size=200))
def test_counted_parts_equal_parts_made(bits, start, steps):
    """Whatever the wraps and resets, the deltas add up to the parts really made, as long as
    the machine is no more than twice as fast as ideal (ideal 3 s: at most one part per
    1.5 s): steps are (seconds, parts made, reset to zero before counting them)."""
    c = CounterTracker(bits, 3.0)
    mod = 2**bits
    reading, t, made, counted = start % mod, 0, 0, 0
    c.feed(0, float(reading))
    for seconds, parts, reset in steps:
        t += seconds
        parts = min(parts, seconds * 2 // 3)  # physically possible at twice the ideal speed
        # a reset is only visible when the counter ends below where it was (a reset that counts
        # back up to the same value looks like standing still), and is told from a wrap only
        # when wrapping would have needed more parts than possible (the documented rule)
        plausible = c.cap(seconds * NS_PER_S)
        reset = reset and parts < reading % mod and parts + mod - reading % mod > plausible
        reading = (0 if reset else reading) + parts
        made += parts
        counted += c.feed(t * NS_PER_S, float(reading % mod))
    assert counted == made
