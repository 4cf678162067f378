"""Benchmark: what one control-room refresh costs the server, for the demo plant.

    python -m bench.dashboard_render [--hours 1] [--period 2] [--runs 30]

Fills an in-memory EmbeddedStore with `--hours` of history of every signal of the 36 demo
machines (one sample per `--period` s; dashboards.sample_data), builds the app, then times
(median and p90 of --runs, in ms):
  overview snapshot, cold    store.latest() + view models, cache cleared each run
  overview layout            snapshot (cached) + the whole overview page + JSON encoding
  tile refresh callback      the ALL-tiles callback for the 36 tiles + 8 line summaries + JSON
  machine page layout, cold  snapshot + 8 trend queries (600 points each) + page + JSON
  machine trend update, cold the Patch refresh of the 8 trends of one machine + JSON, no cache
  machine trend update, warm the same within the cache TTL (what the 2nd..Nth display costs)
  go.Figure reference        one 600-point trend built as go.Figure + to_json (field notes)
and prints the machine. JSON encoding is plotly's encoder, as Dash uses it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import plotly.graph_objects as go  # noqa: E402
import plotly.io as pio  # noqa: E402
from plotly.utils import PlotlyJSONEncoder  # noqa: E402

from gwanje.config import load_config  # noqa: E402
from gwanje.model import now_ns  # noqa: E402


def timed(fn, runs: int) -> tuple[float, float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return statistics.median(out), out[min(len(out) - 1, int(len(out) * 0.9))]


def encode(obj) -> int:
    return len(json.dumps(obj, cls=PlotlyJSONEncoder))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--period", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()

    from dashboards import create_app
    from dashboards.components import callbacks
    from dashboards.components.figures import trend_id
    from dashboards.data import DataLayer
    from dashboards.sample_data import plant_history
    from storage.embedded import EmbeddedStore
    import dash

    cfg = load_config(REPO / "config", env={})
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}  load avg: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    store = EmbeddedStore()
    now = now_ns()
    t0 = time.perf_counter()
    samples = plant_history(cfg, now, duration_s=int(a.hours * 3600), period_s=a.period)
    store.write_samples(samples)
    print(f"store: {len(samples):,} samples ({a.hours} h, every {a.period} s, 36 machines) "
          f"written in {time.perf_counter() - t0:.1f} s")

    # clock pinned at the end of the history: every run asks the same windows
    data = DataLayer(cfg, store, ttl_s=1.0, clock=lambda: now)
    app = create_app(cfg, store, data=data)
    overview = dash.page_registry["dashboards.pages.overview"]["layout"]
    machine = dash.page_registry["dashboards.pages.machine"]["layout"]
    site, line, mach = "changwon-1", "cnc-1", "cnc-101"
    tile_ids = [{"type": "gw-tile", "site": m.site, "line": m.line, "machine": m.machine} for m in cfg.machines()]
    line_ids = [{"type": "gw-line-summary", "site": s.id, "line": ln.id} for s in cfg.plant.sites for ln in s.lines]
    spec = cfg.machine(site, line, mach)
    ui = cfg.system.ui
    trend_ids = [trend_id(site, line, mach, sig.id, ui.trend_window_s, ui.trend_points)
                 for sig in spec.signals if sig.kind in ("analog", "counter")]
    pc = {"lang": "ko", "kiosk": False}

    def cold(fn):
        def run():
            data.cache.clear()
            return fn()
        return run

    rows = [
        ("overview snapshot, cold", cold(lambda: data.plant_snapshot())),
        ("overview layout", lambda: encode(overview(lang="ko"))),
        ("tile refresh callback", lambda: encode(callbacks.refresh_tiles(1, pc, tile_ids, line_ids))),
        ("machine page layout, cold", cold(lambda: encode(machine(site=site, line=line, machine=mach, lang="ko")))),
        (f"machine trend update, cold ({len(trend_ids)} trends)",
         cold(lambda: encode(callbacks.refresh_trends(1, pc, trend_ids)))),
        (f"machine trend update, warm ({len(trend_ids)} trends)",
         lambda: encode(callbacks.refresh_trends(1, pc, trend_ids))),
    ]
    trend = data.signal_trend(site, line, mach, "spindle_speed", ui.trend_window_s)

    assert len(trend.y) > 100, "no data in the window: the benchmark would time nothing"

    def gofig():
        fig = go.Figure(go.Scatter(x=trend.x, y=trend.y, mode="lines"))
        return len(pio.to_json(fig))

    rows.append(("go.Figure reference (1 trend)", gofig))
    print(f"{'what':44s} {'median ms':>10s} {'p90 ms':>9s}   (runs: {a.runs})")
    for name, fn in rows:
        size = fn()  # warm imports and the DuckDB plan cache
        med, p90 = timed(fn, a.runs)
        kb = f"{size / 1024:8.1f} kB JSON" if isinstance(size, int) else ""
        print(f"{name:44s} {med:10.2f} {p90:9.2f}   {kb}")
    _ = app
    store.close()


if __name__ == "__main__":
    main()
