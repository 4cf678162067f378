"""Statistical process control: control limits, Western Electric / Nelson rules and process
capability (docs/quality.md "Quality characteristics and SPC"). Pure code, stdlib only.

Rules on the X (X-bar) chart with sigma_x = (UCL - CL) / 3, each firing at the point that
completes its pattern, and again at every further point while the pattern holds:
  1 one point beyond 3 sigma            5 two of three beyond 2 sigma, same side (this one too)
  2 nine in a row on one side of CL     6 four of five beyond 1 sigma, same side (this one too)
  3 six in a row strictly monotonic     7 fifteen in a row within 1 sigma
  4 fourteen in a row alternating       8 eight in a row beyond 1 sigma, either side
  9 the range (moving range) above its UCL
"Beyond" is strictly greater; a point on CL is on neither side. A NaN or infinite point is
not a point: it is ignored and fires nothing.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional, Sequence

# control chart constants by subgroup size (ASTM / Montgomery tables)
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
    points: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Limits":
        return cls(str(d["chart"]), int(d["n"]), *(float(d[k]) for k in ("cl", "ucl", "lcl", "r_cl", "r_ucl",
                                                                        "r_lcl", "sigma")), int(d["points"]))


def _finite(values: Iterable[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if any(not math.isfinite(v) for v in out):
        raise ValueError(f"{what}: not finite")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std 0 for one value."""
    xs = list(values)
    if not xs:
        raise ValueError("no values")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def limits_imr(values: Sequence[float]) -> Limits:
    xs = _finite(values, "limits_imr")
    if len(xs) < 2:
        raise ValueError("limits_imr needs at least 2 values")
    cl = sum(xs) / len(xs)
    mrs = [abs(b - a) for a, b in zip(xs, xs[1:])]
    mr = sum(mrs) / len(mrs)
    sigma = mr / D2[2]
    return Limits("imr", 1, cl, cl + 3 * sigma, cl - 3 * sigma, mr, D4[2] * mr, D3[2] * mr, sigma, len(xs))


def subgroup_point(values: Sequence[float]) -> tuple[float, float]:
    xs = _finite(values, "subgroup")
    if not xs:
        raise ValueError("empty subgroup")
    return sum(xs) / len(xs), max(xs) - min(xs)


def limits_xbar_r(subgroups: Sequence[Sequence[float]]) -> Limits:
    if not subgroups:
        raise ValueError("limits_xbar_r needs at least one subgroup")
    n = len(subgroups[0])
    if n not in D2 or any(len(g) != n for g in subgroups):
        raise ValueError("subgroups must all have the same size, 2..10")
    pts = [subgroup_point(g) for g in subgroups]
    xbb = sum(p[0] for p in pts) / len(pts)
    rbar = sum(p[1] for p in pts) / len(pts)
    return Limits("xbar_r", n, xbb, xbb + A2[n] * rbar, xbb - A2[n] * rbar, rbar, D4[n] * rbar, D3[n] * rbar,
                  rbar / D2[n], len(pts))


class RuleChecker:
    """The rules, point by point: add(x, r) gives the rules that fire at that point."""

    def __init__(self, limits: Limits, rules: Iterable[int] = range(1, 10)) -> None:
        self.limits = limits
        self.rules = set(rules)
        self.s = (limits.ucl - limits.cl) / 3
        self.xs: deque[float] = deque(maxlen=15)

    def _z(self, x: float) -> float:
        return (x - self.limits.cl) / self.s if self.s > 0 else (0.0 if x == self.limits.cl else math.copysign(math.inf, x - self.limits.cl))

    def add(self, x: float, r: Optional[float] = None) -> set[int]:
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            return set()
        self.xs.append(float(x))
        xs = list(self.xs)
        zs = [self._z(v) for v in xs]
        fired: set[int] = set()
        R = self.rules
        z = zs[-1]
        if 1 in R and abs(z) > 3:
            fired.add(1)
        if 2 in R and len(zs) >= 9:
            last = zs[-9:]
            if all(v > 0 for v in last) or all(v < 0 for v in last):
                fired.add(2)
        if 3 in R and len(xs) >= 6:
            d = [b - a for a, b in zip(xs[-6:], xs[-5:])]
            if all(v > 0 for v in d) or all(v < 0 for v in d):
                fired.add(3)
        if 4 in R and len(xs) >= 14:
            d = [b - a for a, b in zip(xs[-14:], xs[-13:])]
            if all(v != 0 for v in d) and all((a > 0) != (b > 0) for a, b in zip(d, d[1:])):
                fired.add(4)
        for rule, k, m, lim in ((5, 3, 2, 2.0), (6, 5, 4, 1.0)):
            if rule in R and len(zs) >= 1:
                last = zs[-k:]
                for sign in (1, -1):
                    if sign * z > lim and sum(1 for v in last if sign * v > lim) >= m:
                        fired.add(rule)
        if 7 in R and len(zs) >= 15 and all(abs(v) < 1 for v in zs[-15:]):
            fired.add(7)
        if 8 in R and len(zs) >= 8 and all(abs(v) > 1 for v in zs[-8:]):
            fired.add(8)
        if 9 in R and r is not None and isinstance(r, (int, float)) and math.isfinite(r) and r > self.limits.r_ucl:
            fired.add(9)
        return fired

    def state(self) -> dict[str, Any]:
        return {"limits": self.limits.to_dict(), "rules": sorted(self.rules), "xs": list(self.xs)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "RuleChecker":
        c = cls(Limits.from_dict(d["limits"]), d["rules"])
        c.xs.extend(float(x) for x in d["xs"])
        return c


def violations(xs: Sequence[float], limits: Limits, rs: Optional[Sequence[Optional[float]]] = None,
               rules: Iterable[int] = range(1, 10)) -> list[set[int]]:
    c = RuleChecker(limits, rules)
    return [c.add(x, rs[i] if rs is not None else None) for i, x in enumerate(xs)]


def capability(xs: Sequence[float], lsl: Optional[float], usl: Optional[float], sigma_within: float,
               sigma_overall: Optional[float] = None) -> dict[str, Any]:
    """Cp, Cpk (within sigma) and Pp, Ppk (overall sigma: the sample std unless given)."""
    vals = [float(x) for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    out: dict[str, Any] = {"mean": None, "cp": None, "cpk": None, "pp": None, "ppk": None, "n": len(vals)}
    if not vals:
        return out
    mu, sd = mean_std(vals)
    out["mean"] = mu
    so = sigma_overall if sigma_overall is not None else sd

    def idx(s: float) -> tuple[Optional[float], Optional[float]]:
        if not s or s <= 0 or (lsl is None and usl is None):
            return None, None
        cp = (usl - lsl) / (6 * s) if lsl is not None and usl is not None else None
        ks = [v for v in ((usl - mu) / (3 * s) if usl is not None else None,
                          (mu - lsl) / (3 * s) if lsl is not None else None) if v is not None]
        return cp, min(ks)

    out["cp"], out["cpk"] = idx(sigma_within)
    out["pp"], out["ppk"] = idx(so)
    return out
