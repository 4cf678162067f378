"""Alarm rules (config/alarms.yaml) and their pure evaluator.

The evaluator is fed Samples and clock ticks and answers with Transitions (activate, clear,
suppress, unsuppress) for the lifecycle. Kinds of rule:
  analog      HH/H/L/LL limits on a signal, with deadband and on/off delays
  rate        rate of change of a signal above a limit (units per second)
  state       machine in a state (down, setup, ...) longer than N seconds
  stale       no sample from a machine for N seconds -> communication alarm
  oee         line OEE for the shift so far below a target (value supplied from outside)
A rule applies to the machines its scope selects (site, line, machine class, machine).
Suppression by design: while a machine is in planned stop, or its line is not scheduled to
produce, its alarms are suppressed.
No I/O here; times are ns since the epoch (sample source time, or the tick's clock).
"""
from __future__ import annotations

import math
import string
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Annotated

from gwanje.batch import SERIES, SampleBatch, _quality
from gwanje.config import ID_PATTERN, Config, ConfigError, MachineSpec, Names, check_unique
from gwanje.model import NS_PER_S, MachineState, Quality, Sample

Priority = Literal["critical", "high", "medium", "low"]
Level = Literal["hh", "h", "l", "ll"]
LEVEL_LABEL = {"hh": "HH", "h": "H", "l": "L", "ll": "LL"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    """Which machines a rule applies to; every given field must match (empty = all)."""

    site: list[str] = []
    line: list[str] = []
    klass: list[str] = Field([], alias="class")
    machine: list[str] = []
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def matches(self, m: MachineSpec) -> bool:
        return ((not self.site or m.site in self.site) and (not self.line or m.line in self.line)
                and (not self.klass or m.definition.klass in self.klass)
                and (not self.machine or m.machine in self.machine))


class LimitDef(_Strict):
    limit: float
    priority: Priority


# what a message template may use; checked at load so a typo fails there, not at 3 a.m.
TEMPLATE_FIELDS = {
    "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101", "signal": "vibration",
    "machine_name": "MC 1호기", "line_name": "CNC 1라인", "signal_name": "진동", "unit": "mm/s",
    "value": 9.5, "limit": 9.0, "level": "HH", "rate": 1.0, "state": "down", "duration_min": 5.0,
    "age_s": 30.0, "oee": 0.5, "target": 0.65,
}


def _check_template(t: str) -> str:
    for _, name, spec, _ in string.Formatter().parse(t):
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"message template uses unknown field {{{name}}}; known: {sorted(TEMPLATE_FIELDS)}")
        format(TEMPLATE_FIELDS[name], spec or "")
    return t


class Message(_Strict):
    ko: Annotated[str, Field(min_length=1, max_length=300)]
    en: Annotated[str, Field(min_length=1, max_length=300)]

    @model_validator(mode="after")
    def _templates(self) -> "Message":
        _check_template(self.ko)
        _check_template(self.en)
        return self


