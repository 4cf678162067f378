"""The container healthcheck of every role (Dockerfile HEALTHCHECK): GET /healthz of this
process, exit 0 when it answers 200, else 1.

collect and simulate answer on GWANJE_HEALTH_PORT (their --health-port); the control room
(demo, serve, gunicorn) on GWANJE_PORT. /healthz is public (liveness only, no details), so
the check needs no login outside demo mode. Redirects are not followed: a login page is not
a healthy process."""
from __future__ import annotations

import http.client
import os
import sys
from typing import Mapping, Optional


def port(env: Mapping[str, str]) -> int:
    return int(env.get("GWANJE_HEALTH_PORT") or env.get("GWANJE_PORT") or 8050)


def check(env: Optional[Mapping[str, str]] = None, timeout_s: float = 4.0) -> tuple[bool, str]:
    env = os.environ if env is None else env
    p = port(env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", p, timeout=timeout_s)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        conn.close()
    except OSError as e:
        return False, f"127.0.0.1:{p}/healthz: {e}"
    return r.status == 200, f"127.0.0.1:{p}/healthz: HTTP {r.status}"


if __name__ == "__main__":
    ok, why = check()
    print(why)
    sys.exit(0 if ok else 1)
