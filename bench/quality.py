"""bench/quality: the quality detectors scored against the simulator's ground truth.

    python -m bench.quality [--train-h 16] [--eval-h 8] [--seed 11] [--fault-every-h 4]

The demo plant (config/) is simulated from a Tuesday 08:30 (KST) for train-h + eval-h hours
of wall time (nights and breaks included, as the shift calendar has them), sampled every
2 s, through the live QualityMonitor. The models are fitted by the trainer's own code
(quality.trainer.train, in a child process as collect runs it: niced, one thread) on the
first train-h hours; the monitor then scores the eval-h hours with them. Printed per detector
(SPC, anomaly, reject risk): detection delay (median, p90), false alarms per machine per
shift, precision and recall against the ground-truth log; for the reject models the held-out
ROC AUC (the newest 25 % of the training windows, time-ordered) and the precision at the
alarm threshold; training time and peak memory. Prints the machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gwanje.config import load_config  # noqa: E402
from gwanje.model import NS_PER_S  # noqa: E402
from gwanje.quality import QualityMonitor, load_quality  # noqa: E402
from quality import replay  # noqa: E402
from quality.models import LiveModels, windows_frame  # noqa: E402
from simulator.machines import Plant  # noqa: E402


def shifts_in(config, start_ns: int, end_ns: int) -> float:
    """Scheduled shift-hours / 8 in [start, end): the 'per shift' of false alarms."""
    from alerts.service import shift_schedule
    from gwanje.shifts import load_shifts

    scheduled = shift_schedule(load_shifts(config))
    site = config.plant.sites[0]
    line = site.lines[0].id
    t, busy, step = start_ns, 0, 60 * NS_PER_S
    while t < end_ns:
        if scheduled(site.id, line, t):
            busy += step
        t += step
    return busy / NS_PER_S / 3600 / 8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quality")
    ap.add_argument("--train-h", type=float, default=16)
    ap.add_argument("--eval-h", type=float, default=8)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--fault-every-h", type=float, default=4.0)
    ap.add_argument("--config", default=str(REPO / "config"))
    a = ap.parse_args(argv)
    print(f"machine: {platform.node()}  cpus: {os.cpu_count()}  python: {platform.python_version()}  "
          f"{platform.platform()}  load avg: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"per-core speed: sum(i*i) 1e6 = {min(timeit.repeat('sum(i*i for i in range(1000000))', number=1, repeat=3)) * 1000:.0f} ms")
    config = load_config(a.config)
    q = load_quality(config)
    t0 = int(dt.datetime(2026, 11, 24, 8, 30, tzinfo=ZoneInfo(config.plant.timezone)).timestamp()) * NS_PER_S
    t1 = t0 + int(a.train_h * 3600 * NS_PER_S)
    t2 = t1 + int(a.eval_h * 3600 * NS_PER_S)
    plant = Plant(config, seed=a.seed, fault_every_h=a.fault_every_h)
    mon = QualityMonitor(config, q)
    w = time.monotonic()
    r1 = replay.run(config, plant, mon, t0, t1)
    sim_train_s = time.monotonic() - w
    classes = {"/".join(m.key): m.definition.klass for m in config.machines()}
    wins = [e for e in r1["events"] if e.kind == "quality_window"]
    df = windows_frame(wins, classes, {k: q.features(k) for k in q.classes()})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "windows.parquet"
        df.write_parquet(path)
        models_dir = Path(tmp) / "models"
        w = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "quality.trainer", "--windows", str(path), "--models",
                              str(models_dir), "--config", a.config], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        train_wall = time.monotonic() - w
        if out.returncode:
            print(out.stderr)
            return 1
        metas = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
        live = LiveModels(models_dir)
        # the evaluation: the same monitor (its SPC limits from the training hours), now with models
        mon.scorer = live
        w = time.monotonic()
        r2 = replay.run(config, plant, mon, t1, t2)
        sim_eval_s = time.monotonic() - w
    faults = plant.faults()
    n_machines = len(mon.machines)
    shifts = shifts_in(config, t1, t2)
    print(f"simulated {a.train_h:g} h (train) + {a.eval_h:g} h (eval), {n_machines} machines, "
          f"{len(wins)} training windows; replay {sim_train_s:.1f} s + {sim_eval_s:.1f} s; "
          f"eval = {shifts:.2f} shifts")
    ev_faults = [f for f in faults if t1 <= f["start_ns"] < t2]
    kinds: dict[str, int] = {}
    for f in ev_faults:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    print(f"ground truth in the evaluation hours: {kinds}")
    print(f"training: {train_wall:.1f} s wall for all classes (child process, nice 19, one thread)")
    for m in metas:
        if m.get("status") != "trained":
            print(f"  {m['kind']:8s} {m['class']:10s} {m['status']} ({m.get('windows')} windows)")
            continue
        extra = ""
        if m["kind"] == "risk":
            auc = f"AUC {m['auc']:.2f}" if m.get("auc") is not None else "AUC n/a"
            pr = f"{m['precision_at_alarm']:.2f}" if m.get("precision_at_alarm") is not None else "n/a"
            extra = f"  held-out {auc}, precision at {m['alarm_at']:.2f}: {pr} ({m.get('flagged_windows')} windows flagged)"
        print(f"  {m['kind']:8s} {m['class']:10s} {m['version']} {m['windows']:5d} windows  "
              f"{m['train_s']:.2f} s  peak RSS {m['peak_rss_mb']:.0f} MB{extra}")
    print("detectors on the evaluation hours (a raise is right when it falls in a fault on its machine, "
          "start to end + 10 min):")
    for name, prefix in (("SPC", "spc."), ("anomaly", "anomaly."), ("reject risk", "risk."), ("any", "")):
        s = replay.score_detections(r2["calls"], faults, t1, t2, prefix, shifts, n_machines)

        def f(v, p=2):
            return "n/a" if v is None else f"{v:.{p}f}"
        print(f"  {name:11s} recall {f(s['recall'])} (≤10 min {f(s['recall_10min'])}, {s['detected']}/{s['faults']})  "
              f"precision {f(s['precision'])} ({s['true']} right, {s['false']} false, {s['precursor_raises']} in precursors)  "
              f"delay median {f(s['delay_median_min'], 1)} min p90 {f(s['delay_p90_min'], 1)} min  "
              f"false/machine/shift {f(s['false_per_machine_shift'], 3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
