"""OEE views shared by the OEE page and the shift report: loading a scope (site or line, one
shift) from the engine's derived records, and pure builders (KPI tiles, machine table, loss
bars, reason Pareto, state timeline, CSV rows). Builders take data and return layout; only
`load_scope` reads, through the data layer's shared cache.

Where the numbers come from: a closed shift's `oee_shift` records when all are stored (the
engine wrote them at shift close, or recompute rewrote them); otherwise - the running shift, or
a shift the engine missed - the stored state intervals and minute counts (Engine.from_records),
never raw samples.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

from dash import dcc, html

from gwanje.config import Config, LineDef, Names, SiteDef
from gwanje.engine import Engine, LineOee, intervals_from_events
from gwanje.losses import LOSS_LABELS, UNASSIGNED, Stop, reason_pareto, six_big_losses, stops_of
from gwanje.model import NS_PER_S, Event, MachineState
from gwanje.oee import OeeResult, combine
from gwanje.reasons import ReasonTree
from gwanje.shifts import ShiftInstance
from gwanje.state import StateInterval

from dashboards.data import DataLayer, DataUnavailable
from dashboards.i18n import add_strings, t

_STRINGS = {
    "oee": {"ko": "설비종합효율", "en": "OEE"},
    "oee_short": {"ko": "OEE", "en": "OEE"},
    "availability": {"ko": "시간가동률", "en": "Availability"},
    "performance": {"ko": "성능가동률", "en": "Performance"},
    "quality": {"ko": "양품률", "en": "Quality"},
    "shift_report": {"ko": "교대 보고서", "en": "Shift report"},
    "shift": {"ko": "교대", "en": "Shift"},
    "prev_shift": {"ko": "◀ 이전 교대", "en": "◀ Previous shift"},
    "next_shift": {"ko": "다음 교대 ▶", "en": "Next shift ▶"},
    "current_shift": {"ko": "현재 교대", "en": "Current shift"},
    "live": {"ko": "진행 중", "en": "running"},
    "closed": {"ko": "마감", "en": "closed"},
    "not_worked": {"ko": "비가동일", "en": "not worked"},
    "machine": {"ko": "설비", "en": "Machine"},
    "line": {"ko": "라인", "en": "Line"},
    "run_min": {"ko": "가동(분)", "en": "Run (min)"},
    "planned_min": {"ko": "계획(분)", "en": "Planned (min)"},
    "unknown_min": {"ko": "미확인(분)", "en": "Unknown (min)"},
    "total": {"ko": "총 생산", "en": "Total"},
    "good": {"ko": "양품", "en": "Good"},
    "reject": {"ko": "불량", "en": "Rejects"},
    "flags": {"ko": "확인 필요", "en": "Check"},
    "losses": {"ko": "6대 로스", "en": "Six big losses"},
    "minutes": {"ko": "분", "en": "min"},
    "share_planned": {"ko": "계획시간 대비", "en": "of planned time"},
    "pareto": {"ko": "비가동 사유 파레토", "en": "Downtime reason Pareto"},
    "timeline": {"ko": "상태 타임라인", "en": "State timeline"},
    "output_machine": {"ko": "라인 출력 설비", "en": "Line output machine"},
    "bottleneck": {"ko": "병목 설비", "en": "Bottleneck"},
    "whole_site": {"ko": "전체", "en": "All lines"},
    "whole_line": {"ko": "라인 전체", "en": "Whole line"},
    "stops": {"ko": "정지 내역", "en": "Stops"},
    "no_stops": {"ko": "기록된 정지 없음", "en": "No stops recorded"},
    "source_stored": {"ko": "교대 마감 기록 기준", "en": "From the shift's closing record"},
    "source_records": {"ko": "상태·생산 기록으로 집계 (진행 중)", "en": "Summed from state and count records (so far)"},
    "reason": {"ko": "사유", "en": "Reason"},
    "start": {"ko": "시작", "en": "Start"},
    "duration_min": {"ko": "시간(분)", "en": "Duration (min)"},
    "state": {"ko": "상태", "en": "State"},
    "export_csv": {"ko": "CSV 내보내기", "en": "Export CSV"},
    "saved": {"ko": "저장됨", "en": "Saved"},
    "recompute": {"ko": "원시 데이터로 재계산", "en": "Recompute from raw data"},
    "recomputed": {"ko": "재계산 완료", "en": "Recomputed"},
    "save_failed": {"ko": "저장 실패", "en": "Not saved"},
    "cumulative": {"ko": "누적 %", "en": "Cumulative %"},
    "no_shift": {"ko": "해당 교대 없음", "en": "No such shift"},
    "unassigned": {"ko": "미지정", "en": "Unassigned"},
    "flag_performance_over_100": {"ko": "성능 100% 초과: 기준 사이클타임 설정 확인",
                                  "en": "Performance over 100 %: check the ideal cycle time"},
    "flag_low_coverage": {"ko": "데이터 누락 5% 초과", "en": "Over 5 % of the time without data"},
    "flag_counts_without_run": {"ko": "가동 없이 생산 계수", "en": "Parts counted without running"},
    "flag_counts_inconsistent": {"ko": "양품+불량 ≠ 총생산", "en": "Good + rejects ≠ total"},
    "flag_counter_fault": {"ko": "계수기 이상: 불가능한 증가는 생산에서 제외",
                           "en": "Counter fault: impossible jumps left out of production"},
}
# prefixed so that a page elsewhere adding e.g. "machine" cannot change these labels
add_strings({f"oee:{k}": v for k, v in _STRINGS.items()})


def tr(key: str, lang: str, **fmt: object) -> str:
    """This module's labels (registered under the oee: prefix)."""
    return t(f"oee:{key}", lang, **fmt)

