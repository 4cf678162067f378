"""WSGI entry for the control room behind gunicorn (split deployments, InfluxDB store):

    gunicorn -w 2 -b 0.0.0.0:8050 runtime.wsgi:server

Configuration as for `python app.py serve` (GWANJE_CONFIG_DIR, GWANJE_DATA_DIR, GWANJE_*).
Workers share the store and, with GWANJE_REDIS_URL (or ui.cache.redis_url) and one
GWANJE_SECRET_KEY for all, the query cache (docs/deploy.md "Shared cache (Redis)"); without
Redis each keeps its own short-TTL query cache.
/healthz (public), /readyz and /metrics (behind the login outside demo mode) as for serve.
"""
import os
from pathlib import Path

from gwanje.config import Secrets, load_config
from runtime.health import add_routes
from gwanje.security import security_problems
from runtime.process import Runtime

_config = load_config()
_problems = security_problems(_config, Secrets.from_env(), ("serve",))
if _problems:
    raise SystemExit("refusing to start outside demo mode: " + "; ".join(_problems))
_runtime = Runtime(_config, Path(os.environ.get("GWANJE_DATA_DIR", "data")))
app = _runtime.create_ui()
server = app.server
# /healthz (public: the container healthcheck) /readyz /metrics, as `python app.py serve` has
add_routes(server, _runtime.status)
