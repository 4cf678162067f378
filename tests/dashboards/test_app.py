"""create_app as the browser sees it: the callbacks it declares, once each, in every app built."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter

from dashboards import create_app


def test_every_app_declares_its_callbacks_once(plant_config):
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    try:
        create_app(plant_config, store)  # built and never served, as in tests or a failed start
        app = create_app(plant_config, store)
        deps = app.server.test_client().get("/_dash-dependencies")
        assert deps.status_code == 200
        outputs = Counter(d["output"] for d in json.loads(deps.get_data(as_text=True)))
        assert [o for o, n in outputs.items() if n > 1] == []
        # the shared live callbacks: tiles + line summaries, clock, trends, sparklines
        assert any('"type":"gw-tile"' in o and ".className" in o for o in outputs)
        assert any('"type":"gw-trend"' in o for o in outputs)
        assert any('"type":"gw-spark"' in o for o in outputs)
        assert any(o.startswith("..clock.children") for o in outputs)
        page = app.server.test_client().get("/machine/changwon-1/cnc-1/cnc-101?kiosk=1")
        assert page.status_code == 200 and "gwanje.css" in page.get_data(as_text=True)
    finally:
        store.close()


def test_alarm_views_refresh_within_a_second_whatever_the_refresh(plant_config):
    """An action on one display shows on every other within 2 s (issue 10): the banner and the
    active-alarm grid tick on their own clock of at most 1 s, also at ui.refresh_ms 2000 (the
    compose deployment's) or slower; faster refreshes are kept."""
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore()
    try:
        for refresh_ms, want in ((2000, 1000), (5000, 1000), (500, 500)):
            ui = plant_config.system.ui.model_copy(update={"refresh_ms": refresh_ms})
            cfg = dataclasses.replace(plant_config, system=plant_config.system.model_copy(update={"ui": ui}))
            app = create_app(cfg, store)
            shell = app.layout.children
            ticks = {c.id: c.interval for c in shell if getattr(c, "id", None) in ("refresh", "alarm-refresh")}
            assert ticks == {"refresh": refresh_ms, "alarm-refresh": want}
            deps = json.loads(app.server.test_client().get("/_dash-dependencies").get_data(as_text=True))
            for output in ("alarm-banner.children", "alarms-grid.rowData"):
                dep = next(d for d in deps if output in d["output"])
                assert {"id": "alarm-refresh", "property": "n_intervals"} in dep["inputs"], dep["inputs"]
    finally:
        store.close()
