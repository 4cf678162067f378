"""create_app as the browser sees it: the callbacks it declares, once each, in every app built."""
from __future__ import annotations

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
