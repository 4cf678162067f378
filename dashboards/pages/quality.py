"""`/quality?site=..&line=..&machine=..&char=..&hours=..` — quality AI (docs/quality.md): per
characteristic the X / X̄ chart with CL, UCL, LCL, faint ±1σ/±2σ zones and rule violations
marked red, the R / MR chart below, one machine at a time (default: the machine with the
most recent violation); Cp/Cpk/Pp/Ppk per characteristic and machine; anomaly score and
reject risk per machine with their trend and the signals that drove them; the quality alarms
(SPC, anomaly, risk) with their drivers; the models' status. Default window 8 h (hours 1..72).

ISA-101 calm: grey for normal, colour only where something is abnormal. Figures are plain
dicts; trends in the tables are small inline SVGs (no plotly per machine)."""
from __future__ import annotations

from typing import Any, Optional, Sequence
from urllib.parse import quote

import dash
from dash import Input, Output, State, callback, dcc, html

from alerts.lifecycle import AlarmState
from dashboards import context
from dashboards.alarm_banner import active_alarms, alarm_href, alarm_source
from dashboards.components.lots import local, machine_name, plot_time
from dashboards.components.page import render, view
from dashboards.components.views import GRAPH_CONFIG
from dashboards.data import DataUnavailable
from dashboards.i18n import add_strings, normalize_lang, t
from dashboards.quality_data import (RULE_NAMES, CharDef, MachineKey, QualityData, QWindow, SpcPoint, capability,
                                     characteristics, class_signals, cpk_level, default_machine, latest_scored,
                                     load_quality_data, machine_class, machines_of_class, parse_hours, quality_raw,
                                     risk_alarm_at, risk_classes, spc_rule_of)

