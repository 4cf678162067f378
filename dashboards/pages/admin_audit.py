"""`/admin/audit?from=..&to=..&user=..&action=..` — the audit log for admins (gwanje/roles.py
"audit.view"): who did what to which target, when, before and after; filtered by time range,
user and action, newest first; CSV export. Every callback authorizes on the server, so a
viewer's hand-made request gets "not allowed" and no rows (nor a file)."""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import context
from dashboards.auth import NotAllowed, authorize
from dashboards.components.page import render, view
from dashboards.data import DataUnavailable
from dashboards.i18n import add_strings, normalize_lang, t
from gwanje.audit import AUDIT_ACTIONS, KIND
from gwanje.validate import PlantIds, hostile, parse_time

add_strings({
    "audit": {"ko": "감사 기록", "en": "Audit log"},
    "audit.from": {"ko": "시작 (YYYY-MM-DD [HH:MM])", "en": "From (YYYY-MM-DD [HH:MM])"},
    "audit.to": {"ko": "끝 (비우면 현재)", "en": "To (empty: now)"},
    "audit.user": {"ko": "사용자", "en": "User"},
    "audit.action": {"ko": "동작", "en": "Action"},
    "audit.export": {"ko": "CSV 내보내기", "en": "Export CSV"},
    "audit.rows": {"ko": "{n}건 (최신순)", "en": "{n} entries (newest first)"},
    "audit.more": {"ko": "최근 {n}건만 표시: 기간을 좁히거나 CSV로 내보내세요",
                   "en": "Only the newest {n} shown: narrow the range or export CSV"},
    "audit.bad_filter": {"ko": "조회 조건이 올바르지 않습니다", "en": "Filter not accepted"},
    "audit.col.time": {"ko": "시각", "en": "Time"},
    "audit.col.user": {"ko": "사용자", "en": "User"},
    "audit.col.role": {"ko": "역할", "en": "Role"},
    "audit.col.action": {"ko": "동작", "en": "Action"},
    "audit.col.target": {"ko": "대상", "en": "Target"},
    "audit.col.ok": {"ko": "결과", "en": "Result"},
    "audit.col.before": {"ko": "변경 전", "en": "Before"},
    "audit.col.after": {"ko": "변경 후", "en": "After"},
    "audit.col.detail": {"ko": "상세", "en": "Detail"},
    "audit.col.client": {"ko": "접속 주소", "en": "Client"},
    "audit.ok": {"ko": "성공", "en": "done"},
    "audit.refused": {"ko": "거부/실패", "en": "refused/failed"},
})

dash.register_page(__name__, path="/admin/audit", title="Gwanje", name="admin_audit",
                   nav={"key": "audit", "order": 95, "action": "audit.view"})

SHOWN = 1000
MAX_ROWS = 100_000
DEFAULT_DAYS = 7
MAX_SPAN_NS = 20 * 366 * 86_400 * 10**9
COLUMNS = ("time", "user", "role", "action", "target", "ok", "before", "after", "detail", "client")


def _tz() -> ZoneInfo:
    return ZoneInfo(context.config().plant.timezone)


def time_range(start: Any, end: Any, now_ns: int) -> Optional[tuple[int, int]]:
    """The filter's local times as ns [start, end); None when one does not parse."""
    tz = _tz()
    if start in (None, ""):
        s_ns = now_ns - DEFAULT_DAYS * 86_400 * 10**9
    else:
        d = parse_time(start) if isinstance(start, str) and not PlantIds.time(start) else None
        if d is None:
            return None
        s_ns = int(d.replace(tzinfo=tz).timestamp() * 1e9)
    if end in (None, ""):
        e_ns = now_ns + 1
    else:
        d = parse_time(end) if isinstance(end, str) and not PlantIds.time(end) else None
        if d is None:
            return None
        if len(end) == 10:  # a date: the whole day
            d += timedelta(days=1)
        e_ns = int(d.replace(tzinfo=tz).timestamp() * 1e9)
    return None if PlantIds.time_range(s_ns, e_ns, MAX_SPAN_NS) else (s_ns, e_ns)


def _json(v: Any) -> str:
    return "" if v is None else (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True))


def entries(start: Any, end: Any, user: Any, actions: Any, now_ns: Optional[int] = None) -> Optional[list[dict]]:
    """The audit rows matching the filter, newest first; None for a filter that is not valid."""
    # the wall clock, as the entries are stamped with it (gwanje.audit), not the data layer's
    now = time.time_ns() if now_ns is None else now_ns
    rng = time_range(start, end, now)
    if rng is None:
        return None
    if user not in (None, "") and (not isinstance(user, str) or hostile(user, 128)):
        return None
    acts = [actions] if isinstance(actions, str) else list(actions or [])
    if any(a not in AUDIT_ACTIONS for a in acts):
        return None
    try:
        evs = context.data().store.events(KIND, rng[0], rng[1], limit=MAX_ROWS)
    except Exception as e:
        raise DataUnavailable(str(e)) from e
    needle = user.lower() if isinstance(user, str) else ""
    tz = _tz()
    rows = []
    for e in reversed(evs):
        d = e.data if isinstance(e.data, dict) else {}
        if acts and d.get("action") not in acts:
            continue
        if needle and needle not in str(d.get("user", "")).lower():
            continue
        rows.append({"time": datetime.fromtimestamp(e.ts / 1e9, tz).strftime("%Y-%m-%d %H:%M:%S"),
                     "user": str(d.get("user", "")), "role": str(d.get("role", "")),
                     "action": str(d.get("action", "")), "target": str(d.get("target", "")),
                     "ok": bool(d.get("ok", True)), "before": _json(d.get("before")), "after": _json(d.get("after")),
                     "detail": str(d.get("detail", "")), "client": str(d.get("client", "")), "id": e.key})
    return rows


