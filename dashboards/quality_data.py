"""What /quality reads (docs/quality.md "Records"): spc_point records per characteristic and
machine, Cp/Cpk/Pp/Ppk over the points shown, the newest quality_window per machine
(anomaly score and drivers, reject risk and its drivers) with their series, the quality
alarms (rules spc.*, anomaly.*, risk.*) with the signals that drove them, and the newest
quality_model record per kind and class.

Two halves, like dashboards/lots_data.py: pure functions from records to view models (tests
feed them hand-made events) and loaders through the data layer's shared short-TTL cache.
Records are read defensively: a field of the wrong type is missing, never raised.

The characteristics come from config/quality.yaml as loaded raw dicts
(config.raw_extra["quality"]); the lead swaps in the validated loader
gwanje.quality.load_quality(config) later. Capability is a small local helper here, not
gwanje.spc (another branch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Optional, Sequence

from alerts.lifecycle import AlarmState, from_event
from gwanje.model import NS_PER_S, Event

from dashboards.data import DataLayer
from gwanje.spc import RULE_NAMES  # noqa: F401  (the page's rule names: one list with the alarms')

H_NS = 3600 * NS_PER_S
DEFAULT_HOURS = 8
MAX_HOURS = 72
MAX_ROWS = 500_000
QUALITY_RULE_PREFIXES = ("spc.", "anomaly.", "risk.")
MachineKey = tuple[str, str, str]


def _float(v: Any) -> Optional[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _int(v: Any) -> Optional[int]:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _data(e: Event) -> dict:
    return e.data if isinstance(e.data, dict) else {}


def parse_hours(v: Any) -> int:
    """?hours= : an integer 1..72, else the default 8."""
    try:
        h = int(str(v).strip()) if v is not None else DEFAULT_HOURS
    except ValueError:
        return DEFAULT_HOURS
    return h if 1 <= h <= MAX_HOURS else DEFAULT_HOURS


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CharDef:
    id: str
    name: dict[str, str]
    klass: str
    signal: str
    chart: str  # imr | xbar_r
    subgroup: int
    baseline: int
    lsl: Optional[float]
    target: Optional[float]
    usl: Optional[float]

    def label(self, lang: str) -> str:
        return self.name.get(lang) or self.name.get("en") or self.id


def quality_raw(config: Any) -> dict:
    raw = getattr(config, "raw_extra", None)
    q = raw.get("quality") if isinstance(raw, Mapping) else None
    return q if isinstance(q, dict) else {}


def characteristics(config: Any) -> list[CharDef]:
    """The characteristics of quality.yaml, the unreadable ones left out."""
    out = []
    for c in quality_raw(config).get("characteristics") or []:
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("class"), str):
            continue
        name = c.get("name") if isinstance(c.get("name"), dict) else {}
        spec = c.get("spec") if isinstance(c.get("spec"), dict) else {}
        chart = c.get("chart") if c.get("chart") in ("imr", "xbar_r") else "imr"
        out.append(CharDef(c["id"], {k: v for k, v in name.items() if isinstance(v, str)}, c["class"],
                           _str(c.get("signal")) or c["id"], chart,
                           _int(c.get("subgroup")) or (5 if chart == "xbar_r" else 1), _int(c.get("baseline")) or 30,
                           _float(spec.get("lsl")), _float(spec.get("target")), _float(spec.get("usl"))))
    return out


def class_signals(config: Any, section: str) -> dict[str, list[str]]:
    """anomaly.classes: {class: [signal, ...]}."""
    sec = quality_raw(config).get(section)
    classes = sec.get("classes") if isinstance(sec, dict) else None
    if isinstance(classes, dict):
        return {k: [s for s in v if isinstance(s, str)] for k, v in classes.items() if isinstance(v, list)}
    return {}


def risk_classes(config: Any) -> list[str]:
    sec = quality_raw(config).get("risk")
    cl = sec.get("classes") if isinstance(sec, dict) else None
    return [c for c in cl if isinstance(c, str)] if isinstance(cl, list) else []


def risk_alarm_at(config: Any) -> float:
    sec = quality_raw(config).get("risk")
    v = _float(sec.get("alarm_at")) if isinstance(sec, dict) else None
    return v if v is not None else 0.25


def machine_class(config: Any, key: MachineKey) -> Optional[str]:
    spec = config.machine(*key)
    return spec.definition.klass if spec is not None else None


def machines_of_class(config: Any, klass: str, site: str = "", line: str = "") -> list[MachineKey]:
    return [m.key for m in config.machines() if m.definition.klass == klass
            and (not site or m.site == site) and (not line or m.line == line)]


# ----------------------------------------------------------------------------- SPC
@dataclass(frozen=True)
class SpcPoint:
    ts: int
    key: MachineKey
    chart: str
    n: int
    x: Optional[float]
    r: Optional[float]
    cl: Optional[float]
    ucl: Optional[float]
    lcl: Optional[float]
    r_cl: Optional[float]
    r_ucl: Optional[float]
    sigma: Optional[float]
    rules: tuple[int, ...]
    baseline: bool
    lot: str

    @classmethod
    def of(cls, e: Event) -> "SpcPoint":
        d = _data(e)
        rules = d.get("rules")
        rl = tuple(sorted({int(k) for k in rules if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 9})) \
            if isinstance(rules, list) else ()
        return cls(e.ts, (e.site, e.line, e.machine), _str(d.get("chart")) or "imr", _int(d.get("n")) or 1,
                   _float(d.get("x")), _float(d.get("r")), _float(d.get("cl")), _float(d.get("ucl")),
                   _float(d.get("lcl")), _float(d.get("r_cl")), _float(d.get("r_ucl")), _float(d.get("sigma")),
                   rl, d.get("baseline") is True, _str(d.get("lot")))

    @property
    def zone_sigma(self) -> Optional[float]:
        """σ of the X chart's zones: (UCL - CL)/3 (docs/quality.md rules)."""
        if self.ucl is None or self.cl is None:
            return None
        return (self.ucl - self.cl) / 3


