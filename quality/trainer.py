"""The quality trainer: a background process that fits new model versions (docs/quality.md).

    python -m quality.trainer --windows W.parquet --models DIR --config CONFIG_DIR

collect starts it niced (19) with one BLAS/OpenMP thread, on a Parquet export of the stored
`quality_window` records. It fits, per class with enough windows, an anomaly model and a
reject-risk model, writes each as a new version under DIR, and prints one JSON line per
version (its metadata). Peak memory and training time are measured here and kept in the
metadata.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")


def train(windows: Path, models_dir: Path, config_dir: Path) -> list[dict]:
    import polars as pl

    from gwanje.config import load_config
    from gwanje.quality import load_quality
    from quality import models as M

    config = load_config(config_dir)
    q = load_quality(config)
    df = pl.read_parquet(windows)
    out = []
    for klass in sorted(q.classes()):
        d = df.filter(pl.col("klass") == klass)
        settled = int(d["settled"].sum()) if d.height else 0
        jobs = []
        if klass in q.anomaly.classes:
            jobs.append(("anomaly", q.anomaly.classes[klass]))
        if klass in q.risk.classes:
            jobs.append(("risk", q.features(klass)))
        for kind, sigs in jobs:
            if settled < q.models.min_windows:
                out.append({"kind": kind, "class": klass, "status": "waiting", "windows": settled,
                            "min_windows": q.models.min_windows})
                continue
            t0 = time.process_time()
            w0 = time.monotonic()
            model = M.fit_anomaly(d, sigs) if kind == "anomaly" else M.fit_risk(d, sigs, q.risk.alarm_at)
            if model is None:
                out.append({"kind": kind, "class": klass, "status": "not_enough_data", "windows": settled})
                continue
            meta = {"kind": kind, "class": klass, "status": "trained", "signals": sigs,
                    "windows": model["windows"], "train_s": round(time.monotonic() - w0, 3),
                    "train_cpu_s": round(time.process_time() - t0, 3),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "trained_ns": time.time_ns(), "from_ns": int(d["ts"].min()), "to_ns": int(d["ts"].max())}
            for k in ("threshold", "auc", "precision_at_alarm", "part_precision_at_alarm", "flagged_windows",
                      "alarm_at", "train_windows", "test_windows", "test_from_ns"):
                if k in model:
                    meta[k] = model[k]
            path = M.save_version(models_dir, kind, klass, model, meta, keep=q.models.keep_versions)
            meta["version"] = path.name
            out.append(meta)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quality.trainer")
    p.add_argument("--windows", required=True, type=Path)
    p.add_argument("--models", required=True, type=Path)
    p.add_argument("--config", required=True, type=Path)
    a = p.parse_args(argv)
    try:
        os.nice(19)
    except OSError:
        pass
    for meta in train(a.windows, a.models, a.config):
        print(json.dumps(meta, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
