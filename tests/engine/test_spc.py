"""SPC (docs/quality.md "Quality characteristics and SPC"): chart constants, limits computed by
hand, each rule on hand-made series (alone and with every rule on: the full list of sets, so a
rule fires where it should and nowhere else), the edges (a point on a limit, on CL, on a zone
line, ties), the incremental checker against an independent brute-force reference, state and
dict round trips, capability by hand, bad input.

Limits of the rule tests: CL 0, sigma 1 (UCL 3, LCL -3), so a value is its own zone."""
import json
import math
import random

import pytest

from gwanje import spc

L = spc.Limits("imr", 1, 0.0, 3.0, -3.0, 1.0, 3.267, 0.0, 1.0, 30)
E = set()
ALL = range(1, 10)
NAN = float("nan")


def fires(xs, rules, rs=None, lim=L):
    return spc.violations(xs, lim, rs, rules=rules)


# ---------------------------------------------------------------- constants and limits

def test_textbook_constants():
    # Montgomery, Introduction to Statistical Quality Control, Appendix VI
    assert spc.D2 == {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970,
                      10: 3.078}
    assert spc.A2 == {2: 1.880, 3: 1.023, 4: 0.729, 5: 0.577, 6: 0.483, 7: 0.419, 8: 0.373, 9: 0.337,
                      10: 0.308}
    assert spc.D3 == {2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0.076, 8: 0.136, 9: 0.184, 10: 0.223}
    assert spc.D4 == {2: 3.267, 3: 2.574, 4: 2.282, 5: 2.114, 6: 2.004, 7: 1.924, 8: 1.864, 9: 1.816,
                      10: 1.777}
    assert spc.D2[2] == 1.128 and spc.D2[5] == 2.326 and spc.D4[5] == 2.114
    assert spc.A2[5] == 0.577 and spc.D3[5] == 0.0


def test_constants_agree_with_each_other():
    # A2 = 3 / (d2 sqrt(n)): the X-bar limits are CL +- 3 sigma / sqrt(n); tables round to 3 places
    for n in range(2, 11):
        assert spc.A2[n] == pytest.approx(3 / (spc.D2[n] * math.sqrt(n)), abs=0.0011)
        # D3 = max(0, 1 - 3 d3/d2), D4 = 1 + 3 d3/d2: D3 + D4 = 2 where D3 is not clipped at 0
        assert spc.D3[n] + spc.D4[n] == pytest.approx(2.0, abs=0.001) if n >= 7 else spc.D3[n] == 0


def test_imr_limits_by_hand():
    # x = 10, 12, 11, 13, 14: mean 60/5 = 12; MR = 2, 1, 2, 1 -> MRbar 6/4 = 1.5;
    # sigma 1.5 / 1.128 = 1.32979; UCL 12 + 3.98936 = 15.98936, LCL 8.01064;
    # MR chart: CL 1.5, UCL 3.267 * 1.5 = 4.9005, LCL 0
    lim = spc.limits_imr([10, 12, 11, 13, 14])
    assert (lim.chart, lim.n, lim.points) == ("imr", 1, 5)
    assert lim.cl == 12.0 and lim.r_cl == 1.5 and lim.r_lcl == 0.0
    assert lim.sigma == pytest.approx(1.329787, abs=1e-6)
    assert lim.ucl == pytest.approx(15.989362, abs=1e-6) and lim.lcl == pytest.approx(8.010638, abs=1e-6)
    assert lim.r_ucl == pytest.approx(4.9005)
    # the X chart's sigma is the limits' sigma for I-MR
    assert (lim.ucl - lim.cl) / 3 == pytest.approx(lim.sigma)


def test_imr_limits_two_points_and_a_flat_baseline():
    lim = spc.limits_imr([1.0, 2.0])  # mean 1.5, MR 1
    assert lim.cl == 1.5 and lim.r_cl == 1.0 and lim.sigma == pytest.approx(1 / 1.128)
    flat = spc.limits_imr([5.0, 5.0, 5.0])
    assert (flat.cl, flat.ucl, flat.lcl, flat.sigma, flat.r_ucl) == (5.0, 5.0, 5.0, 0.0, 0.0)
    # with zero sigma every point off CL is beyond 3 sigma, and on CL nothing fires
    # (5.0002 is the second point beyond the +2 sigma line, which is CL too: rule 5)
    assert fires([5.0, 5.0001, 5.0002, 4.9999], ALL, lim=flat) == [E, {1}, {1, 5}, {1}]


