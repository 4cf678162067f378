"""SPC: constants, limits, the eight Nelson rules and the range rule on hand-made series,
capability. Limits for the rule tests: CL 0, sigma 1 (UCL 3, LCL -3), so a value is its zone."""
import math
import random

import pytest

from gwanje import spc

L = spc.Limits("imr", 1, 0.0, 3.0, -3.0, 1.0, 3.267, 0.0, 1.0, 30)
NONE = set()


def fires(xs, rules, rs=None):
    return spc.violations(xs, L, rs, rules=rules)


def test_textbook_constants():
    assert spc.D2[2] == 1.128 and spc.D2[5] == 2.326
    assert spc.D4[5] == 2.114 and spc.D3[5] == 0.0 and spc.A2[5] == 0.577
    assert spc.D4[2] == 3.267 and spc.D3[7] == 0.076


def test_imr_limits_by_hand():
    # x = 10, 12, 11, 13, 14: mean 12; MR = 2, 1, 2, 1 -> MRbar 1.5; sigma 1.5/1.128 = 1.3298
    lim = spc.limits_imr([10, 12, 11, 13, 14])
    assert lim.cl == 12.0 and lim.r_cl == 1.5
    assert lim.sigma == pytest.approx(1.5 / 1.128)
    assert lim.ucl == pytest.approx(12 + 3 * 1.5 / 1.128) and lim.lcl == pytest.approx(12 - 3 * 1.5 / 1.128)
    assert lim.r_ucl == pytest.approx(3.267 * 1.5) and lim.points == 5


def test_xbar_r_limits_by_hand():
    # subgroups (n=3): means 2, 5, 8 -> 5; ranges 2, 2, 4 -> Rbar 8/3
    lim = spc.limits_xbar_r([[1, 2, 3], [4, 5, 6], [6, 8, 10]])
    rbar = 8 / 3
    assert lim.cl == 5.0 and lim.r_cl == pytest.approx(rbar)
    assert lim.ucl == pytest.approx(5 + 1.023 * rbar) and lim.lcl == pytest.approx(5 - 1.023 * rbar)
    assert lim.r_ucl == pytest.approx(2.574 * rbar) and lim.r_lcl == 0.0
    assert lim.sigma == pytest.approx(rbar / 1.693) and lim.n == 3