def table(rows: list[dict], lang: str) -> list[Any]:
    head = html.Thead(html.Tr([html.Th(t(f"audit.col.{c}", lang)) for c in COLUMNS]))
    body = html.Tbody([html.Tr([html.Td(t("audit.ok" if r["ok"] else "audit.refused", lang) if c == "ok" else r[c],
                                        className=f"gw-audit-{c}") for c in COLUMNS],
                               className="gw-audit-row" + ("" if r["ok"] else " gw-bad"))
                       for r in rows[:SHOWN]])
    out: list[Any] = [html.P(t("audit.rows", lang, n=len(rows)), className="gw-note", id="audit-count")]
    if len(rows) > SHOWN:
        out.append(html.P(t("audit.more", lang, n=SHOWN), className="gw-note"))
    out.append(html.Table([head, body], className="gw-table gw-audit-table", id="audit-rows"))
    return out


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        # a cell a spreadsheet would run as a formula is quoted as text
        w.writerow([("'" + v) if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v
                    for v in (r[c] for c in COLUMNS)])
    return buf.getvalue()


def layout(lang=None, kiosk=None, **query):
    v = view(lang, kiosk, **query)
    crumbs = v.crumbs((t("audit", v.lang), None))
    try:
        authorize("audit.view")
    except NotAllowed:
        return render(v, html.P(t("not_allowed", v.lang), className="gw-note gw-bad", id="audit-denied"),
                      path="/admin/audit", crumbs=crumbs, title=t("audit", v.lang))
    q = v.query
    acts = [a for a in (q.get("action") or "").split(",") if a in AUDIT_ACTIONS]
    filters = html.Div([
        html.Label([t("audit.from", v.lang), dcc.Input(id="audit-from", type="text", value=q.get("from", ""),
                                                       debounce=True, placeholder="2026-09-21 06:00")]),
        html.Label([t("audit.to", v.lang), dcc.Input(id="audit-to", type="text", value=q.get("to", ""),
                                                     debounce=True)]),
        html.Label([t("audit.user", v.lang), dcc.Input(id="audit-user", type="text", value=q.get("user", ""),
                                                       debounce=True)]),
        html.Label([t("audit.action", v.lang), dcc.Dropdown(id="audit-action", multi=True, value=acts,
                                                            options=[{"label": a, "value": a} for a in AUDIT_ACTIONS],
                                                            className="gw-audit-actions")]),
        html.Button(t("audit.export", v.lang), id="audit-csv-btn", className="gw-button"),
        dcc.Download(id="audit-csv"),
        html.Span(id="audit-msg", className="gw-note"),
    ], className="gw-audit-filters")
    body = html.Div([filters, html.Div(id="audit-body")], className="gw-audit")
    return render(v, body, path="/admin/audit", crumbs=crumbs, title=t("audit", v.lang))


def _lang(page_ctx: Any) -> str:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    return normalize_lang(pc.get("lang"), context.config().system.ui.default_language)


@callback(Output("audit-body", "children"), Input("audit-from", "value"), Input("audit-to", "value"),
          Input("audit-user", "value"), Input("audit-action", "value"), Input("refresh", "n_intervals"),
          State("page-ctx", "data"))
def show(start: Any, end: Any, user: Any, actions: Any, n: Any, page_ctx: Any) -> Any:
    lang = _lang(page_ctx)
    try:
        authorize("audit.view")
    except NotAllowed:
        return html.P(t("not_allowed", lang), className="gw-note gw-bad")
    try:
        rows = entries(start, end, user, actions)
    except DataUnavailable:
        return html.P(t("store_error", lang), className="gw-note gw-bad")
    if rows is None:
        return html.P(t("audit.bad_filter", lang), className="gw-note gw-bad")
    return table(rows, lang)


@callback(Output("audit-csv", "data"), Output("audit-msg", "children"), Input("audit-csv-btn", "n_clicks"),
          State("audit-from", "value"), State("audit-to", "value"), State("audit-user", "value"),
          State("audit-action", "value"), State("page-ctx", "data"), prevent_initial_call=True)
def export(n: Any, start: Any, end: Any, user: Any, actions: Any, page_ctx: Any) -> Any:
    lang = _lang(page_ctx)
    try:
        authorize("audit.view")
    except NotAllowed:
        return dash.no_update, t("not_allowed", lang)
    try:
        rows = entries(start, end, user, actions)
    except DataUnavailable:
        return dash.no_update, t("store_error", lang)
    if rows is None:
        return dash.no_update, t("audit.bad_filter", lang)
    stamp = datetime.now(_tz()).strftime("%Y%m%d-%H%M%S")
    return {"content": csv_text(rows), "filename": f"audit_{stamp}.csv", "type": "text/csv"}, ""