def test_xbar_r_limits_by_hand_n3():
    # subgroups (n=3): means 2, 5, 8 -> 5; ranges 2, 2, 4 -> Rbar 8/3 = 2.6667
    # UCL 5 + 1.023 * 2.6667 = 7.728, LCL 2.272; R UCL 2.574 * 2.6667 = 6.864; sigma 2.6667 / 1.693
    lim = spc.limits_xbar_r([[1, 2, 3], [4, 5, 6], [6, 8, 10]])
    assert (lim.chart, lim.n, lim.points) == ("xbar_r", 3, 3)
    assert lim.cl == 5.0 and lim.r_cl == pytest.approx(8 / 3)
    assert lim.ucl == pytest.approx(7.728) and lim.lcl == pytest.approx(2.272)
    assert lim.r_ucl == pytest.approx(6.864) and lim.r_lcl == 0.0
    assert lim.sigma == pytest.approx(1.575113, abs=1e-6)


def test_xbar_r_limits_by_hand_n5_and_its_rules():
    # g1 10 12 11 13 14: mean 12, R 4 | g2 9 11 10 10 10: mean 10, R 2
    # g3 13 14 12 15 16: mean 14, R 4 | g4 11 12 12 13 12: mean 12, R 2
    # grand mean 48/4 = 12; Rbar 12/4 = 3; UCL 12 + 0.577*3 = 13.731, LCL 10.269
    # R chart UCL 2.114*3 = 6.342, LCL 0; sigma 3 / 2.326 = 1.28977; chart sigma 0.577 ~ 1.28977/sqrt(5)
    groups = [[10, 12, 11, 13, 14], [9, 11, 10, 10, 10], [13, 14, 12, 15, 16], [11, 12, 12, 13, 12]]
    assert [spc.subgroup_point(g) for g in groups] == [(12.0, 4.0), (10.0, 2.0), (14.0, 4.0), (12.0, 2.0)]
    lim = spc.limits_xbar_r(groups)
    assert lim.cl == 12.0 and lim.r_cl == 3.0 and lim.r_lcl == 0.0 and lim.points == 4
    assert lim.ucl == pytest.approx(13.731) and lim.lcl == pytest.approx(10.269)
    assert lim.r_ucl == pytest.approx(6.342) and lim.sigma == pytest.approx(1.289768, abs=1e-6)
    assert (lim.ucl - lim.cl) / 3 == pytest.approx(lim.sigma / math.sqrt(5), abs=1e-3)
    # new subgroups on that chart: mean 14 (> 13.731) fires rule 1; range 7 (> 6.342) fires rule 9;
    # mean 12 with range 3 is in control
    pts = [spc.subgroup_point(g) for g in ([13, 14, 14, 15, 14], [9, 16, 12, 12, 11], [11, 12, 13, 12, 12])]
    assert pts == [(14.0, 2.0), (12.0, 7.0), (12.0, 2.0)]
    assert fires([p[0] for p in pts], ALL, [p[1] for p in pts], lim) == [{1}, {9}, E]


def test_bad_baselines_are_refused():
    for bad in ([], [1.0], [1.0, NAN, 2.0], [1.0, math.inf], [1.0, "x"], [1.0, None]):
        with pytest.raises(ValueError):
            spc.limits_imr(bad)
    for bad in ([], [[1, 2], [1, 2, 3]], [[1]], [[1], [2]], [list(range(11))], [[1, 2], [3, NAN]],
                [[1, 2], [3, -math.inf]]):
        with pytest.raises(ValueError):
            spc.limits_xbar_r(bad)
    with pytest.raises(ValueError):
        spc.subgroup_point([])
    with pytest.raises(ValueError):
        spc.subgroup_point([1.0, NAN])
    with pytest.raises(ValueError):
        spc.mean_std([])


def test_subgroup_point():
    assert spc.subgroup_point([3, 1, 2]) == (2.0, 2.0)
    assert spc.subgroup_point([4.5]) == (4.5, 0.0)