add_strings({
    "quality:quality": {"ko": "품질", "en": "Quality"},
    "quality:title": {"ko": "품질 AI: SPC · 이상 탐지 · 불량 위험", "en": "Quality AI: SPC, anomalies, reject risk"},
    "quality:spc": {"ko": "SPC 관리도", "en": "SPC charts"},
    "quality:capability": {"ko": "공정 능력 (Cp · Cpk · Pp · Ppk)", "en": "Process capability (Cp, Cpk, Pp, Ppk)"},
    "quality:anomaly": {"ko": "이상 점수 (1.0 = 임계)", "en": "Anomaly score (1.0 = threshold)"},
    "quality:risk": {"ko": "불량 위험", "en": "Reject risk"},
    "quality:risk_col": {"ko": "불량 위험", "en": "Reject risk"},
    "quality:detections": {"ko": "품질 알람 (탐지 내역)", "en": "Quality alarms (detections)"},
    "quality:models": {"ko": "모델 상태", "en": "Model status"},
    "quality:window": {"ko": "최근 {h}시간", "en": "last {h} h"},
    "quality:machine": {"ko": "설비", "en": "Machine"},
    "quality:characteristic": {"ko": "품질 특성", "en": "Characteristic"},
    "quality:points": {"ko": "점 수", "en": "Points"},
    "quality:mean": {"ko": "평균", "en": "Mean"},
    "quality:sigma_w": {"ko": "σ (군내)", "en": "σ within"},
    "quality:sigma_o": {"ko": "σ (전체)", "en": "σ overall"},
    "quality:spec": {"ko": "규격", "en": "Spec"},
    "quality:score": {"ko": "이상 점수", "en": "Score"},
    "quality:trend": {"ko": "추이", "en": "Trend"},
    "quality:drivers": {"ko": "주요 신호", "en": "Driving signals"},
    "quality:top3": {"ko": "기여 신호 상위 3", "en": "Top 3 contributing signals"},
    "quality:at": {"ko": "시각", "en": "At"},
    "quality:time": {"ko": "발생", "en": "Raised"},
    "quality:rule": {"ko": "규칙", "en": "Rule"},
    "quality:state": {"ko": "상태", "en": "State"},
    "quality:kind": {"ko": "종류", "en": "Kind"},
    "quality:class": {"ko": "설비 종류", "en": "Class"},
    "quality:version": {"ko": "버전", "en": "Version"},
    "quality:trained": {"ko": "학습 시각", "en": "Trained at"},
    "quality:windows": {"ko": "학습 구간 수", "en": "Windows"},
    "quality:auc": {"ko": "AUC", "en": "AUC"},
    "quality:precision": {"ko": "알람 기준 정밀도", "en": "Precision at threshold"},
    "quality:kind.anomaly": {"ko": "이상 탐지", "en": "Anomaly"},
    "quality:kind.risk": {"ko": "불량 위험", "en": "Reject risk"},
    "quality:kind.spc": {"ko": "SPC", "en": "SPC"},
    "quality:rule_n": {"ko": "규칙 {k}", "en": "rule {k}"},
    "quality:violation": {"ko": "규칙 위반", "en": "Rule violation"},
    "quality:x_chart": {"ko": "개별값 X", "en": "Individuals X"},
    "quality:xbar_chart": {"ko": "평균 X̄", "en": "Mean X̄"},
    "quality:mr_chart": {"ko": "이동범위 MR", "en": "Moving range MR"},
    "quality:r_chart": {"ko": "범위 R", "en": "Range R"},
    "quality:baseline_mark": {"ko": "기준 구간", "en": "baseline"},
    "quality:no_chars": {"ko": "품질 특성이 없습니다: config/quality.yaml의 characteristics를 확인하세요",
                         "en": "No quality characteristics: see characteristics in config/quality.yaml"},
    "quality:no_machines": {"ko": "이 범위에 {cls} 설비가 없습니다", "en": "No {cls} machine in this scope"},
    "quality:no_points_imr": {"ko": "아직 SPC 점이 없습니다: 기준 관리한계에 부품 {n}개가 필요합니다",
                              "en": "No SPC points yet: the baseline needs {n} parts"},
    "quality:no_points_xbar": {"ko": "아직 SPC 점이 없습니다: 기준 관리한계에 부분군 {n}개 (각 {k}개 부품)가 필요합니다",
                               "en": "No SPC points yet: the baseline needs {n} subgroups of {k} parts"},
    "quality:baseline_progress": {"ko": "관리한계 계산 중: 기준 {got}/{n}점",
                                  "en": "Control limits being computed: baseline {got} of {n} points"},
    "quality:no_cap": {"ko": "SPC 점이 없어 공정 능력을 계산할 수 없습니다",
                       "en": "No SPC points in the window: no capability yet"},
    "quality:no_windows": {"ko": "아직 품질 구간 기록이 없습니다: collect가 설비마다 {s}초마다 하나씩 씁니다",
                           "en": "No quality windows yet: collect writes one per machine every {s} s"},
    "quality:no_anomaly_model": {"ko": "아직 이상 탐지 모델이 없습니다: 첫 모델은 안정 구간 {n}개가 필요합니다",
                                 "en": "No anomaly model yet: the first needs {n} settled windows"},
    "quality:no_risk_model": {"ko": "아직 불량 위험 모델이 없습니다: 첫 모델은 안정 구간 {n}개가 필요합니다",
                              "en": "No reject-risk model yet: the first needs {n} settled windows"},
    "quality:not_scored": {"ko": "미평가 (안정화 전)", "en": "not scored (not settled)"},
    "quality:no_detections": {"ko": "최근 {h}시간 품질 알람 없음", "en": "No quality alarms in the last {h} h"},
    "quality:no_models": {"ko": "아직 학습된 모델이 없습니다: 안정 구간 {n}개가 쌓이면 {h}시간마다 학습합니다",
                          "en": "No model trained yet: the trainer runs every {h} h once {n} settled windows are stored"},
    "quality:alarm_link": {"ko": "알람", "en": "Alarm"},
    "quality:all_machines": {"ko": "전체", "en": "All"},
})

dash.register_page(__name__, path="/quality", title="Gwanje", name="quality",
                   nav={"key": "quality:quality", "order": 27})

REFRESH_MS = 30_000
HOURS_CHOICES = (1, 8, 24, 72)
GREY, GREY_LIGHT, RED, AMBER = "#52606d", "#9aa5b1", "#d32f2f", "#f9a825"


def quality_href(v: Any, key: Optional[MachineKey] = None, **params: Any) -> str:
    """/quality for a machine (site, line, machine) with the other params."""
    q = dict(params)
    if key is not None:
        q.update(site=key[0], line=key[1], machine=key[2])
    return v.href("/quality", **q)


def signal_name(cfg: Any, key: MachineKey, sig: str, lang: str) -> str:
    spec = cfg.machine(*key)
    sdef = spec.signal(sig) if spec is not None else None
    return sdef.name.get(lang) if sdef is not None else sig