STATE_COLORS = {"running": "#1e8e3e", "idle": "#f9a825", "down": "#d32f2f", "setup": "#1e66d0",
                "planned_stop": "#8a939c", "unknown": "#3a3f44"}
LOOKBACK_NS = 26 * 3600 * NS_PER_S  # an interval open at shift start began at most this long before
_ENGINES: dict[int, tuple[Config, Engine]] = {}


def engine_for(cfg: Config) -> Engine:
    """An engine built from the config (calendar, thresholds); it holds no plant data here."""
    hit = _ENGINES.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = _ENGINES[id(cfg)] = (cfg, Engine(cfg, clock=None))
    return hit[1]


ROLLING = {"last-8h": (8, Names(ko="최근 8시간", en="Last 8 h")), "last-24h": (24, Names(ko="최근 24시간", en="Last 24 h"))}


def resolve_shift(eng: Engine, key: Optional[str], now_ns: int) -> Optional[ShiftInstance]:
    """The shift named by key ('2026-11-24/day'), a rolling window ('last-8h', 'last-24h')
    ending now, else the shift running now (or the last one)."""
    if isinstance(key, str) and key in ROLLING:
        hours, name = ROLLING[key]
        start = now_ns - hours * 3600 * NS_PER_S
        return ShiftInstance(key, name, eng.calendar.local_date(start), start, now_ns, True, ())
    if isinstance(key, str) and key:
        return eng.calendar.shift_by_key(key)
    cur = eng.calendar.shift_at(now_ns)
    if cur is not None:
        return cur
    past = eng.calendar.shifts_between(now_ns - 86400 * NS_PER_S, now_ns)
    return past[-1] if past else None


def neighbour_shift(eng: Engine, sh: ShiftInstance, step: int) -> Optional[ShiftInstance]:
    if step < 0:
        prev = [s for s in eng.calendar.shifts_between(sh.start_ns - 3 * 86400 * NS_PER_S, sh.start_ns)
                if s.end_ns <= sh.start_ns]
        return prev[-1] if prev else None
    nxt = [s for s in eng.calendar.shifts_between(sh.end_ns, sh.end_ns + 3 * 86400 * NS_PER_S)
           if s.start_ns >= sh.end_ns]
    return nxt[0] if nxt else None


@dataclass
class ScopeData:
    site: SiteDef
    line: Optional[LineDef]
    shift: ShiftInstance
    now_ns: int
    live: bool  # the shift is still running
    source: str  # "stored" (oee_shift records) or "records" (state + counts records)
    machines: dict[tuple[str, str, str], OeeResult]
    lines: dict[tuple[str, str], LineOee]
    scope_result: Optional[OeeResult]  # the line's (its output machine) or the site's (pooled)
    intervals: dict[tuple[str, str, str], list[StateInterval]] = field(default_factory=dict)
    stops: list[Stop] = field(default_factory=list)
    reasons: list[Event] = field(default_factory=list)
    focus: Optional[str] = None  # one machine of the line (focus_machine), else None

    @property
    def end_ns(self) -> int:
        return min(self.shift.end_ns, self.now_ns)