def test_mean_std_is_the_sample_std():
    m, s = spc.mean_std([1, 2, 3, 4])  # mean 2.5; squares 2.25 .25 .25 2.25 = 5 over n-1 = 3
    assert m == 2.5 and s == pytest.approx(math.sqrt(5 / 3))
    assert spc.mean_std([5]) == (5.0, 0.0)
    assert spc.mean_std(iter([2, 4])) == (3.0, pytest.approx(math.sqrt(2)))


def test_rule_names_in_both_languages():
    assert sorted(spc.RULE_NAMES) == list(range(1, 10))
    for names in spc.RULE_NAMES.values():
        assert set(names) == {"ko", "en"} and all(v.strip() for v in names.values())
    assert len({n["en"] for n in spc.RULE_NAMES.values()}) == 9


# ---------------------------------------------------------------- the rules, one by one

def test_rule1_beyond_3_sigma_exactly_3_does_not_fire():
    xs = [0, 3.0, 3.01, -3.5, -3.0, 0]
    assert fires(xs, [1]) == [E, E, {1}, {1}, E, E]
    # all rules: i2 also completes "two of three beyond 2 sigma" (3.0, 3.01); i4 with -3.5
    assert fires(xs, ALL) == [E, E, {1, 5}, {1}, {5}, E]


def test_a_point_exactly_on_a_computed_limit_is_not_beyond_it():
    # a baseline whose LCL is not exactly CL - (UCL - CL) in floating point: a point on the LCL
    # is not beyond it, the next float below is
    lim = spc.limits_imr([10.443, 9.458, 10.891, 10.803, 9.061])
    assert lim.cl - lim.lcl != lim.ucl - lim.cl  # the rounding this test is about
    xs = [lim.ucl, lim.lcl, math.nextafter(lim.ucl, math.inf), math.nextafter(lim.lcl, -math.inf)]
    assert fires(xs, [1], lim=lim) == [E, E, {1}, {1}]
    # the 2 sigma line CL + 2 (UCL - CL)/3: on it twice is not "two beyond 2 sigma"; just above is
    s = (lim.ucl - lim.cl) / 3
    on, above = lim.cl + 2 * s, math.nextafter(lim.cl + 2 * s, math.inf)
    assert fires([on, on, above, above], [5], lim=lim) == [E, E, E, {5}]


def test_rule2_nine_on_one_side_and_a_point_on_cl_breaks_it():
    xs = [0.5] * 8 + [0.5, 0.5, 0.0] + [-0.2] * 9
    # ten above: fires at the 9th and again at the 10th; the point on CL breaks; nine below
    assert fires(xs, [2]) == [E] * 8 + [{2}, {2}, E] + [E] * 8 + [{2}]
    # all rules: the 20 points are all within 1 sigma, so rule 7 fires from the 15th on
    assert fires(xs, ALL) == [E] * 8 + [{2}, {2}] + [E] * 4 + [{7}] * 5 + [{2, 7}]


def test_rule2_a_point_on_cl_in_the_middle_of_a_run():
    xs = [1.0] * 4 + [0.0] + [1.0] * 8 + [2.0]
    assert fires(xs, [2]) == [E] * 13 + [{2}]


def test_rule3_six_monotonic_a_tie_breaks_it():
    xs = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    # up: i0..i5 fires at i5, still up at i6; the tie i6 -> i7 breaks; down i7..i12 fires at i12
    assert fires(xs, [3]) == [E] * 5 + [{3}, {3}] + [E] * 5 + [{3}]
    # all rules: i1..i12 are all above CL (i0 is on it): rule 2 from i9
    assert fires(xs, ALL) == [E] * 5 + [{3}, {3}, E, E, {2}, {2}, {2}, {2, 3}]


def test_rule3_five_points_are_not_enough_and_direction_changes_break():
    assert fires([0, 0.1, 0.2, 0.3, 0.4], [3]) == [E] * 5
    assert fires([0, 0.1, 0.2, 0.15, 0.3, 0.4, 0.5, 0.6], [3]) == [E] * 8
    assert fires([0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], [3]) == [E] * 5 + [{3}, {3}]


