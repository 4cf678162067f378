"""Machine tiles and line summaries: data (view models from dashboards.data) in, layout out.

A tile's id is pattern-matching — {"type": "gw-tile", "site", "line", "machine"} — so one
callback (components/callbacks.py) refreshes every tile on whatever page shows them.
"""
from __future__ import annotations

from typing import Any, Optional

from dash import dcc, html

from gwanje.config import Config, MachineSpec
from gwanje.model import MachineState

from dashboards.data import LineView, MachineView
from dashboards.i18n import t


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
    """"STALE 12 s" / "통신 끊김 12초" for a silent machine, never its last state."""
    if view.last_ts is None and view.silent_over_s is None:
        return t("no_data", lang)
    if view.stale:
        return f'{t("stale", lang)} {_age_text(view, lang)}'
    return t(f"state.{view.state.value}", lang)


def _age_text(view: MachineView, lang: str) -> str:
    if view.last_ts is None and view.silent_over_s is not None:
        return t("over_min", lang, n=int(view.silent_over_s // 60))
    return t("age", lang, n=fmt_age(view.age_s))


def _state_children(view: MachineView, lang: str) -> Any:
    # the age is its own unbreakable span: a narrow tile wraps between words, not in "12 s"
    if view.stale and (view.last_ts is not None or view.silent_over_s is not None):
        return [html.Span(t("stale", lang), className="gw-nowrap"), " ",
                html.Span(_age_text(view, lang), className="gw-nowrap gw-age")]
    return state_label(view, lang)


def tile_class(view: MachineView) -> str:
    return f"gw-tile gw-state-{state_key(view)}"


def tile_children(view: MachineView, spec: MachineSpec, lang: str) -> list[Any]:
    detail = []
    if view.unmapped:
        code = view.code if not isinstance(view.code, float) or not view.code.is_integer() else int(view.code)
        detail.append(html.Div(t("unknown_code", lang, code=code), className="gw-tile-note"))
    counts = html.Div([
        html.Span([html.Span(t("count_total", lang), className="gw-k"), html.Span(fmt_count(view.total), className="gw-v")]),
        html.Span([html.Span(t("count_reject", lang), className="gw-k"),
                   html.Span(fmt_count(view.reject), className="gw-v gw-reject")]),
    ], className="gw-tile-counts")
    lot = html.Div([html.Span(t("lot", lang), className="gw-k"), html.Span(view.lot or "–", className="gw-v")],
                   className="gw-tile-lot")
    return [
        html.Div(spec.definition.name.get(lang), className="gw-tile-name"),
        html.Div(_state_children(view, lang), className="gw-tile-state"),
        *detail,
        counts,
        lot,
    ]


def machine_tile(view: MachineView, spec: MachineSpec, lang: str, link: Optional[str]) -> Any:
    """A tile; with link it is one big touch target opening the machine page."""
    kids = tile_children(view, spec, lang)
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
