"""The domain package (gwanje/) is pure: state, OEE, alarm inputs, config, batches. It holds no
threads, sockets or HTTP, imports no client library and nothing from the edges (storage/,
collectors/, runtime/, dashboards/): the pipeline, health server and metrics live in runtime/.

Checked two ways: statically, every import statement of every module (also those inside
functions), and dynamically, a fresh interpreter importing every gwanje module must not have
loaded any of the forbidden modules afterwards."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOMAIN = REPO / "gwanje"

# top-level module names the domain must not import
FORBIDDEN = {
    # client libraries and I/O stacks
    "paho", "asyncua", "influxdb_client", "duckdb", "requests", "urllib3", "redis", "amqtt",
    "prometheus_client", "apprise", "gunicorn", "dash", "flask", "werkzeug", "authlib",
    "socket", "socketserver", "http", "ssl", "asyncio", "subprocess", "multiprocessing",
    "sqlite3", "urllib.request",
    # the edges of this repository
    "storage", "collectors", "runtime", "dashboards", "alerts", "simulator", "app",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _forbidden(name: str) -> bool:
    return name in FORBIDDEN or name.split(".")[0] in FORBIDDEN


def test_no_domain_module_imports_an_edge_or_a_client_library():
    found = [f"{p.relative_to(REPO)}:{line} imports {name}"
             for p in sorted(DOMAIN.glob("*.py")) for line, name in _imports(p) if _forbidden(name)]
    assert found == []


def test_the_checker_sees_an_import_inside_a_function(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from storage.base import Store\n    import paho.mqtt.client\n")
    assert [n for _, n in _imports(p) if _forbidden(n)] == ["storage.base", "paho.mqtt.client"]


def test_importing_the_whole_domain_loads_no_edge_and_no_client_library():
    mods = sorted(f"gwanje.{p.stem}" for p in DOMAIN.glob("*.py") if p.stem != "__init__")
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    # the stdlib may load socket/ssl for its own reasons (e.g. uuid, logging.handlers): the
    # edges and the client libraries are what must stay out
    edges = {"storage", "collectors", "runtime", "dashboards", "alerts", "simulator", "paho", "asyncua",
             "influxdb_client", "duckdb", "requests", "redis", "prometheus_client", "http.server"}
    assert sorted(m for m in loaded if m in edges or m.split(".")[0] in edges - {"http.server"}) == []
