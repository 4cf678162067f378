"""LOT views as pure builders: view models of dashboards.lots_data in, Dash layout and plotly
dict figures out (no queries). Pages: /lots, /lot/<LOT>, /trace."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Optional, Sequence
from zoneinfo import ZoneInfo

from dash import dcc, html

from gwanje.config import Config
from gwanje.model import NS_PER_S, Event

from dashboards.components.shell import href
from dashboards.i18n import add_strings, t
from dashboards.lots_data import HoldRow, LotDetail, LotIndex, LotRow, ProcessWip, StepRow, lot_id_problem

add_strings({
    "lots:lots": {"ko": "LOT 추적", "en": "LOTs"},
    "lots:lot": {"ko": "LOT", "en": "LOT"},
    "lots:search": {"ko": "LOT 번호 검색", "en": "Search LOT number"},
    "lots:all_products": {"ko": "전체 품목", "en": "All products"},
    "lots:product": {"ko": "품목", "en": "Product"},
    "lots:process": {"ko": "공정", "en": "Process"},
    "lots:machine": {"ko": "설비", "en": "Machine"},
    "lots:since": {"ko": "시작/대기 시각", "en": "Since"},
    "lots:status": {"ko": "상태", "en": "Status"},
    "lots:good": {"ko": "양품", "en": "Good"},
    "lots:reject": {"ko": "불량", "en": "Reject"},
    "lots:good_reject": {"ko": "양품/불량", "en": "Good/reject"},
    "lots:hold": {"ko": "보류", "en": "Hold"},
    "lots:held": {"ko": "보류 중", "en": "ON HOLD"},
    "lots:in_process": {"ko": "공정 진행 중 LOT", "en": "LOTs in process"},
    "lots:on_hold": {"ko": "보류 LOT", "en": "LOTs on hold"},
    "lots:recent_done": {"ko": "최근 완료 LOT", "en": "Recently done"},
    "lots:results": {"ko": "검색 결과 {n}건", "en": "{n} LOTs found"},
    "lots:results_more": {"ko": "검색 결과 {n}건 (처음 {shown}건 표시)", "en": "{n} LOTs found (first {shown} shown)"},
    "lots:none": {"ko": "해당 LOT 없음", "en": "No LOTs"},
    "lots:wip": {"ko": "공정별 재공·대기", "en": "WIP and waiting per process"},
    "lots:wip_in": {"ko": "진행", "en": "In process"},
    "lots:wip_wait": {"ko": "대기", "en": "Waiting"},
    "lots:wait_mean": {"ko": "평균 대기", "en": "Mean wait"},
    "lots:wait_max": {"ko": "최대 대기", "en": "Max wait"},
    "lots:status.in_process": {"ko": "진행 중", "en": "In process"},
    "lots:status.waiting": {"ko": "대기", "en": "Waiting"},
    "lots:status.done": {"ko": "완료", "en": "Done"},
    "lots:status.consumed": {"ko": "소진(분할/병합)", "en": "Consumed"},
    "lots:process.forging": {"ko": "단조", "en": "Forging"},
    "lots:process.cnc": {"ko": "CNC 가공", "en": "CNC machining"},
    "lots:process.injection": {"ko": "사출", "en": "Injection molding"},
    "lots:process.assembly": {"ko": "조립", "en": "Assembly"},
    "lots:process.press": {"ko": "프레스", "en": "Press"},
    "lots:process.other": {"ko": "기타", "en": "Other"},
    "lots:route": {"ko": "공정 경로", "en": "Route"},
    "lots:timeline": {"ko": "공정 이력 (상위 LOT 포함)", "en": "Route timeline (with parent LOTs)"},
    "lots:steps": {"ko": "공정 단계", "en": "Steps"},
    "lots:start": {"ko": "시작", "en": "Start"},
    "lots:end": {"ko": "종료", "en": "End"},
    "lots:open": {"ko": "진행 중", "en": "open"},
    "lots:duration": {"ko": "소요", "en": "Duration"},
    "lots:plan": {"ko": "계획", "en": "Plan"},
    "lots:vs_plan": {"ko": "계획 대비", "en": "vs plan"},
    "lots:yield": {"ko": "수율", "en": "Yield"},
    "lots:parents": {"ko": "상위 LOT", "en": "Parents"},
    "lots:children": {"ko": "하위 LOT", "en": "Children"},
    "lots:descendants": {"ko": "파생 LOT 전체 (하위·그 하위…)", "en": "Descendants (children, grandchildren…)"},
    "lots:generation": {"ko": "세대", "en": "Generation"},
    "lots:via": {"ko": "상위", "en": "From"},
    "lots:genealogy": {"ko": "계보", "en": "Genealogy"},
    "lots:none_short": {"ko": "없음", "en": "none"},
    "lots:planned_qty": {"ko": "계획 수량", "en": "Planned qty"},
    "lots:alarms": {"ko": "단계 중 알람", "en": "Alarms during the step"},
    "lots:no_alarms": {"ko": "알람 없음", "en": "No alarms"},
    "lots:signals": {"ko": "단계 중 공정 신호", "en": "Process signals during the step"},
    "lots:step_of": {"ko": "{lot} · {process} · {machine}", "en": "{lot} · {process} · {machine}"},
    "lots:hold_status": {"ko": "보류 상태", "en": "Hold status"},
    "lots:not_held": {"ko": "보류 아님", "en": "Not on hold"},
    "lots:reason.reject_spike": {"ko": "불량 급증", "en": "Reject spike"},
    "lots:reason.alarm": {"ko": "알람", "en": "Alarm"},
    "lots:released_by": {"ko": "해제: {user} ({role}) {time} — {comment}",
                         "en": "Released by {user} ({role}) {time} — {comment}"},
    "lots:released_mark": {"ko": "해제됨", "en": "RELEASED"},
    "lots:release": {"ko": "보류 해제", "en": "Release hold"},
    "lots:release_comment": {"ko": "해제 사유 (필수)", "en": "Reason for release (required)"},
    "lots:release_need_reason": {"ko": "해제 사유를 입력하세요", "en": "Enter a reason for the release"},
    "lots:released": {"ko": "보류 해제됨 ({n}건)", "en": "Hold released ({n})"},
    "lots:nothing_held": {"ko": "보류 중인 기록이 없습니다", "en": "Nothing on hold"},
    "lots:release_failed": {"ko": "저장 실패: 다시 시도하세요", "en": "Not saved: try again"},
    "lots:csv": {"ko": "CSV 내보내기", "en": "Export CSV"},
    "lots:not_found": {"ko": "LOT을 찾을 수 없습니다: {lot}", "en": "LOT not found: {lot}"},
    "lots:trace": {"ko": "설비별 LOT 추적", "en": "LOTs on a machine"},
    "lots:trace_of": {"ko": "{start} ~ {end}", "en": "{start} to {end}"},
    "lots:trace_link": {"ko": "이 설비를 거친 LOT (최근 24시간)", "en": "LOTs on this machine (last 24 h)"},
    "lots:bad_window": {"ko": "조회 구간이 올바르지 않습니다", "en": "Time window not accepted"},
    "lots:pick_machine": {"ko": "설비를 선택하세요 (?site=&line=&machine=)", "en": "Choose a machine (?site=&line=&machine=)"},
    "lots:first": {"ko": "최초 시작", "en": "First start"},
})

SHOWN = 200  # rows of a table at most
SEARCH_SHOWN = 100  # search hits shown (the count says how many matched: narrow the search)


def local(ns: Optional[int], tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / NS_PER_S, ZoneInfo(tz)).strftime(fmt)


def plot_time(ns: int, tz: str) -> str:
    """A plant-local time string plotly reads as a date."""
    return datetime.fromtimestamp(ns / NS_PER_S, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def fmt_dur(s: Optional[float]) -> str:
    """1 h 05 m / 12 m / 40 s."""
    if s is None:
        return "–"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} m"
    if s >= 60:
        return f"{s // 60} m"
    return f"{s} s"


def fmt_pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def fmt_n(v: Optional[int]) -> str:
    return "–" if v is None else f"{v:,}"


def process_name(p: str, lang: str) -> str:
    return t(f"lots:process.{p}", lang) if p else "–"


def product_name(cfg: Config, product_id: str, lang: str, products: Optional[dict] = None) -> str:
    p = (products or products_by_id(cfg)).get(product_id)
    if p is None:
        return product_id or "–"
    return p.name.get(lang) if p.name else p.id


def products_by_id(cfg: Config) -> dict:
    from dashboards.components.oee import engine_for

    return {p.id: p for p in engine_for(cfg).calendar.spec.products}


def lot_href(lot: str, lang: str, kiosk: bool = False) -> str:
    return href(f"/lot/{lot}", lang, kiosk)


def lot_link(lot: str, lang: str, kiosk: bool = False, **kw: Any) -> Any:
    """A link to the LOT's page; a LOT number no URL may carry stays plain text."""
    if lot_id_problem(lot):
        return html.Span(lot, className="gw-lot-plain")
    return dcc.Link(lot, href=lot_href(lot, lang, kiosk), className="gw-lot-link", **kw)


