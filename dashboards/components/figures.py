"""Plotly figures as plain dicts, and the Patch that refreshes them.

Building a `go.Figure` costs ~90 ms for a big chart on this hardware against ~3 ms for a dict
(field notes), and a live refresh only needs new x/y: `trend_patch` sends just those, and
`uirevision` keeps the operator's zoom across refreshes.
"""
from __future__ import annotations

from typing import Any, Optional

from dash import Patch

from gwanje.config import SignalDef

from dashboards.data import Trend
from dashboards.i18n import t


def trend_id(site: str, line: str, machine: str, signal: str, window_s: int, points: int) -> dict[str, Any]:
    """Pattern id of a live trend graph: the refresh callback reads what to query from it."""
    return {"type": "gw-trend", "site": site, "line": line, "machine": machine, "signal": signal,
            "window": int(window_s), "points": int(points)}


# plant-local clock labels; seconds only when ticks are that close, the date from a day up
TIME_TICKS = [
    {"dtickrange": [None, 60_000], "value": "%H:%M:%S"},
    {"dtickrange": [60_000, 86_400_000], "value": "%H:%M"},
    {"dtickrange": [86_400_000, None], "value": "%m-%d"},
]


def _colors(dark: bool) -> dict[str, str]:
    if dark:
        return {"fg": "#e8edf2", "grid": "#2c3640", "line": "#4fc3f7"}
    return {"fg": "#1f2933", "grid": "#e4e7eb", "line": "#1565c0"}


def _no_data(lang: str, dark: bool) -> list[dict[str, Any]]:
    return [{"text": t("no_samples", lang), "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
             "showarrow": False, "font": {"size": 16, "color": _colors(dark)["fg"]}}]


def trend_figure(trend: Trend, signal: SignalDef, lang: str, dark: bool = False, height: Optional[int] = 240,
                 uirevision: Optional[str] = None) -> dict[str, Any]:
    """height None: the graph fills its container (CSS decides, per screen)."""
    c = _colors(dark)
    unit = signal.unit or ""
    fig = {
        "data": [{
            "type": "scatter", "mode": "lines", "x": trend.x, "y": trend.y, "name": signal.name.get(lang),
            "line": {"width": 2, "color": c["line"]},
            "hovertemplate": "%{x|%H:%M:%S}  %{y:.2f} " + unit.replace("%", "%%") + "<extra></extra>",
        }],
        "layout": {
            "uirevision": uirevision or signal.id,
            "height": height,
            "margin": {"l": 8, "r": 12, "t": 8, "b": 8},
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            "font": {"color": c["fg"], "size": 16 if dark else 13, "family": "Noto Sans CJK KR, Noto Sans KR, sans-serif"},
            "xaxis": {"type": "date", "gridcolor": c["grid"], "tickformatstops": TIME_TICKS, "automargin": True},
            # the unit is in the card title: an axis title collides with long tick labels
            "yaxis": {"gridcolor": c["grid"], "zeroline": False, "automargin": True},
            "showlegend": False,
            "annotations": [] if trend.x else _no_data(lang, dark),
        },
    }
    if height is None:
        del fig["layout"]["height"]
    return fig


def sparkline_figure(trend: Trend, dark: bool = False) -> dict[str, Any]:
    c = _colors(dark)
    return {
        "data": [{"type": "scatter", "mode": "lines", "x": trend.x, "y": trend.y, "hoverinfo": "skip",
                  "line": {"width": 1.5, "color": c["line"]}}],
        "layout": {
            "height": 48, "margin": {"l": 0, "r": 0, "t": 2, "b": 2},
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            "xaxis": {"visible": False, "type": "date"}, "yaxis": {"visible": False},
            "showlegend": False, "annotations": [],
        },
    }


def spark_id(site: str, line: str, machine: str, signal: str, window_s: int, points: int) -> dict[str, Any]:
    return {**trend_id(site, line, machine, signal, window_s, points), "type": "gw-spark"}


def trend_patch(trend: Trend, lang: str, dark: bool = False, note: bool = True) -> Patch:
    """Only the new points (and the empty-window note) go to the browser."""
    p = Patch()
    p["data"][0]["x"] = trend.x
    p["data"][0]["y"] = trend.y
    p["layout"]["annotations"] = [] if trend.x or not note else _no_data(lang, dark)
    return p
