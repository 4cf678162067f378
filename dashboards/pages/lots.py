"""`/lots?q=..&product=..` — the live LOT index (lots.lookback_days): search by LOT number
(substring, prefixes first) or product, LOTs on hold first, WIP and waiting time per process,
LOTs in process now, recently done. Refreshes with the room's interval."""
from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html

from dashboards import context
from dashboards.components.lots import lots_body, products_by_id
from dashboards.components.page import render, view
from dashboards.data import DataUnavailable
from dashboards.i18n import normalize_lang, t
from dashboards.lots_data import load_index
from gwanje.validate import hostile

dash.register_page(__name__, path="/lots", title="Gwanje", name="lots", nav={"key": "lots:lots", "order": 25})

PROCESS_ORDER = ("forging", "cnc", "injection", "assembly", "press")


def processes(cfg: Any) -> list[str]:
    """The plant's processes: those of the routes first (in route order), then the lines'."""
    out: list[str] = []
    for p in products_by_id(cfg).values():
        out += [x for x in p.route if x not in out]
    out += [ln.process for s in cfg.plant.sites for ln in s.lines if ln.process not in out]
    return out


def clean_search(value: Any) -> str:
    return value.strip() if isinstance(value, str) and not hostile(value, 64) else ""


def clean_product(cfg: Any, value: Any) -> str:
    return value if isinstance(value, str) and value in products_by_id(cfg) else ""


def body(lang: str, kiosk: bool, search: Any = "", product: Any = "") -> Any:
    cfg = context.config()
    try:
        index = load_index(context.data())
    except DataUnavailable:
        return html.P(t("store_error", lang), className="gw-store-error")
    return lots_body(cfg, index, processes(cfg), lang, kiosk, clean_search(search), clean_product(cfg, product))


def layout(lang=None, kiosk=None, q=None, product=None, **query):
    v = view(lang, kiosk, q=q, product=product, **query)
    cfg = v.config
    options = [{"label": t("lots:all_products", v.lang), "value": ""}] + [
        {"label": f"{p.name.get(v.lang) if p.name else p.id} ({p.lot_prefix})", "value": p.id}
        for p in products_by_id(cfg).values()]
    search = html.Div([
        dcc.Input(id="lots-search", type="search", value=clean_search(q), debounce=True, maxLength=64,
                  placeholder=t("lots:search", v.lang), className="gw-lots-search", autoComplete="off"),
        dcc.Dropdown(id="lots-product", options=options, value=clean_product(cfg, product), clearable=False,
                     className="gw-lots-product"),
    ], className="gw-lots-filters",
        # a wall display shows no form, but the inputs stay: the refresh listens to them
        style={"display": "none"} if v.kiosk else None)
    content = [search, html.Div(body(v.lang, v.kiosk, q, product), id="lots-body")]
    return render(v, content, path="/lots", crumbs=v.crumbs((t("lots:lots", v.lang), None)),
                  title=t("lots:lots", v.lang))


@callback(Output("lots-body", "children"), Input("refresh", "n_intervals"), Input("lots-search", "value"),
          Input("lots-product", "value"), State("page-ctx", "data"), prevent_initial_call=True)
def refresh(n: Any, search: Any, product: Any, page_ctx: Any) -> Any:
    pc = page_ctx if isinstance(page_ctx, dict) else {}
    lang = normalize_lang(pc.get("lang"), context.config().system.ui.default_language)
    return body(lang, bool(pc.get("kiosk")), search, product)