@dataclass(frozen=True)
class Capability:
    n: int  # points used
    mean: Optional[float]
    sigma_within: Optional[float]
    sigma_overall: Optional[float]
    cp: Optional[float]
    cpk: Optional[float]
    pp: Optional[float]
    ppk: Optional[float]


def _indices(mean: float, sigma: Optional[float], lsl: Optional[float], usl: Optional[float]
             ) -> tuple[Optional[float], Optional[float]]:
    """(Cp, Cpk) for one σ: Cp needs both limits, Cpk is one-sided with one limit."""
    if sigma is None or sigma <= 0:
        return None, None
    cp = (usl - lsl) / (6 * sigma) if usl is not None and lsl is not None else None
    sides = [(usl - mean) / (3 * sigma)] if usl is not None else []
    sides += [(mean - lsl) / (3 * sigma)] if lsl is not None else []
    return cp, (min(sides) if sides else None)


def capability(points: Sequence[SpcPoint], lsl: Optional[float], usl: Optional[float]) -> Capability:
    """Cp/Cpk from the within σ, Pp/Ppk from the overall σ, over the points given.

    - mean: of the points' x (subgroup means for xbar_r: the same mean).
    - within σ (individual level): the newest point's `sigma` (σ̂ = MR̄/1.128 or R̄/d2 of the
      limits); a point without it: (UCL - CL)/3, times √n for an X̄ chart.
    - overall σ (individual level): imr: the sample std of x. xbar_r: std(x̄)·√n, the
      individual-level σ the subgroup means imply (it equals the individuals' overall σ when
      the process has no between-subgroup shift, and exceeds the within σ when it drifts).
      Needs at least 2 points."""
    xs = [p.x for p in points if p.x is not None]
    if not xs:
        return Capability(0, None, None, None, None, None, None, None)
    mean = sum(xs) / len(xs)
    within = None
    for p in reversed(points):
        if p.sigma is not None and p.sigma > 0:
            within = p.sigma
            break
        zs = p.zone_sigma
        if zs is not None and zs > 0:
            within = zs * math.sqrt(p.n) if p.chart == "xbar_r" else zs
            break
    overall = None
    if len(xs) >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        n = max((p.n for p in points if p.x is not None), default=1)
        chart = next((p.chart for p in points if p.x is not None), "imr")
        overall = sd * math.sqrt(n) if chart == "xbar_r" else sd
    cp, cpk = _indices(mean, within, lsl, usl)
    pp, ppk = _indices(mean, overall, lsl, usl)
    return Capability(len(xs), mean, within, overall, cp, cpk, pp, ppk)


def cpk_level(cpk: Optional[float]) -> str:
    """normal (≥ 1.33), warn (< 1.33), bad (< 1.0), none."""
    if cpk is None:
        return "none"
    return "bad" if cpk < 1.0 else ("warn" if cpk < 1.33 else "normal")