def machine_name(cfg: Config, key: Optional[tuple[str, str, str]], lang: str) -> str:
    if key is None:
        return "–"
    spec = cfg.machine(*key)
    ln = cfg.line(key[0], key[1])
    if spec is None or ln is None:
        return "/".join(key)
    return f"{ln.name.get(lang)} · {spec.definition.name.get(lang)}"


def machine_link(cfg: Config, key: Optional[tuple[str, str, str]], lang: str, kiosk: bool = False) -> Any:
    if key is None:
        return "–"
    if cfg.machine(*key) is None:  # a machine no longer configured: its name, no link
        return "/".join(key)
    return dcc.Link(machine_name(cfg, key, lang), href=href(f"/machine/{key[0]}/{key[1]}/{key[2]}", lang, kiosk),
                    className="gw-machine-link")


def hold_mark(lang: str) -> html.Span:
    return html.Span(t("lots:held", lang), className="gw-hold-mark")


# ----------------------------------------------------------------------------- /lots
def wip_table(wips: Sequence[ProcessWip], lang: str) -> html.Table:
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in
                               ("lots:process", "lots:wip_in", "lots:wip_wait", "lots:wait_mean", "lots:wait_max")]))
    body = html.Tbody([html.Tr([
        html.Td(process_name(w.process, lang)), html.Td(str(w.in_process), className="gw-wip-in"),
        html.Td(str(w.waiting), className="gw-wip-wait"), html.Td(fmt_dur(w.wait_mean_s), className="gw-wip-mean"),
        html.Td(fmt_dur(w.wait_max_s), className="gw-wip-max"),
    ], id=f"wip-{w.process}", className="gw-wip-row") for w in wips])
    return html.Table([head, body], className="gw-table gw-wip-table", id="lots-wip")


