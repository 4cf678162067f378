"""The quality models on simulated forging lines: the trainer process writes versions that
load back to the same scores, and a seeded low-billet-temperature fault is caught in time."""
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gwanje.config import load_config
from gwanje.model import NS_PER_S
from gwanje.quality import QualityMonitor, load_quality
from quality import models as M
from quality import replay
from simulator.machines import Plant

REPO = Path(__file__).resolve().parents[2]
TRAIN_H, EVAL_H = 8, 6


@pytest.fixture(scope="module")
def forging(tmp_path_factory):
    """8 h of the demo's forging machines with seeded faults through the monitor, the
    windows exported as collect exports them, and the trainer run on them as collect runs it."""
    cfg = load_config(REPO / "config")
    q = load_quality(cfg)
    specs = [m for m in cfg.machines() if m.definition.klass == "forging"]
    t0 = int(dt.datetime(2026, 11, 24, 8, 30, tzinfo=ZoneInfo(cfg.plant.timezone)).timestamp()) * NS_PER_S
    t1 = t0 + TRAIN_H * 3600 * NS_PER_S
    plant = Plant(cfg, seed=5, machines=specs, fault_every_h=3)
    mon = QualityMonitor(cfg, q)
    r = replay.run(cfg, plant, mon, t0, t1)
    wins = [e for e in r["events"] if e.kind == "quality_window"]
    classes = {"/".join(m.key): m.definition.klass for m in specs}
    df = M.windows_frame(wins, classes, {"forging": q.features("forging")})
    tmp = tmp_path_factory.mktemp("models")
    df.write_parquet(tmp / "w.parquet")
    out = subprocess.run([sys.executable, "-m", "quality.trainer", "--windows", str(tmp / "w.parquet"),
                          "--models", str(tmp / "models"), "--config", str(REPO / "config")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    metas = [json.loads(x) for x in out.stdout.splitlines()]
    return dict(cfg=cfg, q=q, plant=plant, mon=mon, df=df, dir=tmp / "models", metas=metas, t1=t1, wins=wins)


def test_the_trainer_writes_versions_that_load_back_to_the_same_scores(forging):
    trained = {(m["kind"], m["class"]): m for m in forging["metas"] if m["status"] == "trained"}
    assert set(trained) == {("anomaly", "forging"), ("risk", "forging")}
    risk = trained[("risk", "forging")]
    assert risk["test_windows"] > 0 and risk["auc"] is not None and 0.5 < risk["auc"] <= 1.0
    assert risk["train_s"] >= 0 and risk["peak_rss_mb"] > 0
    live = M.LiveModels(forging["dir"])
    assert live.models[("anomaly", "forging")][1]["version"] == "v0001"
    q, df = forging["q"], forging["df"].filter(forging["df"]["klass"] == "forging")
    again = M.fit_anomaly(df, q.anomaly.classes["forging"])  # the same data, fitted here
    w = next(e for e in forging["wins"] if e.data["settled"])
    path = f"{w.site}/{w.line}/{w.machine}"
    got = live.anomaly("forging", path, w.data["product"], w.data["values"])
    want = M.anomaly_score(again, path, w.data["product"], w.data["values"])
    assert got is not None and want is not None
    assert got[0] == pytest.approx(want[0]) and got[2] == "v0001"
    assert [s for s, _ in got[1]] == [s for s, _ in want[1]]
    r = live.risk("forging", path, w.data["product"], w.data["values"], 3600.0)
    assert r is not None and 0.0 < r[0] < 1.0 and abs(sum(x for _, x in r[1]) - 1.0) < 1e-6
    # an unknown product has no standardisation: no score rather than a made-up one
    assert live.anomaly("forging", path, "no-such-product", w.data["values"]) is None


def test_a_version_being_written_is_not_loaded_and_old_ones_are_pruned(forging, tmp_path):
    model, meta = M.load_version(M.latest_version(forging["dir"], "anomaly", "forging"))
    for _ in range(3):
        M.save_version(tmp_path, "anomaly", "forging", model, meta, keep=2)
    (tmp_path / "anomaly" / "forging" / "v0009").mkdir()  # no meta.json: still being written
    assert sorted(p.name for p in (tmp_path / "anomaly" / "forging").iterdir()) == ["v0002", "v0003", "v0009"]
    assert M.latest_version(tmp_path, "anomaly", "forging").name == "v0003"
    assert M.LiveModels(tmp_path).models[("anomaly", "forging")][1]["version"] == "v0003"


def test_a_seeded_billet_temperature_fault_is_detected_within_10_minutes(forging):
    cfg, plant, mon, t1 = forging["cfg"], forging["plant"], forging["mon"], forging["t1"]
    mon.scorer = M.LiveModels(forging["dir"])
    t2 = t1 + EVAL_H * 3600 * NS_PER_S
    r = replay.run(cfg, plant, mon, t1, t2)
    faults = [f for f in plant.faults() if f["kind"] == "low_billet_temp" and t1 <= f["start_ns"] < t2 - 1200 * NS_PER_S]
    assert faults, "the seed gives no fault in the evaluation hours"
    f = faults[0]
    raises = [c for c in r["calls"] if c.action == "activate" and c.machine == f["machine"]
              and c.rule in ("anomaly.forging", "risk.forging") and c.ts >= f["start_ns"]]
    assert raises, f"fault {f} not detected"
    first = min(raises, key=lambda c: c.ts)
    assert (first.ts - f["start_ns"]) <= 10 * 60 * NS_PER_S
    # the call names billet temperature among the signals that drove it
    assert "Billet temperature" in first.message_en