def test_rule4_fourteen_alternating():
    xs = [0.1 if i % 2 else -0.1 for i in range(16)]
    assert fires(xs, [4]) == [E] * 13 + [{4}, {4}, {4}]
    # all rules: sixteen points within 1 sigma: rule 7 at the 15th and 16th
    assert fires(xs, ALL) == [E] * 13 + [{4}, {4, 7}, {4, 7}]
    # x12 = -0.1 came down from x11; x13 = -0.3 goes down again: the 14th point breaks it
    broken = [0.1 if i % 2 else -0.1 for i in range(13)] + [-0.3]
    assert fires(broken, [4]) == [E] * 14


def test_rule4_a_tie_breaks_it_and_the_run_starts_again_from_the_tie():
    first = [0.1 if i % 2 else -0.1 for i in range(13)]  # x0..x12, x12 = -0.1
    xs = first + [-0.1] + [-0.1 if j % 2 else 0.1 for j in range(13)]  # x13 ties; x14.. 0.1, -0.1, ...
    # x13..x26 are 14 points alternating (13 differences), every window before holds the tie
    assert len(xs) == 27
    assert fires(xs, [4]) == [E] * 26 + [{4}]


def test_rule5_two_of_three_beyond_2_sigma_same_side_point_itself_among_them():
    xs = [2.5, 0, 2.1, 0, -2.5, 0.0, -2.2, 2.5]
    # i2: 2.5 and 2.1 beyond +2 in (2.5, 0, 2.1) -> fires; i3: the point itself is 0 -> no
    # i6: -2.5, 0, -2.2 -> fires; i7: 2.5 alone on its side -> no
    exp = [E, E, {5}, E, E, E, {5}, E]
    assert fires(xs, [5]) == exp
    assert fires(xs, ALL) == exp


def test_rule5_start_window_keeps_firing_sides_and_the_2_sigma_line():
    xs = [2.5, 2.5, 2.5, -2.5, 2.5, 0, 2.0, 2.5]
    # i1: two points so far, both beyond +2 -> fires; i2 still; i3 -2.5 alone below -> no
    # i4 (2.5, -2.5, 2.5): two above, the point one of them -> fires; i6 2.0 is on the line,
    # not beyond; i7 (0, 2.0, 2.5): one beyond -> no
    assert fires(xs, [5]) == [E, {5}, {5}, E, {5}, E, E, E]
    # all rules: i4 also has four of five (2.5 2.5 2.5 -2.5 2.5) beyond +1
    assert fires(xs, ALL) == [E, {5}, {5}, E, {5, 6}, E, E, E]


def test_rule6_four_of_five_beyond_1_sigma_same_side():
    xs = [1.5, 1.2, 0, 1.1, 1.3, -1.5, 1.4]
    # i4: (1.5, 1.2, 0, 1.1, 1.3) -> 4 beyond +1, the point too -> fires
    # i5: the point is below; i6: window x2..x6 = (0, 1.1, 1.3, -1.5, 1.4): 3 above -> no
    exp = [E, E, E, E, {6}, E, E]
    assert fires(xs, [6]) == exp
    assert fires(xs, ALL) == exp


def test_rule6_start_window_and_the_1_sigma_line():
    xs = [1.5] * 4 + [1.0, 1.5]
    # i3: four points so far, all beyond +1 -> fires; i4 = 1.0 is on the line: not beyond, no;
    # i5: (1.5, 1.5, 1.5, 1.0, 1.5): four beyond -> fires
    assert fires(xs, [6]) == [E, E, E, {6}, E, {6}]
    assert fires(xs, ALL) == [E, E, E, {6}, E, {6}]


def test_rule7_fifteen_within_1_sigma():
    xs = [0.5, -0.5] * 7 + [0.2, 1.0] + [0.0] * 16
    # 15 strictly within at i14; i15 = 1.0 is on the line (not strictly within) and breaks;
    # points on CL are within: 15 more at i30, still at i31
    assert fires(xs, [7]) == [E] * 14 + [{7}] + [E] * 15 + [{7}, {7}]
    # all rules: x0..x14 alternate (0.2 after -0.5 goes up again): rule 4 at i13 and i14
    assert fires(xs, ALL) == [E] * 13 + [{4}, {4, 7}] + [E] * 15 + [{7}, {7}]


