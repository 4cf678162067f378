"""docker-compose.yml and the Dockerfile read against the code (docker cannot build here):
the compose client validates the file with the shipped env.example; every command a service
runs is a command the image has; every GWANJE_* variable it sets is one the code reads; every
mounted file exists; each role's security checks pass with the compose environment and the
shipped production system.yaml; the pki service's command, run as written, makes the broker
users that the shipped ACL names, and each role logs in as the ACL user meant for it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gwanje.config import Secrets, load_config
from gwanje.partition import for_instance
from gwanje.security import security_problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / "env.example"
OURS = "gwanje:latest"


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v.strip("'")
    return out


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")
    return re.sub(r"\$\{(\w+)(:[?-]([^}]*))?\}", lambda m: sub(m) if m.group(2) is None or m.group(2).startswith(":-")
                  else env[m.group(1)], value)


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _ours() -> dict:
    return {n: s for n, s in _services().items() if s.get("image") == OURS}


def _environment(svc: dict) -> dict[str, str]:
    env = _env_example()
    return {k: _interpolate(str(v), env) for k, v in (svc.get("environment") or {}).items()}


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_the_compose_client_validates_the_file():
    client = _compose_client()
    if client is None:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("no docker compose client (apt install docker-compose)")
        pytest.skip("no docker compose client (apt install docker-compose)")
    ok = subprocess.run([*client, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "-q"],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    # a secret left out of .env stops compose with its name, instead of starting without it
    empty = ROOT / "deploy" / "compose" / ".empty-env-for-test"
    empty.write_text("")
    try:
        bad = subprocess.run([*client, "--env-file", str(empty), "-f", str(COMPOSE), "config", "-q"],
                             capture_output=True, text=True, cwd=ROOT, env={"PATH": os.environ["PATH"]})
    finally:
        empty.unlink()
    assert bad.returncode != 0 and "in .env" in bad.stderr + bad.stdout


def test_every_command_is_one_the_image_has():
    from app import _parser

    choices = next(a for a in _parser()._actions if a.dest == "command").choices
    system = yaml.safe_load((ROOT / "deploy" / "compose" / "system.yaml").read_text())
    instances = {i["name"] for i in system["collect"]["instances"]}
    seen_instances = set()
    for name, svc in _ours().items():
        cmd = " ".join(svc["command"])
        for sub in re.findall(r"python app\.py ([\w-]+)", cmd):
            assert sub in choices, (name, sub)
        seen_instances |= set(re.findall(r"--instance (\S+)", cmd))
        for module in re.findall(r"python -m (\S+)", cmd):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), (name, module)
        for target in re.findall(r"(\w+(?:\.\w+)*):(\w+)$", cmd):
            assert re.search(rf"^{target[1]} = ", (ROOT / (target[0].replace(".", "/") + ".py")).read_text(), re.M)
    assert seen_instances == instances  # every instance runs, none twice-named or unknown


def test_every_mounted_file_exists_and_every_variable_is_read_by_the_code():
    code = "\n".join(p.read_text(errors="replace") for d in ("gwanje", "collectors", "storage", "dashboards",
                                                             "runtime", "alerts", "simulator")
                     for p in (ROOT / d).rglob("*.py")) + (ROOT / "app.py").read_text()
    for name, svc in _services().items():
        for v in svc.get("volumes") or []:
            src = v.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), (name, src)
        for var in (svc.get("environment") or {}):
            if var.startswith("GWANJE_"):
                assert var in code, (name, var)


def _config_for(svc_env: dict[str, str], tmp: Path):
    d = tmp / "config"
    if not d.exists():
        shutil.copytree(ROOT / "config", d)
        shutil.copy(ROOT / "deploy" / "compose" / "system.yaml", d / "system.yaml")
    return load_config(d, env=svc_env)


def test_each_role_passes_its_security_checks_with_the_compose_environment(tmp_path):
    roles = {}
    for name, svc in _ours().items():
        cmd = " ".join(svc["command"])
        env = _environment(svc)
        config = _config_for(env, tmp_path)
        assert config.system.demo is False, name
        if "collect" in cmd:
            inst = re.search(r"--instance (\S+)", cmd).group(1)
            config = for_instance(config, inst)
            role = "collect"
        elif "simulate" in cmd:
            role = "simulate"
        elif "wsgi" in cmd:
            role = "serve"
        else:
            continue
        roles[name] = role
        assert security_problems(config, Secrets.from_env(env), (role,)) == [], name
    assert sorted(roles.values()) == ["collect", "collect", "serve", "simulate"]


def test_pki_makes_the_acl_users_and_each_role_logs_in_as_its_own(tmp_path):
    services = _services()
    pki = services["pki"]
    env = {**os.environ, **_environment(pki)}
    cmd = [a if a != "/pki" else str(tmp_path / "pki") for a in pki["command"]]
    if os.geteuid() != 0:  # the uids of the broker's and our image's users: root only
        cmd = [a for i, a in enumerate(cmd) if not (a.endswith("-uid") or (i and cmd[i - 1].endswith("-uid")))]
    assert cmd[:3] == ["python", "-m", "runtime.pki"]
    r = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    made = {line.split(":", 1)[0] for line in (tmp_path / "pki" / "passwd").read_text().splitlines()}
    acl = ROOT / "deploy" / "mosquitto" / "aclfile"
    acl_users = set(re.findall(r"^user (\S+)", acl.read_text(), re.M))
    assert made == acl_users
    expect = {"simulate": "gwanje-plc", "collect": "gwanje-collect", "wsgi": "gwanje-serve"}
    for name, svc in _ours().items():
        cmd = " ".join(svc["command"])
        role = next((r for r in expect if r in cmd), None)
        if role:
            assert _environment(svc)["GWANJE_MQTT_USERNAME"] == expect[role], name
    # the broker reads its password file and keys from the pki volume it mounts
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    mounts = dict(v.split(":")[:2] for v in services["mosquitto"]["volumes"])
    certs = mounts["pki"]
    for f in re.findall(r"^(?:cafile|certfile|keyfile|password_file) (\S+)", conf, re.M):
        assert f.startswith(certs + "/") and (tmp_path / "pki" / Path(f).name).exists(), f


def test_the_dockerfile_copies_every_package_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./", text, re.M))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= copied, packages - copied
    assert "app.py" in copied
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    health = re.search(r'^HEALTHCHECK .*CMD \["python", "-m", "([\w.]+)"\]', text, re.M)
    assert health and (ROOT / (health.group(1).replace(".", "/") + ".py")).exists()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", ".venv", "data", ".git"} <= set(ignored)