def short_machine(cfg: Any, key: MachineKey, lang: str) -> str:
    spec = cfg.machine(*key)
    return spec.definition.name.get(lang) if spec is not None else "/".join(key)


def fmt(v: Optional[float], digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _digits(c: CharDef) -> int:
    lim = [x for x in (c.lsl, c.usl, c.target) if x is not None]
    scale = max((abs(x) for x in lim), default=1.0)
    return 3 if scale < 100 else 2


# ----------------------------------------------------------------------------- SPC chart
def rule_text(rules: Sequence[int], lang: str) -> str:
    return "<br>".join(f"{t('quality:rule_n', lang, k=k)}: {RULE_NAMES.get(k, {}).get(lang, '')}" for k in rules)


def spc_figure(c: CharDef, points: Sequence[SpcPoint], tz: str, lang: str, dark: bool = False) -> dict[str, Any]:
    """X / X̄ chart (top) and R / MR chart (bottom) of one machine's points, a dict figure."""
    x = [plot_time(p.ts, tz) for p in points]
    xs = [p.x for p in points]
    zs = [p.zone_sigma for p in points]

    def band(k: float, sign: int) -> list[Optional[float]]:
        return [p.cl + sign * k * z if p.cl is not None and z is not None else None for p, z in zip(points, zs)]

    lim = {"mode": "lines", "hoverinfo": "skip", "showlegend": False, "line": {"shape": "hv"}}
    traces: list[dict[str, Any]] = []
    # faint zones: ±2σ, then ±1σ on top of it (fill between a pair of invisible lines)
    for k, alpha in ((2, 0.05), (1, 0.06)):
        traces.append({**lim, "type": "scatter", "x": x, "y": band(k, 1), "line": {"width": 0, "shape": "hv"},
                       "name": f"+{k}σ"})
        traces.append({**lim, "type": "scatter", "x": x, "y": band(k, -1), "line": {"width": 0, "shape": "hv"},
                       "fill": "tonexty", "fillcolor": f"rgba(82,96,109,{alpha})", "name": f"±{k}σ"})
    for name, ys, dash_ in (("UCL", [p.ucl for p in points], "dash"), ("CL", [p.cl for p in points], "solid"),
                            ("LCL", [p.lcl for p in points], "dash")):
        traces.append({**lim, "type": "scatter", "x": x, "y": ys, "name": name,
                       "line": {"color": GREY_LIGHT if name != "CL" else GREY, "width": 1.2, "dash": dash_,
                                "shape": "hv"}})
    for name, val in (("LSL", c.lsl), ("USL", c.usl)):
        if val is not None and x:
            traces.append({**lim, "type": "scatter", "x": [x[0], x[-1]], "y": [val, val], "name": name,
                           "line": {"color": "#cbd2d9" if dark else "#3e4c59", "width": 1, "dash": "dot"}})
    chart_name = t("quality:x_chart" if c.chart == "imr" else "quality:xbar_chart", lang)
    traces.append({"type": "scatter", "mode": "lines+markers", "x": x, "y": xs, "name": chart_name,
                   "line": {"color": GREY, "width": 1}, "marker": {"color": GREY, "size": 5},
                   "hovertemplate": "%{x|%H:%M:%S}<br>%{y:.4f}<extra></extra>"})
    viol = [i for i, p in enumerate(points) if any(k != 9 for k in p.rules) and p.x is not None]
    traces.append({"type": "scatter", "mode": "markers", "name": t("quality:violation", lang),
                   "x": [x[i] for i in viol], "y": [xs[i] for i in viol],
                   "customdata": [rule_text([k for k in points[i].rules if k != 9], lang) for i in viol],
                   "marker": {"color": RED, "size": 11, "symbol": "circle", "line": {"color": "#fff", "width": 1}},
                   "hovertemplate": "%{x|%H:%M:%S}<br>%{y:.4f}<br>%{customdata}<extra></extra>",
                   "meta": "violations"})
    rs = [p.r for p in points]
    r_name = t("quality:mr_chart" if c.chart == "imr" else "quality:r_chart", lang)
    for name, ys, dash_ in (("R UCL", [p.r_ucl for p in points], "dash"), ("R CL", [p.r_cl for p in points], "solid")):
        traces.append({**lim, "type": "scatter", "x": x, "y": ys, "name": name, "yaxis": "y2",
                       "line": {"color": GREY_LIGHT if "UCL" in name else GREY, "width": 1.2, "dash": dash_,
                                "shape": "hv"}})
    traces.append({"type": "scatter", "mode": "lines+markers", "x": x, "y": rs, "name": r_name, "yaxis": "y2",
                   "line": {"color": GREY, "width": 1}, "marker": {"color": GREY, "size": 4},
                   "hovertemplate": "%{x|%H:%M:%S}<br>%{y:.4f}<extra></extra>"})
    rv = [i for i, p in enumerate(points) if 9 in p.rules and p.r is not None]
    traces.append({"type": "scatter", "mode": "markers", "name": t("quality:violation", lang) + " R",
                   "x": [x[i] for i in rv], "y": [rs[i] for i in rv], "yaxis": "y2",
                   "customdata": [rule_text([9], lang) for _ in rv],
                   "marker": {"color": RED, "size": 10, "line": {"color": "#fff", "width": 1}},
                   "hovertemplate": "%{x|%H:%M:%S}<br>%{y:.4f}<br>%{customdata}<extra></extra>",
                   "meta": "r_violations"})
    fg = "#e8edf2" if dark else "#1f2933"
    grid = "#2c3640" if dark else "#e4e7eb"
    return {"data": traces, "layout": {
        "height": 380 if not dark else 440, "margin": {"l": 60, "r": 16, "t": 8, "b": 36},
        "showlegend": False, "hovermode": "closest",
        "xaxis": {"type": "date", "anchor": "y2", "gridcolor": grid, "automargin": True},
        "yaxis": {"domain": [0.36, 1.0], "gridcolor": grid, "title": {"text": chart_name, "font": {"size": 12}},
                  "automargin": True},
        "yaxis2": {"domain": [0.0, 0.26], "gridcolor": grid, "title": {"text": r_name, "font": {"size": 12}},
                   "automargin": True, "rangemode": "tozero"},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": fg, "size": 15 if dark else 12, "family": "Noto Sans CJK KR, Noto Sans KR, sans-serif"},
        "uirevision": c.id,
    }}


def spc_panel(v: Any, c: CharDef, qd: QualityData, machines: list[MachineKey], chosen: Optional[MachineKey],
              hours: int) -> html.Section:
    cfg, lang = v.config, v.lang
    head = html.H3([c.label(lang), html.Span(f" · {c.signal} · {c.chart.upper()}"
                                             + (f" (n={c.subgroup})" if c.chart == "xbar_r" else ""),
                                             className="gw-note")])
    if not machines:
        return html.Section([head, html.P(t("quality:no_machines", lang, cls=c.klass), className="gw-note")],
                            className="gw-panel gw-q-spc", id=f"spc-{c.id}")
    pts_by = qd.spc.get(c.id, {})
    key = chosen if chosen in machines else default_machine(pts_by, machines)
    chips: list[Any] = []
    lines = list(dict.fromkeys(m[:2] for m in machines))
    for m in machines:
        if len(lines) > 1 and (not chips or machines[machines.index(m) - 1][:2] != m[:2]):
            ln = cfg.line(*m[:2])  # machines of several lines: each line's chips after its name
            chips.append(html.Span(ln.name.get(lang) if ln else m[1], className="gw-q-chip-line"))
        pts = pts_by.get(m, [])
        flagged = any(p.rules for p in pts)
        chips.append(dcc.Link(short_machine(cfg, m, lang) + (" ●" if flagged else ""),
                              href=quality_href(v, m, char=c.id, hours=str(hours)),
                              className="gw-chip" + (" gw-chip-on" if m == key else "")
                              + (" gw-q-chip-flag" if flagged else ""),
                              id=f"spc-pick-{c.id}-{m[2]}"))
    pts = pts_by.get(key, []) if key else []
    body: list[Any] = [head, html.Div(chips, className="gw-chips gw-q-chips")]
    if not pts:
        msg = (t("quality:no_points_imr", lang, n=c.baseline) if c.chart == "imr"
               else t("quality:no_points_xbar", lang, n=c.baseline, k=c.subgroup))
        body.append(html.P(msg, className="gw-q-empty", id=f"spc-empty-{c.id}"))
    else:
        if pts[-1].baseline or pts[-1].ucl is None:
            got = sum(1 for p in pts if p.baseline)
            body.append(html.P(t("quality:baseline_progress", lang, got=got, n=c.baseline), className="gw-note",
                               id=f"spc-baseline-{c.id}"))
        fig = spc_figure(c, pts, cfg.plant.timezone, lang, v.kiosk)
        body.append(dcc.Graph(id=f"spc-graph-{c.id}", figure=fig, config=GRAPH_CONFIG, className="gw-q-graph",
                              style={"height": f"{fig['layout']['height']}px"}))
    return html.Section(body, className="gw-panel gw-q-spc", id=f"spc-{c.id}")


# ----------------------------------------------------------------------------- tables
def capability_table(v: Any, chars: Sequence[CharDef], qd: QualityData, scope: dict[str, list[MachineKey]]) -> Any:
    lang, cfg = v.lang, v.config
    cols = ("quality:characteristic", "quality:machine", "quality:points", "quality:mean", "quality:sigma_w",
            "quality:sigma_o", "Cp", "Cpk", "Pp", "Ppk")
    head = html.Thead(html.Tr([html.Th(t(k, lang) if k.startswith("quality:") else k) for k in cols]))
    trs = []
    for c in chars:
        d = _digits(c)
        for m in scope.get(c.id, []):
            pts = qd.spc.get(c.id, {}).get(m, [])
            limited = [p for p in pts if not p.baseline] or pts
            if not limited:
                continue
            cap = capability(limited, c.lsl, c.usl)
            lvl = cpk_level(cap.cpk)
            plvl = cpk_level(cap.ppk)
            trs.append(html.Tr([
                html.Td(c.label(lang)),
                html.Td(dcc.Link(short_machine(cfg, m, lang), href=quality_href(v, m, char=c.id, hours=str(qd.hours)))),
                html.Td(str(cap.n)), html.Td(fmt(cap.mean, d)), html.Td(fmt(cap.sigma_within, d + 1)),
                html.Td(fmt(cap.sigma_overall, d + 1)), html.Td(fmt(cap.cp)),
                html.Td(fmt(cap.cpk), className=f"gw-q-cpk gw-q-{lvl}"), html.Td(fmt(cap.pp)),
                html.Td(fmt(cap.ppk), className=f"gw-q-ppk gw-q-{plvl}"),
            ], id=f"cap-{c.id}-{m[2]}", className="gw-q-cap-row"))
    if not trs:
        return html.P(t("quality:no_cap", lang), className="gw-q-empty", id="quality-cap")
    return html.Div(html.Table([head, html.Tbody(trs)], className="gw-table gw-q-table"), id="quality-cap",
                    className="gw-table-wrap")


def spark_svg(values: Sequence[Optional[float]], threshold: Optional[float] = None, w: int = 140, h: int = 28,
              top: Optional[float] = None) -> Any:
    """A small trend as an inline SVG image (cheap: no plotly per row). Grey line, the
    threshold as a faint dashed line."""
    vals = [x for x in values if x is not None]
    if len(vals) < 2:
        return html.Span("–", className="gw-note")
    hi = max(max(vals), threshold or 0.0, top or 0.0) or 1.0
    lo = 0.0
    n = len(values)
    pts = []
    for i, val in enumerate(values):
        if val is None:
            continue
        px = i * (w - 2) / max(1, n - 1) + 1
        py = h - 1 - (val - lo) / (hi - lo) * (h - 2)
        pts.append(f"{px:.1f},{py:.1f}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">']
    if threshold is not None:
        ty = h - 1 - (threshold - lo) / (hi - lo) * (h - 2)
        parts.append(f'<line x1="0" x2="{w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#d32f2f" stroke-opacity="0.5" '
                     f'stroke-dasharray="3,3" stroke-width="1"/>')
    last_bad = threshold is not None and vals[-1] >= threshold
    parts.append(f'<polyline fill="none" stroke="{RED if last_bad else GREY}" stroke-width="1.5" '
                 f'points="{" ".join(pts)}"/></svg>')
    return html.Img(src="data:image/svg+xml;utf8," + quote("".join(parts)), className="gw-q-spark",
                    width=str(w), height=str(h), alt="")


def _drivers_text(cfg: Any, key: MachineKey, drivers: Sequence[tuple[str, float]], lang: str, n: int = 3,
                  pct: bool = True) -> str:
    out = []
    for sig, share in list(drivers)[:n]:
        out.append(f"{signal_name(cfg, key, sig, lang)} {share * 100:.0f} %" if pct else signal_name(cfg, key, sig, lang))
    return " · ".join(out) or "–"


def _scope_machines(v: Any, classes: Sequence[str], site: str, line: str, machine: str) -> list[MachineKey]:
    out = []
    for cls in classes:
        out += machines_of_class(v.config, cls, site, line)
    if machine:
        out = [k for k in out if k[2] == machine] or out
    return out


def score_table(v: Any, qd: QualityData, machines: list[MachineKey], attr: str) -> Any:
    """attr anomaly: score per machine, its trend and drivers; attr risk: reject risk (%) and
    the top 3 contributing signals."""
    lang, cfg = v.lang, v.config
    raw = quality_raw(cfg)
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    min_w = models.get("min_windows", 120)
    window_s = raw.get("window_s", 60)
    ident = f"quality-{attr}"
    if not any(qd.windows.get(m) for m in machines):
        return html.P(t("quality:no_windows", lang, s=window_s), className="gw-q-empty", id=ident)
    if not any(latest_scored(qd.windows.get(m, []), attr) for m in machines):
        key = "quality:no_anomaly_model" if attr == "anomaly" else "quality:no_risk_model"
        return html.P(t(key, lang, n=min_w), className="gw-q-empty", id=ident)
    threshold = 1.0 if attr == "anomaly" else risk_alarm_at(cfg)
    cols = (["quality:machine", "quality:score", "quality:trend", "quality:drivers", "quality:at"] if attr == "anomaly"
            else ["quality:machine", "quality:risk_col", "quality:trend", "quality:top3", "quality:at"])
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in cols]))
    trs = []
    for m in machines:
        ws = qd.windows.get(m, [])
        if not ws:
            continue
        w = latest_scored(ws, attr)
        val = getattr(w, attr) if w else None
        series = [getattr(x, attr) for x in ws]
        abnormal = val is not None and val >= threshold
        warn = attr == "risk" and val is not None and not abnormal and val >= threshold * 0.6
        if attr == "anomaly":
            shown = fmt(val) if val is not None else t("quality:not_scored", lang)
            drivers = _drivers_text(cfg, m, w.drivers if w else (), lang)
        else:
            shown = f"{val * 100:.1f} %" if val is not None else t("quality:not_scored", lang)
            drivers = _drivers_text(cfg, m, w.risk_drivers if w else (), lang, pct=False)
        cls = "gw-q-bad" if abnormal else ("gw-q-warn" if warn else "gw-q-normal")
        trs.append(html.Tr([
            html.Td(dcc.Link(machine_name(cfg, m, lang), href=quality_href(v, m, hours=str(qd.hours)))),
            html.Td(shown, className=f"gw-q-val {cls}"),
            html.Td(spark_svg(series, threshold, top=threshold * 1.5)),
            html.Td(drivers, className="gw-q-drivers"),
            html.Td(local(w.ts if w else ws[-1].ts, cfg.plant.timezone, "%H:%M")),
        ], id=f"{attr}-{m[2]}", className="gw-q-row" + (" gw-q-row-bad" if abnormal else "")))
    return html.Div(html.Table([head, html.Tbody(trs)], className="gw-table gw-q-table gw-q-score-table"),
                    id=ident, className="gw-table-wrap")


