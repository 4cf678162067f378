"""Benchmark: the server-side cost of the LOT pages on the demo (DuckDB) store.

    python -m bench.lots_pages [--lots 5000] [--runs 20]

Builds a DuckDB file store (temp dir) holding `--lots` LOTs over the last lots.lookback_days
as the engine writes them (docs/lots.md): every product's route (shaft: forging LOT split into
two CNC LOTs; housing: two injection LOTs merged into an assembly LOT; bracket, cover: press;
flange: forging), lot_step / lot_index / lot_link records, ~1 % of LOTs held, the newest LOTs
in process or waiting. Plus one bracket LOT with 10 steps over the last 24 h on press-101, with
that machine's raw samples over the 24 h at 1 Hz (tonnage, strokes_per_min, die_temp) and a
few alarms. Then times (median and p95 of --runs, ms), JSON encoding included (as Dash sends it):
  /lots layout, cold         index + holds query, view, page (cache cleared each run)
  /lots layout, warm         the same within the cache TTL
  /lots refresh, warm        the live callback (every ui.refresh_ms)
  /lots search, cold         the search callback, cache cleared
  /lot/<LOT> layout, cold    the 10-step LOT: steps, holds, ancestors, descendants, 3 trends per
                             step (Store.series, downsampled), alarms, page
  /lot/<LOT> layout, warm
  /lot/<split child>, cold   a CNC LOT with its forging parent
Budgets: /lots ≤ 500 ms, /lot/<LOT> ≤ 300 ms (cold). Prints the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from plotly.utils import PlotlyJSONEncoder  # noqa: E402

from gwanje.config import load_config  # noqa: E402
from gwanje.model import NS_PER_S, Event, Sample, now_ns  # noqa: E402

H = 3600 * NS_PER_S
DAY = 24 * H
BENCH_LOT = "BR-BENCH-10"
PRESS = ("changwon-1", "press-1", "press-101")


def timed(fn, runs: int) -> tuple[float, float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return statistics.median(out), out[min(len(out) - 1, int(round(len(out) * 0.95)) - 1)]


def encode(obj) -> int:
    return len(json.dumps(obj, cls=PlotlyJSONEncoder))


def machines_of(cfg, process: str) -> list[tuple[str, str, str]]:
    return [m.key for m in cfg.machines() if cfg.line(m.site, m.line).process == process]


class Gen:
    """LOT records as the engine writes them."""

    def __init__(self, cfg, now: int, lookback_ns: int, seed: int = 7) -> None:
        self.cfg, self.now, self.lookback = cfg, now, lookback_ns
        self.rnd = random.Random(seed)
        self.events: list[Event] = []
        self.n = 0
        self.mach = {p: machines_of(cfg, p) for p in ("forging", "cnc", "injection", "assembly", "press")}
        self.busy: set = set()  # machines with an open step: one LOT on a machine at a time

    def end_of(self, key, start, dur):
        """The step's end; None (open) only while the machine has no other open step, else the
        step ended a little before now."""
        end = start + dur
        if end < self.now:
            return end
        if key not in self.busy:
            self.busy.add(key)
            return None
        return max(start + 60 * NS_PER_S, self.now - self.rnd.randint(1, 60) * 60 * NS_PER_S)

    def step(self, lot, key, product, process, idx, start, end, qty, plan_s):
        rej = self.rnd.randint(0, max(1, qty // 40))
        good = qty - rej if end is not None else self.rnd.randint(0, qty)
        self.events.append(Event("lot_step", start, *key, lot, {
            "lot": lot, "product": product, "process": process, "step": idx, "end_ns": end, "total": good + rej,
            "good": good, "reject": rej, "planned_qty": qty, "plan_s": plan_s, "counted_ns": end or self.now,
            "ctr": {"part_count_total": 1000.0 + good + rej}}))
        return good, rej

    def index(self, lot, key, product, status, process, machine, since, first, good, rej, qty, route,
              parents=(), children=()):
        self.n += 1
        self.events.append(Event("lot_index", first, *key, lot, {
            "lot": lot, "product": product, "status": status, "process": process, "machine": "/".join(machine),
            "since_ns": since, "first_ns": first, "last_ns": since, "steps": 1, "good": good, "reject": rej,
            "planned_qty": qty, "parents": list(parents), "children": list(children), "route": list(route)}))

    def hold(self, lot, key, ts, step_ns):
        self.events.append(Event("lot_hold", ts, *key, lot, {
            "lot": lot, "reason": "reject_spike", "detail": "rejects over 10 %", "step_ns": step_ns, "alarm": None,
            "priority": None, "total": 120, "reject": 15, "status": "held" if self.rnd.random() < 0.7 else "released"}))

    def single(self, i, start, prefix, product, process, dur):
        """One LOT, one step (bracket, cover: press; flange: forging)."""
        lot = f"{prefix}-{i:06d}"
        key = self.rnd.choice(self.mach[process])
        end = self.end_of(key, start, dur)
        status = "done" if end is not None else "in_process"
        good, rej = self.step(lot, key, product, process, 0, start, end, 600, dur / 1e9)
        self.index(lot, key, product, status, process, key, end if end is not None else start, start,
                   good, rej, 600, [process])
        if self.rnd.random() < 0.01:
            self.hold(lot, key, start + dur // 2, start)

    def family(self, i, start, prefix, product, first, second, split: bool, dur, gap):
        """shaft: a forging LOT split into two CNC LOTs; housing: two injection LOTs merged."""
        route = [first, second]
        mid = start + dur
        if split:
            parents = [f"{prefix}-{i:06d}P"]
            kids = [f"{prefix}-{i:06d}C{k}" for k in (1, 2)]
        else:
            parents = [f"{prefix}-{i:06d}I{k}" for k in (1, 2)]
            kids = [f"{prefix}-{i:06d}M"]
        child_start = mid + gap
        for p in parents:
            key = self.rnd.choice(self.mach[first])
            end = self.end_of(key, start, dur)
            good, rej = self.step(p, key, product, first, 0, start, end, 240, dur / 1e9)
            if end is None:
                self.index(p, key, product, "in_process", first, key, start, start, good, rej, 240, route)
            elif child_start >= self.now:
                self.index(p, key, product, "waiting", second, key, end, start, good, rej, 240, route)
            else:
                self.index(p, key, product, "consumed", first, key, child_start, start, good, rej, 240, route,
                           children=kids)
        if child_start >= self.now:
            return
        for k, c in enumerate(kids):
            key = self.rnd.choice(self.mach[second])
            end = self.end_of(key, child_start + k, dur)
            good, rej = self.step(c, key, product, second, 1, child_start + k, end, 120, dur / 1e9)
            self.index(c, key, product, "done" if end else "in_process", second, key, end or child_start + k,
                       child_start + k, good, rej, 120, route, parents=parents)
            for j, p in enumerate(parents):
                self.events.append(Event("lot_link", child_start + k + j, *key, f"{p}>{c}",
                                         {"parent": p, "child": c, "kind": "split" if split else "merge"}))
            if self.rnd.random() < 0.01:
                self.hold(c, key, child_start + dur // 3, child_start + k)

    def build(self, lots: int) -> None:
        span = self.lookback - 2 * H
        i = 0
        while self.n < lots:
            start = self.now - span + int(span * i / (lots / 2.6)) + self.rnd.randint(0, 600) * NS_PER_S
            if start >= self.now - 10 * 60 * NS_PER_S:
                start = self.now - self.rnd.randint(600, 5 * 3600) * NS_PER_S
            kind = i % 5
            dur = self.rnd.randint(60, 180) * 60 * NS_PER_S
            if kind == 0:
                self.family(i, start, "SH", "shaft", "forging", "cnc", True, dur, self.rnd.randint(10, 240) * 60 * NS_PER_S)
            elif kind == 1:
                self.family(i, start, "HS", "housing", "injection", "assembly", False, dur,
                            self.rnd.randint(10, 240) * 60 * NS_PER_S)
            elif kind == 2:
                self.single(i, start, "BR", "bracket", "press", dur)
            elif kind == 3:
                self.single(i, start, "CV", "cover", "press", dur)
            else:
                self.single(i, start, "FL", "flange", "forging", dur)
            i += 1

    def bench_lot(self) -> list[Sample]:
        """BENCH_LOT: 10 steps over the last 24 h on press-101 (2 h each, 24 min between), its
        samples at 1 Hz, alarms during two steps, one hold."""
        start0 = self.now - DAY
        for k in range(10):
            s = start0 + k * (2 * H + 24 * 60 * NS_PER_S)
            e = s + 2 * H
            self.step(BENCH_LOT, PRESS, "bracket", "press", 0, s, e if e < self.now else None, 2400, 7200.0)
        self.index(BENCH_LOT, PRESS, "bracket", "in_process", "press", PRESS, start0 + 9 * (2 * H + 24 * 60 * NS_PER_S),
                   start0, 2300, 40, 24000, ["press"])
        self.hold(BENCH_LOT, PRESS, start0 + 5 * H, start0)
        for k, ts in enumerate((start0 + 3 * H, start0 + 12 * H, start0 + 12 * H + 60 * NS_PER_S)):
            self.events.append(Event("alarm", ts, *PRESS, "tonnage.h:changwon-1/press-1/press-101/tonnage", {
                "priority": "high", "state": "unack_active", "event": "raised", "active": True, "value": 812.0,
                "message_ko": "프레스 1호기 톤수 높음", "message_en": "Press 1 tonnage high"}))
        samples = []
        for sec in range(0, 24 * 3600):
            ts = start0 + sec * NS_PER_S
            samples.append(Sample(*PRESS, "tonnage", 600.0 + (sec % 97), ts))
            samples.append(Sample(*PRESS, "strokes_per_min", 20.0 + (sec % 7), ts))
            samples.append(Sample(*PRESS, "die_temp", 80.0 + (sec % 300) / 30, ts))
        return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lots", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()

    import dash

    from dashboards import create_app
    from dashboards.components.oee import engine_for
    from dashboards.data import DataLayer
    from storage.embedded import EmbeddedStore

    cfg = load_config(REPO / "config", env={})
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}  load avg: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    tmp = tempfile.TemporaryDirectory(prefix="gwanje-lots-bench-")
    store = EmbeddedStore(Path(tmp.name) / "gwanje.duckdb")
    now = now_ns()
    lookback = int(engine_for(cfg).calendar.spec.lots.lookback_days * DAY)
    t0 = time.perf_counter()
    g = Gen(cfg, now, lookback)
    g.build(a.lots)
    samples = g.bench_lot()
    for i in range(0, len(g.events), 20_000):
        store.write_events(g.events[i:i + 20_000])
    for i in range(0, len(samples), 100_000):
        store.write_samples(samples[i:i + 100_000])
    status: dict[str, int] = {}
    for e in g.events:
        if e.kind == "lot_index":
            status[e.data["status"]] = status.get(e.data["status"], 0) + 1
    kinds: dict[str, int] = {}
    for e in g.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    print(f"store: {g.n + 1:,} LOTs ({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}), "
          f"{len(samples):,} samples of {'/'.join(PRESS)}; written in {time.perf_counter() - t0:.1f} s")
    print(f"LOT status: {', '.join(f'{k} {v:,}' for k, v in sorted(status.items()))}")

    data = DataLayer(cfg, store, ttl_s=1.0, clock=lambda: now)
    create_app(cfg, store, data=data)
    from dashboards.pages.lots import refresh as lots_refresh
    lots = dash.page_registry["dashboards.pages.lots"]["layout"]
    lot = dash.page_registry["dashboards.pages.lot"]["layout"]
    child = next(e.key for e in reversed(g.events) if e.kind == "lot_index" and e.key.startswith("SH")
                 and e.data["parents"] and e.data["status"] == "done")
    pc = {"lang": "ko", "kiosk": False}

    def cold(fn):
        def run():
            data.cache.clear()
            return fn()
        return run

    rows = [
        ("/lots layout, cold", cold(lambda: encode(lots(lang="ko"))), 500),
        ("/lots layout, warm", lambda: encode(lots(lang="ko")), 500),
        ("/lots refresh callback, warm", lambda: encode(lots_refresh(1, "", "", pc)), 500),
        ("/lots search 'SH-0012', cold", cold(lambda: encode(lots_refresh(1, "SH-0012", "", pc))), 500),
        (f"/lot/{BENCH_LOT} (10 steps, 24 h), cold", cold(lambda: encode(lot(lot=BENCH_LOT, lang="ko"))), 300),
        (f"/lot/{BENCH_LOT} (10 steps, 24 h), warm", lambda: encode(lot(lot=BENCH_LOT, lang="ko")), 300),
        (f"/lot/{child} (split child), cold", cold(lambda: encode(lot(lot=child, lang="ko"))), 300),
    ]
    print(f"{'what':46s} {'median ms':>10s} {'p95 ms':>9s} {'budget':>7s} {'KB':>7s}   (runs: {a.runs})")
    for name, fn, budget in rows:
        size = fn()  # warm imports and the DuckDB plan cache
        med, p95 = timed(fn, a.runs)
        flag = "ok" if med <= budget else "OVER"
        print(f"{name:46s} {med:10.1f} {p95:9.1f} {budget:5d} {flag:>4s} {size / 1024:6.0f}")
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