def lots_table(cfg: Config, rows: Sequence[LotRow], lang: str, kiosk: bool, ident: str,
               status: bool = False) -> Any:
    """LOT, product, process, machine (link), since, good/reject, hold mark."""
    if not rows:
        return html.P(t("lots:none", lang), className="gw-note", id=ident)
    tz = cfg.plant.timezone
    products = products_by_id(cfg)
    cols = ["lots:lot", "lots:product", *(["lots:status"] if status else []), "lots:process", "lots:machine",
            "lots:since", "lots:good_reject", "lots:hold"]
    head = html.Thead(html.Tr([html.Th(t(c, lang)) for c in cols]))
    trs = []
    for r in rows:
        cells = [html.Td(lot_link(r.lot, lang, kiosk)), html.Td(product_name(cfg, r.product, lang, products))]
        if status:
            cells.append(html.Td(t(f"lots:status.{r.status}", lang)))
        cells += [html.Td(process_name(r.process, lang)), html.Td(machine_link(cfg, r.machine, lang, kiosk)),
                  html.Td(local(r.since_ns, tz)), html.Td(f"{fmt_n(r.good)} / {fmt_n(r.reject)}"),
                  html.Td(hold_mark(lang) if r.held else "")]
        trs.append(html.Tr(cells, className="gw-lot-row" + (" gw-held" if r.held else "")))
    return html.Div(html.Table([head, html.Tbody(trs)], className="gw-table gw-lots-table"), id=ident,
                    className="gw-table-wrap")


