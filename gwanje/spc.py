"""Statistical process control: control limits, Western Electric / Nelson rules and process
capability (docs/quality.md "Quality characteristics and SPC"). Pure code, stdlib only.

Rules on the X (X-bar) chart with sigma_x = (UCL - CL) / 3, each firing at the point that
completes its pattern, and again at every further point while the pattern holds:
  1 one point beyond 3 sigma            5 two of three beyond 2 sigma, same side (this one too)
  2 nine in a row on one side of CL     6 four of five beyond 1 sigma, same side (this one too)
  3 six in a row strictly monotonic     7 fifteen in a row strictly within 1 sigma
  4 fourteen in a row alternating       8 eight in a row beyond 1 sigma, either side
  9 the range (moving range) above its UCL

Precisely (x the point, "the k line" CL + k*sigma_x above and CL - k*sigma_x below):
- "beyond k sigma" is strictly past the k line on that side; for k = 3 the lines are UCL and
  LCL themselves, so a point exactly on a control limit never fires rule 1 (LCL and
  CL - 3 sigma_x differ only by rounding for the limits made here). A point exactly on a
  line is not beyond it: it is also not strictly within 1 sigma, so it breaks rules 7 and 8.
- rule 2: a point on CL is on neither side and breaks the run;
- rule 3: five differences of one sign; a zero difference (a tie) breaks it;
- rule 4: thirteen differences, none zero, each of the opposite sign of the one before;
- rules 5 and 6 look at the last 3 (5) points, or all points so far while there are fewer:
  two points beyond 2 sigma at the very start already make "two of three";
- rule 9: r > r_ucl; r None (the first I-MR point) or not finite fires nothing.
A point that is NaN, infinite or not a number is not a point: add() returns an empty set and
the point neither counts in nor breaks any run (the gauge gave nothing usable).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional, Sequence

# control chart constants by subgroup size (ASTM STP 15D / Montgomery, Appendix VI)
D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
D3 = {2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.076, 8: 0.136, 9: 0.184, 10: 0.223}
D4 = {2: 3.267, 3: 2.574, 4: 2.282, 5: 2.114, 6: 2.004, 7: 1.924, 8: 1.864, 9: 1.816, 10: 1.777}
A2 = {2: 1.880, 3: 1.023, 4: 0.729, 5: 0.577, 6: 0.483, 7: 0.419, 8: 0.373, 9: 0.337, 10: 0.308}

RULE_NAMES: dict[int, dict[str, str]] = {
    1: {"ko": "관리한계(3σ) 이탈", "en": "one point beyond 3σ"},
    2: {"ko": "중심선 한쪽 9점 연속", "en": "nine points on one side of CL"},
    3: {"ko": "6점 연속 상승/하강", "en": "six points steadily up or down"},
    4: {"ko": "14점 교대 증감", "en": "fourteen points alternating"},
    5: {"ko": "3점 중 2점 2σ 초과", "en": "two of three beyond 2σ"},
    6: {"ko": "5점 중 4점 1σ 초과", "en": "four of five beyond 1σ"},
    7: {"ko": "15점 연속 1σ 이내", "en": "fifteen points within 1σ"},
    8: {"ko": "8점 연속 1σ 밖", "en": "eight points beyond 1σ"},
    9: {"ko": "범위(R/MR) 관리한계 초과", "en": "range above its UCL"},
}

CHARTS = ("imr", "xbar_r")
_FLOATS = ("cl", "ucl", "lcl", "r_cl", "r_ucl", "r_lcl", "sigma")


@dataclass(frozen=True)
class Limits:
    chart: str  # "imr" | "xbar_r"
    n: int  # subgroup size (1 for imr)
    cl: float
    ucl: float
    lcl: float
    r_cl: float
    r_ucl: float
    r_lcl: float
    sigma: float  # within sigma of individuals: MRbar / 1.128 or Rbar / d2
    points: int  # points (individuals or subgroups) the limits came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Limits":
        """The inverse of to_dict (e.g. a kept JSON file). ValueError when a value is missing
        a sense: unknown chart, a non-finite limit, LCL > CL > UCL order broken, negative sigma;
        KeyError when a key is missing."""
        chart = str(d["chart"])
        n, points = int(d["n"]), int(d["points"])
        vals = [float(d[k]) for k in _FLOATS]
        if chart not in CHARTS:
            raise ValueError(f"limits: unknown chart {chart!r}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError("limits: not finite")
        cl, ucl, lcl, r_cl, r_ucl, r_lcl, sigma = vals
        if not (lcl <= cl <= ucl and r_lcl <= r_cl <= r_ucl) or sigma < 0 or n < 1 or points < 0:
            raise ValueError("limits: inconsistent")
        return cls(chart, n, cl, ucl, lcl, r_cl, r_ucl, r_lcl, sigma, points)


def _num(v: Any) -> Optional[float]:
    """v as a finite float, or None (NaN, infinite, None, not a number)."""
    if v is None or isinstance(v, (str, bytes)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _finite(values: Iterable[float], what: str) -> list[float]:
    out = []
    for v in values:
        f = _num(v)
        if f is None:
            raise ValueError(f"{what}: {v!r} is not a finite number")
        out.append(f)
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std 0 for one value. ValueError when empty."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_std: no values")
    m = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def limits_imr(values: Sequence[float]) -> Limits:
    """I-MR limits: CL = mean, sigma = MRbar / d2(2), X limits CL +- 3 sigma, MR limits D3/D4(2) MRbar.
    ValueError with fewer than 2 values or a value that is not a finite number."""
    xs = _finite(values, "limits_imr")
    if len(xs) < 2:
        raise ValueError("limits_imr needs at least 2 values")
    cl = math.fsum(xs) / len(xs)
    mr = math.fsum(abs(b - a) for a, b in zip(xs, xs[1:])) / (len(xs) - 1)
    sigma = mr / D2[2]
    return Limits("imr", 1, cl, cl + 3 * sigma, cl - 3 * sigma, mr, D4[2] * mr, D3[2] * mr, sigma, len(xs))


def subgroup_point(values: Sequence[float]) -> tuple[float, float]:
    """(mean, range) of one subgroup. ValueError when empty or a value is not finite."""
    xs = _finite(values, "subgroup")
    if not xs:
        raise ValueError("empty subgroup")
    return math.fsum(xs) / len(xs), max(xs) - min(xs)


def limits_xbar_r(subgroups: Sequence[Sequence[float]]) -> Limits:
    """X-bar/R limits: CL = mean of the means, X-bar limits CL +- A2 Rbar, R limits D3/D4 Rbar,
    sigma (of individuals) Rbar / d2(n). Subgroups of one size 2..10, at least one."""
    groups = [list(g) for g in subgroups]
    if not groups:
        raise ValueError("limits_xbar_r needs at least one subgroup")
    n = len(groups[0])
    if n not in D2 or any(len(g) != n for g in groups):
        raise ValueError("subgroups must all have the same size, 2..10")
    pts = [subgroup_point(g) for g in groups]
    xbb = math.fsum(p[0] for p in pts) / len(pts)
    rbar = math.fsum(p[1] for p in pts) / len(pts)
    return Limits("xbar_r", n, xbb, xbb + A2[n] * rbar, xbb - A2[n] * rbar, rbar, D4[n] * rbar, D3[n] * rbar,
                  rbar / D2[n], len(pts))


# a point's place on the chart: side of CL (+1, -1, 0) and, for k = 1, 2, 3, the side it is
# beyond the k line on (0 when not beyond)
_Place = tuple[int, int, int, int]


class RuleChecker:
    """The rules, point by point: add(x, r) gives the rules that fire at that point; the result
    over a series is the same as violations() over it. Keeps the last 15 points (the longest
    pattern); state() / from_state() carry them over a restart (JSON-able)."""

    KEEP = 15

    def __init__(self, limits: Limits, rules: Iterable[int] = range(1, 10)) -> None:
        if not all(math.isfinite(v) for v in (limits.cl, limits.ucl, limits.lcl, limits.r_ucl)):
            raise ValueError("RuleChecker: limits not finite")
        if limits.ucl < limits.cl or limits.lcl > limits.cl:
            raise ValueError("RuleChecker: UCL below CL or LCL above it")
        self.limits = limits
        self.rules = {int(k) for k in rules}
        s = (limits.ucl - limits.cl) / 3
        self.sigma_x = s
        # the k lines above and below CL; the 3 lines are the control limits themselves
        self._up = (limits.cl + s, limits.cl + 2 * s, limits.ucl)
        self._lo = (limits.cl - s, limits.cl - 2 * s, limits.lcl)
        self.xs: deque[float] = deque(maxlen=self.KEEP)
        self._places: deque[_Place] = deque(maxlen=self.KEEP)

    def _place(self, x: float) -> _Place:
        cl = self.limits.cl
        side = 1 if x > cl else (-1 if x < cl else 0)
        return (side, *(1 if x > u else (-1 if x < lo else 0) for u, lo in zip(self._up, self._lo)))  # type: ignore[return-value]

    def add(self, x: float, r: Optional[float] = None) -> set[int]:
        xf = _num(x)
        if xf is None:
            return set()  # not a point: fires nothing, counts in no run
        self.xs.append(xf)
        self._places.append(self._place(xf))
        return self._check(_num(r))

    def _check(self, r: Optional[float]) -> set[int]:
        R = self.rules
        xs, pl = self.xs, self._places
        n = len(xs)
        fired: set[int] = set()
        cur = pl[-1]
        if 1 in R and cur[3] != 0:
            fired.add(1)
        if 2 in R and n >= 9 and cur[0] != 0 and all(pl[-i][0] == cur[0] for i in range(2, 10)):
            fired.add(2)
        if 3 in R and n >= 6:
            d = [xs[-i] - xs[-i - 1] for i in range(1, 6)]
            if all(v > 0 for v in d) or all(v < 0 for v in d):
                fired.add(3)
        if 4 in R and n >= 14:
            d = [xs[-i] - xs[-i - 1] for i in range(1, 14)]
            if all(v != 0 for v in d) and all((a > 0) != (b > 0) for a, b in zip(d, d[1:])):
                fired.add(4)
        # rules 5 and 6: (rule, window, how many, zone index of the line)
        for rule, k, m, z in ((5, 3, 2, 2), (6, 5, 4, 1)):
            if rule in R and cur[z] != 0:
                if sum(1 for i in range(1, min(k, n) + 1) if pl[-i][z] == cur[z]) >= m:
                    fired.add(rule)
        if 7 in R and n >= 15:
            # strictly within 1 sigma: below the +1 line and above the -1 line
            if all(self._lo[0] < xs[-i] < self._up[0] for i in range(1, 16)):
                fired.add(7)
        if 8 in R and n >= 8 and all(pl[-i][1] != 0 for i in range(1, 9)):
            fired.add(8)
        if 9 in R and r is not None and r > self.limits.r_ucl:
            fired.add(9)
        return fired

    def state(self) -> dict[str, Any]:
        return {"limits": self.limits.to_dict(), "rules": sorted(self.rules), "xs": list(self.xs)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "RuleChecker":
        c = cls(Limits.from_dict(d["limits"]), d["rules"])
        for x in list(d["xs"])[-cls.KEEP:]:
            xf = _num(x)
            if xf is None:
                raise ValueError(f"RuleChecker state: {x!r} is not a finite number")
            c.xs.append(xf)
            c._places.append(c._place(xf))
        return c


def violations(xs: Sequence[float], limits: Limits, rs: Optional[Sequence[Optional[float]]] = None,
               rules: Iterable[int] = range(1, 10)) -> list[set[int]]:
    """For each point of xs, the rules that fire at it. rs: the range (MR) per point, None where a
    point has none; same length as xs (ValueError otherwise)."""
    xs = list(xs)
    if rs is not None and len(rs) != len(xs):
        raise ValueError("violations: rs and xs differ in length")
    c = RuleChecker(limits, rules)
    return [c.add(x, rs[i] if rs is not None else None) for i, x in enumerate(xs)]


def capability(xs: Sequence[float], lsl: Optional[float], usl: Optional[float], sigma_within: float,
               sigma_overall: Optional[float] = None) -> dict[str, Any]:
    """Cp, Cpk (with sigma_within) and Pp, Ppk (with sigma_overall, the sample std of xs unless
    given) around the mean of xs; non-finite xs are left out ("n" counts the rest).
    Cp/Pp need both spec limits (else None); Cpk/Ppk are one-sided with one limit; all four are
    None without a limit or a positive finite sigma; mean None when there is no value."""
    vals = [f for f in (_num(x) for x in xs) if f is not None]
    lo, hi = _num(lsl), _num(usl)
    out: dict[str, Any] = {"mean": None, "cp": None, "cpk": None, "pp": None, "ppk": None, "n": len(vals)}
    if not vals:
        return out
    mu, sd = mean_std(vals)
    out["mean"] = mu

    def idx(s: Optional[float]) -> tuple[Optional[float], Optional[float]]:
        s = _num(s)
        if s is None or s <= 0 or (lo is None and hi is None):
            return None, None
        cp = (hi - lo) / (6 * s) if lo is not None and hi is not None else None
        ks = [(hi - mu) / (3 * s)] if hi is not None else []
        if lo is not None:
            ks.append((mu - lo) / (3 * s))
        return cp, min(ks)

    out["cp"], out["cpk"] = idx(sigma_within)
    out["pp"], out["ppk"] = idx(sigma_overall if sigma_overall is not None else (sd if len(vals) > 1 else None))
    return out
