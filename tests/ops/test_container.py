"""What the Dockerfile and docker-compose.yml run, run here: the control room under real
gunicorn (runtime.wsgi:server) outside demo mode over a real influxd, and the image's
HEALTHCHECK command (python -m runtime.healthcheck) against it — /healthz answers without a
login, /readyz and /metrics do not."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from werkzeug.security import generate_password_hash

from tests.fixtures.common import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, influxd, port: int) -> dict:
    return {**os.environ, "GWANJE_DEMO": "0", "GWANJE_STORAGE": "influxdb", "GWANJE_INFLUX_URL": influxd.url,
            "GWANJE_INFLUX_DB": "gw_" + uuid.uuid4().hex[:8], "GWANJE_DATA_DIR": str(tmp_path),
            "GWANJE_SECRET_KEY": "s" * 32, "GWANJE_COMMAND_KEY": "c" * 32,
            "GWANJE_USERS": "admin:admin:" + generate_password_hash("pw", method="pbkdf2:sha256:1000"),
            "GWANJE_PORT": str(port), "GWANJE_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)}


def _healthcheck(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.healthcheck"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.services
def test_gunicorn_serves_the_control_room_and_the_healthcheck_passes(tmp_path, influxd):
    port = free_port()
    env = _env(tmp_path, influxd, port)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "runtime.wsgi:server"], cwd=ROOT,
                            env=env, stdout=log, stderr=log)
    try:
        assert wait_for(lambda: _healthcheck(env).returncode == 0, timeout=90, interval=0.5), \
            (tmp_path / "gunicorn.log").read_text()[-3000:]
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/healthz", timeout=5).json() == {"status": "alive"}
        for private in ("/readyz", "/metrics", "/"):
            r = requests.get(base + private, timeout=5, allow_redirects=False)
            assert r.status_code in (302, 401), (private, r.status_code)
    finally:
        stop_process(proc)
    assert proc.returncode is not None


def test_the_healthcheck_fails_when_nothing_answers(tmp_path):
    r = _healthcheck({**os.environ, "GWANJE_HEALTH_PORT": str(free_port()), "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1 and "/healthz" in r.stdout