def points_by_machine(events: Iterable[Event]) -> dict[MachineKey, list[SpcPoint]]:
    out: dict[MachineKey, list[SpcPoint]] = {}
    for e in events:
        out.setdefault((e.site, e.line, e.machine), []).append(SpcPoint.of(e))
    for pts in out.values():
        pts.sort(key=lambda p: p.ts)
    return out


def default_machine(points: Mapping[MachineKey, Sequence[SpcPoint]], machines: Sequence[MachineKey]
                    ) -> Optional[MachineKey]:
    """The machine with the most recent rule violation, else the first with points, else the first."""
    best: Optional[tuple[int, MachineKey]] = None
    for k, pts in points.items():
        if k not in machines:
            continue
        for p in reversed(pts):
            if p.rules:
                if best is None or p.ts > best[0]:
                    best = (p.ts, k)
                break
    if best is not None:
        return best[1]
    with_pts = [k for k in machines if points.get(k)]
    return with_pts[0] if with_pts else (machines[0] if machines else None)


# ----------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class QWindow:
    ts: int
    key: MachineKey
    settled: bool
    product: str
    lot: str
    anomaly: Optional[float]
    drivers: tuple[tuple[str, float], ...]
    risk: Optional[float]
    risk_drivers: tuple[tuple[str, float], ...]
    anomaly_model: Any
    risk_model: Any
    total: Optional[int]
    reject: Optional[int]

    @classmethod
    def of(cls, e: Event) -> "QWindow":
        d = _data(e)
        return cls(e.ts, (e.site, e.line, e.machine), d.get("settled") is True, _str(d.get("product")),
                   _str(d.get("lot")), _float(d.get("anomaly")), _pairs(d.get("drivers")), _float(d.get("risk")),
                   _pairs(d.get("risk_drivers")), d.get("anomaly_model"), d.get("risk_model"),
                   _int(d.get("total")), _int(d.get("reject")))


def _pairs(v: Any) -> tuple[tuple[str, float], ...]:
    """[[signal, share], ...] -> pairs, the largest share first."""
    if not isinstance(v, list):
        return ()
    out = []
    for item in v:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            s = _float(item[1])
            if s is not None:
                out.append((item[0], s))
    return tuple(sorted(out, key=lambda p: -abs(p[1])))


def windows_by_machine(events: Iterable[Event]) -> dict[MachineKey, list[QWindow]]:
    out: dict[MachineKey, list[QWindow]] = {}
    for e in events:
        out.setdefault((e.site, e.line, e.machine), []).append(QWindow.of(e))
    for ws in out.values():
        ws.sort(key=lambda w: w.ts)
    return out


def window_at(windows: Sequence[QWindow], ts: int) -> Optional[QWindow]:
    """The window starting at or just before ts (windows sorted by ts)."""
    best = None
    for w in windows:
        if w.ts <= ts:
            best = w
        else:
            break
    return best


def latest_scored(windows: Sequence[QWindow], attr: str) -> Optional[QWindow]:
    """The newest window with a value of attr (anomaly or risk)."""
    return next((w for w in reversed(windows) if getattr(w, attr) is not None), None)


# ----------------------------------------------------------------------------- alarms
def is_quality_rule(rule: str) -> bool:
    return isinstance(rule, str) and rule.startswith(QUALITY_RULE_PREFIXES)


def spc_rule_of(rule: str) -> tuple[str, Optional[int]]:
    """'spc.bore_dia.r1' -> ('bore_dia', 1)."""
    parts = rule.split(".")
    if len(parts) >= 3 and parts[0] == "spc" and parts[-1][:1] == "r" and parts[-1][1:].isdigit():
        return ".".join(parts[1:-1]), int(parts[-1][1:])
    return "", None


@dataclass(frozen=True)
class Detection:
    id: str
    rule: str
    key: MachineKey
    raised_ts: int
    state: str  # the alarm's status value
    priority: str
    message_ko: str
    message_en: str
    drivers: tuple[tuple[str, float], ...]
    window_ts: Optional[int]  # the quality_window the drivers come from

    @property
    def kind(self) -> str:
        return self.rule.split(".", 1)[0]