def lots_body(cfg: Config, index: LotIndex, processes: Sequence[str], lang: str, kiosk: bool,
              search: str = "", product: str = "") -> html.Div:
    parts: list[Any] = []
    if search or product:
        hits, n = index.search(search, product, SEARCH_SHOWN)
        note = (t("lots:results", lang, n=n) if n <= SEARCH_SHOWN
                else t("lots:results_more", lang, n=n, shown=SEARCH_SHOWN))
        parts.append(html.Section([html.H3(note, id="lots-result-count"),
                                   lots_table(cfg, hits, lang, kiosk, "lots-results", status=True)],
                                  className="gw-panel"))
    held = index.held()
    if held:
        parts.append(html.Section([html.H3([t("lots:on_hold", lang), f" ({len(held)})"]),
                                   lots_table(cfg, held, lang, kiosk, "lots-held", status=True)],
                                  className="gw-panel gw-panel-hold"))
    inproc = index.in_process()
    parts += [
        html.Section([html.H3(t("lots:wip", lang)), wip_table(index.wip(processes), lang)], className="gw-panel"),
        html.Section([html.H3([t("lots:in_process", lang), f" ({len(inproc)})"]),
                      lots_table(cfg, inproc[:SHOWN], lang, kiosk, "lots-inproc")], className="gw-panel"),
        html.Section([html.H3(t("lots:recent_done", lang)),
                      lots_table(cfg, index.recent_done(), lang, kiosk, "lots-done", status=True)],
                     className="gw-panel"),
    ]
    return html.Div(parts, className="gw-lots")


# ----------------------------------------------------------------------------- /lot/<LOT>
PALETTE = ("#1565c0", "#8e24aa", "#00897b", "#ef6c00", "#6d4c41", "#3949ab", "#c2185b", "#558b2f")


def timeline_figure(cfg: Config, detail: LotDetail, lang: str, dark: bool = False) -> dict[str, Any]:
    """The route as a timeline: one bar per step (its own and its ancestors'), a row per
    process and machine, a colour per LOT, the LOT number on the bar."""
    tz = cfg.plant.timezone
    steps = detail.route_steps()
    lots = list(dict.fromkeys(s.lot for s in steps))
    rows: list[str] = []
    for s in steps:
        label = f"{process_name(s.process, lang)} · {machine_name(cfg, s.key, lang)}"
        if label not in rows:
            rows.append(label)
    traces = []
    for i, lot in enumerate(lots):
        mine = [s for s in steps if s.lot == lot]
        traces.append({
            "type": "bar", "orientation": "h", "name": lot,
            "y": [f"{process_name(s.process, lang)} · {machine_name(cfg, s.key, lang)}" for s in mine],
            "base": [plot_time(s.start_ns, tz) for s in mine],
            "x": [max(1.0, s.duration_s(detail.now_ns) * 1000) for s in mine],
            "text": [lot for _ in mine], "textposition": "inside", "insidetextanchor": "middle",
            "marker": {"color": PALETTE[i % len(PALETTE)],
                       "line": {"width": 3 if lot == detail.lot.lot else 0, "color": "#102a43"}},
            "hovertemplate": "%{text}<br>%{base|%m-%d %H:%M} +%{customdata}<extra>%{y}</extra>",
            "customdata": [fmt_dur(s.duration_s(detail.now_ns)) for s in mine],
        })
    fg = "#e8edf2" if dark else "#1f2933"
    return {"data": traces, "layout": {
        "barmode": "overlay", "height": 120 + 44 * max(1, len(rows)),
        "margin": {"l": 8, "r": 12, "t": 8, "b": 30},
        "xaxis": {"type": "date", "automargin": True, "gridcolor": "#2c3640" if dark else "#e4e7eb"},
        "yaxis": {"categoryorder": "array", "categoryarray": list(reversed(rows)), "automargin": True},
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": fg, "size": 15 if dark else 13, "family": "Noto Sans CJK KR, Noto Sans KR, sans-serif"},
        "uirevision": detail.lot.lot,
    }}


