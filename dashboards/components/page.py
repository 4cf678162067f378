"""What every page layout does first and last: read URL state and the plant snapshot, then
wrap its body in the shared shell. Keeps the page modules down to their own content."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from gwanje.config import Config

from dashboards import context
from dashboards.auth import csrf_token, current_user
from dashboards.components.shell import href, page_shell, view_params
from dashboards.components.tiles import simulation_marks
from dashboards.components.views import store_error
from dashboards.data import DataUnavailable, PlantSnapshot, build_snapshot
from dashboards.i18n import t


@dataclass(frozen=True)
class View:
    config: Config
    lang: str
    kiosk: bool
    query: dict[str, str]

    def href(self, path: str, **params: Any) -> str:
        return href(path, self.lang, self.kiosk, **params)

    def crumbs(self, *rest: tuple[str, Optional[str]]) -> list[tuple[str, Optional[str]]]:
        """Plant first, then the given levels (the last one without a link)."""
        return [(t("plant", self.lang), self.href("/") if rest else None), *rest]


def view(lang: object, kiosk: object, **query: Any) -> View:
    cfg = context.config()
    lang_, kiosk_ = view_params(lang, kiosk, cfg.system.ui.default_language)
    q = {k: v for k, v in query.items() if isinstance(v, str)}
    return View(cfg, lang_, kiosk_, q)


def snapshot(v: View) -> tuple[PlantSnapshot, bool]:
    """(snapshot, ok). When the store fails every machine shows as without data, and the page
    says the store is not answering, instead of an error page on the wall."""
    data = context.data()
    try:
        return data.plant_snapshot(), True
    except DataUnavailable:
        return build_snapshot(v.config, [], data.clock()), False


def render(v: View, body: Any, *, path: str, crumbs: Sequence[tuple[str, Optional[str]]],
           title: Optional[str] = None, ok: bool = True) -> Any:
    if not ok:
        body = [store_error(v.lang), body]
    return page_shell(body, lang=v.lang, kiosk=v.kiosk, plant_name=v.config.plant.name.get(v.lang),
                      path=path, crumbs=crumbs, query={**v.query}, title=title, user=current_user(),
                      logout_token=csrf_token(), simulated=simulation_marks(v.config)[0])