def rule_label(rule: str, lang: str, cfg: Any) -> str:
    kind = rule.split(".", 1)[0]
    if kind == "spc":
        cid, k = spc_rule_of(rule)
        c = next((c for c in characteristics(cfg) if c.id == cid), None)
        name = c.label(lang) if c else cid
        return f"SPC {name} · {t('quality:rule_n', lang, k=k)}: {RULE_NAMES.get(k or 0, {}).get(lang, '')}"
    cls = rule.split(".", 1)[1] if "." in rule else ""
    return f"{t(f'quality:kind.{kind}', lang)} ({cls})"


def detections_table(v: Any, qd: QualityData, machines: set[MachineKey]) -> Any:
    lang, cfg = v.lang, v.config
    rows = [d for d in qd.detections if not machines or d.key in machines]
    if not rows:
        return html.P(t("quality:no_detections", lang, h=qd.hours), className="gw-q-empty", id="quality-detections")
    cols = ("quality:time", "quality:machine", "quality:rule", "quality:state", "quality:drivers", "quality:alarm_link")
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in cols]))
    trs = []
    for d in rows:
        active = d.state not in ("normal",)
        drivers = _drivers_text(cfg, d.key, d.drivers, lang, pct=not d.rule.startswith("risk."))
        if d.kind == "spc":
            cid, _ = spc_rule_of(d.rule)
            c = next((c for c in characteristics(cfg) if c.id == cid), None)
            sig = signal_name(cfg, d.key, c.signal, lang) if c else cid
            drivers = sig + (f" · {drivers}" if d.drivers else "")
        trs.append(html.Tr([
            html.Td(local(d.raised_ts, cfg.plant.timezone, "%m-%d %H:%M:%S")),
            html.Td(dcc.Link(machine_name(cfg, d.key, lang), href=quality_href(v, d.key, hours=str(qd.hours)))),
            html.Td(rule_label(d.rule, lang, cfg)),
            html.Td(t(f"status.{d.state}", lang), className="gw-q-bad" if d.state == "unack_active" else ""),
            html.Td(drivers, className="gw-q-drivers"),
            html.Td(dcc.Link(t("quality:alarm_link", lang), href=alarm_href(d.id, lang, v.kiosk))),
        ], className="gw-q-det" + (" gw-q-det-active" if active else "")))
    return html.Div(html.Table([head, html.Tbody(trs)], className="gw-table gw-q-table"), id="quality-detections",
                    className="gw-table-wrap")


