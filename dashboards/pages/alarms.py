"""`/alarms` — the alarm list (filter, sort, group by site/line) with acknowledge, shelve and
comment; history with search; alarm-system health (EEMUA 191); notification delivery log.

`?alarm=<id>` (the link in every notification) opens the page with that alarm selected.
The callbacks are plain functions (tests call them directly); the alarm source is the live
AlarmService, in a UI-only process the control bus to the collect that owns the alarm (the
feedback shows collect's answer: done, or refused and why), or without a bus the store
read-only (dashboards.alarm_banner).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, callback, dcc, html

from alerts.lifecycle import AlarmState
from dashboards import alarm_banner, context
from dashboards.alarm_banner import active_alarms, alarm_source, can_act, message
from dashboards.auth import NotAllowed, authorize, current_user
from gwanje.bus import CommandFailed
from dashboards.components.page import render, view
from dashboards.i18n import add_strings, normalize_lang, t

log = logging.getLogger("gwanje.ui.alarms")

add_strings({
    "alarms_active": {"ko": "현재 알람", "en": "Active alarms"},
    "alarms_history": {"ko": "알람 이력", "en": "Alarm history"},
    "alarms_health": {"ko": "알람 건전성 (EEMUA 191)", "en": "Alarm health (EEMUA 191)"},
    "alarms_notifications": {"ko": "알림 발송 기록", "en": "Notification deliveries"},
    "group_by": {"ko": "묶음", "en": "Group by"},
    "group.none": {"ko": "없음", "en": "None"},
    "operator": {"ko": "작업자", "en": "Operator"},
    "comment": {"ko": "코멘트 / 사유", "en": "Comment / reason"},
    "ack": {"ko": "확인", "en": "Acknowledge"},
    "ack_line": {"ko": "라인 전체 확인", "en": "Acknowledge line"},
    "shelve": {"ko": "보류", "en": "Shelve"},
    "unshelve": {"ko": "보류 해제", "en": "Unshelve"},
    "add_comment": {"ko": "코멘트 추가", "en": "Add comment"},
    "remove_from_service": {"ko": "사용 중지", "en": "Out of service"},
    "return_to_service": {"ko": "사용 재개", "en": "Back in service"},
    "duration": {"ko": "보류 시간", "en": "Shelve for"},
    "select_first": {"ko": "알람을 먼저 선택하세요", "en": "Select an alarm first"},
    "done_n": {"ko": "{n}건 처리됨", "en": "{n} done"},
    "nothing_to_do": {"ko": "변경 없음 (이미 처리된 상태)", "en": "Nothing changed (already in that state)"},
    "read_only": {"ko": "읽기 전용: 알람 서비스가 이 프로세스에 없습니다", "en": "Read-only: no alarm service in this process"},
    "search": {"ko": "검색", "en": "Search"},
    "err.comment_missing": {"ko": "사유(코멘트)를 입력하세요", "en": "Give a reason (comment)"},
    "err.user_missing": {"ko": "작업자 이름을 입력하세요", "en": "Enter the operator's name"},
    "err.bad_shelve_duration": {"ko": "보류 시간은 1분~24시간", "en": "Shelve for 1 min to 24 h"},
    "err.unknown_alarm": {"ko": "없는 알람입니다", "en": "No such alarm"},
    "err.other": {"ko": "입력 오류: {reason}", "en": "Not accepted: {reason}"},
    "col.priority": {"ko": "우선순위", "en": "Priority"},
    "col.status": {"ko": "상태", "en": "State"},
    "col.message": {"ko": "내용", "en": "Message"},
    "col.value": {"ko": "값", "en": "Value"},
    "col.raised": {"ko": "발생", "en": "Raised"},
    "col.time": {"ko": "시각", "en": "Time"},
    "col.event": {"ko": "이벤트", "en": "Event"},
    "col.user": {"ko": "사용자", "en": "User"},
    "col.comment": {"ko": "코멘트", "en": "Comment"},
    "col.acked_by": {"ko": "확인자", "en": "Acked by"},
    "col.shelved_until": {"ko": "보류 만료", "en": "Shelved until"},
    "col.group": {"ko": "묶음", "en": "Group"},
    "col.channel": {"ko": "채널", "en": "Channel"},
    "col.target": {"ko": "수신자", "en": "Recipient"},
    "col.level": {"ko": "단계", "en": "Level"},
    "col.attempt": {"ko": "시도", "en": "Attempt"},
    "col.outcome": {"ko": "결과", "en": "Outcome"},
    "col.alarm": {"ko": "알람", "en": "Alarm"},
    "col.count": {"ko": "건수", "en": "Count"},
    "rate_title": {"ko": "10분당 알람 수 (영역별, 오늘)", "en": "Alarms per 10 min per area (today)"},
    "flood_none": {"ko": "알람 폭주 없음", "en": "No alarm flood"},
    "chattering": {"ko": "채터링 알람 (1분 내 3회 이상)", "en": "Chattering alarms (3+ in 1 min)"},
    "bad_actors": {"ko": "오늘의 상위 발생 알람", "en": "Top bad actors today"},
    "none": {"ko": "없음", "en": "None"},
    "status.unack_active": {"ko": "미확인", "en": "Unacknowledged"},
    "status.ack_active": {"ko": "확인됨", "en": "Acknowledged"},
    "status.rtn_unack": {"ko": "복귀·미확인", "en": "Returned, unacked"},
    "status.shelved": {"ko": "보류", "en": "Shelved"},
    "status.suppressed": {"ko": "억제(계획정지)", "en": "Suppressed"},
    "status.out_of_service": {"ko": "사용 중지", "en": "Out of service"},
    "status.normal": {"ko": "정상", "en": "Normal"},
})

dash.register_page(__name__, path="/alarms", title="Gwanje", name="alarms", nav={"key": "alarms", "order": 20})
alarm_banner.register_callbacks(callback)

SHELVE_CHOICES = (900, 3600, 4 * 3600, 8 * 3600, 24 * 3600)
HISTORY_WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
GRID_DEFAULTS = {"sortable": True, "filter": True, "resizable": True, "floatingFilter": True}


def _tz() -> ZoneInfo:
    return ZoneInfo(context.config().plant.timezone)


def fmt_ts(ts: Optional[int]) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts / 1e9, _tz()).strftime("%Y-%m-%d %H:%M:%S")


def _lang(page_ctx: Any) -> tuple[str, bool]:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    return normalize_lang(pc.get("lang"), context.config().system.ui.default_language), bool(pc.get("kiosk"))


def _names(s: AlarmState, lang: str) -> tuple[str, str, str]:
    cfg = context.config()
    site = cfg.site(s.site)
    line = cfg.line(s.site, s.line) if s.line else None
    m = cfg.machine(s.site, s.line, s.machine) if s.machine else None
    return (site.name.get(lang) if site else s.site, line.name.get(lang) if line else s.line,
            m.definition.name.get(lang) if m else s.machine)


def alarm_rows(states: list[AlarmState], lang: str, group: str = "none") -> list[dict[str, Any]]:
    """Grid rows, most severe first; with grouping, ordered by site or line first."""
    rows = []
    for s in states:
        site, line, machine = _names(s, lang)
        rows.append({
            "id": s.id, "priority": t(f"prio.{s.priority}", lang), "prio": s.priority, "rank": s.rank,
            "status": t(f"status.{s.status.value}", lang), "state": s.status.value,
            "site_id": s.site, "line_id": s.line, "site": site, "line": line, "machine": machine,
            "message": message(s, lang), "value": s.value, "raised": fmt_ts(s.raised_ts or s.changed_ts),
            "acked_by": s.acked_by, "shelved_until": fmt_ts(s.shelved_until), "comment": s.last_comment,
            "group": site if group == "site" else (f"{site} / {line}" if group == "line" else ""),
            "quality": quality_link(s, lang),
        })
    if group in ("site", "line"):
        rows.sort(key=lambda r: r["group"])  # stable: severity order kept inside each group
    return rows


QUALITY_RULES = ("spc.", "anomaly.", "risk.")


def quality_link(s: AlarmState, lang: str) -> str:
    """A quality alarm (SPC, anomaly, reject risk): a markdown link to /quality for its
    machine; any other alarm: empty."""
    if not (isinstance(s.rule, str) and s.rule.startswith(QUALITY_RULES)) or not s.machine:
        return ""
    q = urlencode({"lang": lang, "site": s.site, "line": s.line, "machine": s.machine})
    return f"[{t('quality:quality', lang)}](/quality?{q})"


def _columns(lang: str, group: str) -> list[dict[str, Any]]:
    cols = [
        {"field": "priority", "headerName": t("col.priority", lang), "width": 110,
         "cellClassRules": {f"gw-prio-cell-{p}": f"params.data.prio == '{p}'" for p in
                            ("critical", "high", "medium", "low")}},
        {"field": "status", "headerName": t("col.status", lang), "width": 150},
        {"field": "site", "headerName": t("site", lang), "width": 150},
        {"field": "line", "headerName": t("line", lang), "width": 170},
        {"field": "machine", "headerName": t("machine", lang), "width": 150},
        {"field": "message", "headerName": t("col.message", lang), "flex": 1, "minWidth": 300},
        {"field": "value", "headerName": t("col.value", lang), "width": 90, "filter": "agNumberColumnFilter"},
        {"field": "raised", "headerName": t("col.raised", lang), "width": 170, "sort": None},
        {"field": "acked_by", "headerName": t("col.acked_by", lang), "width": 110},
        {"field": "shelved_until", "headerName": t("col.shelved_until", lang), "width": 170},
        {"field": "comment", "headerName": t("col.comment", lang), "width": 200},
        # quality alarms link to /quality for their machine (same tab: a page of this app)
        {"field": "quality", "headerName": t("quality:quality", lang), "width": 100, "cellRenderer": "markdown",
         "linkTarget": "_self", "filter": False},
    ]
    if group in ("site", "line"):
        cols.insert(0, {"field": "group", "headerName": t("col.group", lang), "pinned": "left", "width": 220})
    return cols


def _section(title: str, *body: Any) -> html.Section:
    return html.Section([html.H2(title, className="gw-alarm-h2"), *body], className="gw-alarm-section")


def layout(lang=None, kiosk=None, alarm=None, **query):
    v = view(lang, kiosk, **query)
    L = v.lang
    focus = alarm if isinstance(alarm, str) and len(alarm) <= 300 else None
    try:
        src = alarm_source()
        states = src.active()
        acting = can_act(src)
    except Exception:
        log.exception("alarms page: source failed")
        states, acting = [], False
    actions = html.Div([
        dcc.Input(id="alarm-user", placeholder=t("operator", L), maxLength=64, className="gw-alarm-input",
                  persistence=True, persistence_type="local", style={"width": "160px"}),
        dcc.Input(id="alarm-comment", placeholder=t("comment", L), maxLength=500, className="gw-alarm-input",
                  style={"width": "360px"}),
        dcc.Dropdown(id="alarm-shelve-for", value=3600, clearable=False, className="gw-alarm-dd",
                     options=[{"label": (f"{d // 60} min" if d < 3600 else f"{d // 3600} h"), "value": d}
                              for d in SHELVE_CHOICES]),
        html.Button(t("ack", L), id="alarm-ack", className="gw-btn gw-btn-ack"),
        html.Button(t("ack_line", L), id="alarm-ack-line", className="gw-btn"),
        html.Button(t("shelve", L), id="alarm-shelve", className="gw-btn"),
        html.Button(t("unshelve", L), id="alarm-unshelve", className="gw-btn"),
        html.Button(t("add_comment", L), id="alarm-add-comment", className="gw-btn"),
        html.Button(t("remove_from_service", L), id="alarm-oos", className="gw-btn"),
        html.Button(t("return_to_service", L), id="alarm-ris", className="gw-btn"),
        html.Span(id="alarm-feedback", className="gw-alarm-feedback",
                  children="" if acting else t("read_only", L)),
    ], className="gw-alarm-actions")
    grid = dag.AgGrid(
        id="alarms-grid", rowData=alarm_rows(states, L), columnDefs=_columns(L, "none"),
        defaultColDef=GRID_DEFAULTS, getRowId="params.data.id", columnSize="autoSize",
        dashGridOptions={"rowSelection": {"mode": "multiRow"}, "animateRows": False},
        selectedRows={"ids": [focus]} if focus else [], style={"height": "420px"}, className="ag-theme-alpine")
    group = dcc.RadioItems(id="alarm-group", value="none", inline=True, className="gw-alarm-group",
                           options=[{"label": t("group.none", L), "value": "none"},
                                    {"label": t("site", L), "value": "site"},
                                    {"label": t("line", L), "value": "line"}])
    history = html.Div([
        html.Div([
            dcc.Input(id="alarm-search", type="search", placeholder=t("search", L), debounce=True,
                      className="gw-alarm-input", value=focus or "", style={"width": "360px"}),
            dcc.Dropdown(id="alarm-history-window", value="24h", clearable=False, className="gw-alarm-dd",
                         options=[{"label": k, "value": k} for k in HISTORY_WINDOWS]),
        ], className="gw-alarm-actions"),
        dag.AgGrid(id="alarm-history-grid", rowData=[], defaultColDef=GRID_DEFAULTS, columnDefs=[
            {"field": "time", "headerName": t("col.time", L), "width": 170, "sort": "desc"},
            {"field": "event", "headerName": t("col.event", L), "width": 150},
            {"field": "status", "headerName": t("col.status", L), "width": 150},
            {"field": "priority", "headerName": t("col.priority", L), "width": 110},
            {"field": "message", "headerName": t("col.message", L), "flex": 1, "minWidth": 300},
            {"field": "user", "headerName": t("col.user", L), "width": 110},
            {"field": "comment", "headerName": t("col.comment", L), "width": 220},
            {"field": "alarm", "headerName": t("col.alarm", L), "width": 300},
        ], style={"height": "360px"}, className="ag-theme-alpine"),
    ])
    health_box = html.Div([
        dcc.Graph(id="alarm-rate", config={"displayModeBar": False}, style={"height": "260px"}),
        html.Div(id="alarm-health-lists", className="gw-alarm-health-lists"),
    ])
    notes = dag.AgGrid(id="alarm-notify-grid", rowData=[], defaultColDef=GRID_DEFAULTS, columnDefs=[
        {"field": "time", "headerName": t("col.time", L), "width": 170},
        {"field": "outcome", "headerName": t("col.outcome", L), "width": 120},
        {"field": "channel", "headerName": t("col.channel", L), "width": 140},
        {"field": "target", "headerName": t("col.target", L), "width": 120},
        {"field": "level", "headerName": t("col.level", L), "width": 80},
        {"field": "attempt", "headerName": t("col.attempt", L), "width": 80},
        {"field": "message", "headerName": t("col.message", L), "flex": 1},
        {"field": "error", "headerName": "error", "width": 160},
    ], style={"height": "300px"}, className="ag-theme-alpine")
    body = html.Div([
        dcc.Store(id="alarm-action-done", data=0),
        _section(t("alarms_active", L), actions, html.Div([html.Span(t("group_by", L) + ": "), group]), grid),
        _section(t("alarms_health", L), health_box),
        _section(t("alarms_history", L), history),
        _section(t("alarms_notifications", L), notes),
    ], className="gw-alarms")
    return render(v, body, path="/alarms", crumbs=v.crumbs((t("alarms", L), None)), title=t("alarms", L))


# ----------------------------------------------------------------------------- callbacks
@callback(Output("alarms-grid", "rowData"), Output("alarms-grid", "columnDefs"),
          Input("alarm-refresh", "n_intervals"), Input("alarm-group", "value"), Input("alarm-action-done", "data"),
          State("page-ctx", "data"))
def refresh_active(n: Any, group: Any, done: Any, page_ctx: Any):
    lang, _ = _lang(page_ctx)
    group = group if group in ("none", "site", "line") else "none"
    try:
        states = active_alarms(alarm_source())
    except Exception:
        log.exception("alarms page: source failed")
        return dash.no_update, dash.no_update
    return alarm_rows(states, lang, group), _columns(lang, group)


# which entry of dashboards.auth.ACTIONS each button is
BUTTON_ACTIONS = {
    "alarm-ack": "alarm.acknowledge", "alarm-ack-line": "alarm.acknowledge", "alarm-add-comment": "alarm.comment",
    "alarm-shelve": "alarm.shelve", "alarm-unshelve": "alarm.shelve",
    "alarm-oos": "alarm.out_of_service", "alarm-ris": "alarm.out_of_service",
}


@callback(Output("alarm-feedback", "children"), Output("alarm-action-done", "data"),
          Input("alarm-ack", "n_clicks"), Input("alarm-ack-line", "n_clicks"), Input("alarm-shelve", "n_clicks"),
          Input("alarm-unshelve", "n_clicks"), Input("alarm-add-comment", "n_clicks"),
          Input("alarm-oos", "n_clicks"), Input("alarm-ris", "n_clicks"),
          State("alarms-grid", "selectedRows"), State("alarm-user", "value"), State("alarm-comment", "value"),
          State("alarm-shelve-for", "value"), State("alarm-action-done", "data"), State("page-ctx", "data"),
          prevent_initial_call=True)
def act(n_ack, n_line, n_shelve, n_unshelve, n_comment, n_oos, n_ris, selected, user, comment, shelve_for, done,
        page_ctx, trigger: Optional[str] = None):
    """One operator action on the selected alarms. trigger: the button id (tests pass it;
    in the app it comes from dash.ctx)."""
    lang, _ = _lang(page_ctx)
    trigger = trigger or dash.ctx.triggered_id
    src = alarm_source()
    if not can_act(src):
        return t("read_only", lang), dash.no_update
    action = BUTTON_ACTIONS.get(trigger) if isinstance(trigger, str) else None
    if action is None:
        return t("nothing_to_do", lang), dash.no_update
    try:
        # outside demo mode the session's user acts, whatever name the form holds
        user = authorize(action) or user
    except NotAllowed:
        return t("not_allowed", lang), dash.no_update
    # who acts, for the audit log and for collect's own authorization over the control bus:
    # the session's role; in demo mode (no login) the name typed on the page, as admin
    who = {"role": "admin" if context.config().system.demo else str((current_user() or {}).get("role") or ""),
           "client": _client()}
    rows = [r for r in (selected or []) if isinstance(r, dict) and isinstance(r.get("id"), str)]
    if not rows:
        return t("select_first", lang), dash.no_update
    results = []
    try:
        for r in rows:
            aid = r["id"]
            if trigger == "alarm-ack":
                results.append(src.acknowledge(aid, user, comment or "", **who))
            elif trigger == "alarm-ack-line":
                results.extend(src.acknowledge_line(r.get("site_id", ""), r.get("line_id", ""), user, comment or "",
                                                    **who))
            elif trigger == "alarm-shelve":
                dur = shelve_for if isinstance(shelve_for, (int, float)) else 0  # the service says why not
                results.append(src.shelve(aid, user, comment or "", dur, **who))
            elif trigger == "alarm-unshelve":
                results.append(src.unshelve(aid, user, comment or "", **who))
            elif trigger == "alarm-add-comment":
                results.append(src.comment(aid, user, comment or "", **who))
            elif trigger == "alarm-oos":
                results.append(src.remove_from_service(aid, user, comment or "", **who))
            elif trigger == "alarm-ris":
                results.append(src.return_to_service(aid, user, comment or "", **who))
    except CommandFailed as e:  # over the control bus: collect offline, no answer, or refused and why
        n = sum(1 for x in results if x is not None)
        return (t("done_n", lang, n=n) + " · " if n else "") + f"✗ {e}", (done or 0) + 1
    except ValueError as e:  # the service's reason (user_missing, comment_missing, ...), in words
        reason = str(e)
        key = f"err.{reason}"
        text = t(key, lang) if key != t(key, lang) else t("err.other", lang, reason=reason)
        return f"✗ {text}", (done or 0) + 1
    n = sum(1 for x in results if x is not None)
    return (t("done_n", lang, n=n) if n else t("nothing_to_do", lang)), (done or 0) + 1


def _client() -> str:
    """The browser's address, for the audit log."""
    import flask

    return (flask.request.remote_addr or "") if flask.has_request_context() else ""


