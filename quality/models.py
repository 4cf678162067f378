"""The quality models (docs/quality.md): fitted with scikit-learn, kept as plain arrays.

- anomaly, per machine class: window means standardised per machine and product (median and
  MAD), a robust covariance (MinCovDet) of the standardised vectors; score = squared
  Mahalanobis distance / the training windows' 99.5 % quantile.
- risk, per machine class: a logistic regression of "a part of this window is a reject" on
  the standardised window signals, their absolute values and two changeover terms, one row
  per window weighted by its good and reject parts; time-ordered split, the newest 25 % held
  out for the AUC and the precision at the alarm threshold.

A version is `<models dir>/<kind>/<class>/v<NNNN>/` holding model.joblib (numpy arrays and
numbers only, so a version loads with any scikit-learn) and meta.json, written last: a
directory without meta.json is a version still being written and is never loaded.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Optional

import joblib
import numpy as np
import polars as pl

log = logging.getLogger("gwanje.quality")

MIN_NORM_WINDOWS = 20  # windows of one machine and product for its standardisation
QUANTILE = 0.995
TEST_FRACTION = 0.25
SINCE_SETUP = "since_setup"  # the pseudo-signal of the changeover terms (risk drivers)
STARTUP_TAU_S = (300.0, 1200.0)


# ------------------------------------------------------------------------------ frames
def windows_frame(events: list[Any], classes: dict[str, str], features: dict[str, list[str]]) -> pl.DataFrame:
    """quality_window records -> one row per window: ts, machine (path), class, product,
    settled, running_s, total, good, reject, since_setup_s and v_<signal> per feature.
    classes: machine path -> class; features: class -> its window signals."""
    cols: dict[str, list[Any]] = {k: [] for k in ("ts", "machine", "klass", "product", "settled", "running_s",
                                                   "total", "good", "reject", "since_setup_s")}
    allf = sorted({s for fs in features.values() for s in fs})
    vcols: dict[str, list[Any]] = {s: [] for s in allf}
    for e in events:
        path = f"{e.site}/{e.line}/{e.machine}"
        klass = classes.get(path)
        d = e.data if isinstance(e.data, dict) else {}
        if klass is None or not isinstance(d.get("values"), dict):
            continue
        vals = d["values"]

        def num(k: str, src: dict = d) -> Optional[float]:
            v = src.get(k)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

        cols["ts"].append(int(e.ts))
        cols["machine"].append(path)
        cols["klass"].append(klass)
        cols["product"].append(str(d.get("product") or ""))
        cols["settled"].append(bool(d.get("settled")))
        for k in ("running_s", "total", "good", "reject", "since_setup_s"):
            cols[k].append(num(k))
        for s in allf:
            vcols[s].append(num(s, vals))
    schema = {"ts": pl.Int64, "machine": pl.Utf8, "klass": pl.Utf8, "product": pl.Utf8, "settled": pl.Boolean,
              "running_s": pl.Float64, "total": pl.Float64, "good": pl.Float64, "reject": pl.Float64,
              "since_setup_s": pl.Float64, **{f"v_{s}": pl.Float64 for s in allf}}
    return pl.DataFrame({**cols, **{f"v_{s}": v for s, v in vcols.items()}}, schema=schema).sort("ts")


def _norms(df: pl.DataFrame, sigs: list[str]) -> dict[str, tuple[list[float], list[float]]]:
    """machine|product -> (median, robust scale) per signal, from settled windows."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    st = df.filter(pl.col("settled"))
    for (machine, product), g in st.group_by(["machine", "product"]):
        if g.height < MIN_NORM_WINDOWS:
            continue
        med, scale = [], []
        for s in sigs:
            x = g[f"v_{s}"].drop_nulls().to_numpy()
            if len(x) < MIN_NORM_WINDOWS:
                break
            m = float(np.median(x))
            mad = float(np.median(np.abs(x - m))) * 1.4826
            # a signal that barely moves (a setpoint held exactly) gets a floor: a tenth of a
            # per mille of its level, so rounding does not read as a large deviation
            med.append(m)
            scale.append(max(mad, 1e-4 * abs(m), 1e-9))
        else:
            out[f"{machine}|{product}"] = (med, scale)
    return out


def _z(df: pl.DataFrame, sigs: list[str], norms: dict[str, tuple[list[float], list[float]]]
       ) -> tuple[np.ndarray, np.ndarray]:
    """Standardised values (NaN where missing) and a mask of rows that have a norm."""
    keys = (df["machine"] + "|" + df["product"]).to_list()
    x = np.column_stack([df[f"v_{s}"].fill_null(float("nan")).to_numpy().astype(float) for s in sigs]) \
        if sigs else np.zeros((df.height, 0))
    z = np.full_like(x, np.nan)
    ok = np.zeros(df.height, dtype=bool)
    for i, k in enumerate(keys):
        n = norms.get(k)
        if n is not None:
            z[i] = (x[i] - np.asarray(n[0])) / np.asarray(n[1])
            ok[i] = True
    return z, ok