def load_scope(cfg: Config, layer: DataLayer, site: str, line: Optional[str], shift_key: Optional[str],
               now_ns: Optional[int] = None) -> Optional[ScopeData]:
    """Everything the OEE page and shift report show for one site (or line) and shift; None
    when the site, line or shift does not exist. Raises DataUnavailable when the store fails."""
    sdef = cfg.site(site) if isinstance(site, str) else None
    ldef = cfg.line(site, line) if sdef is not None and isinstance(line, str) and line else None
    if sdef is None or (line and ldef is None):
        return None
    eng = engine_for(cfg)
    now = layer.clock() if now_ns is None else now_ns
    # every display asking within one cache TTL shares one load: the running shift is computed
    # as of the start of the TTL the clock is in (the trends round their window ends alike),
    # so the key and the figures are the same for all of them
    ttl_ns = max(1, int(layer.cache.ttl_s * NS_PER_S))
    now -= now % ttl_ns
    sh = resolve_shift(eng, shift_key, now)
    if sh is None:
        return None
    # the running shift refreshes with the cache TTL; a closed shift is the same every time
    bucket = now if sh.end_ns >= now else sh.end_ns
    key = ("oee-scope", sdef.id, ldef.id if ldef else "", sh.key, bucket)
    try:
        return layer.cache.get(key, lambda: _load(cfg, layer, eng, sdef, ldef, sh, now))
    except Exception as e:  # any store failure: the page says so, the server lives on
        raise DataUnavailable(f"{type(e).__name__}: {e}") from e


def focus_machine(scope: ScopeData, machine: Any) -> Optional[ScopeData]:
    """The scope narrowed to one machine of its line (its own figures, timeline, stops and
    Pareto); None when the line has no such machine."""
    key = next((k for k in scope.machines if k[2] == machine), None) if isinstance(machine, str) else None
    if key is None:
        return None
    return dataclasses.replace(
        scope, machines={key: scope.machines[key]}, scope_result=scope.machines[key],
        intervals={key: scope.intervals.get(key, [])}, stops=[s for s in scope.stops if s.machine == machine],
        reasons=[e for e in scope.reasons if e.machine == machine], focus=machine)


def scope_from_params(cfg: Config, layer: DataLayer, site: Any, line: Any, shift: Any, machine: Any = None
                      ) -> tuple[Optional[ScopeData], bool]:
    """(scope, store ok) from URL parameters, which may hold anything: a non-string site means
    the first site, a non-string line the whole site, a non-string shift the current one; a
    machine narrows a line's scope to that machine (None if the line has no such machine)."""
    site_id = site if isinstance(site, str) and site else cfg.plant.sites[0].id
    try:
        scope = load_scope(cfg, layer, site_id, line if isinstance(line, str) else None,
                           shift if isinstance(shift, str) else None)
    except DataUnavailable:
        return None, False
    if scope is not None and machine and scope.line is not None:
        scope = focus_machine(scope, machine)
    return scope, True