class _RuleBase(_Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    scope: Scope = Scope()
    message: Message
    on_delay_s: float = Field(0.0, ge=0)
    off_delay_s: float = Field(0.0, ge=0)
    # suppression by design: no annunciation while the machine is in planned stop
    suppress_in_planned_stop: bool = True


StateName = Literal["running", "idle", "down", "setup", "planned_stop", "unknown"]


class _SignalRule(_RuleBase):
    signal: str
    # evaluate only while the machine is in one of these states (empty: always); e.g. a
    # pyrometer reads ambient when no billet is under it, which is no low-temperature alarm
    while_state: list[StateName] = []


class AnalogRule(_SignalRule):
    type: Literal["analog"]
    hh: Optional[LimitDef] = None
    h: Optional[LimitDef] = None
    l: Optional[LimitDef] = None  # noqa: E741 (the ISA name)
    ll: Optional[LimitDef] = None
    deadband: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _limits(self) -> "AnalogRule":
        lv = {k: getattr(self, k).limit for k in ("hh", "h", "l", "ll") if getattr(self, k)}
        if not lv:
            raise ValueError("an analog rule needs at least one of hh, h, l, ll")
        order = [lv[k] for k in ("ll", "l", "h", "hh") if k in lv]
        if order != sorted(order) or len(set(order)) != len(order):
            raise ValueError(f"limits must increase ll < l < h < hh, got {lv}")
        return self

    def levels(self) -> list[tuple[str, LimitDef]]:
        return [(k, getattr(self, k)) for k in ("hh", "h", "l", "ll") if getattr(self, k)]


class RateRule(_SignalRule):
    type: Literal["rate"]
    max_per_s: float = Field(gt=0)
    priority: Priority


class StateRule(_RuleBase):
    type: Literal["state"]
    state: StateName
    max_s: float = Field(gt=0)
    priority: Priority


class StaleRule(_RuleBase):
    type: Literal["stale"]
    max_age_s: float = Field(gt=0)
    priority: Priority
    suppress_in_planned_stop: bool = False  # a dead link is worth knowing about in any state


class OeeRule(_RuleBase):
    type: Literal["oee"]
    target: float = Field(gt=0, le=1)
    priority: Priority
    on_delay_s: float = Field(600.0, ge=0)  # the shift-so-far OEE is noisy in its first minutes


Rule = Annotated[Union[AnalogRule, RateRule, StateRule, StaleRule, OeeRule], Field(discriminator="type")]


class AlarmRules(_Strict):
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique(self) -> "AlarmRules":
        ids = [r.id for r in self.rules]
        check_unique(ids, "rule")
        return self

    def check_against(self, config: Config) -> None:
        """Every rule must select at least one machine, and each selected machine must have
        the rule's signal: a rule that silently watches nothing is a hidden hole."""
        machines = list(config.machines())
        for r in self.rules:
            sel = [m for m in machines if r.scope.matches(m)]
            if not sel:
                if config.instance is not None:
                    # a scaled-out collect instance (gwanje.partition) runs a part of the plant:
                    # the rule selects machines of other instances (check-config checks the whole)
                    continue
                raise ValueError(f"rule {r.id}: scope selects no machine")
            sig = getattr(r, "signal", None)
            if sig is not None:
                bad = [m.machine for m in sel if m.signal(sig) is None]
                if bad:
                    raise ValueError(f"rule {r.id}: signal {sig!r} does not exist on {bad[:5]}")


def config_errors(fname: str, err: ValidationError) -> str:
    """pydantic's errors as `file: key.path: problem` lines, like gwanje.config reports them."""
    return "\n".join(f"{fname}: {'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())


def load_rules(config: Config, raw: Optional[dict[str, Any]] = None) -> AlarmRules:
    """Rules from config/alarms.yaml (already read into config.raw_extra), checked against the
    plant. Raises ConfigError naming the file, the key path and the problem."""
    data = config.raw_extra.get("alarms", {}) if raw is None else raw
    fname = str(config.directory / "alarms.yaml")
    try:
        rules = AlarmRules.model_validate(data)
        rules.check_against(config)
    except ValidationError as e:
        raise ConfigError(config_errors(fname, e)) from None
    except ValueError as e:
        raise ConfigError(f"{fname}: {e}") from None
    return rules


# ------------------------------------------------------------------------------ evaluator
@dataclass(frozen=True)
class Transition:
    alarm_id: str
    action: Literal["activate", "clear", "suppress", "unsuppress"]
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


_ODD = -1  # Evaluator._series_kinds: a key that is not four texts
_INT = {int}
_FLOAT = {float}


class _SafeDict(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def render(template: str, ctx: dict[str, Any]) -> str:
    try:
        return template.format_map(_SafeDict(ctx))
    except (ValueError, TypeError):
        pass
    # a value of the wrong type for its spec (None before any reading, text): that field shown
    # plainly, the others as the template says
    out = []
    for literal, name, spec, conv in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        v = ctx.get(name, "?")
        if conv:
            v = repr(v) if conv == "r" else ascii(v) if conv == "a" else str(v)
        try:
            out.append(format(v, spec or ""))
        except (ValueError, TypeError):
            out.append(str(v))
    return "".join(out)


@dataclass
class _Check:
    """One alarm point: a rule (level) on one place, with its delay and deadband memory."""

    alarm_id: str
    rule: Any
    level: str
    site: str
    line: str
    machine: str
    signal: str
    priority: str
    ctx: dict[str, Any]  # names for messages, per language
    cond: bool = False  # the condition after deadband
    since: int = 0  # when cond last changed
    active: bool = False  # what the lifecycle has been told
    suppressed: bool = False  # a suppress transition was sent
    value: Optional[float] = None
    extra: dict[str, Any] = field(default_factory=dict)


def alarm_id(rule_id: str, site: str, line: str, machine: str, signal: str) -> str:
    where = "/".join(p for p in (site, line, machine) if p)
    return f"{rule_id}:{where}/{signal}"


class Evaluator:
    """Stateful but pure: feed() and tick() in, Transitions out.

    scheduled(site, line, now_ns) -> bool says whether a line is scheduled to produce (e.g.
    from the shift calendar); while it is not, its alarms are suppressed by design, like a
    machine in planned stop. Without it every line counts as scheduled."""

    def __init__(self, config: Config, rules: AlarmRules,
                 scheduled: Optional[Callable[[str, str, int], bool]] = None) -> None:
        self.config = config
        self.rules = rules
        self.scheduled = scheduled
        self._unscheduled: set[tuple[str, str]] = set()
        self._by_series: dict[tuple[str, str, str, str], list[_Check]] = {}
        self._state_checks: dict[tuple[str, str, str], list[_Check]] = {}
        self._stale_checks: dict[tuple[str, str, str], list[_Check]] = {}
        self._oee_checks: dict[tuple[str, str], list[_Check]] = {}
        self._by_machine: dict[tuple[str, str, str], list[_Check]] = {}
        self._by_id: dict[str, _Check] = {}
        self._state_maps: dict[tuple[str, str, str], tuple[str, dict]] = {}
        self._mstate: dict[tuple[str, str, str], tuple[MachineState, int]] = {}
        self._last_seen: dict[tuple[str, str, str], int] = {}
        self._last_value: dict[tuple[str, str, str, str], tuple[int, float]] = {}
        self._started: Optional[int] = None
        # the columnar path's per-series knowledge (see _feed_batch), per id of gwanje.batch.SERIES
        self._sid_code: list[int] = []
        self._mkeys: list[tuple[str, str, str]] = []
        self._mslot: dict[tuple[str, str, str], int] = {}
        self._bulk_limits: dict[int, Optional[tuple[list[_Check], float, float]]] = {}
        for m in config.machines():
            self._state_maps[m.key] = (m.klass.state_signal, m.klass.state_codes.mapping())
            for r in rules.rules:
                if r.scope.matches(m):
                    self._add(r, m)

    # ------------------------------------------------------------------ setup
    def _add(self, r: Any, m: MachineSpec) -> None:
        line = self.config.line(m.site, m.line)
        base = {"site": m.site, "line": m.line, "machine": m.machine,
                "machine_name": m.definition.name, "line_name": line.name if line else None}
        if isinstance(r, OeeRule):
            key = (m.site, m.line)
            if key in self._oee_checks and any(c.rule is r for c in self._oee_checks[key]):
                return
            c = self._mk(r, "", m.site, m.line, "", "oee", r.priority, base)
            self._oee_checks.setdefault(key, []).append(c)
            return
        if isinstance(r, AnalogRule):
            sd = m.signal(r.signal)
            for level, ld in r.levels():
                c = self._mk(r, level, m.site, m.line, m.machine, r.signal, ld.priority,
                             {**base, "signal_name": sd.name if sd else None, "unit": sd.unit if sd else "",
                              "limit": ld.limit, "level": LEVEL_LABEL[level]})
                self._by_series.setdefault((*m.key, r.signal), []).append(c)
        elif isinstance(r, RateRule):
            sd = m.signal(r.signal)
            c = self._mk(r, "", m.site, m.line, m.machine, r.signal, r.priority,
                         {**base, "signal_name": sd.name if sd else None, "unit": sd.unit if sd else "",
                          "limit": r.max_per_s})
            self._by_series.setdefault((*m.key, r.signal), []).append(c)
        elif isinstance(r, StateRule):
            c = self._mk(r, "", m.site, m.line, m.machine, "state", r.priority,
                         {**base, "state": r.state, "duration_min": r.max_s / 60})
            self._state_checks.setdefault(m.key, []).append(c)
        elif isinstance(r, StaleRule):
            c = self._mk(r, "", m.site, m.line, m.machine, "comm", r.priority, {**base, "age_s": r.max_age_s})
            self._stale_checks.setdefault(m.key, []).append(c)
        else:  # pragma: no cover - the discriminated union has no other member
            raise TypeError(r)

    def _mk(self, r: Any, level: str, site: str, line: str, machine: str, signal: str, priority: str,
            ctx: dict[str, Any]) -> _Check:
        rid = f"{r.id}.{level}" if level else r.id
        c = _Check(alarm_id(rid, site, line, machine, signal), r, level, site, line, machine, signal, priority,
                   {**ctx, "signal": signal})
        self._by_id[c.alarm_id] = c
        if machine:
            self._by_machine.setdefault((site, line, machine), []).append(c)
        return c

    def alarm_ids(self) -> list[str]:
        return list(self._by_id)

    def oee_lines(self) -> list[tuple[str, str]]:
        """The (site, line) pairs some OEE rule watches."""
        return list(self._oee_checks)

    def info(self, alarm_id: str) -> Optional[dict[str, str]]:
        """Where an alarm point sits and its priority (for operator actions on a normal alarm)."""
        c = self._by_id.get(alarm_id)
        if c is None:
            return None
        return {"rule": c.rule.id + (f".{c.level}" if c.level else ""), "site": c.site, "line": c.line,
                "machine": c.machine, "signal": c.signal, "priority": c.priority}

    def seed(self, alarm_id: str, active: bool, suppressed: bool) -> None:
        """After a restart: what the lifecycle already knows, so that the next normal value
        clears a restored alarm instead of being ignored."""
        c = self._by_id.get(alarm_id)
        if c is not None:
            c.active = c.cond = active
            c.suppressed = suppressed

    # ------------------------------------------------------------------ evaluation core
    def _step(self, c: _Check, cond: bool, ts: int, out: list[Transition]) -> None:
        if cond != c.cond:
            c.cond, c.since = cond, ts
        self._settle(c, ts, out)

    def _settle(self, c: _Check, now: int, out: list[Transition]) -> None:
        r = c.rule
        # a state rule's duration limit works as its on-delay: down for max_s, then the alarm
        on_s = r.on_delay_s + (r.max_s if isinstance(r, StateRule) else 0.0)
        if c.cond and not c.active and now - c.since >= on_s * NS_PER_S:
            if isinstance(r, StateRule):
                c.extra = {**c.extra, "duration_min": round((now - c.since) / NS_PER_S / 60, 1)}
            c.active = True
            if self._masked(c) and not c.suppressed:
                c.suppressed = True
                out.append(self._tr(c, "suppress", now))
            out.append(self._tr(c, "activate", now))
        elif not c.cond and c.active and now - c.since >= r.off_delay_s * NS_PER_S:
            c.active = False
            out.append(self._tr(c, "clear", now))

    def _masked(self, c: _Check) -> bool:
        if not c.machine or not c.rule.suppress_in_planned_stop:
            return False
        return self._machine_masked((c.site, c.line, c.machine))

    def _machine_masked(self, mkey: tuple[str, str, str]) -> bool:
        if (mkey[0], mkey[1]) in self._unscheduled:
            return True
        st = self._mstate.get(mkey)
        return st is not None and st[0] == MachineState.PLANNED_STOP

    def _apply_masks(self, mkey: tuple[str, str, str], ts: int, out: list[Transition]) -> None:
        """Suppress the active alarms of a machine that just became masked; unsuppress all
        that were suppressed when the mask is lifted (the lifecycle re-annunciates)."""
        masked = self._machine_masked(mkey)
        for c in self._by_machine.get(mkey, ()):
            if not c.rule.suppress_in_planned_stop:
                continue
            if masked and c.active and not c.suppressed:
                c.suppressed = True
                out.append(self._tr(c, "suppress", ts))
            elif not masked and c.suppressed:
                c.suppressed = False
                out.append(self._tr(c, "unsuppress", ts))

    def _tr(self, c: _Check, action: str, ts: int) -> Transition:
        ctx = {**c.ctx, "value": c.value, **c.extra}
        msgs = {}
        for lang in ("ko", "en"):
            lc = {k: (v.get(lang) if isinstance(v, Names) else v) for k, v in ctx.items()}
            msgs[lang] = render(getattr(c.rule.message, lang), lc)
        return Transition(c.alarm_id, action, ts, c.rule.id + (f".{c.level}" if c.level else ""), c.site, c.line,
                          c.machine, c.signal, c.priority, c.value, msgs["ko"], msgs["en"])

    # ------------------------------------------------------------------ inputs
    def feed(self, samples: Iterable[Sample]) -> list[Transition]:
        """Transitions of these samples, taken in time order (arrival order among equal times).
        A gwanje.batch.SampleBatch is read from its columns (_feed_batch): the same transitions
        in the same order and the same state as from its Samples one by one."""
        if isinstance(samples, SampleBatch):
            return self._feed_batch(samples)
        out: list[Transition] = []
        for s in sorted(samples, key=lambda s: s.ts):
            self._feed_one((s.site, s.line, s.machine), s.series, s.signal, s.value, s.ts, s.quality, out)
        return out

    def _feed_one(self, mkey: tuple[str, str, str], series: tuple[str, str, str, str], signal: str, value: Any,
                  ts: int, quality: Any, out: list[Transition]) -> None:
        prev = self._last_seen.get(mkey)
        if prev is None or ts > prev:
            self._last_seen[mkey] = ts
            for c in self._stale_checks.get(mkey, ()):
                self._step(c, False, ts, out)
        smap = self._state_maps.get(mkey)
        if smap is not None and signal == smap[0]:
            self._on_state(mkey, value, ts, quality, smap[1], out)
        checks = self._by_series.get(series)
        if not checks or not isinstance(value, float) or quality is not Quality.GOOD:
            # a bad-quality reading says nothing about the process: hold the condition
            return
        last = self._last_value.get(series)
        if last is not None and ts <= last[0]:
            return  # late or duplicate delivery: the newer value already decided
        self._last_value[series] = (ts, value)
        mstate = self.machine_state(*mkey).value
        for c in checks:
            c.value = value
            if c.rule.while_state and mstate not in c.rule.while_state:
                self._step(c, False, ts, out)
            elif isinstance(c.rule, AnalogRule):
                self._step(c, self._analog(c, value), ts, out)
            elif last is not None:
                rate = abs(value - last[1]) / ((ts - last[0]) / NS_PER_S)
                c.extra = {"rate": rate}
                self._step(c, rate > c.rule.max_per_s, ts, out)

    # ------------------------------------------------------------------ columnar input
    def _series_codes(self) -> list[int]:
        """Per series id of SERIES: machine slot * 4 + kind, where the slot indexes
        self._mkeys (every machine seen, known or not: liveness is kept for all) and kind is
        bit 1 = the machine's state signal, bit 2 = alarm points watch the series, 0 = the
        sample only proves the machine is talking; _ODD for a key that is not four texts
        (garbage a caller put in a Sample: the per-Sample path decides)."""
        codes = self._sid_code
        keys = SERIES.keys
        for j in range(len(codes), len(keys)):
            key = keys[j]
            code = _ODD
            if type(key) is tuple and len(key) == 4 and all(type(x) is str for x in key):
                mkey = key[:3]
                slot = self._mslot.get(mkey)
                if slot is None:
                    slot = self._mslot[mkey] = len(self._mkeys)
                    self._mkeys.append(mkey)
                smap = self._state_maps.get(mkey)
                code = slot * 4 + ((1 if smap is not None and key[3] == smap[0] else 0)
                                   | (2 if key in self._by_series else 0))
            codes.append(code)
        return codes

    def _feed_batch(self, b: SampleBatch) -> list[Transition]:
        """feed() of a SampleBatch from its columns: the same transitions in the same order and
        the same state as feeding its Samples, without a Sample per value.

        The samples are grouped by machine and kind of series (one sort of their codes), the
        watched ones further by series. What a sample can change is known per series: a
        series no alarm point watches that is not its machine's state only proves the
        machine is talking, which changes nothing but the machine's newest time while its
        comm alarms are idle (a max per machine); a watched analog series whose alarm points
        are all idle and whose values all lie inside every limit (no NaN, all good, all
        floats) raises nothing and leaves only its newest value; state samples that keep the
        machine in its state with its state alarms settled change only their context.
        Everything else — rate rules, values beyond a limit, alarm points in any other
        condition, a state change, every sample of a machine whose comm alarm is not idle —
        is fed sample by sample in time order, as feed() feeds Samples. A batch with a name
        that is not text or a time that is not an int is fed as Samples."""
        sid, ts, value, qual = b.sid, b.ts, b.value, b.quality
        n = len(sid)
        info = self._series_codes()
        try:
            codes = list(map(info.__getitem__, sid))
            usual = n > 0 and set(map(type, ts)) == _INT and min(codes) != _ODD
        except (IndexError, TypeError):  # an id SERIES does not have
            usual = False
        if not usual:
            return self.feed(list(b))
        out: list[Transition] = []
        mkeys = self._mkeys
        # machines whose comm alarm is not idle: every sample's time may matter
        hot = {self._mslot[k] for k, checks in self._stale_checks.items()
               if k in self._mslot and any(c.cond or c.active for c in checks)}
        order = sorted(range(n), key=codes.__getitem__)
        sc = list(map(codes.__getitem__, order))
        one: list[int] = []  # positions fed one by one
        newest: dict[int, int] = {}  # machine slot -> newest time in the batch
        p = 0
        while p < n:
            c = sc[p]
            q = bisect_right(sc, c, p)
            pos = order[p:q]
            p = q
            slot, kind = c >> 2, c & 3
            top = max(map(ts.__getitem__, pos))
            if newest.get(slot, top) <= top:
                newest[slot] = top
            if not kind:
                if slot in hot:
                    one += pos
                continue
            if slot in hot or kind == 3:
                one += pos
                continue
            # by series (one series per machine for the state)
            if kind == 1:
                if not self._idle_state(sid[pos[0]], pos, top, value, qual):
                    one += pos
                continue
            pos.sort(key=sid.__getitem__)
            ss = list(map(sid.__getitem__, pos))
            r, m = 0, len(pos)
            while r < m:
                s = ss[r]
                e = bisect_right(ss, s, r)
                sp = pos[r:e]
                tss = list(map(ts.__getitem__, sp))
                if not self._idle_series(s, sp, tss, max(tss), value, qual):
                    one += sp
                r = e
        if one:
            one.sort()
            one.sort(key=ts.__getitem__)  # time order, arrival order among equal times
            keys, machines = SERIES.keys, SERIES.machine
            good = Quality.GOOD
            for i in one:
                series = keys[sid[i]]
                self._feed_one(machines[sid[i]], series, series[3], value[i], ts[i],
                               _quality(qual[i]) if qual is not None else good, out)
        seen = self._last_seen
        for slot, top in newest.items():
            mkey = mkeys[slot]
            prev = seen.get(mkey)
            if prev is None or top > prev:
                seen[mkey] = top
        return out

    def _idle_series(self, s: int, pos: list[int], tss: list[int], top: int, value: list[Any],
                     qual: Optional[list[Any]]) -> bool:
        """True when this batch's samples of watched series `s` (at positions pos, times tss,
        newest top) can raise, clear or change nothing but the series' last value, which is
        then set as feeding them one by one would set it; False: feed them one by one."""
        lim = self._bulk_limits.get(s, False)
        if lim is False:
            lim = self._bulk_limits[s] = self._limits_of(SERIES.keys[s])
        if lim is None:
            return False
        checks, high, low = lim
        for c in checks:
            if c.cond or c.active or c.suppressed:
                return False
        series = SERIES.keys[s]
        last = self._last_value.get(series)
        if last is not None and top <= last[0]:
            return True  # every one late or a duplicate: none is evaluated
        vals = list(map(value.__getitem__, pos))
        if set(map(type, vals)) != _FLOAT or any(map(math.isnan, vals)) or max(vals) > high or min(vals) < low:
            return False
        if qual is not None:
            qs = list(map(qual.__getitem__, pos))
            if qs.count(0) != len(qs) or set(map(type, qs)) != _INT:
                return False
        # the newest value, first among equal times, is the last one evaluated
        v = vals[tss.index(top)]
        self._last_value[series] = (top, v)
        for c in checks:
            c.value = v
        return True

    def _idle_state(self, s: int, pos: list[int], top: int, value: list[Any], qual: Optional[list[Any]]) -> bool:
        """True when this batch's state samples (series `s`, positions pos, newest top) all
        keep the machine in the state it is in, so that taking them one by one would raise,
        clear, suppress and unsuppress nothing (then done here: the state alarms' context);
        False: feed them one by one."""
        mkey = SERIES.machine[s]
        prev = self._mstate.get(mkey)
        if prev is None:
            return False
        state, since = prev
        if top < since:
            return True  # every one older than the state's start: none is taken
        mapping = self._state_maps[mkey][1]
        try:
            codes = set(map(value.__getitem__, pos))
        except TypeError:  # a code that cannot be hashed
            return False
        if len(codes) > 8 or any(mapping.state(code, False) != state for code in codes):
            return False
        if qual is not None and list(map(qual.__getitem__, pos)).count(2):
            return False  # a bad reading is no state
        masked = self._machine_masked(mkey)
        for c in self._by_machine.get(mkey, ()):
            if c.rule.suppress_in_planned_stop and (c.suppressed if not masked else c.active and not c.suppressed):
                return False  # _apply_masks would (un)suppress it
        checks = self._state_checks.get(mkey, ())
        for c in checks:
            cond = state.value == c.rule.state
            if cond != c.cond or cond != c.active:
                return False  # its duration or off delay may run out at one of these samples
        for c in checks:
            c.extra = {"state": state.value}
        return True

    def _limits_of(self, series: tuple[str, str, str, str]) -> Optional[tuple[list[_Check], float, float]]:
        """A watched series whose alarm points are all analog: its checks, the lowest high
        limit and the highest low limit (a value in between raises none of them while none is
        active); None for a series with a rate rule."""
        checks = self._by_series[series]
        high, low = math.inf, -math.inf
        for c in checks:
            if not isinstance(c.rule, AnalogRule):
                return None
            lim = getattr(c.rule, c.level).limit
            if c.level in ("h", "hh"):
                high = min(high, lim)
            else:
                low = max(low, lim)
        return checks, high, low

    def _analog(self, c: _Check, v: float) -> bool:
        r: AnalogRule = c.rule
        lim = getattr(r, c.level).limit
        high = c.level in ("h", "hh")
        # deadband: once the alarm is raised, the value must come back past the limit by the
        # deadband; before that, the on-delay counts only time spent beyond the limit itself
        if c.active:
            return v > lim - r.deadband if high else v < lim + r.deadband
        return v > lim if high else v < lim

    def _on_state(self, mkey: tuple[str, str, str], code: Any, ts: int, quality: Any, mapping: Any,
                  out: list[Transition]) -> None:
        # the same meaning as the engine and the tiles (gwanje.state.CodeMap): only a bad
        # reading says nothing; an uncertain one still carries the PLC's code
        state = mapping.state(code, quality is Quality.BAD)
        prev = self._mstate.get(mkey)
        if prev is not None and ts < prev[1]:
            return
        if prev is None or prev[0] != state:
            self._mstate[mkey] = (state, ts)
        self._apply_masks(mkey, ts, out)
        since = self._mstate[mkey][1]
        for c in self._state_checks.get(mkey, ()):
            cond = state.value == c.rule.state
            if cond != c.cond:
                c.cond, c.since = cond, since
            c.extra = {"state": state.value}
            self._settle(c, ts, out)

    def tick(self, now: int, oee: Optional[Callable[[str, str], Optional[float]]] = None) -> list[Transition]:
        """Advance time: complete on/off delays, state durations, staleness, OEE checks.
        oee(site, line) returns the line's OEE for the shift so far (0..1) or None (no shift)."""
        out: list[Transition] = []
        if self._started is None:
            self._started = now
        if self.scheduled is not None:
            self._check_schedule(now, out)
        for checks in self._by_series.values():
            for c in checks:
                self._settle(c, now, out)
        for checks in self._state_checks.values():
            for c in checks:
                self._settle(c, now, out)
        for mkey, checks in self._stale_checks.items():
            seen = self._last_seen.get(mkey, self._started)
            for c in checks:
                age = (now - seen) / NS_PER_S
                c.extra = {"age_s": round(age)}
                # a comm alarm restored after a restart stays until the machine is heard from
                cond = age > c.rule.max_age_s or (c.active and mkey not in self._last_seen)
                if cond != c.cond:
                    # the link died when the last sample came, not when we noticed
                    c.cond, c.since = cond, (seen + int(c.rule.max_age_s * NS_PER_S)) if cond else now
                self._settle(c, now, out)
        if oee is not None:
            for (site, line), checks in self._oee_checks.items():
                try:
                    v = oee(site, line)
                    if v is not None:
                        v = float(v)
                except Exception:  # the engine failing says nothing about the line: hold, don't crash
                    continue
                for c in checks:
                    if v is None or v != v:  # no shift (or no figure): no OEE alarm
                        self._step(c, False, now, out)
                        continue
                    c.value = v
                    c.extra = {"oee": v, "target": c.rule.target}
                    self._step(c, v < c.rule.target, now, out)
        return out

    def _check_schedule(self, now: int, out: list[Transition]) -> None:
        for site in self.config.plant.sites:
            for ln in site.lines:
                try:
                    on = bool(self.scheduled(site.id, ln.id, now))  # type: ignore[misc]
                except Exception:  # a broken calendar must not hide alarms: count the line as scheduled
                    on = True
                key = (site.id, ln.id)
                if on == (key not in self._unscheduled):
                    continue
                if on:
                    self._unscheduled.discard(key)
                else:
                    self._unscheduled.add(key)
                for m in ln.machines:
                    self._apply_masks((site.id, ln.id, m.id), now, out)

    def machine_state(self, site: str, line: str, machine: str) -> MachineState:
        st = self._mstate.get((site, line, machine))
        return st[0] if st else MachineState.UNKNOWN
