"""Page bodies of the drill-down (plant -> site -> line -> machine -> signal) as pure builders:
config + view models + trends in, Dash layout out. Pages (dashboards/pages/*.py) fetch data
through the data layer and call these; tests call them directly."""
from __future__ import annotations

from typing import Any, Optional

from dash import dcc, html

from gwanje.config import Config, LineDef, MachineSpec, SiteDef

from dashboards.components.figures import spark_id, sparkline_figure, trend_figure, trend_id
from dashboards.components.shell import href
from dashboards.components.tiles import (line_summary_id, line_summary_text, machine_tile, simulation_marks,
                                         state_legend)
from dashboards.data import WINDOWS_S, LineView, PlantSnapshot, Trend
from dashboards.i18n import t

GRAPH_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
SPARK_CONFIG = {"staticPlot": True, "displayModeBar": False, "responsive": True}
SPARK_POINTS = 120


def _sim(cfg: Config, spec: MachineSpec) -> bool:
    return spec.simulated and simulation_marks(cfg)[1]


def machine_href(spec: MachineSpec, lang: str, kiosk: bool) -> str:
    return href(f"/machine/{spec.site}/{spec.line}/{spec.machine}", lang, kiosk)


def line_card(cfg: Config, site: SiteDef, ln: LineDef, lv: LineView, lang: str, kiosk: bool) -> html.Section:
    tiles = []
    mixed = simulation_marks(cfg)[1]  # once per card: it walks every machine of the plant
    for mv in lv.machines:
        spec = cfg.machine(mv.site, mv.line, mv.machine)
        assert spec is not None
        tiles.append(machine_tile(mv, spec, lang, machine_href(spec, lang, kiosk), sim=spec.simulated and mixed,
                                  kiosk=kiosk))
    return html.Section([
        html.Div([
            dcc.Link(ln.name.get(lang), href=href(f"/line/{site.id}/{ln.id}", lang, kiosk), className="gw-line-name"),
            html.Span(line_summary_text(lv, lang), id=line_summary_id(site.id, ln.id), className="gw-line-summary"),
        ], className="gw-line-head"),
        html.Div(tiles, className="gw-tiles"),
    ], className="gw-line", id=f"line-{site.id}-{ln.id}")


def site_section(cfg: Config, site: SiteDef, snap: PlantSnapshot, lang: str, kiosk: bool) -> html.Section:
    sv = snap.site(site.id)
    assert sv is not None
    cards = [line_card(cfg, site, ln, lv, lang, kiosk) for ln, lv in zip(site.lines, sv.lines)]
    running = sum(lv.running for lv in sv.lines)
    total = sum(lv.total for lv in sv.lines)
    return html.Section([
        html.H2([
            dcc.Link(site.name.get(lang), href=href(f"/site/{site.id}", lang, kiosk)),
            html.Span(t("running_of", lang, running=running, total=total), className="gw-site-summary"),
        ], className="gw-site-name"),
        html.Div(cards, className="gw-lines"),
    ], className="gw-site", id=f"site-{site.id}")


def plant_body(cfg: Config, snap: PlantSnapshot, lang: str, kiosk: bool) -> html.Div:
    return html.Div([
        html.Div([site_section(cfg, s, snap, lang, kiosk) for s in cfg.plant.sites], className="gw-sites"),
        state_legend(lang),
    ], className="gw-plant")


def site_body(cfg: Config, site: SiteDef, snap: PlantSnapshot, lang: str, kiosk: bool) -> html.Div:
    return html.Div([site_section(cfg, site, snap, lang, kiosk), state_legend(lang)], className="gw-plant gw-one-site")


def primary_signal(spec: MachineSpec) -> Optional[str]:
    """The signal a sparkline shows: the class's first analog signal (speed, force, ...)."""
    return next((s.id for s in spec.signals if s.kind == "analog"), None)


def line_body(cfg: Config, site: SiteDef, ln: LineDef, lv: LineView, sparks: dict[str, Trend],
              lang: str, kiosk: bool, window_s: int) -> html.Div:
    """sparks: machine id -> trend of its primary signal."""
    cards = []
    mixed = simulation_marks(cfg)[1]
    for mv in lv.machines:
        spec = cfg.machine(mv.site, mv.line, mv.machine)
        assert spec is not None
        parts: list[Any] = [machine_tile(mv, spec, lang, machine_href(spec, lang, kiosk),
                                         sim=spec.simulated and mixed, kiosk=kiosk)]
        sig = primary_signal(spec)
        if sig is not None:
            sdef = spec.signal(sig)
            assert sdef is not None
            parts.append(html.Div(f"{sdef.name.get(lang)} ({sdef.unit})" if sdef.unit else sdef.name.get(lang),
                                  className="gw-spark-label"))
            parts.append(dcc.Graph(id=spark_id(spec.site, spec.line, spec.machine, sig, window_s, SPARK_POINTS),
                                   figure=sparkline_figure(sparks.get(mv.machine, Trend(sig, [], [])), kiosk),
                                   config=SPARK_CONFIG, className="gw-spark", style={"height": "48px"}))
        cards.append(html.Div(parts, className="gw-machine-card"))
    return html.Div([
        html.Div([html.Span(line_summary_text(lv, lang), id=line_summary_id(site.id, ln.id),
                            className="gw-line-summary")], className="gw-line-head"),
        html.Div(cards, className="gw-machine-cards"),
        state_legend(lang),
    ], className="gw-line-page")


