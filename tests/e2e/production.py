"""The production split deployment of docker-compose.yml, on this machine: the broker PKI
from `python -m runtime.pki`, mosquitto with the shipped deploy/mosquitto/ config and ACL,
influxd, redis-server with a password, and a config dir whose system.yaml is
deploy/compose/system.yaml with only hosts, ports and paths rewritten. Processes are started
with the environment compose gives them (GWANJE_DEMO=0, one MQTT user per role)."""
from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests
import yaml

from tests.fixtures.common import free_port, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MQTT_USERS = {"PLC_MQTT": "gwanje-plc", "COLLECT_MQTT": "gwanje-collect", "SERVE_MQTT": "gwanje-serve"}


def secret(label: str) -> str:
    """A known secret, recognisable in a log if it ever leaks."""
    return f"{label}-{secrets.token_hex(12)}"


def run_pki(out: Path, env_secrets: dict[str, str]) -> str:
    """`python -m runtime.pki` as compose's pki service runs it (the broker's name: localhost)."""
    env = dict(os.environ, **env_secrets)
    cmd = [sys.executable, "-m", "runtime.pki", str(out), "--dns", "localhost"]
    for prefix in MQTT_USERS:
        cmd += ["--user", prefix]
    done = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


class Mosquitto:
    """mosquitto on the shipped deploy/mosquitto/mosquitto.conf and aclfile, paths and port rewritten."""

    def __init__(self, binary: str, d: Path, pki: Path) -> None:
        self.port = free_port()
        self.log_path = d / "mosquitto.log"
        (d / "data").mkdir(parents=True, exist_ok=True)
        conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
        # the pki volume (certificates and the password file) is mounted at /mosquitto/certs
        for old, new in (("/mosquitto/certs/", f"{pki}/"),
                         ("/mosquitto/config/aclfile", str(DEPLOY / "mosquitto" / "aclfile")),
                         ("/mosquitto/data/", f"{d}/data/"), ("listener 8883", f"listener {self.port} 127.0.0.1"),
                         ("log_dest stdout", f"log_dest file {self.log_path}")):
            assert old in conf, old
            conf = conf.replace(old, new)
        (d / "mosquitto.conf").write_text(f"user {getpass.getuser()}\n" + conf)
        self.proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc)


def compose_config(tmp: Path, *, mqtt_port: int, ca_file: Path, influx_url: str, database: str,
                   sim_data: Path) -> Path:
    """config/ with deploy/compose/system.yaml, its hosts, ports and paths made local."""
    d = tmp / "config"
    shutil.copytree(ROOT / "config", d)
    data = yaml.safe_load((DEPLOY / "compose" / "system.yaml").read_text(encoding="utf-8"))
    assert data["mqtt"]["url"] == "mqtts://mosquitto:8883", data["mqtt"]["url"]
    data["mqtt"]["url"] = f"mqtts://localhost:{mqtt_port}"  # the broker certificate's name
    data["mqtt"]["tls"]["ca_file"] = str(ca_file)
    for ep in data["opcua"]["endpoints"]:
        assert ep["server_certificate"].startswith("/sim-data/"), ep
        ep["url"] = f"opc.tcp://127.0.0.1:{free_port()}/gwanje/{ep['name']}"
        ep["server_certificate"] = str(sim_data / ep["server_certificate"][len("/sim-data/"):])
    assert data["storage"]["influxdb"]["url"] == "http://influxdb:8086"
    data["storage"]["influxdb"].update(url=influx_url, database=database)
    data["ui"]["host"] = "127.0.0.1"  # GWANJE_PORT / gunicorn -b give each serve its port
    (d / "system.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return d


class Process:
    """One Gwanje process (app.py CMD ... or any argv) with its own log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        e = {k: v for k, v in os.environ.items() if not k.startswith("GWANJE_")}
        e.update({"GWANJE_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}, **env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=self.log, stderr=subprocess.STDOUT, env=e)

    @classmethod
    def app(cls, name: str, *args: str, env: dict[str, str], log_dir: Path) -> "Process":
        return cls(name, [sys.executable, str(ROOT / "app.py"), *args], env, log_dir)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.log.close()


def run_app(*args: str, env: dict[str, str]) -> str:
    """A one-shot app.py command (certs): its output, asserting it succeeded."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("GWANJE_")}
    e.update(env)
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=str(ROOT), env=e,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


class Http:
    """A logged-in HTTP client of one serve. The session cookie is Secure, which a cookie jar
    keeps off plain http; a browser sends it to 127.0.0.1 anyway, so this client does too."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.s = requests.Session()
        self.cookie: Optional[str] = None

    def login(self, user: str, password: str) -> requests.Response:
        r = self.s.post(self.base + "/login", data={"username": user, "password": password, "next": "/"},
                        allow_redirects=False, timeout=30)
        if r.status_code == 302:
            self.cookie = r.cookies.get("session") or self.s.cookies.get("session")
        return r

    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}"} if self.cookie else {}

    def get(self, path: str) -> requests.Response:
        r = self.s.get(self.base + path, headers=self._headers(), allow_redirects=False, timeout=30)
        r.get_json = r.json
        return r

    def post(self, path: str, json=None, data=None, headers=None) -> requests.Response:
        r = self.s.post(self.base + path, json=json, data=data, headers={**self._headers(), **(headers or {})},
                        allow_redirects=False, timeout=30)
        r.get_json = r.json
        return r
