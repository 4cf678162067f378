"""Machine tiles and line summaries: data (view models from dashboards.data) in, layout out.

A tile's id is pattern-matching — {"type": "gw-tile", "site", "line", "machine"} — so one
callback (components/callbacks.py) refreshes every tile on whatever page shows them.

Current-shift OEE on tiles and line heads: `PlantOee` (what callbacks.plant_oee loaded, one
load_scope per site) in, a small badge / an A·P·Q strip out. A value over 100 % is shown as
computed with a warning mark, a ratio without a denominator as "–", a store that does not
answer as "unavailable" — never as 0 %.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dash import dcc, html
from dash.development.base_component import Component

from gwanje.config import Config, MachineSpec
from gwanje.engine import LineOee
from gwanje.model import MachineState
from gwanje.oee import OeeResult

from dashboards.data import LineView, MachineView
from dashboards.i18n import add_strings, t

add_strings({
    "tiles:oee_unavailable": {"ko": "OEE 조회 불가", "en": "OEE unavailable"},
    "tiles:oee_unavailable_long": {"ko": "저장소가 응답하지 않아 OEE를 계산할 수 없습니다",
                                   "en": "Storage is not answering: OEE cannot be computed"},
    "tiles:bottleneck": {"ko": "병목", "en": "Bottleneck"},
    "tiles:shift_oee": {"ko": "현재 교대 설비종합효율", "en": "Current shift OEE"},
    "tiles:over_100": {"ko": "100% 초과: 기준 사이클타임 또는 카운터 확인",
                       "en": "Over 100 %: check the ideal cycle time or the counter"},
    "tiles:line_oee_page": {"ko": "라인 OEE 보기", "en": "Line OEE"},
    "tiles:assign_reasons": {"ko": "비가동 사유 입력", "en": "Assign downtime reasons"},
    "tiles:availability": {"ko": "시간가동률", "en": "Availability"},
    "tiles:performance": {"ko": "성능가동률", "en": "Performance"},
    "tiles:quality": {"ko": "양품률", "en": "Quality"},
    "tiles:sim": {"ko": "모의", "en": "SIM"},
    "tiles:sim_long": {"ko": "시뮬레이터가 만든 가상 데이터 (실제 설비 아님, plant.yaml simulated)",
                       "en": "Made-up data from the simulator, not a real device (plant.yaml simulated)"},
    "tiles:open_lot": {"ko": "LOT 이력 보기", "en": "Open the LOT"},
    "tiles:clock_ahead": {"ko": "시계 앞섬", "en": "CLOCK AHEAD"},
    "tiles:clock_ahead_note": {"ko": "설비 시계가 {n}초 빠름", "en": "source clock {n} s ahead"},
})


def tile_id(site: str, line: str, machine: str) -> dict[str, str]:
    return {"type": "gw-tile", "site": site, "line": line, "machine": machine}


def line_summary_id(site: str, line: str) -> dict[str, str]:
    return {"type": "gw-line-summary", "site": site, "line": line}


def fmt_count(v: Optional[float]) -> str:
    return "–" if v is None else f"{int(round(v)):,}"


def fmt_age(age_s: Optional[float]) -> str:
    return str(int(age_s)) if age_s is not None else "?"


def state_key(view: MachineView) -> str:
    """CSS state class: stale and no-data are their own look (hatched), never the last state."""
    if view.stale:
        return "stale"
    return view.state.value


def state_label(view: MachineView, lang: str) -> str:
    """"STALE 12 s" / "통신 끊김 12초" for a silent machine, "CLOCK AHEAD 600 s" for one whose
    newest sample is stamped beyond the clock tolerance ahead: never its last state."""
    if view.last_ts is None and view.silent_over_s is None:
        return t("no_data", lang)
    if view.stale:
        return " ".join(_stale_words(view, lang))
    return t(f"state.{view.state.value}", lang)


def _stale_words(view: MachineView, lang: str) -> tuple[str, str]:
    # silence says more than a wrong clock: a silent machine is STALE whatever its stamps
    if not view.silent and view.clock_ahead:
        return t("tiles:clock_ahead", lang), t("age", lang, n=fmt_age(view.ahead_s))
    return t("stale", lang), _age_text(view, lang)


def _age_text(view: MachineView, lang: str) -> str:
    if view.last_ts is None and view.silent_over_s is not None:
        return t("over_min", lang, n=int(view.silent_over_s // 60))
    return t("age", lang, n=fmt_age(view.age_s))


def _state_children(view: MachineView, lang: str) -> Any:
    # the age is its own unbreakable span: a narrow tile wraps between words, not in "12 s"
    if view.stale and (view.last_ts is not None or view.silent_over_s is not None):
        word, age = _stale_words(view, lang)
        return [html.Span(word, className="gw-nowrap"), " ", html.Span(age, className="gw-nowrap gw-age")]
    return state_label(view, lang)


def tile_class(view: MachineView) -> str:
    return f"gw-tile gw-state-{state_key(view)}"


def simulation_marks(cfg: Config) -> tuple[bool, bool]:
    """(the whole plant is simulated, tiles carry a SIM mark): in a plant that mixes real and
    simulated machines each simulated tile says so; in an all-simulated plant (the demo) one
    mark in the header says it once, and the tiles keep their room for the machine's name."""
    sims = [m.simulated for m in cfg.machines()]
    every = bool(sims) and all(sims)
    return every, any(sims) and not every