def models_table(v: Any, qd: QualityData) -> Any:
    lang, cfg = v.lang, v.config
    raw = quality_raw(cfg)
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    if not qd.models:
        every = models.get("retrain_every_s", 3600)
        h = every / 3600 if isinstance(every, (int, float)) else 1
        return html.P(t("quality:no_models", lang, n=models.get("min_windows", 120), h=f"{h:g}"),
                      className="gw-q-empty", id="quality-models")
    cols = ("quality:kind", "quality:class", "quality:version", "quality:trained", "quality:windows", "quality:auc",
            "quality:precision")
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in cols]))
    trs = [html.Tr([
        html.Td(t(f"quality:kind.{r.kind}", lang) if r.kind in ("anomaly", "risk") else r.kind),
        html.Td(_class_name(cfg, r.klass, lang)),
        html.Td(f"v{r.version:04d}" if isinstance(r.version, int) else str(r.version or "–")),
        html.Td(local(r.trained_ns, cfg.plant.timezone)),
        html.Td(f"{r.windows:,}" if r.windows is not None else "–"),
        html.Td(f"AUC {r.auc:.2f}" if r.auc is not None else "–"),
        html.Td(f"{r.precision * 100:.0f} %" if r.precision is not None else "–"),
    ], id=f"model-{r.kind}-{r.klass}") for r in qd.models]
    return html.Div(html.Table([head, html.Tbody(trs)], className="gw-table gw-q-table"), id="quality-models",
                    className="gw-table-wrap")


