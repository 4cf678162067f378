"""The frame every page shares: header (brand, nav, language toggle, clock, last-update age),
the `alarm-banner` slot, breadcrumbs, and the wall-display (kiosk) variant.

Pure builders: they take labels and URL state and return Dash components; no queries.
URL state (`lang`, `kiosk`) travels in every link, so a copied URL reproduces the view.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence
from urllib.parse import urlencode

import dash
from dash import dcc, html

from dashboards.i18n import LANGS, normalize_lang, t

TRUE_WORDS = ("1", "true", "yes", "on")


def is_kiosk(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in TRUE_WORDS


def href(path: str, lang: str, kiosk: bool = False, **params: Any) -> str:
    """A link that keeps the language and kiosk mode of the current view."""
    q: dict[str, Any] = {"lang": lang}
    if kiosk:
        q["kiosk"] = "1"
    q.update({k: v for k, v in params.items() if v is not None})
    return f"{path}?{urlencode(q)}"


def nav_entries(role: Optional[str] = None) -> list[dict[str, Any]]:
    """Pages that asked to be in the nav: `dash.register_page(..., nav={"key": i18n key,
    "order": n})`. Read from Dash's page registry, so a new page needs no edit here.
    nav "action" (gwanje/roles.py): shown only to a role that may do it (role None: demo
    mode, no login, every page shown). The page itself still refuses on the server."""
    from gwanje.roles import role_allows

    out = []
    for page in dash.page_registry.values():
        nav = page.get("nav")
        if isinstance(nav, Mapping) and nav.get("key"):
            if nav.get("action") and role is not None and not role_allows(role, nav["action"]):
                continue
            out.append({"key": nav["key"], "order": nav.get("order", 100), "path": page.get("path", "/")})
    return sorted(out, key=lambda e: (e["order"], e["key"]))


def breadcrumbs(crumbs: Sequence[tuple[str, Optional[str]]]) -> html.Nav:
    """crumbs: (label, href or None for the current page), from the plant down."""
    items: list[Any] = []
    for i, (label, link) in enumerate(crumbs):
        if i:
            items.append(html.Span("›", className="gw-crumb-sep"))
        items.append(dcc.Link(label, href=link, className="gw-crumb") if link else
                     html.Span(label, className="gw-crumb gw-crumb-current"))
    return html.Nav(items, className="gw-breadcrumbs", **{"aria-label": "breadcrumb"})


def header(lang: str, kiosk: bool, plant_name: str, path: str, query: Mapping[str, Any],
           user: Optional[Mapping[str, Any]] = None, logout_token: Optional[str] = None,
           simulated: bool = False) -> html.Header:
    """Brand + nav + language toggle (left out in kiosk mode) + clock; ids fed by callbacks.
    With a user: their name and the sign-out button (a form posting the session's token).
    simulated: every machine is played by the simulator — said once, beside the plant name."""
    brand: list[Any] = [
        dcc.Link(t("app_title", lang), href=href("/", lang, kiosk), className="gw-brand-mark"),
        html.Span(plant_name, className="gw-brand-plant"),
    ]
    if simulated:
        brand.append(html.Span(t("simulated_plant", lang), className="gw-sim gw-sim-plant", id="gw-sim-plant",
                               title=t("tiles:sim_long", lang)))
    parts: list[Any] = [html.Div(brand, className="gw-brand")]
    if not kiosk:
        links = [dcc.Link(t("overview", lang), href=href("/", lang), className="gw-nav-link")]
        links += [dcc.Link(t(e["key"], lang), href=href(e["path"], lang), className="gw-nav-link")
                  for e in nav_entries(str(user.get("role", "")) if user else None) if e["path"] != "/"]
        parts.append(html.Nav(links, id="gw-nav", className="gw-nav"))
        keep = {k: v for k, v in query.items() if k not in ("lang", "kiosk") and isinstance(v, str)}
        parts.append(html.Div(
            [dcc.Link(code.upper(), href=href(path, code, False, **keep),
                      className="gw-lang-link" + (" gw-lang-active" if code == lang else ""),
                      id=f"gw-lang-{code}")
             for code in LANGS]
            + [dcc.Link(t("kiosk", lang), href=href(path, lang, True, **keep), className="gw-lang-link")],
            className="gw-lang", title=t("language", lang)))
        if user:
            parts.append(html.Div([
                html.Span(str(user.get("name", "")), className="gw-user-name"),
                # a POST to the server route, never a link: a GET changes nothing (an <img> on
                # another site could send one); the browser really leaves the Dash app
                html.Form([
                    dcc.Input(type="hidden", name="csrf", value=logout_token or "", id="gw-logout-token"),
                    html.Button(t("logout", lang), type="submit", className="gw-lang-link gw-logout", id="gw-logout"),
                ], method="post", action=f"/logout?lang={lang}", className="gw-logout-form", id="gw-logout-form"),
            ], className="gw-user"))
    parts.append(html.Div([
        html.Span(id="clock", className="gw-clock-time"),
        html.Span(id="last-update", className="gw-last-update"),
    ], className="gw-clock", title=t("clock", lang)))
    return html.Header(parts, className="gw-header")


def page_shell(body: Any, *, lang: str, kiosk: bool, plant_name: str, path: str,
               crumbs: Sequence[tuple[str, Optional[str]]] = (), query: Optional[Mapping[str, Any]] = None,
               title: Optional[str] = None, user: Optional[Mapping[str, Any]] = None,
               logout_token: Optional[str] = None, simulated: bool = False) -> html.Div:
    """The full page: every page returns this from its layout so every page has the header,
    the alarm banner slot and the breadcrumbs. `page-ctx` tells callbacks the view's lang/kiosk."""
    children: list[Any] = [
        header(lang, kiosk, plant_name, path, query or {}, user, logout_token, simulated),
        html.Div(id="alarm-banner", className="gw-alarm-banner"),
    ]
    if crumbs and not kiosk:
        children.append(breadcrumbs(crumbs))
    if title:
        children.append(html.H1(title, className="gw-page-title"))
    children.append(html.Main(body, className="gw-main"))
    children.append(dcc.Store(id="page-ctx", data={"lang": lang, "kiosk": kiosk}))
    return html.Div(children, className="gw-root " + ("gw-kiosk" if kiosk else "gw-normal"), lang=lang)


def view_params(lang: object, kiosk: object, default_lang: str) -> tuple[str, bool]:
    """URL parameters (untrusted strings) -> (lang, kiosk)."""
    return normalize_lang(lang, default_lang), is_kiosk(kiosk)