def lot_value(lot: Optional[str], lang: str, kiosk: bool = False) -> Any:
    """The LOT on a machine: a link to its page (/lot/<LOT>) when the number can be one."""
    from dashboards.components.shell import href
    from dashboards.lots_data import lot_id_problem

    if not lot:
        return html.Span("–", className="gw-v")
    if lot_id_problem(lot):
        return html.Span(lot, className="gw-v")
    # inside a tile that is itself a link: assets/lots.js makes a click open the LOT, not the machine
    return html.A(lot, href=href(f"/lot/{lot}", lang, kiosk), className="gw-v gw-lot-link gw-tile-lot-link",
                  title=t("tiles:open_lot", lang))


def tile_children(view: MachineView, spec: MachineSpec, lang: str, badge: Any = None,
                  sim: Optional[bool] = None, kiosk: bool = False) -> list[Any]:
    """badge: the tile's OEE line (oee_badge), kept by the refresh as the layout has it.
    sim: show the SIM mark (default: when the machine is simulated; see simulation_marks)."""
    sim = spec.simulated if sim is None else sim
    detail = []
    if view.silent and view.clock_ahead:
        detail.append(html.Div(t("tiles:clock_ahead_note", lang, n=fmt_age(view.ahead_s)), className="gw-tile-note"))
    if view.unmapped:
        code = view.code if not isinstance(view.code, float) or not view.code.is_integer() else int(view.code)
        detail.append(html.Div(t("unknown_code", lang, code=code), className="gw-tile-note"))
    counts = html.Div([
        html.Span([html.Span(t("count_total", lang), className="gw-k"), html.Span(fmt_count(view.total), className="gw-v")]),
        html.Span([html.Span(t("count_reject", lang), className="gw-k"),
                   html.Span(fmt_count(view.reject), className="gw-v gw-reject")]),
    ], className="gw-tile-counts")
    lot = html.Div([html.Span(t("lot", lang), className="gw-k"), lot_value(view.lot, lang, kiosk)],
                   className="gw-tile-lot")
    return [
        html.Div(([html.Span(t("tiles:sim", lang), className="gw-sim", title=t("tiles:sim_long", lang)), " "]
                  if sim else []) + [spec.definition.name.get(lang)], className="gw-tile-name"),
        html.Div(_state_children(view, lang), className="gw-tile-state"),
        *detail,
        counts,
        lot,
        *([badge] if badge is not None else []),
    ]


def machine_tile(view: MachineView, spec: MachineSpec, lang: str, link: Optional[str],
                 sim: Optional[bool] = None, kiosk: bool = False) -> Any:
    """A tile; with link it is one big touch target opening the machine page (its LOT opens
    the LOT's page)."""
    kids = tile_children(view, spec, lang, sim=sim, kiosk=kiosk)
    ident = tile_id(view.site, view.line, view.machine)
    if link:
        return dcc.Link(kids, href=link, id=ident, className=tile_class(view),
                        title=f"{spec.site} / {spec.line} / {spec.machine}")
    return html.Div(kids, id=ident, className=tile_class(view))


def line_summary_text(lv: LineView, lang: str) -> str:
    return t("running_of", lang, running=lv.running, total=lv.total)


def state_legend(lang: str) -> html.Div:
    states = [s.value for s in MachineState if s is not MachineState.UNKNOWN]
    items = [html.Span(t(f"state.{s}", lang), className=f"gw-legend-item gw-state-{s}") for s in states]
    items.append(html.Span(t("stale", lang), className="gw-legend-item gw-state-stale"))
    return html.Div(items, className="gw-legend")


def machine_spec(config: Config, view: MachineView) -> MachineSpec:
    spec = config.machine(view.site, view.line, view.machine)
    assert spec is not None  # views are built from the config
    return spec


# ------------------------------------------------------------------ current-shift OEE
@dataclass(frozen=True)
class PlantOee:
    """The current shift's OEE of every machine and line (from load_scope, one per site);
    ok=False: the store did not answer, so no figure is known."""

    ok: bool
    machines: dict[tuple[str, str, str], OeeResult] = field(default_factory=dict)
    lines: dict[tuple[str, str], LineOee] = field(default_factory=dict)

    # names may come from a browser's callback ids: anything but strings names nothing
    def machine(self, site: Any, line: Any, machine: Any) -> Optional[OeeResult]:
        key = (site, line, machine)
        return self.machines.get(key) if all(isinstance(x, str) for x in key) else None

    def line(self, site: Any, line: Any) -> Optional[LineOee]:
        return self.lines.get((site, line)) if isinstance(site, str) and isinstance(line, str) else None