def test_rule8_eight_beyond_1_sigma_either_side():
    xs = [1.5, -1.5] * 4 + [2.5, 1.0] + [-1.5] * 8
    # eight beyond at i7, still at i8; 1.0 is on the line: breaks; eight below at i17
    assert fires(xs, [8]) == [E] * 7 + [{8}, {8}] + [E] * 8 + [{8}]
    # all rules: from i13 four of five (1.0 then -1.5 x4, ...) beyond -1: rule 6 at i13..i17
    assert fires(xs, ALL) == [E] * 7 + [{8}, {8}] + [E] * 4 + [{6}] * 4 + [{6, 8}]
    assert fires([1.5, -1.5] * 4 + [0.5], [8]) == [E] * 7 + [{8}, E]


def test_rule9_range_above_its_ucl():
    rs = [None, 1.0, 3.3, 3.267, NAN, 4.0]
    # on the UCL (3.267) is not above; None (first I-MR point) and NaN fire nothing
    exp = [E, E, {9}, E, E, {9}]
    assert fires([0] * 6, [9], rs) == exp
    assert fires([0] * 6, ALL, rs) == exp
    assert fires([0] * 6, [1, 2, 3, 4, 5, 6, 7, 8], rs) == [E] * 6


def test_only_the_asked_rules_fire():
    xs = [4.0]
    assert fires(xs, [2, 3]) == [E]
    assert fires(xs, ALL) == [{1}]
    assert fires(xs, []) == [E]


def test_violations_checks_its_input():
    with pytest.raises(ValueError):
        fires([0, 1, 2], ALL, [None, 1])
    assert fires([], ALL) == []


# ---------------------------------------------------------------- not a point

def test_nan_points_are_not_points():
    """A NaN (or infinite, or non-numeric) point: add() returns an empty set and the point
    neither counts in nor breaks any run; violations() gives an empty set at its place."""
    c = spc.RuleChecker(L, [2])
    for x in [0.5] * 8:
        assert c.add(x) == E
    assert c.add(NAN) == E
    assert c.add(math.inf) == E
    assert c.add(None) == E  # type: ignore[arg-type]
    assert c.add(0.5) == {2}  # the bad points did not break nor count in the run
    assert c.state()["xs"] == [0.5] * 9
    # a NaN point with a range above its UCL fires nothing either (it is not a point)
    assert spc.RuleChecker(L).add(NAN, 10.0) == E
    assert fires([-4.0, NAN, 4.0], ALL) == [{1}, E, {1}]


def test_numbers_that_are_not_floats_are_points():
    class Num:  # e.g. numpy.int64 / Decimal: float()-able numbers
        def __float__(self):
            return 4.0

    c = spc.RuleChecker(L)
    assert c.add(Num()) == {1}
    assert c.add(4) == {1, 5}
    assert c.add(True) == E  # 1.0: within limits
    assert c.add("4") == E  # a string is not a measurement


# ---------------------------------------------------------------- incremental vs an independent reference

def _reference(xs, rs):
    """The rules straight from docs/quality.md for L (CL 0, sigma 1), over the whole series."""
    out, p = [], []
    for x, r in zip(xs, rs):
        if not math.isfinite(x):
            out.append(set())
            continue
        p.append(x)
        i = len(p) - 1
        f = set()
        if abs(x) > 3:
            f.add(1)
        if i >= 8 and (all(v > 0 for v in p[i - 8:i + 1]) or all(v < 0 for v in p[i - 8:i + 1])):
            f.add(2)
        if i >= 5:
            d = [p[j + 1] - p[j] for j in range(i - 5, i)]
            if all(v > 0 for v in d) or all(v < 0 for v in d):
                f.add(3)
        if i >= 13:
            d = [p[j + 1] - p[j] for j in range(i - 13, i)]
            if all(d[j] * d[j + 1] < 0 for j in range(12)):
                f.add(4)
        for rule, k, m, z in ((5, 3, 2, 2), (6, 5, 4, 1)):
            w = p[max(0, i - k + 1):i + 1]
            if (x > z and sum(v > z for v in w) >= m) or (x < -z and sum(v < -z for v in w) >= m):
                f.add(rule)
        if i >= 14 and all(abs(v) < 1 for v in p[i - 14:i + 1]):
            f.add(7)
        if i >= 7 and all(abs(v) > 1 for v in p[i - 7:i + 1]):
            f.add(8)
        if r is not None and math.isfinite(r) and r > 3.267:
            f.add(9)
        out.append(f)
    return out