# ------------------------------------------------------------------------------ anomaly
def fit_anomaly(df: pl.DataFrame, sigs: list[str]) -> Optional[dict[str, Any]]:
    """The anomaly model of one class from its windows, or None when too few are settled."""
    from sklearn.covariance import MinCovDet

    norms = _norms(df, sigs)
    st = df.filter(pl.col("settled"))
    z, ok = _z(st, sigs, norms)
    z = z[ok & ~np.isnan(z).any(axis=1)]
    if len(z) < max(MIN_NORM_WINDOWS, 5 * len(sigs)):
        return None
    z = np.clip(z, -50, 50)
    mcd = MinCovDet(random_state=0, support_fraction=0.75).fit(z)
    loc = mcd.location_
    prec = np.linalg.pinv(mcd.covariance_ + 1e-6 * np.eye(len(sigs)))
    dz = z - loc
    d2 = np.einsum("ij,jk,ik->i", dz, prec, dz)
    # the threshold from the windows the robust fit kept (its support): the training hours
    # hold faults too, and their distances must not raise the bar
    support = d2[mcd.support_] if mcd.support_.any() else d2
    threshold = float(np.quantile(support, QUANTILE))
    return {"kind": "anomaly", "signals": list(sigs), "norms": norms, "loc": loc.tolist(),
            "precision": prec.tolist(), "threshold": max(threshold, 1e-9), "windows": int(len(z))}


def anomaly_score(model: dict[str, Any], machine: str, product: str, values: dict[str, float]
                  ) -> Optional[tuple[float, list[tuple[str, float]]]]:
    n = model["norms"].get(f"{machine}|{product}")
    sigs = model["signals"]
    if n is None or any(s not in values for s in sigs):
        return None
    z = (np.array([values[s] for s in sigs]) - np.asarray(n[0])) / np.asarray(n[1])
    dz = np.clip(z, -50, 50) - np.asarray(model["loc"])
    p = np.asarray(model["precision"])
    pz = p @ dz
    d2 = float(dz @ pz)
    c = np.maximum(dz * pz, 0.0)
    tot = float(c.sum())
    drivers = sorted(((s, float(ci) / tot) for s, ci in zip(sigs, c) if ci > 0), key=lambda x: -x[1]) if tot > 0 else []
    return d2 / model["threshold"], drivers


# ------------------------------------------------------------------------------ risk
def _risk_x(z: np.ndarray, since_s: np.ndarray) -> np.ndarray:
    z = np.nan_to_num(np.clip(z, -50, 50), nan=0.0)
    s = np.nan_to_num(since_s, nan=1e6)
    startup = np.column_stack([np.exp(-np.maximum(s, 0) / t) for t in STARTUP_TAU_S])
    return np.column_stack([z, np.abs(z), startup])


