"""Quality monitoring: feature windows, SPC points and rules, anomaly and reject-risk scores,
and their alarms (docs/quality.md). Pure: no I/O. The models are handed in as a `Scorer`
(quality/models.py loads them from the data dir); the alarm calls come out as `AlarmCall`s the
runtime hands to the alarm service's lifecycle.

`QualityMonitor(config, qdef)` is a pipeline listener (`on_samples(batch) -> events`). Per
machine of a configured class it reads the state signal, the part counters, `lot` and
`lot_product`, the class's anomaly signals and its characteristics' gauge signals, and writes

  quality_window  ts = window start: window means, parts, scores and drivers
  spc_point       key = characteristic: one SPC point (a measurement or a subgroup)
  spc_limits      key = characteristic: control limits computed from the baseline
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gwanje import spc
from gwanje.batch import SERIES, SampleBatch, selected
from gwanje.config import Config, ConfigError, Id, MachineSpec, Names
from gwanje.counters import CounterTracker
from gwanje.model import NS_PER_S, Event, MachineState, Quality, Sample
from gwanje.rejects import Rejects

log = logging.getLogger("gwanje.quality")

Priority = Literal["critical", "high", "medium", "low", "off"]
PLANT = "_plant"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecLimits(_Strict):
    lsl: Optional[float] = None
    target: Optional[float] = None
    usl: Optional[float] = None


class CharacteristicDef(_Strict):
    id: Id
    name: Optional[Names] = None
    # the machine class (plant.yaml) whose machines carry the gauge signal
    class_: Id = Field(alias="class")
    signal: Id
    chart: Literal["imr", "xbar_r"] = "imr"
    subgroup: int = Field(1, ge=1, le=10)
    baseline: int = Field(25, ge=5, le=1000)
    # sampling: a point (a subgroup of consecutive parts, or one part) begins at most this
    # often; 0 = every part. A fast press makes a part every few seconds: SPC on every one of
    # them would be thousands of points a shift, and chance alone breaks a rule several times
    every_s: float = Field(0.0, ge=0, le=86400)
    spec: SpecLimits = SpecLimits()

    @model_validator(mode="after")
    def _n(self) -> "CharacteristicDef":
        if self.chart == "imr":
            self.subgroup = 1
        elif self.subgroup < 2:
            raise ValueError("chart xbar_r needs subgroup 2..10")
        s = self.spec
        if s.lsl is not None and s.usl is not None and s.lsl >= s.usl:
            raise ValueError("spec: lsl must be below usl")
        return self


class ModelsDef(_Strict):
    retrain_every_s: float = Field(3600, ge=60)
    train_window_h: float = Field(72, gt=0, le=24 * 90)
    min_windows: int = Field(120, ge=20)
    keep_versions: int = Field(5, ge=1, le=100)


class SpcDef(_Strict):
    rules: dict[int, Priority] = {1: "high", 2: "medium", 3: "medium", 4: "off", 5: "medium", 6: "low",
                                  7: "off", 8: "low", 9: "medium"}
    clear_after: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _rules(self) -> "SpcDef":
        bad = [k for k in self.rules if k not in range(1, 10)]
        if bad:
            raise ValueError(f"spc.rules: {bad}: rules are 1..9")
        return self


class AnomalyDef(_Strict):
    classes: dict[Id, list[Id]] = {}
    alarm_after: int = Field(3, ge=1)
    clear_after: int = Field(5, ge=1)
    priority: Priority = "medium"


class RiskDef(_Strict):
    classes: list[Id] = []
    alarm_at: float = Field(0.25, gt=0, lt=1)
    alarm_after: int = Field(2, ge=1)
    clear_after: int = Field(3, ge=1)
    priority: Priority = "medium"


class QualityDef(_Strict):
    window_s: float = Field(60, ge=10, le=3600)
    settle_s: float = Field(300, ge=0, le=24 * 3600)
    models: ModelsDef = ModelsDef()
    characteristics: list[CharacteristicDef] = []
    spc: SpcDef = SpcDef()
    anomaly: AnomalyDef = AnomalyDef()
    risk: RiskDef = RiskDef()

    def check_against(self, config: Config, fname: str) -> None:
        classes = config.plant.machine_classes
        ids = [c.id for c in self.characteristics]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"{fname}: characteristics: duplicate ids {dup}")

        def sig(where: str, klass: str, signal: str) -> None:
            k = classes.get(klass)
            if k is None:
                raise ConfigError(f"{fname}: {where}: no machine class {klass!r} in plant.yaml")
            s = next((x for x in k.signals if x.id == signal), None)
            if s is None:
                raise ConfigError(f"{fname}: {where}: class {klass!r} has no signal {signal!r}")
            if s.kind != "analog":
                raise ConfigError(f"{fname}: {where}: signal {signal!r} is {s.kind}, not analog")

        for i, c in enumerate(self.characteristics):
            sig(f"characteristics.{i}", c.class_, c.signal)
        for klass, sigs in self.anomaly.classes.items():
            if not sigs:
                raise ConfigError(f"{fname}: anomaly.classes.{klass}: no signals")
            for s in sigs:
                sig(f"anomaly.classes.{klass}", klass, s)
        for klass in self.risk.classes:
            if klass not in classes:
                raise ConfigError(f"{fname}: risk.classes: no machine class {klass!r} in plant.yaml")
            if not self.features(klass):
                raise ConfigError(f"{fname}: risk.classes: class {klass!r} has no anomaly signals or "
                                  f"characteristics to predict from")

    def chars_of(self, klass: str) -> list[CharacteristicDef]:
        return [c for c in self.characteristics if c.class_ == klass]

    def features(self, klass: str) -> list[str]:
        """The window signals of a class: its anomaly signals, then its gauge signals."""
        out = list(self.anomaly.classes.get(klass, []))
        out += [c.signal for c in self.chars_of(klass) if c.signal not in out]
        return out

    def classes(self) -> set[str]:
        return set(self.anomaly.classes) | set(self.risk.classes) | {c.class_ for c in self.characteristics}


def load_quality(config: Config) -> QualityDef:
    """config/quality.yaml (read by load_config), validated; no file: nothing configured."""
    raw = config.raw_extra.get("quality")
    fname = str(config.directory / "quality.yaml")
    if raw is None:
        return QualityDef()
    try:
        q = QualityDef.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{fname}: {where}: {first['msg']}") from None
    q.check_against(config, fname)
    return q


# ------------------------------------------------------------------------------ scoring
class Scorer(Protocol):
    """The live models (quality/models.py). Each returns (value, drivers, version) or None
    when the class has no model yet; drivers are [(signal, share)], the largest first."""

    def anomaly(self, klass: str, machine: str, product: str, values: dict[str, float]
                ) -> Optional[tuple[float, list[tuple[str, float]], str]]: ...

    def risk(self, klass: str, machine: str, product: str, values: dict[str, float], since_setup_s: float
             ) -> Optional[tuple[float, list[tuple[str, float]], str]]: ...


@dataclass(frozen=True)
class AlarmCall:
    """An alarm condition change for the alarm service (same fields as alerts.rules.Transition)."""

    alarm_id: str
    action: Literal["activate", "clear"]
    ts: int
    rule: str
    site: str
    line: str
    machine: str
    signal: str
    priority: str
    value: Optional[float] = None
    message_ko: str = ""
    message_en: str = ""


def machine_path(key: tuple[str, str, str]) -> str:
    return "/".join(key)


@dataclass
class _Alarm:
    """One alarm point's memory: raised or not, and the run of windows/points behind it."""

    active: bool = False
    run: int = 0  # consecutive windows (points) with the condition
    quiet: int = 0  # consecutive without it


