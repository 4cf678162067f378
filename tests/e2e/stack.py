"""Run Gwanje's processes (simulate, collect, serve) as real subprocesses on a temp config
whose broker, OPC UA endpoints, store and UI point at free ports and test servers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import yaml

from tests.fixtures.common import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def make_config(tmp: Path, mqtt_url: Optional[str], storage: dict) -> Path:
    d = tmp / "config"
    shutil.copytree(ROOT / "config", d)
    sysp = d / "system.yaml"
    data = yaml.safe_load(sysp.read_text(encoding="utf-8"))
    data["mqtt"]["url"] = mqtt_url
    data["mqtt"]["client_id"] = f"gwanje-e2e-{free_port()}"
    for ep in data["opcua"]["endpoints"]:
        ep["url"] = f"opc.tcp://127.0.0.1:{free_port()}/gwanje/{ep['name']}"
    data["storage"].update(storage)
    data["ui"]["port"] = free_port()
    data["ui"]["refresh_ms"] = 1000
    sysp.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d


class Proc:
    def __init__(self, cmd: str, config_dir: Path, data_dir: Path, *extra: str, env: Optional[dict] = None) -> None:
        self.log_path = data_dir.parent / f"{cmd}.log"
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update({"GWANJE_CONFIG_DIR": str(config_dir), "GWANJE_DATA_DIR": str(data_dir),
                  "GWANJE_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
        e.update(env or {})
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), cmd, *extra], cwd=str(ROOT),
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.log.close()