def _class_name(cfg: Any, klass: str, lang: str) -> str:
    classes = getattr(cfg.plant, "machine_classes", None)
    k = classes.get(klass) if isinstance(classes, dict) else None
    return k.name.get(lang) if k is not None else klass


# ----------------------------------------------------------------------------- page
def clean(cfg: Any, site: Any, line: Any, machine: Any, char: Any) -> tuple[str, str, str, str]:
    """URL params the config knows, else empty."""
    s = site if isinstance(site, str) and cfg.site(site) is not None else ""
    ln = line if s and isinstance(line, str) and cfg.line(s, line) is not None else ""
    m = machine if s and ln and isinstance(machine, str) and cfg.machine(s, ln, machine) is not None else ""
    c = char if isinstance(char, str) and any(x.id == char for x in characteristics(cfg)) else ""
    return s, ln, m, c


def body(v: Any, site: str, line: str, machine: str, char: str, hours: int) -> Any:
    cfg, lang = v.config, v.lang
    chars = characteristics(cfg)
    if not chars:
        return html.P(t("quality:no_chars", lang), className="gw-q-empty", id="quality-no-chars")
    try:
        src = alarm_source()
        active: list[AlarmState] = active_alarms(src)
    except Exception:
        active = []
    qd = load_quality_data(context.data(), hours, active)
    chosen = (site, line, machine) if machine else None
    chosen_cls = machine_class(cfg, chosen) if chosen else None
    shown = [c for c in chars if (not char or c.id == char)]
    if chosen_cls and not char and any(c.klass == chosen_cls for c in shown):
        shown = [c for c in shown if c.klass == chosen_cls] + [c for c in shown if c.klass != chosen_cls]
    scope = {c.id: machines_of_class(cfg, c.klass, site, line) for c in chars}
    spc = [spc_panel(v, c, qd, scope[c.id], chosen if chosen_cls == c.klass else None, hours) for c in shown]
    an_classes = list(class_signals(cfg, "anomaly"))
    an_machines = _scope_machines(v, an_classes, site, line, machine)
    risk_machines = _scope_machines(v, risk_classes(cfg), site, line, machine)
    det_scope = set(an_machines) | set(risk_machines) | {m for c in chars for m in scope[c.id]}
    if machine:
        det_scope = {k for k in det_scope if k[2] == machine}
    hours_chips = html.Div([html.Span(t("window", lang), className="gw-k")] + [
        dcc.Link(t("quality:window", lang, h=h), href=v.href("/quality", **{k: x for k, x in
                 (("site", site), ("line", line), ("machine", machine), ("char", char)) if x}, hours=str(h)),
                 className="gw-chip" + (" gw-chip-on" if h == hours else ""), id=f"quality-hours-{h}")
        for h in HOURS_CHOICES], className="gw-chips gw-q-hours")
    return html.Div([
        hours_chips,
        html.Div(spc, className="gw-q-spc-list"),
        html.Section([html.H3(t("quality:capability", lang)), capability_table(v, shown, qd, scope)],
                     className="gw-panel"),
        html.Div([
            html.Section([html.H3(t("quality:anomaly", lang)), score_table(v, qd, an_machines, "anomaly")],
                         className="gw-panel"),
            html.Section([html.H3(t("quality:risk", lang)), score_table(v, qd, risk_machines, "risk")],
                         className="gw-panel", id="quality-risk-panel"),
        ], className="gw-q-pair"),
        html.Section([html.H3(t("quality:detections", lang)), detections_table(v, qd, det_scope)],
                     className="gw-panel"),
        html.Section([html.H3(t("quality:models", lang)), models_table(v, qd)], className="gw-panel"),
    ], className="gw-quality")