def _load(cfg: Config, layer: DataLayer, eng: Engine, sdef: SiteDef, ldef: Optional[LineDef],
          sh: ShiftInstance, now: int) -> ScopeData:
    store = layer.store
    line_id = ldef.id if ldef else None
    wanted = [m.key for m in cfg.machines() if m.site == sdef.id and (line_id is None or m.line == line_id)]
    states = store.events("state", sh.start_ns - LOOKBACK_NS, sh.end_ns, sdef.id, line_id, limit=200_000)
    by_machine: dict[tuple[str, str, str], list[Event]] = {}
    for e in states:
        by_machine.setdefault((e.site, e.line, e.machine), []).append(e)
    live = sh.end_ns >= now  # a rolling window ends now and is always live
    stored = {} if live else {(e.site, e.line, e.machine): e for e in
                              store.events("oee_shift", sh.start_ns, sh.start_ns + 1, sdef.id, line_id, key=sh.key)}
    snap_seen: dict[tuple[str, str, str], Optional[int]] = {}
    if live:
        # newest sample per machine, to end the open interval of a machine that went silent;
        # bounded to the window so it never scans the whole history
        for smp in store.latest(sdef.id, line_id, None, since_ns=sh.start_ns - eng.timeout_ns):
            k = (smp.site, smp.line, smp.machine)
            snap_seen[k] = max(snap_seen.get(k) or 0, smp.ts)
        for k in wanted:
            # no sample since the window began: silent throughout, the open record ends at its start
            snap_seen.setdefault(k, sh.start_ns - eng.timeout_ns)
    if not live and all(k in stored for k in wanted):
        machines = {k: OeeResult.from_dict(stored[k].data) for k in wanted}
        source = "stored"
    else:
        counts = store.events("counts", sh.start_ns, sh.end_ns, sdef.id, line_id, limit=200_000)
        snap = eng.from_records(states, counts, sh.start_ns, sh.end_ns, eng.records_horizon(now, snap_seen) if live
                                else now, snap_seen)
        machines = {k: snap.machines[k] for k in wanted}
        source = "records"
    lines, sites = eng.aggregate(machines)
    if ldef is not None:
        lo = lines.get((sdef.id, ldef.id))
        scope_result = lo.result if lo else None
    else:
        outs = [lo.result for lo in lines.values() if lo.result is not None]
        scope_result = combine(outs)
    stop_end = min(sh.end_ns, now)
    intervals, stops = {}, []
    for k in wanted:
        ivs = intervals_from_events(by_machine.get(k, []), stop_end, snap_seen.get(k), eng.timeout_ns)
        intervals[k] = [c for c in (iv.clip(sh.start_ns, stop_end) for iv in ivs) if c]
        stops += stops_of(k[2], ivs, sh.start_ns, stop_end, min_s=eng.small_stop_s)
    reasons = store.events("downtime_reason", sh.start_ns - LOOKBACK_NS, sh.end_ns, sdef.id, line_id)
    return ScopeData(sdef, ldef, sh, now, live, source, machines, lines, scope_result, intervals, stops, reasons)


# ------------------------------------------------------------------------------ builders
def fmt_pct(x: Optional[float]) -> str:
    """A ratio as a percentage with one decimal; '—' when it does not exist (never 0 %)."""
    return "—" if x is None else f"{x * 100:.1f} %"