@callback(Output("alarm-history-grid", "rowData"), Input("alarm-search", "value"),
          Input("alarm-history-window", "value"), Input("alarm-action-done", "data"), State("page-ctx", "data"))
def history_rows(search: Any, window: Any, done: Any, page_ctx: Any, now_ns: Optional[int] = None):
    lang, _ = _lang(page_ctx)
    secs = HISTORY_WINDOWS.get(window if isinstance(window, str) else "", 86_400)
    now = context.data().clock() if now_ns is None else now_ns
    text = search[:200] if isinstance(search, str) else ""
    try:
        evs = alarm_source().history(now - secs * 1_000_000_000, now + 1, text=text)
    except Exception:
        log.exception("alarm history failed")
        return dash.no_update
    return [{"time": fmt_ts(e.ts), "event": e.data.get("event", ""),
             "status": t(f"status.{e.data.get('state', 'normal')}", lang),
             "priority": t(f"prio.{e.data.get('priority', 'medium')}", lang),
             "message": e.data.get("message_ko" if lang == "ko" else "message_en", ""),
             "user": e.data.get("user", ""), "comment": e.data.get("comment", ""), "alarm": e.key} for e in evs]


@callback(Output("alarm-rate", "figure"), Output("alarm-health-lists", "children"),
          Input("refresh", "n_intervals"), State("page-ctx", "data"))