def machine_body(cfg: Config, spec: MachineSpec, snap: PlantSnapshot, trends: dict[str, Trend],
                 lang: str, kiosk: bool, window_s: int, points: int) -> html.Div:
    mv = snap.machine(spec.site, spec.line, spec.machine)
    assert mv is not None
    window = window_key(window_s)
    graphs = []
    for sig, trend in trends.items():
        sdef = spec.signal(sig)
        assert sdef is not None
        title = sdef.name.get(lang) + (f" ({sdef.unit})" if sdef.unit else "")
        graphs.append(html.Div([
            dcc.Link(title, href=href(f"/signal/{spec.site}/{spec.line}/{spec.machine}/{sig}", lang, kiosk,
                                      window=window),
                     className="gw-trend-title"),
            dcc.Graph(id=trend_id(spec.site, spec.line, spec.machine, sig, window_s, points),
                      figure=trend_figure(trend, sdef, lang, dark=kiosk, height=220,
                                          uirevision=f"{spec.key}/{sig}/{window_s}"),
                      config=GRAPH_CONFIG, className="gw-trend-graph", style={"height": "220px"}),
        ], className="gw-trend-card"))
    return html.Div([
        html.Div([
            machine_tile(mv, spec, lang, link=None, sim=_sim(cfg, spec), kiosk=kiosk),
            html.Div([
                html.Div(spec.klass.name.get(lang), className="gw-machine-class"),
                html.Div(f"{spec.site} / {spec.line} / {spec.machine}", className="gw-machine-ids"),
                dcc.Link(t("lots:trace_link", lang), id="machine-trace-link", className="gw-oee-link",
                         href=href("/trace", lang, kiosk, site=spec.site, line=spec.line, machine=spec.machine)),
            ], className="gw-machine-meta"),
        ], className="gw-hero"),
        html.Div([html.H2(t("trends", lang), className="gw-section-title"),
                  window_selector(f"/machine/{spec.site}/{spec.line}/{spec.machine}", window, lang, kiosk)],
                 className="gw-trends-head"),
        html.Div(graphs, className="gw-trends"),
    ], className="gw-machine-page")


def window_selector(base: str, window: Optional[str], lang: str, kiosk: bool) -> html.Div:
    """Links, not a dropdown: the window is in the URL, so the view can be bookmarked and shared."""
    return html.Div(
        [html.Span(t("window", lang), className="gw-k")]
        + [dcc.Link(t(f"window.{w}", lang), href=href(base, lang, kiosk, window=w), id=f"window-{w}",
                    className="gw-window-link" + (" gw-window-active" if w == window else ""))
           for w in WINDOWS_S],
        className="gw-window-selector")


def window_key(window_s: int) -> Optional[str]:
    return next((k for k, v in WINDOWS_S.items() if v == window_s), None)


def signal_body(spec: MachineSpec, signal_id: str, trend: Trend, window: str, lang: str, kiosk: bool,
                points: int) -> html.Div:
    sdef = spec.signal(signal_id)
    assert sdef is not None
    base = f"/signal/{spec.site}/{spec.line}/{spec.machine}/{signal_id}"
    return html.Div([
        window_selector(base, window, lang, kiosk),
        dcc.Graph(id=trend_id(spec.site, spec.line, spec.machine, signal_id, WINDOWS_S[window], points),
                  figure=trend_figure(trend, sdef, lang, dark=kiosk, height=None,
                                      uirevision=f"{spec.key}/{signal_id}/{window}"),
                  config=GRAPH_CONFIG, className="gw-trend-graph gw-trend-big",
                  # fills the screen below the header on any screen; plotly follows the box
                  style={"height": "calc(100vh - 270px)", "minHeight": "300px"}),
    ], className="gw-signal-page")


def not_found(what: str, lang: str, kiosk: bool) -> html.Div:
    return html.Div([
        html.P(t("not_found", lang, what=what), className="gw-not-found"),
        dcc.Link(t("back_to_plant", lang), href=href("/", lang, kiosk), className="gw-nav-link"),
    ])


def store_error(lang: str) -> html.Div:
    return html.Div(t("store_error", lang), className="gw-store-error")