def steps_table(cfg: Config, steps: Sequence[StepRow], now_ns: int, lang: str, kiosk: bool) -> html.Table:
    tz = cfg.plant.timezone
    cols = ("lots:lot", "lots:process", "lots:machine", "lots:start", "lots:end", "lots:duration", "lots:plan",
            "lots:vs_plan", "lots:good", "lots:reject", "lots:yield")
    head = html.Thead(html.Tr([html.Th(t(c, lang)) for c in cols]))
    trs = []
    for s in steps:
        dur = s.duration_s(now_ns)
        vs = f"{dur / s.plan_s * 100:.0f} %" if s.plan_s else "–"
        trs.append(html.Tr([
            html.Td(lot_link(s.lot, lang, kiosk)), html.Td(process_name(s.process, lang)),
            html.Td(machine_link(cfg, s.key, lang, kiosk)), html.Td(local(s.start_ns, tz)),
            html.Td(local(s.end_ns, tz) if s.end_ns is not None else t("lots:open", lang)),
            html.Td(fmt_dur(dur)), html.Td(fmt_dur(s.plan_s)),
            html.Td(vs, className="gw-late" if s.plan_s and dur > s.plan_s else ""),
            html.Td(fmt_n(s.good), className="gw-step-good"), html.Td(fmt_n(s.reject), className="gw-step-reject"),
            html.Td(fmt_pct(s.yield_ratio), className="gw-step-yield"),
        ], className="gw-step-row"))
    return html.Table([head, html.Tbody(trs)], className="gw-table gw-steps-table", id="lot-steps")