def health_view(n: Any, page_ctx: Any, now_ns: Optional[int] = None):
    lang, _ = _lang(page_ctx)
    try:
        h = alarm_source().health(now_ns)
    except Exception:
        log.exception("alarm health failed")
        return dash.no_update, dash.no_update
    start = h.get("rate_start_ns", 0)
    traces = [{"type": "bar", "name": area, "y": counts,
               "x": [fmt_ts(start + i * 600 * 1_000_000_000)[11:16] for i in range(len(counts))]}
              for area, counts in sorted(h["rate"].items())]
    fig = {"data": traces, "layout": {
        "title": {"text": t("rate_title", lang), "font": {"size": 14}}, "barmode": "stack",
        "margin": {"l": 40, "r": 10, "t": 30, "b": 30}, "uirevision": "alarm-rate",
        "xaxis": {"type": "category"}, "shapes": [
            # EEMUA 191: more than 10 in 10 minutes is a flood
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 10, "y1": 10,
             "line": {"color": "#d32f2f", "dash": "dash"}}]}}
    floods = [html.Div(t("alarm_flood", lang, area=a, n=c), className="gw-alarm-flood")
              for a, c in sorted(h["flood_now"].items())] or [html.Div(t("flood_none", lang))]
    chat = h["chattering"]
    lists = [
        html.Div(floods),
        html.H3(t("chattering", lang)),
        html.Ul([html.Li(a) for a in chat]) if chat else html.Div(t("none", lang)),
        html.H3(t("bad_actors", lang)),
        html.Table([html.Tr([html.Th(t("col.alarm", lang)), html.Th(t("col.count", lang))])] +
                   [html.Tr([html.Td(a), html.Td(str(c))]) for a, c in h["bad_actors"]],
                   className="gw-alarm-table"),
    ]
    return fig, lists


@callback(Output("alarm-notify-grid", "rowData"), Input("refresh", "n_intervals"), State("page-ctx", "data"))
def notification_rows(n: Any, page_ctx: Any):
    lang, _ = _lang(page_ctx)
    try:
        recs = alarm_source().notifications(200)
    except Exception:
        log.exception("notification log failed")
        return dash.no_update
    return [{"time": fmt_ts(r.get("ts")), "outcome": r.get("outcome"), "channel": r.get("channel"),
             "target": r.get("target"), "level": r.get("level"), "attempt": r.get("attempt"),
             "message": r.get("message_ko" if lang == "ko" else "message_en"), "error": r.get("error", "")}
            for r in recs]