def layout(lang=None, kiosk=None, site=None, line=None, machine=None, char=None, hours=None, **query):
    v = view(lang, kiosk, **query)
    s, ln, m, c = clean(v.config, site, line, machine, char)
    h = parse_hours(hours)
    ctx = {"site": s, "line": ln, "machine": m, "char": c, "hours": h}
    keep = {k: x for k, x in (("site", s), ("line", ln), ("machine", m), ("char", c)) if x}
    if hours is not None:
        keep["hours"] = str(h)
    v = view(lang, kiosk, **keep)
    crumbs = v.crumbs((t("quality:quality", v.lang), None))
    try:
        content, ok = body(v, s, ln, m, c, h), True
    except DataUnavailable:
        content, ok = html.Div(), False
    return render(v, [dcc.Interval(id="quality-refresh", interval=REFRESH_MS),
                      dcc.Store(id="quality-ctx", data=ctx), html.Div(content, id="quality-body")],
                  path="/quality", crumbs=crumbs, title=t("quality:title", v.lang), ok=ok)


@callback(Output("quality-body", "children"), Input("quality-refresh", "n_intervals"), State("quality-ctx", "data"),
          State("page-ctx", "data"), prevent_initial_call=True)
def refresh(n: Any, qctx: Any, page_ctx: Any) -> Any:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    q = qctx if isinstance(qctx, dict) else {}
    cfg = context.config()
    lang = normalize_lang(pc.get("lang"), cfg.system.ui.default_language)
    v = view(lang, "1" if pc.get("kiosk") else None)
    s, ln, m, c = clean(cfg, q.get("site"), q.get("line"), q.get("machine"), q.get("char"))
    keep = {k: x for k, x in (("site", s), ("line", ln), ("machine", m), ("char", c)) if x}
    v = view(lang, "1" if pc.get("kiosk") else None, **keep)
    try:
        return body(v, s, ln, m, c, parse_hours(q.get("hours")))
    except DataUnavailable:
        return dash.no_update
