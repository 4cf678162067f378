"""`/status` — the system status page: every source's connection state, data rate and clock
offset, the store (and whether its writes fail), the in-memory queue, the disk spool (with the
spool-full alarm), the data the store refused for good (dead-letter file, with its alarm), and
which machines this process's simulator makes up (everything else is a real device).

Reads the runtime's status (`context.runtime_status()`, the dict runtime.Runtime.status()
returns, also behind /readyz and /metrics), merged in a serve process with every collect
instance's retained status from the control bus (gwanje.bus.merge_status: each source with
its instance, offline ones marked with the age of their last status). A data rate needs two readings: the previous
counters ride along in a dcc.Store, so each display computes its own rates and the server
keeps no per-client state. `status_body` is pure (tests call it with hand-written dicts).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import context
from dashboards.components.page import render, view
from dashboards.i18n import add_strings, normalize_lang, t
from gwanje.config import ClockConfig
from gwanje.model import now_ns

dash.register_page(__name__, path="/status", title="Gwanje", name="status", nav={"key": "status", "order": 90})

add_strings({
    "status": {"ko": "시스템 상태", "en": "System status"},
    "st.sources": {"ko": "데이터 소스", "en": "Sources"},
    "st.source": {"ko": "소스", "en": "Source"},
    "st.kind": {"ko": "종류", "en": "Kind"},
    "st.state": {"ko": "연결", "en": "Connection"},
    "st.connected": {"ko": "연결됨", "en": "Connected"},
    "st.disconnected": {"ko": "끊김", "en": "Disconnected"},
    "st.rate": {"ko": "수신 속도 (샘플/초)", "en": "Data rate (samples/s)"},
    "st.samples": {"ko": "수신 샘플", "en": "Samples in"},
    "st.reconnects": {"ko": "재연결", "en": "Reconnects"},
    "st.last_data": {"ko": "마지막 수신", "en": "Last data"},
    "st.rejects": {"ko": "거부", "en": "Rejected"},
    "st.clock": {"ko": "시계 차이", "en": "Clock offset"},
    "st.clock_title": {"ko": "소스 시각 − 수신 시각 (+: 소스 시계가 빠름), 허용 ±{tol}초",
                       "en": "source time − receive time (+: the source's clock is ahead), tolerance ±{tol} s"},
    "st.clock_beyond": {"ko": "{n}곳 허용 초과", "en": "{n} beyond tolerance"},
    "st.detail": {"ko": "상세", "en": "Detail"},
    "st.ago": {"ko": "{s}초 전", "en": "{s} s ago"},
    "st.never": {"ko": "없음", "en": "never"},
    "st.no_runtime": {"ko": "이 프로세스에는 수집기가 없습니다 (분리 배포: collect 프로세스의 /metrics 참조)",
                      "en": "No collectors in this process (split deployment: see the collect process's /metrics)"},
    "st.store": {"ko": "저장소", "en": "Store"},
    "st.store_ok": {"ko": "응답함", "en": "Answering"},
    "st.store_down": {"ko": "응답 없음 — 데이터는 디스크 스풀에 보관 중", "en": "Not answering — data kept in the disk spool"},
    "st.written": {"ko": "저장 속도 (샘플/초)", "en": "Write rate (samples/s)"},
    "st.queue": {"ko": "메모리 대기열", "en": "Memory queue"},
    "st.spool": {"ko": "디스크 스풀", "en": "Disk spool"},
    "st.spool_full": {"ko": "스풀 가득 참: {policy} 정책으로 데이터 손실 중", "en": "Spool full: policy {policy} is dropping data"},
    "st.dropped": {"ko": "손실 샘플", "en": "Samples lost"},
    "st.latency": {"ko": "최근 쓰기 시간", "en": "Last write time"},
    "st.simulated": {"ko": "모의 설비 (가상 데이터)", "en": "Simulated machines (made-up data)"},
    "st.simulated_none": {"ko": "없음 — 모든 데이터는 실제 설비", "en": "none — all data from real devices"},
    "st.unserved": {"ko": "시뮬레이터가 OPC UA 엔드포인트 {name}을(를) 제공하지 않음: {why}",
                    "en": "The simulator does not serve OPC UA endpoint {name}: {why}"},
    "st.writes_failing": {"ko": "쓰기 실패 중", "en": "writes failing"},
    "st.refused": {"ko": "거부된 데이터 (데드레터 파일)", "en": "Refused (dead-letter file)"},
    "st.instance": {"ko": "수집 인스턴스", "en": "Collect instance"},
    "st.instances": {"ko": "수집 프로세스 (제어 버스)", "en": "Collect processes (control bus)"},
    "st.this_process": {"ko": "이 프로세스", "en": "this process"},
    "st.online": {"ko": "온라인", "en": "Online"},
    "st.offline": {"ko": "오프라인", "en": "offline"},
    "st.status_age": {"ko": "상태 수신", "en": "Status received"},
    "st.commands_refused": {"ko": "거부된 명령", "en": "Commands refused"},
    "st.lines": {"ko": "담당 라인", "en": "Lines owned"},
    "st.refused_alarm": {"ko": "저장소가 데이터를 영구 거부함: {path} 에 보관",
                         "en": "The store refused data for good: kept in {path}"},
})


def _fmt_int(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else "—"


def _rate(now: Optional[float], before: Optional[float], dt_s: float) -> Optional[float]:
    if now is None or before is None or dt_s <= 0 or now < before:
        return None  # first reading, or a restart reset the counter
    return (now - before) / dt_s


def _key(s: Mapping[str, Any]) -> str:
    """A source's name, with its collect instance's when it has one (two instances may both
    read "mqtt broker:8883")."""
    return f"{s['instance']}/{s.get('name', '')}" if s.get("instance") else s.get("name", "")


def counters(status: Mapping[str, Any], at_ns: int) -> dict[str, Any]:
    """What the next refresh needs to turn counters into rates."""
    return {"t": at_ns,
            "sources": {_key(s): s.get("samples_in") for s in status.get("sources") or []},
            "written": (status.get("pipeline") or {}).get("samples_written")}


def clock_cell(offsets: Any, tolerance_s: float, lang: str) -> html.Td:
    """The source's clock offset: the origin (machine or endpoint) furthest off, named when
    the source has several, in warning style beyond the tolerance (either way: a slow clock
    distorts durations as much as a fast one); every origin in the title."""
    offsets = {k: v for k, v in offsets.items() if isinstance(v, (int, float))} if isinstance(offsets, Mapping) else {}
    if not offsets:
        return html.Td("—", className="gw-num")
    ranked = sorted(offsets.items(), key=lambda kv: -abs(kv[1]))
    origin, worst = ranked[0]
    beyond = sum(1 for _, v in ranked if abs(v) > tolerance_s)
    shown = f"{worst:+,.1f} s"
    if len(ranked) > 1:
        shown += f" ({str(origin).rsplit('/', 1)[-1]})"
    if beyond > 1:
        shown += " · " + t("st.clock_beyond", lang, n=beyond)
    title = "\n".join([t("st.clock_title", lang, tol=f"{tolerance_s:g}")] + [f"{k}: {v:+,.1f} s" for k, v in ranked[:30]])
    return html.Td(shown, title=title, className="gw-num gw-clock-offset" + (" gw-bad" if beyond else ""),
                   **{"data-clock": "skewed" if beyond else "ok"})


def status_body(status: Mapping[str, Any], prev: Optional[Mapping[str, Any]], at_ns: int, lang: str,
                tolerance_s: float = ClockConfig().future_tolerance_s) -> list[Any]:
    """The page content for one status reading; prev = counters() of the previous reading;
    tolerance_s: system.yaml clock.future_tolerance_s (clock offsets beyond it are warnings)."""
    if not status:
        return [html.P(t("st.no_runtime", lang), className="gw-note")]
    prev = prev if isinstance(prev, Mapping) else {}
    dt = (at_ns - prev["t"]) / 1e9 if isinstance(prev.get("t"), int) else 0.0
    prev_src = prev.get("sources") if isinstance(prev.get("sources"), Mapping) else {}
    rows = []
    srcs = status.get("sources") or []
    by_instance = any(s.get("instance") for s in srcs) or bool(status.get("instances"))
    for s in srcs:
        name = s.get("name", "")
        # a collect's source carries the rate measured where it is counted (runtime.control)
        rate = s["rate"] if isinstance(s.get("rate"), (int, float)) else _rate(s.get("samples_in"),
                                                                                prev_src.get(_key(s)), dt)
        last = s.get("last_data_ns")
        age = t("st.ago", lang, s=f"{(at_ns - last) / 1e9:.0f}") if isinstance(last, int) else t("st.never", lang)
        # a source of an offline collect: its last reported state, not a live one
        ok = bool(s.get("connected")) and s.get("online", True) is not False
        rows.append(html.Tr(([_instance_cell(s, lang)] if by_instance else []) + [
            html.Td(name), html.Td(s.get("kind", "")),
            html.Td(t("st.connected" if ok else "st.disconnected", lang),
                    className="gw-ok" if ok else "gw-bad", **{"data-state": "up" if ok else "down"}),
            html.Td("—" if rate is None else f"{rate:,.1f}", className="gw-num"),
            html.Td(_fmt_int(s.get("samples_in")), className="gw-num"),
            html.Td(_fmt_int(s.get("reconnects")), className="gw-num"),
            html.Td(age),
            clock_cell(s.get("clock_offsets_s"), tolerance_s, lang),
            html.Td(_fmt_int(sum((s.get("rejects") or {}).values())), className="gw-num",
                    title=", ".join(f"{k}: {v}" for k, v in sorted((s.get("rejects") or {}).items()))),
            html.Td(s.get("detail", ""), className="gw-detail"),
        ]))
    heads = (["st.instance"] if by_instance else []) + ["st.source", "st.kind", "st.state", "st.rate", "st.samples", "st.reconnects", "st.last_data",
             "st.clock", "st.rejects", "st.detail"]
    sources = html.Table([html.Thead(html.Tr([html.Th(t(h, lang)) for h in heads])), html.Tbody(rows)],
                         className="gw-table gw-status-sources")

    p = status.get("pipeline") or {}
    store = status.get("store") or {}
    written_rate = _rate(p.get("samples_written"), prev.get("written"), dt)
    store_ok = bool(store.get("ok"))
    store_text = f"{store.get('name', '—')}: " + t("st.store_ok" if store_ok else "st.store_down", lang)
    writes_failing = store_ok and p.get("store_up") is False
    if writes_failing:  # answers its ping, refuses writes (a missing retention policy, a read-only user)
        store_text += f" — {t('st.writes_failing', lang)} ({p.get('last_write_error') or '?'})"
    by_reason: dict[str, int] = {}
    for counts in (p.get("refused") or {}).values():
        for reason, n in counts.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    refused = (p.get("samples_refused") or 0) + (p.get("events_refused") or 0)
    facts = [
        (t("st.store", lang), store_text, "gw-ok" if store_ok and not writes_failing else "gw-bad"),
        (t("st.written", lang), "—" if written_rate is None else f"{written_rate:,.1f}", ""),
        (t("st.queue", lang), f"{_fmt_int(p.get('queue_depth'))} / {_fmt_int(p.get('queue_capacity'))}", ""),
        (t("st.spool", lang), f"{_fmt_int(p.get('spool_samples'))} ({(p.get('spool_bytes') or 0) / 1e6:,.1f} MB"
                              f" / {(p.get('spool_max_bytes') or 0) / 1e6:,.0f} MB)", ""),
        (t("st.dropped", lang), _fmt_int((p.get("samples_dropped") or 0) + (p.get("spool_dropped_samples") or 0)),
         "gw-bad" if (p.get("samples_dropped") or p.get("spool_dropped_samples")) else ""),
        (t("st.latency", lang), f"{(p.get('last_write_latency_s') or 0) * 1000:,.0f} ms", ""),
        (t("st.refused", lang), _fmt_int(refused) + (
            " (" + ", ".join(f"{r} {n:,}" for r, n in sorted(by_reason.items())) + ")" if by_reason else ""),
         "gw-bad" if refused else ""),
    ]
    sim = status.get("simulator") or {}
    played = list(sim.get("machines") or [])
    facts.append((t("st.simulated", lang), ", ".join(played) if played else t("st.simulated_none", lang),
                  "gw-status-simulated"))
    summary = html.Dl([part for label, value, cls in facts
                       for part in (html.Dt(label), html.Dd(value, className=cls))], className="gw-status-facts")
    out: list[Any] = []
    if p.get("spool_alarm"):
        out.append(html.Div(t("st.spool_full", lang, policy=p.get("spool_policy", "")),
                            className="gw-alarm gw-bad", role="alert"))
    out += [html.Div(t("st.unserved", lang, name=name, why=why), className="gw-note gw-bad")
            for name, why in sorted((sim.get("unserved_endpoints") or {}).items())]
    if p.get("refused_alarm"):
        out.append(html.Div(t("st.refused_alarm", lang, path=p.get("deadletter_path") or "—"),
                            className="gw-alarm gw-bad", role="alert"))
    out += [html.H2(t("st.sources", lang)), sources]
    if status.get("instances"):
        out += [html.H2(t("st.instances", lang)), instances_table(status["instances"], lang)]
    out.append(summary)
    return out


def _age(age_s: Any, lang: str) -> str:
    return t("st.ago", lang, s=f"{age_s:.0f}") if isinstance(age_s, (int, float)) else t("st.never", lang)


def _instance_cell(s: Mapping[str, Any], lang: str) -> html.Td:
    name = s.get("instance") or t("st.this_process", lang)
    if s.get("online", True) is False:
        return html.Td(f"{name} ({t('st.offline', lang)}, {_age(s.get('age_s'), lang)})", className="gw-bad",
                       **{"data-instance": "offline"})
    return html.Td(name, **{"data-instance": "online"})


def instances_table(instances: list[Mapping[str, Any]], lang: str) -> html.Table:
    """One row per collect instance on the control bus: online or not, how old its status is,
    its store, spool, queue and the lines it owns."""
    rows = []
    for i in instances:
        p = i.get("pipeline") or {}
        store = i.get("store") or {}
        online = bool(i.get("online"))
        rows.append(html.Tr([
            html.Td(i.get("instance", "")),
            html.Td(t("st.online" if online else "st.offline", lang), className="gw-ok" if online else "gw-bad",
                    **{"data-state": "up" if online else "down"}),
            html.Td(_age(i.get("age_s"), lang)),
            html.Td(f"{store.get('name', '—')}: " + t("st.store_ok" if store.get("ok") else "st.store_down", lang),
                    className="gw-ok" if store.get("ok") else "gw-bad"),
            html.Td(_fmt_int(p.get("queue_depth")), className="gw-num"),
            html.Td(_fmt_int(p.get("spool_samples")), className="gw-num"),
            html.Td(_fmt_int((p.get("samples_dropped") or 0) + (p.get("spool_dropped_samples") or 0)),
                    className="gw-num"),
            html.Td(_fmt_int(sum((i.get("rejects") or {}).values())), className="gw-num",
                    title=", ".join(f"{k}: {v}" for k, v in sorted((i.get("rejects") or {}).items()))),
            html.Td(", ".join(i.get("lines") or []), className="gw-detail"),
        ]))
    heads = ["st.instance", "st.state", "st.status_age", "st.store", "st.queue", "st.spool", "st.dropped",
             "st.commands_refused", "st.lines"]
    return html.Table([html.Thead(html.Tr([html.Th(t(h, lang)) for h in heads])), html.Tbody(rows)],
                      className="gw-table gw-status-instances")


def layout(lang: Any = None, kiosk: Any = None, **query: Any) -> Any:
    v = view(lang, kiosk, **query)
    status = context.runtime_status()
    at = now_ns()
    body = html.Div([
        html.Div(status_body(status, None, at, v.lang, v.config.system.clock.future_tolerance_s), id="status-body"),
        dcc.Store(id="status-prev", data=counters(status, at) if status else None),
    ])
    return render(v, body, path="/status", crumbs=v.crumbs((t("status", v.lang), None)), title=t("status", v.lang))


@callback(Output("status-body", "children"), Output("status-prev", "data"), Input("refresh", "n_intervals"),
          State("status-prev", "data"), State("page-ctx", "data"), prevent_initial_call=True)
def refresh(n: Any, prev: Any, page_ctx: Any) -> tuple[Any, Any]:
    cfg = context.config()
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    lang = normalize_lang(pc.get("lang"), cfg.system.ui.default_language)
    status = context.runtime_status()
    at = now_ns()
    return (status_body(status, prev, at, lang, cfg.system.clock.future_tolerance_s),
            counters(status, at) if status else None)