def _series(seed, n=4000):
    """Regimes that make every rule fire, on a 0.25 grid so ties, points on CL and points on the
    zone lines really occur; a few NaN points."""
    rnd = random.Random(seed)
    xs = []
    while len(xs) < n:
        kind, k = rnd.randrange(6), rnd.randint(5, 30)
        if kind == 0:
            seg = [rnd.gauss(0, 1) for _ in range(k)]
        elif kind == 1:
            mu = rnd.choice((-1.6, 1.6))
            seg = [rnd.gauss(mu, 0.6) for _ in range(k)]
        elif kind == 2:
            a, step = rnd.uniform(-2, 2), rnd.choice((-0.25, 0.25))
            seg = [a + step * j for j in range(k)]
        elif kind == 3:
            a = rnd.uniform(0.25, 2)
            seg = [(a if j % 2 else -a) + rnd.gauss(0, 0.1) for j in range(k)]
        elif kind == 4:
            seg = [rnd.gauss(0, 0.4) for _ in range(k)]
        else:
            seg = [rnd.choice((-1, 1)) * rnd.uniform(1, 4) for _ in range(k)]
        xs += [round(v * 4) / 4 for v in seg]
    xs = xs[:n]
    for j in rnd.sample(range(n), 20):
        xs[j] = NAN
    rs = [None] + [abs(b - a) for a, b in zip(xs, xs[1:])]
    return xs, rs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_violations_and_the_incremental_checker_match_the_reference(seed):
    xs, rs = _series(seed)
    ref = _reference(xs, rs)
    fired = set().union(*ref)
    assert fired == set(range(1, 10))  # the series exercises every rule
    assert sum(1 for s in ref if s) < len(ref)  # and not everywhere
    assert spc.violations(xs, L, rs) == ref
    # point by point, through a JSON state round trip every so often (a restart)
    rnd = random.Random(seed)
    c, got = spc.RuleChecker(L), []
    for x, r in zip(xs, rs):
        if rnd.random() < 0.02:
            c = spc.RuleChecker.from_state(json.loads(json.dumps(c.state())))
        got.append(c.add(x, r))
    assert got == ref
    # a subset of the rules gives the same points for those rules
    assert spc.violations(xs, L, rs, rules=[2, 5, 9]) == [s & {2, 5, 9} for s in ref]


def test_reference_and_checker_agree_on_real_limits_scaled():
    # the same series on a chart with CL 50, sigma 0.25 (x -> 50 + 0.25 x: exact on the grid)
    xs, rs = _series(7, 1500)
    lim = spc.Limits("imr", 1, 50.0, 50.75, 49.25, 0.25, 0.25 * 3.267, 0.0, 0.25, 30)
    ys = [50 + 0.25 * x for x in xs]
    ry = [None if r is None else 0.25 * r for r in rs]
    assert spc.violations(ys, lim, ry) == _reference(xs, rs)


def test_state_round_trip_keeps_the_runs():
    c = spc.RuleChecker(L, [2, 7, 9])
    for _ in range(20):
        c.add(0.5)
    st = c.state()
    assert json.loads(json.dumps(st)) == st
    assert st["rules"] == [2, 7, 9] and len(st["xs"]) == 15 and st["limits"] == L.to_dict()
    c2 = spc.RuleChecker.from_state(json.loads(json.dumps(st)))
    assert c2.rules == {2, 7, 9} and c2.limits == L
    assert c2.add(0.5, 5.0) == c.add(0.5, 5.0) == {2, 7, 9}
    # a fresh checker does not know the run
    assert spc.RuleChecker(L, [2, 7, 9]).add(0.5, 5.0) == {9}
    with pytest.raises(ValueError):
        spc.RuleChecker.from_state({**st, "xs": [0.5, "nan"]})


# ---------------------------------------------------------------- Limits as a dict

def test_limits_dict_round_trip():
    for lim in (spc.limits_xbar_r([[1, 2, 3], [4, 5, 6]]), spc.limits_imr([10.443, 9.458, 10.891]), L):
        d = lim.to_dict()
        assert set(d) == {"chart", "n", "cl", "ucl", "lcl", "r_cl", "r_ucl", "r_lcl", "sigma", "points"}
        assert spc.Limits.from_dict(json.loads(json.dumps(d))) == lim


