"""collect's side of the quality AI (docs/quality.md): the monitor's SPC limits on disk, the
live models, and the trainer process (export windows -> niced child -> new versions).

Everything here runs in the ticker thread (tick) or the writer thread (the monitor's
listener); the trainer is a separate process, so training never holds the GIL ingest needs.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from gwanje.config import Config
from gwanje.model import NS_PER_S, Event
from gwanje.quality import PLANT, QualityDef, QualityMonitor, load_quality
from quality.models import LiveModels, windows_frame

log = logging.getLogger("gwanje.quality")

RELOAD_EVERY_S = 30.0
WAITING_RETRY_S = 600.0  # a class without a model yet is tried again this soon


class QualityService:
    def __init__(self, config: Config, data_dir: Path, qdef: Optional[QualityDef] = None) -> None:
        self.config = config
        self.q = qdef if qdef is not None else load_quality(config)
        self.models_dir = Path(data_dir) / "models"
        self.spc_dir = self.models_dir / "spc"
        self.models = LiveModels(self.models_dir)
        self.monitor = QualityMonitor(config, self.q, scorer=self.models, limits=self._read_limits(),
                                      on_limits=self._keep_limits)
        self._proc: Optional[subprocess.Popen] = None
        self._proc_started = 0.0
        self._next_train = time.monotonic() + min(300.0, self.q.models.retrain_every_s)
        self._next_reload = 0.0
        self.trainings = 0
        self.last_training: Optional[dict[str, Any]] = None

    # ------------------------------------------------------------------ SPC limits
    def _read_limits(self) -> dict[tuple[str, str], dict]:
        out: dict[tuple[str, str], dict] = {}
        for p in self.spc_dir.glob("*.json") if self.spc_dir.is_dir() else ():
            try:
                d = json.loads(p.read_text())
            except (OSError, ValueError):
                log.warning("unreadable SPC limits file %s; its baselines start over", p)
                continue
            for path, lim in (d.items() if isinstance(d, dict) else ()):
                out[(p.stem, path)] = lim
        return out

    def _keep_limits(self, char_id: str, key: tuple[str, str, str], limits: Any) -> None:
        self.spc_dir.mkdir(parents=True, exist_ok=True)
        p = self.spc_dir / f"{char_id}.json"
        try:
            d = json.loads(p.read_text()) if p.exists() else {}
        except ValueError:
            d = {}
        d["/".join(key)] = limits.to_dict()
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=1, sort_keys=True))
        os.replace(tmp, p)

    # ------------------------------------------------------------------ training
    def export(self, store: Any, now_ns: int, path: Path) -> int:
        """The last train_window_h of quality_window records -> Parquet; the row count."""
        start = now_ns - int(self.q.models.train_window_h * 3600 * NS_PER_S)
        classes, events = {}, []
        for m in self.monitor.machines.values():
            site, line, machine = m.spec.key
            classes["/".join(m.spec.key)] = m.klass
            events += store.events("quality_window", start, now_ns, site=site, line=line, machine=machine,
                                   limit=1_000_000)
        df = windows_frame(events, classes, {k: self.q.features(k) for k in self.q.classes()})
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path)
        return df.height

    def start_training(self, store: Any, now_ns: int) -> bool:
        if self._proc is not None:
            return False
        path = self.models_dir / "train" / "windows.parquet"
        n = self.export(store, now_ns, path)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "quality.trainer", "--windows", str(path), "--models", str(self.models_dir),
             "--config", str(self.config.directory)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
            cwd=str(Path(__file__).resolve().parent.parent))
        self._proc_started = time.monotonic()
        log.info("quality trainer started on %d windows", n)
        return True

    def _finish_training(self) -> list[Event]:
        p = self._proc
        assert p is not None
        out, err = p.communicate()
        self._proc = None
        self.trainings += 1
        if p.returncode != 0:
            log.error("quality trainer failed (exit %s): %s", p.returncode, (err or "").strip()[-500:])
            return []
        events = []
        metas = []
        for line in (out or "").splitlines():
            try:
                meta = json.loads(line)
            except ValueError:
                continue
            metas.append(meta)
            if meta.get("status") == "trained":
                events.append(Event("quality_model", int(meta.get("trained_ns") or time.time_ns()), PLANT, "", "",
                                    f"{meta['kind']}:{meta['class']}", meta))
        self.last_training = {"at_ns": time.time_ns(), "results": metas}
        if any(m.get("status") in ("waiting", "not_enough_data") for m in metas):
            # a class still waits for its first model: try again soon, not in retrain_every_s
            self._next_train = min(self._next_train, time.monotonic() + WAITING_RETRY_S)
        self.models.reload()
        return events

    def tick(self, store: Any, now_ns: int) -> list[Event]:
        """Every few seconds from the ticker: close silent windows, finish or start training,
        load new versions."""
        events = self.monitor.tick(now_ns)
        mono = time.monotonic()
        if self._proc is not None and self._proc.poll() is not None:
            events += self._finish_training()
        if self._proc is None and mono >= self._next_train:
            self._next_train = mono + self.q.models.retrain_every_s
            try:
                self.start_training(store, now_ns)
            except Exception as e:  # a store outage: next time
                log.warning("quality training not started (%s)", type(e).__name__)
        if mono >= self._next_reload:
            self._next_reload = mono + RELOAD_EVERY_S
            self.models.reload()
        return events

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def status(self) -> dict[str, Any]:
        return {**self.monitor.status(), "trainings": self.trainings,
                "training": self._proc is not None,
                "models": {f"{k}:{c}": meta.get("version") for (k, c), (_m, meta) in self.models.models.items()}}
