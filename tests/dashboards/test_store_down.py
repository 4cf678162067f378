"""With the store gone the wall keeps a page up and says the store is not answering."""
from __future__ import annotations

import dash
import pytest

from dashboards import create_app
from dashboards.components import callbacks
from tests.dashboards.helpers import by_class, by_type, text


@pytest.fixture(scope="module")
def dead_app(plant_config):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    app = create_app(plant_config, store)
    store.close()  # every query now raises
    return app


def test_pages_render_with_a_store_error_banner(dead_app):
    overview = dash.page_registry["dashboards.pages.overview"]["layout"](lang="en")
    assert text(by_class(overview, "gw-store-error")) == "Storage not answering"
    assert len(by_type(overview, "gw-tile")) == 36
    machine = dash.page_registry["dashboards.pages.machine"]["layout"](
        site="changwon-1", line="cnc-1", machine="cnc-101", lang="ko")
    assert text(by_class(machine, "gw-store-error")) == "저장소 응답 없음"
    assert len(by_type(machine, "gw-trend")) == 9  # the cnc class's numeric signals, bore_dia among them


def test_refresh_callbacks_keep_the_last_view(dead_app):
    ids = [{"type": "gw-tile", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101"}]
    assert callbacks.refresh_tiles(1, {"lang": "en"}, ids, []) == (dash.no_update,) * 3
    trend = [{"type": "gw-trend", "site": "changwon-1", "line": "cnc-1", "machine": "cnc-101",
              "signal": "vibration", "window": 900, "points": 600}]
    assert callbacks.refresh_trends(1, {"lang": "en"}, trend) == [dash.no_update]
    _, age, cls = callbacks.refresh_clock(1, {"lang": "en"})
    assert age == "Storage not answering" and "gw-warn" in cls