def line_oee_id(site: str, line: str) -> dict[str, str]:
    return {"type": "gw-line-oee", "site": site, "line": line}


def machine_oee_id(site: str, line: str, machine: str) -> dict[str, str]:
    return {"type": "gw-machine-oee", "site": site, "line": line, "machine": machine}


def fmt_ratio(x: Optional[float]) -> str:
    """78.0 %; over 100 % as computed with a warning mark (never clipped); no denominator: –."""
    if x is None:
        return "–"
    return f"{x * 100:.1f} %" + (" ⚠" if x > 1.0 else "")


def _over(x: Optional[float]) -> bool:
    return x is not None and x > 1.0


def oee_badge(r: Optional[OeeResult], ok: bool, lang: str) -> html.Div:
    """The small "OEE 78.0 %" line of a machine tile."""
    if not ok:
        return html.Div(t("tiles:oee_unavailable", lang), title=t("tiles:oee_unavailable_long", lang),
                        className="gw-tile-oee gw-oee-unavailable")
    oee = r.oee if r else None
    over = any(_over(v) for v in ((r.oee, r.availability, r.performance, r.quality) if r else ()))
    return html.Div([html.Span("OEE", className="gw-k"), html.Span(fmt_ratio(oee), className="gw-v")],
                    title=t("tiles:over_100", lang) if over else t("tiles:shift_oee", lang),
                    className="gw-tile-oee" + (" gw-oee-over" if over else ""))


def apq_children(r: Optional[OeeResult], ok: bool, lang: str) -> list[Any]:
    """OEE · A · P · Q as separate unbreakable spans (a narrow card wraps between them)."""
    if not ok:
        return [html.Span(t("tiles:oee_unavailable", lang), title=t("tiles:oee_unavailable_long", lang),
                          className="gw-oee-unavailable")]
    parts = [("OEE", "tiles:shift_oee", r.oee if r else None),
             ("A", "tiles:availability", r.availability if r else None),
             ("P", "tiles:performance", r.performance if r else None),
             ("Q", "tiles:quality", r.quality if r else None)]
    return [html.Span([html.Span(short, className="gw-k"), html.Span(fmt_ratio(v), className="gw-v")],
                      title=t("tiles:over_100", lang) if _over(v) else t(key, lang),
                      className="gw-apq-part" + (" gw-oee-over" if _over(v) else "")
                      + (" gw-apq-oee" if short == "OEE" else ""))
            for short, key, v in parts]


def line_oee_children(cfg: Config, site: str, line: str, oee: PlantOee, lang: str) -> list[Any]:
    """The line's OEE with A / P / Q (its output machine's) and its bottleneck machine."""
    lo = oee.line(site, line)
    kids = apq_children(lo.result if lo else None, oee.ok, lang)
    if oee.ok:
        spec = cfg.machine(site, line, lo.bottleneck) if lo and lo.bottleneck else None
        neck = spec.definition.name.get(lang) if spec else "–"
        kids.append(html.Span([html.Span(t("tiles:bottleneck", lang), className="gw-k"),
                               html.Span(neck, className="gw-v")], className="gw-apq-part gw-bottleneck"))
    return kids


def line_oee(cfg: Config, site: str, line: str, oee: PlantOee, lang: str) -> html.Div:
    return html.Div(line_oee_children(cfg, site, line, oee, lang), id=line_oee_id(site, line),
                    className="gw-line-oee")


def machine_oee(site: str, line: str, machine: str, oee: PlantOee, lang: str) -> html.Div:
    return html.Div(apq_children(oee.machine(site, line, machine), oee.ok, lang),
                    id=machine_oee_id(site, line, machine), className="gw-line-oee gw-machine-oee")


def add_oee(cfg: Config, layout: Any, oee: PlantOee, lang: str) -> Any:
    """Put the OEE figures into a page built by components.views: a badge on every machine
    tile, the A·P·Q strip under every line head. Done here, on the built tree, so the views
    stay as they are; the refresh callback keeps both current."""
    for c in list(_walk(layout)):
        ident = getattr(c, "id", None)
        if isinstance(ident, dict) and ident.get("type") == "gw-tile" and isinstance(c.children, list):
            c.children.append(oee_badge(oee.machine(ident["site"], ident["line"], ident["machine"]), oee.ok, lang))
        elif "gw-line-head" in (getattr(c, "className", None) or "").split() and isinstance(c.children, list):
            summary = next((k for k in c.children if isinstance(getattr(k, "id", None), dict)
                            and k.id.get("type") == "gw-line-summary"), None)
            if summary is not None:
                c.children.append(line_oee(cfg, summary.id["site"], summary.id["line"], oee, lang))
    return layout


def _walk(node: Any) -> Any:
    if isinstance(node, Component):
        yield node
        yield from _walk(getattr(node, "children", None))
    elif isinstance(node, (list, tuple)):
        for n in node:
            yield from _walk(n)