def test_limits_from_a_bad_dict():
    d = L.to_dict()
    for bad in ({**d, "chart": "p"}, {**d, "ucl": float("nan")}, {**d, "ucl": -1.0}, {**d, "sigma": -1.0},
                {**d, "r_ucl": 0.5}, {**d, "cl": "x"}):
        with pytest.raises(ValueError):
            spc.Limits.from_dict(bad)
    with pytest.raises(KeyError):
        spc.Limits.from_dict({k: v for k, v in d.items() if k != "sigma"})
    with pytest.raises(ValueError):
        spc.RuleChecker(spc.Limits("imr", 1, 0.0, -1.0, -3.0, 1.0, 3.0, 0.0, 1.0, 2))


# ---------------------------------------------------------------- capability

def test_capability_two_sided_by_hand():
    # xs 9, 10, 11: mean 10, sample std 1; spec 7..13; within sigma 0.5
    # Cp 6/(6*0.5) = 2, Cpk min(3, 3)/(3*0.5) = 2; Pp 6/6 = 1, Ppk 3/3 = 1
    c = spc.capability([9, 10, 11], 7, 13, 0.5)
    assert c == {"mean": 10.0, "cp": pytest.approx(2.0), "cpk": pytest.approx(2.0), "pp": pytest.approx(1.0),
                 "ppk": pytest.approx(1.0), "n": 3}
    # off centre: xs 10, 11, 12 (mean 11, std 1): Cpk min(13-11, 11-7)/1.5 = 1.3333, Ppk 2/3
    c = spc.capability([10, 11, 12], 7, 13, 0.5)
    assert c["cp"] == pytest.approx(2.0) and c["cpk"] == pytest.approx(4 / 3)
    assert c["pp"] == pytest.approx(1.0) and c["ppk"] == pytest.approx(2 / 3)
    # a given overall sigma 2: Pp 6/12 = 0.5, Ppk 3/6 = 0.5
    c = spc.capability([9, 10, 11], 7, 13, 0.5, sigma_overall=2.0)
    assert c["pp"] == pytest.approx(0.5) and c["ppk"] == pytest.approx(0.5) and c["cp"] == pytest.approx(2.0)


def test_capability_one_sided_by_hand():
    up = spc.capability([9, 10, 11], None, 12, 0.5)  # Cpk (12-10)/1.5 = 1.3333, Ppk 2/3
    assert up["cp"] is None and up["pp"] is None
    assert up["cpk"] == pytest.approx(4 / 3) and up["ppk"] == pytest.approx(2 / 3)
    lo = spc.capability([9, 10, 11], 8.5, None, 0.5)  # Cpk (10-8.5)/1.5 = 1, Ppk 1.5/3 = 0.5
    assert lo["cp"] is None and lo["pp"] is None
    assert lo["cpk"] == pytest.approx(1.0) and lo["ppk"] == pytest.approx(0.5)


def test_capability_when_undefined():
    off = spc.capability([9, 10, 11], 7, 13, 0.0)  # within sigma 0: Cp/Cpk undefined
    assert off["cp"] is None and off["cpk"] is None and off["pp"] == pytest.approx(1.0) and off["n"] == 3
    assert spc.capability([9, 10, 11], 7, 13, NAN)["cpk"] is None
    none = spc.capability([9, 10, 11], None, None, 0.5)  # no spec limit
    assert none == {"mean": 10.0, "cp": None, "cpk": None, "pp": None, "ppk": None, "n": 3}
    assert spc.capability([], 7, 13, 0.5) == {"mean": None, "cp": None, "cpk": None, "pp": None, "ppk": None,
                                              "n": 0}
    one = spc.capability([10], 7, 13, 0.5)  # one value: no overall std
    assert one["cp"] == pytest.approx(2.0) and one["pp"] is None and one["ppk"] is None and one["n"] == 1
    flat = spc.capability([10, 10, 10], 7, 13, 0.5)  # overall std 0
    assert flat["pp"] is None and flat["ppk"] is None and flat["cpk"] == pytest.approx(2.0)
    # non-finite values are left out of the mean, the std and n
    assert spc.capability([9, NAN, 10, 11, math.inf], 7, 13, 0.5) == spc.capability([9, 10, 11], 7, 13, 0.5)