def fmt_min(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def local_time(ts_ns: int, tz: str, fmt: str = "%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_S, ZoneInfo(tz)).strftime(fmt)


def shift_title(sh: ShiftInstance, tz: str, lang: str, live: bool) -> str:
    if sh.shift_id in ROLLING:
        return f"{sh.name.get(lang)} · {local_time(sh.start_ns, tz)}–{local_time(sh.end_ns, tz)}"
    status = tr("not_worked", lang) if not sh.working else tr("live", lang) if live else tr("closed", lang)
    return (f"{sh.day.isoformat()} {sh.name.get(lang)} · {local_time(sh.start_ns, tz, '%H:%M')}–"
            f"{local_time(sh.end_ns, tz, '%H:%M')} ({status})")


def kpi_tiles(r: Optional[OeeResult], lang: str, extra: Optional[list[Any]] = None) -> html.Div:
    """Big OEE / A / P / Q numbers; flags shown in words below them."""
    vals = [("oee_short", r.oee if r else None), ("availability", r.availability if r else None),
            ("performance", r.performance if r else None), ("quality", r.quality if r else None)]
    tiles = [html.Div([html.Div(tr(k, lang), className="gw-kpi-label"),
                       html.Div(fmt_pct(v), className="gw-kpi-value")],
                      className=f"gw-kpi gw-kpi-{k}" + (" gw-kpi-over" if k == "performance" and v and v > 1 else ""))
             for k, v in vals]
    flags = [html.Li(tr(f"flag_{f}", lang), className=f"gw-flag gw-flag-{f}") for f in (r.flags if r else [])]
    return html.Div([html.Div(tiles, className="gw-kpis"), *(extra or []),
                     html.Ul(flags, className="gw-flags") if flags else None], className="gw-kpi-block")


def apq_line(r: Optional[OeeResult], lang: str) -> html.Div:
    """One compact line "OEE 78.0 % · A 90.0 % · P 88.9 % · Q 97.5 %" for an overview tile or a
    line header (data from load_scope(...).lines / .machines)."""
    parts = [("oee_short", r.oee if r else None), ("availability", r.availability if r else None),
             ("performance", r.performance if r else None), ("quality", r.quality if r else None)]
    short = {"oee_short": "OEE", "availability": "A", "performance": "P", "quality": "Q"}
    return html.Div([html.Span(f"{short[k]} {fmt_pct(v)}", title=tr(k, lang), className=f"gw-apq-{k}")
                     for k, v in parts], className="gw-apq" + (" gw-apq-flagged" if r and r.flags else ""))


def machine_name(cfg: Config, key: tuple[str, str, str], lang: str) -> str:
    spec = cfg.machine(*key)
    return spec.definition.name.get(lang) if spec else key[2]


def machine_rows(cfg: Config, scope: ScopeData, lang: str) -> list[dict[str, Any]]:
    """One row per machine: what the table shows and the CSV exports."""
    rows = []
    for k, r in scope.machines.items():
        rows.append({
            "site": k[0], "line": k[1], "machine": k[2], "name": machine_name(cfg, k, lang),
            "shift": scope.shift.key, "oee": r.oee, "availability": r.availability,
            "performance": r.performance, "quality": r.quality,
            "planned_min": r.planned_s / 60, "run_min": r.run_s / 60, "unknown_min": r.unknown_s / 60,
            "total": r.total, "good": r.good, "reject": r.reject, "flags": " ".join(r.flags),
            **{f"loss_{x.name}_min": x.minutes for x in six_big_losses(r)},
        })
    return rows


def machine_table(cfg: Config, scope: ScopeData, lang: str,
                  link: Optional[Callable[[dict[str, Any]], str]] = None) -> html.Table:
    """One row per machine; link(row) -> href makes the machine's name a link."""
    head = ["machine", "oee_short", "availability", "performance", "quality", "planned_min", "run_min",
            "unknown_min", "total", "good", "reject", "flags"]
    body = []
    for row in machine_rows(cfg, scope, lang):
        name = dcc.Link(row["name"], href=link(row)) if link else row["name"]
        body.append(html.Tr([
            html.Td(name), html.Td(fmt_pct(row["oee"])), html.Td(fmt_pct(row["availability"])),
            html.Td(fmt_pct(row["performance"])), html.Td(fmt_pct(row["quality"])),
            html.Td(f"{row['planned_min']:.1f}"), html.Td(f"{row['run_min']:.1f}"),
            html.Td(f"{row['unknown_min']:.1f}"), html.Td(str(row["total"])), html.Td(str(row["good"])),
            html.Td(str(row["reject"])),
            html.Td(", ".join(tr(f"flag_{f}", lang) for f in row["flags"].split()) if row["flags"] else ""),
        ], className="gw-oee-row"))
    return html.Table([html.Thead(html.Tr([html.Th(tr(h, lang)) for h in head])), html.Tbody(body)],
                      className="gw-table gw-oee-table")


def lines_table(cfg: Config, scope: ScopeData, lang: str,
                link: Optional[Callable[[str], str]] = None) -> Optional[html.Table]:
    """For a site: each line's OEE (its output machine's) and its bottleneck; link(line id)."""
    if scope.line is not None:
        return None
    rows = []
    for ln in scope.site.lines:
        lo = scope.lines.get((scope.site.id, ln.id))
        r = lo.result if lo else None
        neck = machine_name(cfg, (scope.site.id, ln.id, lo.bottleneck), lang) if lo and lo.bottleneck else "—"
        name = dcc.Link(ln.name.get(lang), href=link(ln.id)) if link else ln.name.get(lang)
        rows.append(html.Tr([html.Td(name), html.Td(fmt_pct(r.oee if r else None)),
                             html.Td(fmt_pct(r.availability if r else None)),
                             html.Td(fmt_pct(r.performance if r else None)),
                             html.Td(fmt_pct(r.quality if r else None)), html.Td(neck)], className="gw-line-row"))
    head = [tr("line", lang), "OEE", tr("availability", lang), tr("performance", lang), tr("quality", lang),
            tr("bottleneck", lang)]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      className="gw-table gw-lines-table")


def loss_figure(r: Optional[OeeResult], lang: str) -> dict[str, Any]:
    """Horizontal bars of the six big losses (+ other stops) in minutes, share in the label."""
    losses = six_big_losses(r) if r else []
    return {
        "data": [{
            "type": "bar", "orientation": "h",
            "y": [LOSS_LABELS[x.name][lang] for x in losses], "x": [round(x.minutes, 1) for x in losses],
            "text": [f"{x.minutes:.1f} {tr('minutes', lang)} · {fmt_pct(x.share)}" for x in losses],
            "textposition": "auto", "marker": {"color": "#d32f2f"}, "hoverinfo": "text",
        }],
        "layout": {"margin": {"l": 140, "r": 10, "t": 10, "b": 30}, "height": 260,
                   "yaxis": {"autorange": "reversed"}, "xaxis": {"title": {"text": tr("minutes", lang)}}},
    }


def pareto_data(cfg: Config, scope: ScopeData) -> list[tuple[str, float, int]]:
    return reason_pareto(scope.stops, scope.reasons)


def reason_label(tree: ReasonTree, reason: str, lang: str) -> str:
    return tr("unassigned", lang) if reason == UNASSIGNED else tree.label(reason, lang)


def pareto_figure(pareto: list[tuple[str, float, int]], tree: ReasonTree, lang: str) -> dict[str, Any]:
    if not pareto:  # say so instead of drawing empty axes
        return {"data": [], "layout": {"height": 280, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                       "annotations": [{"text": tr("no_stops", lang), "showarrow": False,
                                                        "font": {"size": 16}}]}}
    total = sum(m for _, m, _ in pareto) or 1.0
    cum, acc = [], 0.0
    for _, m, _ in pareto:
        acc += m
        cum.append(round(acc / total * 100, 1))
    labels = [reason_label(tree, r, lang) for r, _, _ in pareto]
    return {
        "data": [
            {"type": "bar", "x": labels, "y": [round(m, 1) for _, m, _ in pareto], "name": tr("minutes", lang),
             "marker": {"color": "#1565c0"}},
            {"type": "scatter", "mode": "lines+markers", "x": labels, "y": cum, "yaxis": "y2",
             "name": tr("cumulative", lang), "line": {"color": "#f9a825"}},
        ],
        "layout": {"margin": {"l": 40, "r": 40, "t": 10, "b": 80}, "height": 280, "showlegend": False,
                   "yaxis": {"title": {"text": tr("minutes", lang)}},
                   "yaxis2": {"overlaying": "y", "side": "right", "range": [0, 105], "ticksuffix": "%"}},
    }


def timeline_figure(cfg: Config, scope: ScopeData, lang: str) -> dict[str, Any]:
    """One row per machine, one coloured bar per state interval (plant-local time axis)."""
    tz = cfg.plant.timezone
    traces = []
    for st in MachineState:
        base, x, y, text = [], [], [], []
        for k, ivs in scope.intervals.items():
            for iv in ivs:
                if iv.state != st:
                    continue
                base.append(local_time(iv.start_ns, tz, "%Y-%m-%d %H:%M:%S"))
                x.append(iv.duration_ns / 1e6)  # ms: plotly's unit on a date axis
                y.append(machine_name(cfg, k, lang))
                text.append(f"{tr('state_' + st.value, lang)} {local_time(iv.start_ns, tz, '%H:%M:%S')} · "
                            f"{iv.duration_ns / NS_PER_S / 60:.1f} {tr('minutes', lang)}")
        traces.append({"type": "bar", "orientation": "h", "base": base, "x": x, "y": y,
                       "name": t("state." + st.value, lang), "marker": {"color": STATE_COLORS[st.value]},
                       "hovertext": text, "hoverinfo": "text"})
    start = local_time(scope.shift.start_ns, tz, "%Y-%m-%d %H:%M:%S")
    end = local_time(scope.shift.end_ns, tz, "%Y-%m-%d %H:%M:%S")
    rows = max(1, len(scope.intervals))
    return {"data": traces,
            "layout": {"barmode": "overlay", "height": 60 + 28 * rows, "margin": {"l": 120, "r": 10, "t": 10, "b": 30},
                       "xaxis": {"type": "date", "range": [start, end]}, "yaxis": {"autorange": "reversed"},
                       "legend": {"orientation": "h", "y": -0.2}, "uirevision": scope.shift.key}}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV (UTF-8 with BOM so Excel opens Korean names correctly). Text cells that a
    spreadsheet would run as a formula are prefixed with a quote."""
    if not rows:
        return "\ufeff"
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    return "\ufeff" + out.getvalue()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def graph(fig: dict[str, Any], ident: str) -> dcc.Graph:
    # a responsive graph takes its container's height: give it the figure's, or it collapses
    height = fig.get("layout", {}).get("height", 300)
    return dcc.Graph(id=ident, figure=fig, config={"displaylogo": False, "responsive": True},
                     style={"height": f"{height}px"})