def test_bad_baselines_are_refused():
    with pytest.raises(ValueError):
        spc.limits_imr([1.0])
    with pytest.raises(ValueError):
        spc.limits_imr([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError):
        spc.limits_xbar_r([[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError):
        spc.limits_xbar_r([])


def test_rule1_beyond_3_sigma_exactly_3_does_not_fire():
    assert fires([0, 3.0, 3.01, -3.5, 0], [1]) == [NONE, NONE, {1}, {1}, NONE]


def test_rule2_nine_on_one_side_and_a_point_on_cl_breaks_it():
    xs = [0.5] * 8 + [0.5, 0.5, 0.0] + [-0.2] * 9
    exp = [NONE] * 8 + [{2}, {2}, NONE] + [NONE] * 8 + [{2}]
    assert fires(xs, [2]) == exp


def test_rule3_six_monotonic_a_tie_breaks_it():
    xs = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    exp = [NONE] * 5 + [{3}, {3}, NONE, NONE, NONE, NONE, NONE, {3}]
    assert fires(xs, [3]) == exp


def test_rule4_fourteen_alternating():
    xs = [0.1 if i % 2 else -0.1 for i in range(15)] + [0.1]
    # x0..x14 alternate -0.1, 0.1, ...; x15 = 0.1 after x14 = -0.1 goes on alternating
    exp = [NONE] * 13 + [{4}, {4}, {4}]
    assert fires(xs, [4]) == exp
    # x12 = -0.1 came down from x11; x13 = -0.3 goes down again: the 14th point breaks it
    broken = [0.1 if i % 2 else -0.1 for i in range(13)] + [-0.3]
    assert fires(broken, [4]) == [NONE] * 14


def test_rule5_two_of_three_beyond_2_sigma_same_side_point_itself_among_them():
    xs = [2.5, 0, 2.1, 0, -2.5, 0.0, -2.2, 2.5]
    # i2: 2.5 and 2.1 beyond +2 in (2.5, 0, 2.1) -> fires; i3: the point itself is 0 -> no
    # i6: -2.5, 0, -2.2 -> fires; i7: 2.5 alone on its side -> no
    assert fires(xs, [5]) == [NONE, NONE, {5}, NONE, NONE, NONE, {5}, NONE]


def test_rule6_four_of_five_beyond_1_sigma_same_side():
    xs = [1.5, 1.2, 0, 1.1, 1.3, -1.5, 1.4]
    # i4: (1.5, 1.2, 0, 1.1, 1.3) -> 4 beyond +1, point beyond -> fires
    # i5: point on the other side; i6: (1.2, 0, 1.1, 1.3, 1.4)... window is (1.2,0,1.1,1.3,-1.5)? no:
    # window of i6 = x2..x6 = (0, 1.1, 1.3, -1.5, 1.4): 3 beyond +1 -> no
    assert fires(xs, [6]) == [NONE, NONE, NONE, NONE, {6}, NONE, NONE]


def test_rule7_fifteen_within_1_sigma():
    xs = [0.5, -0.5] * 7 + [0.2, 1.0]
    # 15 points strictly within 1 sigma at i14; i15 = 1.0 is not strictly within
    assert fires(xs, [7]) == [NONE] * 14 + [{7}, NONE]


def test_rule8_eight_beyond_1_sigma_either_side():
    xs = [1.5, -1.5] * 4 + [0.5]
    assert fires(xs, [8]) == [NONE] * 7 + [{8}, NONE]


def test_rule9_range_above_its_ucl():
    rs = [None, 1.0, 3.3, 3.267]
    assert fires([0, 0, 0, 0], [9], rs) == [NONE, NONE, {9}, NONE]


def test_only_the_asked_rules_fire():
    xs = [4.0]
    assert fires(xs, [2, 3]) == [NONE]
    assert fires(xs, range(1, 10)) == [{1}]


def test_nan_points_are_not_points():
    c = spc.RuleChecker(L, [2])
    for x in [0.5] * 8:
        assert c.add(x) == NONE
    assert c.add(float("nan")) == NONE
    assert c.add(0.5) == {2}  # the NaN did not break nor count in the run


def test_incremental_equals_batch_and_state_round_trip():
    rnd = random.Random(3)
    xs = [rnd.gauss(0.3, 1.2) for _ in range(400)]
    rs = [None] + [abs(b - a) for a, b in zip(xs, xs[1:])]
    whole = spc.violations(xs, L, rs)
    c = spc.RuleChecker(L)
    got = []
    for i, (x, r) in enumerate(zip(xs, rs)):
        if i == 200:
            c = spc.RuleChecker.from_state(c.state())
        got.append(c.add(x, r))
    assert got == whole
    assert any(whole)  # the series does exercise the rules


def test_limits_dict_round_trip():
    lim = spc.limits_xbar_r([[1, 2, 3], [4, 5, 6]])
    assert spc.Limits.from_dict(lim.to_dict()) == lim


def test_capability_by_hand():
    # xs 9, 10, 11: mean 10, sample std 1; spec 7..13; within sigma 0.5
    c = spc.capability([9, 10, 11], 7, 13, 0.5)
    assert c["cp"] == pytest.approx(6 / 3) and c["cpk"] == pytest.approx(3 / 1.5)
    assert c["pp"] == pytest.approx(6 / 6) and c["ppk"] == pytest.approx(1.0)
    one = spc.capability([9, 10, 11], None, 12, 0.5)
    assert one["cp"] is None and one["cpk"] == pytest.approx(2 / 1.5)
    off = spc.capability([9, 10, 11], 7, 13, 0.0)
    assert off["cp"] is None and off["cpk"] is None and off["n"] == 3
    assert math.isclose(spc.mean_std([1, 2, 3, 4])[1], math.sqrt(5 / 3))
