"""Benchmark: the alarm load the shipped rules put on operators over a simulated working day.

    python bench/alarm_load.py [--hours 8] [--period 5] [--seed 7] [--start 2026-11-24T06:00]

Steps the pure plant model (simulator.machines.Plant) from --start (Seoul time) for --hours,
one sample of every signal per machine every --period s, through AlarmService with the shipped
config/alarms.yaml and shift calendar, ticking every period. Prints the EEMUA 191 figures an
alarm engineer checks (annunciations per 10 min per area, floods, chattering, bad actors), the
alarm count per rule, the wall-clock cost, and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alerts import health  # noqa: E402
from alerts.service import AlarmService  # noqa: E402
from gwanje.config import load_config  # noqa: E402
from gwanje.model import NS_PER_S, Sample  # noqa: E402
from simulator.machines import Plant  # noqa: E402
from storage.embedded import EmbeddedStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--period", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-11-24T06:00")
    a = ap.parse_args()
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}")
    cfg = load_config(REPO / "config", env={})
    start = int(datetime.fromisoformat(a.start).replace(tzinfo=ZoneInfo(cfg.plant.timezone)).timestamp()) * NS_PER_S
    end = start + int(a.hours * 3600 * NS_PER_S)
    step = int(a.period * NS_PER_S)
    plant = Plant(cfg, seed=a.seed)
    store = EmbeddedStore()
    clock = {"t": start}
    svc = AlarmService.from_config(cfg, store, clock=lambda: clock["t"], env={})
    t0 = time.perf_counter()
    n_samples = 0
    for now in range(start, end, step):
        clock["t"] = now
        batch = [Sample(spec.site, spec.line, spec.machine, sig, float(v) if not isinstance(v, str) else v, now)
                 for spec, values in plant.step(now) for sig, v in values.items()]
        n_samples += len(batch)
        store.write_events(svc.on_samples(batch))
        svc.tick(now)
    wall = time.perf_counter() - t0
    svc.close()
    evs = store.events("alarm", start, end + 1, limit=1_000_000)
    ann = health.annunciations(evs)
    print(f"simulated {a.hours} h from {a.start} ({cfg.plant.timezone}), {n_samples:,} samples, "
          f"{wall:.1f} s wall ({n_samples / wall:,.0f} samples/s incl. the plant model)")
    print(f"annunciations: {len(ann)}  (events of all kinds: {len(evs)})")
    by_rule = Counter(e.key.split(":")[0] for e in ann)
    for rule, n in by_rule.most_common():
        print(f"  {rule:28s} {n}")
    rate = health.rate_per_10min(evs, start, end)
    worst = max((max(v) for v in rate.values()), default=0)
    per_area = {k: sum(v) / max(1, len(v)) for k, v in rate.items()}
    print(f"per 10 min per area: mean {sum(per_area.values()) / max(1, len(per_area)):.2f}, worst bucket {worst}")
    print(f"floods (> 10 in 10 min): {len(health.floods(evs))}; chattering (>= 3 in 1 min): "
          f"{len(health.chattering(evs))}")
    print("top bad actors:", health.bad_actors(evs, start, end + 1, top=5))
    print(f"not normal at the end: {len(svc.active())}")


if __name__ == "__main__":
    main()