def detections(history: Iterable[Event], active: Iterable[AlarmState],
               windows: Mapping[MachineKey, Sequence[QWindow]], n: int = 100) -> list[Detection]:
    """Quality alarm episodes: the alarm records in the window (their newest state per episode)
    and the active quality alarms of the alarm source (their state wins), newest raise first;
    drivers from the machine's quality_window at or just before the raise (risk alarms: the
    risk drivers, others the anomaly drivers)."""
    episodes: dict[tuple[str, int], AlarmState] = {}
    last: dict[str, tuple[str, int]] = {}  # the newest episode of each alarm
    for e in sorted(history, key=lambda e: e.ts):
        try:
            s = from_event(e)
        except (TypeError, ValueError):
            continue
        if not is_quality_rule(s.rule):
            continue
        if s.raised_ts is None:  # back to normal (raise time cleared): closes its newest episode
            if s.is_normal and s.id in last:
                episodes[last[s.id]] = replace(s, raised_ts=last[s.id][1])
            continue
        k = (s.id, s.raised_ts)
        episodes[k] = s
        last[s.id] = k
    for s in active:
        if is_quality_rule(s.rule):
            raised = s.raised_ts or s.changed_ts
            episodes[(s.id, raised)] = s
    out = []
    for (aid, raised), s in episodes.items():
        key = (s.site, s.line, s.machine)
        w = window_at(windows.get(key, ()), raised)
        drivers = (w.risk_drivers if s.rule.startswith("risk.") else w.drivers) if w else ()
        out.append(Detection(aid, s.rule, key, raised, s.status.value, s.priority, s.message_ko, s.message_en,
                             drivers, w.ts if w else None))
    out.sort(key=lambda d: (-d.raised_ts, d.id))
    return out[:n]


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelRow:
    key: str
    kind: str
    klass: str
    version: Any
    trained_ns: int
    windows: Optional[int]
    auc: Optional[float]
    precision: Optional[float]
    threshold: Optional[float]

    @classmethod
    def of(cls, e: Event) -> "ModelRow":
        d = _data(e)
        kind, _, klass = e.key.partition(":")
        return cls(e.key, _str(d.get("kind")) or kind, _str(d.get("class")) or klass, d.get("version"), e.ts,
                   _int(d.get("windows")), _float(d.get("auc")), _float(d.get("precision_at_alarm")),
                   _float(d.get("threshold")))


def model_rows(events: Iterable[Event]) -> list[ModelRow]:
    """The newest quality_model record per key, by kind then class."""
    newest: dict[str, Event] = {}
    for e in events:
        if e.kind == "quality_model" and (e.key not in newest or e.ts >= newest[e.key].ts):
            newest[e.key] = e
    return sorted((ModelRow.of(e) for e in newest.values()), key=lambda r: (r.kind, r.klass))


# ----------------------------------------------------------------------------- the page's data
@dataclass(frozen=True)
class QualityData:
    now_ns: int
    start_ns: int
    hours: int
    spc: dict[str, dict[MachineKey, list[SpcPoint]]]  # per characteristic id
    windows: dict[MachineKey, list[QWindow]]
    detections: list[Detection]
    models: list[ModelRow]


def _bucket(layer: DataLayer, now: int) -> tuple[int, int]:
    ttl_ns = max(1, int(layer.cache.ttl_s * NS_PER_S))
    return now // ttl_ns, (now // ttl_ns + 1) * ttl_ns


def load_quality_data(layer: DataLayer, hours: int = DEFAULT_HOURS, active: Sequence[AlarmState] = (),
                      now_ns: Optional[int] = None) -> QualityData:
    """Everything /quality shows over the last `hours`; active: the alarm source's active
    alarms (the alarms page's source), merged into the detections."""
    now = layer.clock() if now_ns is None else now_ns
    b, end = _bucket(layer, now)
    start = end - hours * H_NS
    chars = characteristics(layer.config)

    def load() -> tuple:
        st = layer.store
        spc = {c.id: points_by_machine(st.events("spc_point", start, end, key=c.id, limit=MAX_ROWS)) for c in chars}
        wins = windows_by_machine(st.events("quality_window", start, end, limit=MAX_ROWS))
        alarms = st.events("alarm", start, end, limit=MAX_ROWS)
        models = model_rows(st.latest_events("quality_model"))
        return spc, wins, alarms, models

    spc, wins, alarms, models = layer._query(("quality", hours, b), load)
    return QualityData(now, start, hours, spc, wins, detections(alarms, active, wins), models)