@dataclass
class _Char:
    d: CharacteristicDef
    last: Optional[float] = None  # the gauge's last reading (a new part = a new value)
    group: list[float] = field(default_factory=list)
    prev_x: Optional[float] = None  # imr: the previous individual
    baseline: list[Any] = field(default_factory=list)  # values (imr) or subgroups (xbar_r)
    baseline_ts: list[int] = field(default_factory=list)
    limits: Optional[spc.Limits] = None
    checker: Optional[spc.RuleChecker] = None
    next_ns: int = 0  # every_s: the next point begins at or after this time


class _M:
    """What the monitor knows of one machine."""

    def __init__(self, spec: MachineSpec, q: QualityDef, margin: float) -> None:
        self.spec = spec
        k = spec.klass
        self.klass = spec.definition.klass
        self.codes = k.state_codes.mapping()
        self.state_signal = k.state_signal
        self.names = {s: n for s, n in ((k.total_signal, "total"), (k.good_signal, "good"),
                                        (k.reject_signal, "reject")) if s and spec.signal(s) is not None}
        self.counters = {s: CounterTracker(spec.definition.counter_bits, spec.definition.ideal_cycle_s, margin)
                         for s in self.names}
        self.features = [s for s in q.features(self.klass) if spec.signal(s) is not None]
        self.chars = {c.signal: _Char(c) for c in q.chars_of(self.klass) if spec.signal(c.signal) is not None}
        self.state: Optional[MachineState] = None
        self.run_since: Optional[int] = None  # running without a stop since
        self.setup_ns: Optional[int] = None  # the last changeover's end (running after setup)
        self.lot = ""
        self.product = ""
        self.win: Optional[int] = None  # current window start
        self.sums: dict[str, list[float]] = {}
        self.parts = {"total": 0, "good": 0, "reject": 0}
        self.state_n = 0
        self.running_n = 0
        self.stopped = False  # a non-running state seen in the window
        self.last_ts: Optional[int] = None
        self.anomaly = _Alarm()
        self.risk = _Alarm()


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _locked(fn: Any) -> Any:
    def wrapper(self: "QualityMonitor", *a: Any, **kw: Any) -> Any:
        with self._lock:
            return fn(self, *a, **kw)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class QualityMonitor:
    def __init__(self, config: Config, qdef: Optional[QualityDef] = None, scorer: Optional[Scorer] = None,
                 limits: Optional[dict[tuple[str, str], dict]] = None, counter_margin: float = 3.0,
                 on_limits: Optional[Callable[[str, tuple[str, str, str], spc.Limits], None]] = None) -> None:
        """limits: control limits kept from earlier runs, by (characteristic, machine path);
        on_limits(characteristic, machine key, limits) is called when a baseline completes
        (the runtime keeps them under the data dir)."""
        self.config = config
        self.q = qdef if qdef is not None else load_quality(config)
        self.scorer = scorer
        self.on_limits = on_limits
        self.window_ns = int(self.q.window_s * NS_PER_S)
        self.settle_ns = int(self.q.settle_s * NS_PER_S)
        classes = self.q.classes()
        self.machines: dict[tuple[str, str, str], _M] = {
            m.key: _M(m, self.q, counter_margin) for m in config.machines() if m.definition.klass in classes}
        for (cid, path), d in (limits or {}).items():
            m = self.machines.get(tuple(path.split("/")))  # type: ignore[arg-type]
            ch = next((c for c in m.chars.values() if c.d.id == cid), None) if m else None
            if ch is None:
                continue
            try:
                lim = spc.Limits.from_dict(d)
            except (KeyError, TypeError, ValueError):
                continue
            if lim.chart == ch.d.chart and lim.n == ch.d.subgroup:
                ch.limits, ch.checker = lim, spc.RuleChecker(lim)
        self.rejects = Rejects("quality")
        self.calls: list[AlarmCall] = []  # alarm condition changes not taken yet (take_calls)
        self._spc_alarms: dict[str, _Alarm] = {}
        self._sid_code: list[bool] = []
        self._lock = threading.RLock()
        self.windows_written = 0
        self.points_written = 0

    def _rules(self) -> list[int]:
        return [k for k, p in self.q.spc.rules.items() if p != "off"]

    # ------------------------------------------------------------------ inputs
    @_locked
    def on_samples(self, samples: Sequence[Sample]) -> list[Event]:
        events: list[Event] = []
        by_machine: dict[tuple[str, str, str], list[tuple]] = {}
        for key, sig, value, ts, bad in self._relevant(samples):
            if not bad:
                by_machine.setdefault(key, []).append((ts, sig, value))
        for key, items in by_machine.items():
            items.sort(key=lambda x: x[0])
            m = self.machines[key]
            for ts, sig, value in items:
                if m.last_ts is not None and ts < m.last_ts:
                    self.rejects.reject("late_sample", machine_path(key))
                    continue
                m.last_ts = ts
                self._feed(m, ts, sig, value, events)
        return events

    @_locked
    def tick(self, now_ns: int) -> list[Event]:
        """Close the windows of machines that went silent (a window ends when its time is
        over even if no sample comes after it)."""
        events: list[Event] = []
        for m in self.machines.values():
            if m.win is not None and now_ns >= m.win + 2 * self.window_ns:
                self._close(m, events)
                m.win = None
        return events

    @_locked
    def take_calls(self) -> list[AlarmCall]:
        out, self.calls = self.calls, []
        return out

    @_locked
    def seed_active(self, alarm_ids: Iterable[str]) -> None:
        """After a restart: the quality alarms the lifecycle holds active, so that the monitor
        clears them when their condition is gone instead of ignoring them."""
        for aid in alarm_ids:
            rule, _, where = aid.partition(":")
            if rule.startswith("spc."):
                self._spc_alarms[aid] = _Alarm(active=True)
                continue
            parts = where.split("/")
            m = self.machines.get(tuple(parts[:3])) if len(parts) == 4 else None  # type: ignore[arg-type]
            if m is None:
                continue
            if rule.startswith("anomaly."):
                m.anomaly.active = True
            elif rule.startswith("risk."):
                m.risk.active = True

    def _relevant(self, samples: Sequence[Sample]) -> Iterable[tuple]:
        if isinstance(samples, SampleBatch):
            yield from selected(samples, self._codes())
            return
        for s in samples:
            if not isinstance(s, Sample):
                continue
            m = self.machines.get((s.site, s.line, s.machine))
            if m is not None and self._reads(m, s.signal):
                yield (s.site, s.line, s.machine), s.signal, s.value, s.ts, s.quality == Quality.BAD

    @staticmethod
    def _reads(m: _M, sig: str) -> bool:
        return (sig == m.state_signal or sig in m.counters or sig in ("lot", "lot_product")
                or sig in m.features or sig in m.chars)

    def _codes(self) -> list[bool]:
        codes = self._sid_code
        keys = SERIES.keys
        for i in range(len(codes), len(keys)):
            k = keys[i]
            m = None
            if isinstance(k, tuple) and len(k) == 4 and all(type(x) is str for x in k):
                m = self.machines.get(k[:3])
            codes.append(m is not None and self._reads(m, k[3]))
        return codes

    # ------------------------------------------------------------------ per sample
    def _feed(self, m: _M, ts: int, sig: str, value: Any, events: list[Event]) -> None:
        if m.win is None:
            m.win = ts - ts % self.window_ns
        elif ts >= m.win + self.window_ns:
            self._close(m, events)
            m.win = ts - ts % self.window_ns
        if sig == m.state_signal:
            st = m.codes.get(value)
            m.state_n += 1
            if st == MachineState.RUNNING:
                m.running_n += 1
                if m.state != MachineState.RUNNING:
                    m.run_since = ts
                    if m.state == MachineState.SETUP:
                        m.setup_ns = ts
            else:
                m.stopped = True
                m.run_since = None
            m.state = st
            return
        c = m.counters.get(sig)
        if c is not None:
            f = _num(value)
            d = c.feed(ts, f) if f is not None else 0
            if d:
                m.parts[m.names[sig]] += d
            return
        if sig == "lot":
            if isinstance(value, str):
                m.lot = value.strip()
            return
        if sig == "lot_product":
            if isinstance(value, str):
                m.product = value.strip()
            return
        v = _num(value)
        if v is None:
            self.rejects.reject("not_a_number", f"{machine_path(m.spec.key)}/{sig}")
            return
        running = m.state == MachineState.RUNNING
        if sig in m.features and running:
            s = m.sums.get(sig)
            if s is None:
                m.sums[sig] = [v, 1.0]
            else:
                s[0] += v
                s[1] += 1.0
        ch = m.chars.get(sig)
        if ch is not None:
            if ch.last is not None and v == ch.last:
                return  # the gauge repeats its last reading between parts
            ch.last = v
            if running:
                self._measure(m, ch, ts, v, events)

    # ------------------------------------------------------------------ windows
    def _close(self, m: _M, events: list[Event]) -> None:
        w = m.win
        if w is None:
            return
        running_s = self.q.window_s * (m.running_n / m.state_n) if m.state_n else (
            self.q.window_s if m.state == MachineState.RUNNING else 0.0)
        values = {s: round(t / n, 6) for s, (t, n) in m.sums.items() if n}
        parts = dict(m.parts)
        settled = (not m.stopped and m.state == MachineState.RUNNING and m.run_since is not None
                   and m.run_since <= w - self.settle_ns and all(s in values for s in m.features))
        since_setup_s = (w + self.window_ns - m.setup_ns) / NS_PER_S if m.setup_ns is not None else None
        m.sums = {}
        m.parts = {"total": 0, "good": 0, "reject": 0}
        m.state_n = m.running_n = 0
        m.stopped = m.state != MachineState.RUNNING
        if running_s <= 0 and not parts["total"]:
            return
        data: dict[str, Any] = {
            "window_s": self.q.window_s, "running_s": round(running_s, 1), "settled": settled,
            "product": m.product, "lot": m.lot, "values": values, **parts,
            "since_setup_s": None if since_setup_s is None else round(since_setup_s, 1),
            "anomaly": None, "drivers": [], "risk": None, "risk_drivers": [],
            "anomaly_model": None, "risk_model": None}
        site, line, machine = m.spec.key
        at = w + self.window_ns  # the condition is known when the window ends
        if self.scorer is not None and values:
            if settled and m.klass in self.q.anomaly.classes:
                try:
                    r = self.scorer.anomaly(m.klass, machine_path(m.spec.key), m.product, values)
                except Exception:  # a broken model file must not stop the data path
                    log.exception("anomaly scoring failed for %s", machine_path(m.spec.key))
                    r = None
                if r is not None:
                    score, drivers, ver = r
                    data.update(anomaly=round(score, 4), drivers=[[s, round(x, 3)] for s, x in drivers],
                                anomaly_model=ver)
                    self._window_alarm(m, "anomaly", score >= 1.0, score, drivers, at)
            if m.klass in self.q.risk.classes and running_s > 0:
                try:
                    r = self.scorer.risk(m.klass, machine_path(m.spec.key), m.product, values,
                                         since_setup_s if since_setup_s is not None else 1e6)
                except Exception:
                    log.exception("risk scoring failed for %s", machine_path(m.spec.key))
                    r = None
                if r is not None:
                    risk, drivers, ver = r
                    data.update(risk=round(risk, 4), risk_drivers=[[s, round(x, 3)] for s, x in drivers],
                                risk_model=ver)
                    self._window_alarm(m, "risk", risk >= self.q.risk.alarm_at, risk, drivers, at)
        events.append(Event("quality_window", w, site, line, machine, "", data))
        self.windows_written += 1

    def _window_alarm(self, m: _M, kind: str, cond: bool, value: float, drivers: list[tuple[str, float]],
                      ts: int) -> None:
        a = m.anomaly if kind == "anomaly" else m.risk
        d = self.q.anomaly if kind == "anomaly" else self.q.risk
        if d.priority == "off":
            return
        if cond:
            a.run, a.quiet = a.run + 1, 0
        else:
            a.run, a.quiet = 0, a.quiet + 1
        site, line, machine = m.spec.key
        signal = "anomaly" if kind == "anomaly" else "reject_risk"
        rule = f"{kind}.{m.klass}"
        aid = f"{rule}:{site}/{line}/{machine}/{signal}"
        names = self._driver_names(m, drivers)
        if cond and not a.active and a.run >= d.alarm_after:
            a.active = True
            if kind == "anomaly":
                ko = f"{self._mname(m, 'ko')} 공정 이상 점수 {value:.1f} (기준 1.0) — 주요 신호: {names['ko']}"
                en = f"{self._mname(m, 'en')} process anomaly score {value:.1f} (threshold 1.0); driven by {names['en']}"
            else:
                ko = f"{self._mname(m, 'ko')} 불량 위험 {value:.0%} — 주요 신호: {names['ko']}"
                en = f"{self._mname(m, 'en')} reject risk {value:.0%}; driven by {names['en']}"
            self.calls.append(AlarmCall(aid, "activate", ts, rule, site, line, machine, signal, d.priority,
                                        round(value, 4), ko, en))
        elif not cond and a.active and a.quiet >= d.clear_after:
            a.active = False
            self.calls.append(AlarmCall(aid, "clear", ts, rule, site, line, machine, signal, d.priority))

    def _mname(self, m: _M, lang: str) -> str:
        return m.spec.definition.name.get(lang) or m.spec.machine

    def _driver_names(self, m: _M, drivers: list[tuple[str, float]]) -> dict[str, str]:
        out = {}
        for lang in ("ko", "en"):
            parts = []
            for s, share in drivers[:3]:
                sd = m.spec.signal(s)
                nm = (sd.name.get(lang) if sd is not None and sd.name is not None else None) or s
                parts.append(f"{nm} {share:.0%}")
            out[lang] = ", ".join(parts) or "-"
        return out

    # ------------------------------------------------------------------ SPC
    def _measure(self, m: _M, ch: _Char, ts: int, v: float, events: list[Event]) -> None:
        d = ch.d
        if d.every_s and not ch.group:
            if ts < ch.next_ns:
                return
            ch.next_ns = ts + int(d.every_s * NS_PER_S)
        if d.chart == "imr":
            x, r = v, (abs(v - ch.prev_x) if ch.prev_x is not None else None)
            ch.prev_x = v
            n = 1
            raw: Any = v
        else:
            ch.group.append(v)
            if len(ch.group) < d.subgroup:
                return
            raw = list(ch.group)
            ch.group = []
            x, r = spc.subgroup_point(raw)
            n = d.subgroup
        site, line, machine = m.spec.key
        base = {"chart": d.chart, "n": n, "x": round(x, 6), "r": None if r is None else round(r, 6),
                "lot": m.lot, "product": m.product}
        if ch.limits is None:
            ch.baseline.append(raw)
            ch.baseline_ts.append(ts)
            events.append(Event("spc_point", ts, site, line, machine, d.id,
                                {**base, "cl": None, "ucl": None, "lcl": None, "r_cl": None, "r_ucl": None,
                                 "sigma": None, "rules": [], "baseline": True}))
            self.points_written += 1
            if len(ch.baseline) >= d.baseline:
                try:
                    lim = (spc.limits_imr(ch.baseline) if d.chart == "imr" else spc.limits_xbar_r(ch.baseline))
                except ValueError as e:
                    self.rejects.reject("spc_baseline", f"{machine_path(m.spec.key)}/{d.id}: {e}")
                    ch.baseline, ch.baseline_ts = [], []
                    return
                ch.limits, ch.checker = lim, spc.RuleChecker(lim)  # every rule marked; alarms per spc.rules
                events.append(Event("spc_limits", ts, site, line, machine, d.id,
                                    {**lim.to_dict(), "from_ns": ch.baseline_ts[0], "to_ns": ts}))
                ch.baseline, ch.baseline_ts = [], []
                if self.on_limits is not None:
                    try:
                        self.on_limits(d.id, m.spec.key, lim)
                    except Exception:
                        log.exception("could not keep the SPC limits of %s %s", d.id, machine_path(m.spec.key))
            return
        lim = ch.limits
        assert ch.checker is not None
        fired = ch.checker.add(x, r)
        events.append(Event("spc_point", ts, site, line, machine, d.id,
                            {**base, "cl": lim.cl, "ucl": lim.ucl, "lcl": lim.lcl, "r_cl": lim.r_cl,
                             "r_ucl": lim.r_ucl, "sigma": lim.sigma, "rules": sorted(fired), "baseline": False}))
        self.points_written += 1
        self._spc_alarm_step(m, ch, fired, ts, x)

    def _spc_alarm_step(self, m: _M, ch: _Char, fired: set[int], ts: int, x: float) -> None:
        site, line, machine = m.spec.key
        for k in self._rules():
            rule = f"spc.{ch.d.id}.r{k}"
            aid = f"{rule}:{site}/{line}/{machine}/{ch.d.signal}"
            a = self._spc_alarms.get(aid)
            if a is None:
                if k not in fired:
                    continue
                a = self._spc_alarms[aid] = _Alarm()
            prio = self.q.spc.rules[k]
            if k in fired:
                a.run, a.quiet = a.run + 1, 0
                if not a.active:
                    a.active = True
                    rn = spc.RULE_NAMES.get(k, {})
                    cname = ch.d.name
                    cko = (cname.ko if cname is not None else None) or ch.d.id
                    cen = (cname.en if cname is not None else None) or ch.d.id
                    ko = f"{self._mname(m, 'ko')} {cko} SPC 규칙 {k} ({rn.get('ko', '')}): {x:.4g}"
                    en = f"{self._mname(m, 'en')} {cen} SPC rule {k} ({rn.get('en', '')}): {x:.4g}"
                    self.calls.append(AlarmCall(aid, "activate", ts, rule, site, line, machine, ch.d.signal,
                                                prio, round(x, 6), ko, en))
            else:
                a.run, a.quiet = 0, a.quiet + 1
                if a.active and a.quiet >= self.q.spc.clear_after:
                    a.active = False
                    self.calls.append(AlarmCall(aid, "clear", ts, rule, site, line, machine, ch.d.signal, prio))
                if not a.active:
                    del self._spc_alarms[aid]

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"windows_written": self.windows_written, "points_written": self.points_written,
                    "rejected": self.rejects.total()}