def fit_risk(df: pl.DataFrame, sigs: list[str], alarm_at: float) -> Optional[dict[str, Any]]:
    """The reject-risk model of one class, with its held-out figures, or None (too little data,
    or no reject in the training or the held-out part)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    norms = _norms(df, sigs)
    d = df.filter((pl.col("total") > 0) & pl.col("good").is_not_null() & pl.col("reject").is_not_null())
    z, ok = _z(d, sigs, norms)
    d = d.filter(pl.Series(ok))
    z = z[ok]
    if d.height < 2 * MIN_NORM_WINDOWS:
        return None
    x = _risk_x(z, d["since_setup_s"].fill_null(1e6).to_numpy())
    good = d["good"].to_numpy().clip(0)
    rej = d["reject"].to_numpy().clip(0)
    ts = d["ts"].to_numpy()
    cut = np.quantile(ts, 1 - TEST_FRACTION)
    tr, te = ts < cut, ts >= cut
    if rej[tr].sum() == 0 or good[tr].sum() == 0:
        return None

    def rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xm = x[mask]
        return (np.vstack([xm, xm]), np.concatenate([np.ones(len(xm)), np.zeros(len(xm))]),
                np.concatenate([rej[mask], good[mask]]))

    xt, yt, wt = rows(tr)
    keep = wt > 0
    clf = LogisticRegression(C=0.5, max_iter=2000).fit(xt[keep], yt[keep], sample_weight=wt[keep])
    auc = prec = part_prec = None
    flagged = 0
    if te.any():
        xe, ye, we = rows(te)
        keep = we > 0
        if len(set(ye[keep].tolist())) == 2:
            auc = float(roc_auc_score(ye[keep], clf.predict_proba(xe[keep])[:, 1], sample_weight=we[keep]))
        p = clf.predict_proba(x[te])[:, 1]
        f = p >= alarm_at
        flagged = int(f.sum())
        if flagged:
            prec = float((rej[te][f] > 0).mean())
            part_prec = float(rej[te][f].sum() / max(1.0, (rej[te][f] + good[te][f]).sum()))
    return {"kind": "risk", "signals": list(sigs), "norms": norms, "coef": clf.coef_[0].tolist(),
            "intercept": float(clf.intercept_[0]), "auc": auc, "precision_at_alarm": prec,
            "part_precision_at_alarm": part_prec, "flagged_windows": flagged, "alarm_at": alarm_at,
            "windows": int(d.height), "train_windows": int(tr.sum()), "test_windows": int(te.sum()),
            "test_from_ns": int(cut)}


def risk_score(model: dict[str, Any], machine: str, product: str, values: dict[str, float], since_setup_s: float
               ) -> Optional[tuple[float, list[tuple[str, float]]]]:
    n = model["norms"].get(f"{machine}|{product}")
    if n is None:
        return None
    sigs = model["signals"]
    v = np.array([values.get(s, np.nan) for s in sigs], dtype=float)
    z = ((v - np.asarray(n[0])) / np.asarray(n[1]))[None, :]
    x = _risk_x(z, np.array([since_setup_s], dtype=float))[0]
    coef = np.asarray(model["coef"])
    terms = coef * x
    logit = float(terms.sum() + model["intercept"])
    p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))
    k = len(sigs)
    per = {s: max(0.0, float(terms[i] + terms[k + i])) for i, s in enumerate(sigs)}
    per[SINCE_SETUP] = max(0.0, float(terms[2 * k:].sum()))
    tot = sum(per.values())
    drivers = sorted(((s, c / tot) for s, c in per.items() if c > 0), key=lambda x: -x[1]) if tot > 0 else []
    return p, drivers


# ------------------------------------------------------------------------------ versions
def save_version(models_dir: Path, kind: str, klass: str, model: dict[str, Any], meta: dict[str, Any],
                 keep: int = 5) -> Path:
    base = Path(models_dir) / kind / klass
    base.mkdir(parents=True, exist_ok=True)
    nums = [int(p.name[1:]) for p in base.glob("v[0-9]*") if p.name[1:].isdigit()]
    ver = f"v{max(nums, default=0) + 1:04d}"
    d = base / ver
    d.mkdir()
    joblib.dump(model, d / "model.joblib")
    tmp = d / "meta.json.tmp"
    tmp.write_text(json.dumps({**meta, "version": ver}, sort_keys=True))
    os.replace(tmp, d / "meta.json")  # last: the version is complete
    done = sorted((p for p in base.glob("v[0-9]*") if (p / "meta.json").exists()), key=lambda p: p.name)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return d


def latest_version(models_dir: Path, kind: str, klass: str) -> Optional[Path]:
    base = Path(models_dir) / kind / klass
    done = sorted((p for p in base.glob("v[0-9]*") if (p / "meta.json").exists()), key=lambda p: p.name)
    return done[-1] if done else None


def load_version(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    model = joblib.load(Path(path) / "model.joblib")
    meta = json.loads((Path(path) / "meta.json").read_text())
    return model, meta


class LiveModels:
    """The newest complete version of every model under the models dir (gwanje.quality.Scorer).
    reload() picks up new versions; a version that fails to load is logged and skipped."""

    def __init__(self, models_dir: Path) -> None:
        self.dir = Path(models_dir)
        self._lock = threading.Lock()
        self.models: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.reload()

    def reload(self) -> list[dict[str, Any]]:
        """Load new versions; returns the metadata of those newly loaded."""
        new = []
        for kind in ("anomaly", "risk"):
            base = self.dir / kind
            if not base.is_dir():
                continue
            for cdir in sorted(base.iterdir()):
                v = latest_version(self.dir, kind, cdir.name)
                cur = self.models.get((kind, cdir.name))
                if v is None or (cur is not None and cur[1].get("version") == v.name):
                    continue
                try:
                    model, meta = load_version(v)
                except Exception as e:
                    log.error("cannot load model %s (%s)", v, type(e).__name__)
                    continue
                with self._lock:
                    self.models[(kind, cdir.name)] = (model, meta)
                new.append(meta)
                log.info("quality model %s %s %s loaded", kind, cdir.name, meta.get("version"))
        return new

    def anomaly(self, klass: str, machine: str, product: str, values: dict[str, float]
                ) -> Optional[tuple[float, list[tuple[str, float]], str]]:
        m = self.models.get(("anomaly", klass))
        if m is None:
            return None
        r = anomaly_score(m[0], machine, product, values)
        return None if r is None else (r[0], r[1], m[1].get("version", ""))

    def risk(self, klass: str, machine: str, product: str, values: dict[str, float], since_setup_s: float
             ) -> Optional[tuple[float, list[tuple[str, float]], str]]:
        m = self.models.get(("risk", klass))
        if m is None:
            return None
        r = risk_score(m[0], machine, product, values, since_setup_s)
        return None if r is None else (r[0], r[1], m[1].get("version", ""))