def step_signals_figure(series: Sequence[tuple[str, str, list[str], list[Optional[float]]]], lang: str,
                        dark: bool = False) -> dict[str, Any]:
    """Stacked small trends sharing the time axis. series: (label, unit, x, y)."""
    n = max(1, len(series))
    gap = 0.06
    h = (1 - gap * (n - 1)) / n
    data, lay = [], {}
    for i, (label, unit, x, y) in enumerate(series):
        ax = "" if i == 0 else str(i + 1)
        top = 1 - i * (h + gap)
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": y, "name": label, "xaxis": "x",
                     "yaxis": f"y{ax}", "line": {"width": 1.5, "color": PALETTE[i % len(PALETTE)]},
                     "hovertemplate": "%{x|%H:%M:%S} %{y:.2f} " + unit.replace("%", "%%") + "<extra>" + label +
                                      "</extra>"})
        lay[f"yaxis{ax}"] = {"domain": [max(0, top - h), top], "title": {"text": label, "font": {"size": 11}},
                             "automargin": True, "gridcolor": "#2c3640" if dark else "#e4e7eb"}
    fg = "#e8edf2" if dark else "#1f2933"
    return {"data": data, "layout": {
        **lay, "height": 80 + 90 * n, "showlegend": False, "margin": {"l": 8, "r": 8, "t": 6, "b": 36},
        "xaxis": {"type": "date", "anchor": f"y{'' if n == 1 else n}"},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": fg, "size": 12, "family": "Noto Sans CJK KR, Noto Sans KR, sans-serif"}}}


def alarm_list(cfg: Config, alarms: Sequence[Event], lang: str) -> Any:
    if not alarms:
        return html.P(t("lots:no_alarms", lang), className="gw-note")
    tz = cfg.plant.timezone
    items = []
    for e in alarms:
        d = e.data if isinstance(e.data, dict) else {}
        msg = d.get(f"message_{lang}") or d.get("message_en") or d.get("message_ko") or e.key
        items.append(html.Li([html.Span(local(e.ts, tz, "%m-%d %H:%M:%S"), className="gw-k"), " ",
                              html.Span(str(d.get("priority", "")), className=f"gw-prio gw-prio-{d.get('priority', '')}"),
                              " ", str(msg), " ", html.Span(f"({d.get('event', '')} · {d.get('state', '')})",
                                                           className="gw-note")],
                             className="gw-step-alarm"))
    return html.Ul(items, className="gw-step-alarms")


def genealogy(detail: LotDetail, lang: str, kiosk: bool) -> html.Div:
    def links(lots: Iterable[str], ident: str) -> Any:
        ls = list(lots)
        if not ls:
            return html.Span(t("lots:none_short", lang), id=ident)
        return html.Span([x for lot in ls for x in (lot_link(lot, lang, kiosk), " ")], id=ident,
                         className="gw-lot-links")

    return html.Div([
        html.Div([html.Span(t("lots:parents", lang), className="gw-k"), " ",
                  links(detail.lot.parents, "lot-parents")], className="gw-genealogy-row"),
        html.Div([html.Span(t("lots:children", lang), className="gw-k"), " ",
                  links(detail.lot.children, "lot-children")], className="gw-genealogy-row"),
    ], className="gw-genealogy")


def descendants_table(desc: Sequence[tuple[str, str, int]], lang: str, kiosk: bool) -> Any:
    if not desc:
        return html.P(t("lots:none_short", lang), className="gw-note", id="lot-descendants")
    head = html.Thead(html.Tr([html.Th(t(c, lang)) for c in ("lots:lot", "lots:via", "lots:generation")]))
    body = html.Tbody([html.Tr([html.Td(lot_link(c, lang, kiosk)), html.Td(lot_link(p, lang, kiosk)),
                                html.Td(str(g))]) for c, p, g in desc[:SHOWN]])
    return html.Table([head, body], className="gw-table", id="lot-descendants")


def hold_items(cfg: Config, holds: Sequence[HoldRow], lang: str) -> Any:
    tz = cfg.plant.timezone
    items = []
    for h in holds:
        why = t(f"lots:reason.{h.reason}", lang) if h.reason in ("reject_spike", "alarm") else h.reason
        line: list[Any] = [html.Span(local(h.event.ts, tz), className="gw-k"), " ",
                           hold_mark(lang) if h.held else html.Span(t("lots:released_mark", lang),
                                                                  className="gw-released-mark"),
                           " ", why, f" · {h.detail}" if h.detail else ""]
        if not h.held:
            role = h.event.data.get("released_role") if isinstance(h.event.data, dict) else ""
            line += [html.Br(), html.Span(t("lots:released_by", lang, user=h.released_by or "?", role=role or "?",
                                            time=local(h.released_ns, tz), comment=h.comment), className="gw-note")]
        items.append(html.Li(line, className="gw-hold" + (" gw-held" if h.held else "")))
    if not items:
        return html.P(t("lots:not_held", lang), className="gw-note")
    return html.Ul(items, className="gw-holds")


def hold_panel(cfg: Config, holds: Sequence[HoldRow], lang: str, may_release: bool) -> html.Div:
    """The LOT's holds and, for a role that may release (and while one is held), the form."""
    kids: list[Any] = [html.Div(hold_items(cfg, holds, lang), id="lot-hold-list")]
    if may_release and any(h.held for h in holds):
        kids.append(html.Div([
            dcc.Textarea(id="lot-release-comment", placeholder=t("lots:release_comment", lang),
                         className="gw-release-comment", maxLength=500),
            html.Button(t("lots:release", lang), id="lot-release-btn", className="gw-button gw-release-btn"),
        ], className="gw-release-form", id="lot-release-form"))
    kids.append(html.Div(id="lot-release-out", className="gw-note"))
    return html.Div(kids, id="lot-hold-panel")


# ----------------------------------------------------------------------------- CSV rows
def step_csv_rows(cfg: Config, steps: Sequence[StepRow], lang: str) -> list[dict[str, Any]]:
    tz = cfg.plant.timezone
    return [{"lot": s.lot, "product": s.product, "process": s.process, "site": s.site, "line": s.line,
             "machine": s.machine, "start": local(s.start_ns, tz, "%Y-%m-%d %H:%M:%S"),
             "end": local(s.end_ns, tz, "%Y-%m-%d %H:%M:%S"), "good": s.good, "reject": s.reject,
             "yield": None if s.yield_ratio is None else round(s.yield_ratio, 4)} for s in steps]


def lot_csv_rows(cfg: Config, rows: Sequence[tuple[str, str, int]], index: Callable[[str], Optional[LotRow]],
                 lang: str) -> list[dict[str, Any]]:
    tz = cfg.plant.timezone
    out = []
    for lot, parent, gen in rows:
        r = index(lot)
        out.append({"lot": lot, "parent": parent, "generation": gen, "product": r.product if r else "",
                    "status": r.status if r else "", "process": r.process if r else "",
                    "machine": "/".join(r.machine) if r and r.machine else "",
                    "first_start": local(r.first_ns, tz, "%Y-%m-%d %H:%M:%S") if r else "",
                    "good": r.good if r else None, "reject": r.reject if r else None})
    return out
