"""The simulated sites' OPC UA servers outside demo mode stand in for PLCs that demand a login:
with Basic256Sha256 SignAndEncrypt and the login the simulate process has in its environment
(GWANJE_OPCUA_USERNAME/PASSWORD, the collectors'), a session with that user and password is
activated; a wrong password, another user or an anonymous session is refused."""
from __future__ import annotations

import asyncio

import pytest

from gwanje.config import OpcuaEndpoint, load_config
from tests.fixtures.common import free_port
from tests.simulator.test_servers import ROOT as REPO

pytestmark = pytest.mark.services


async def _session(url: str, cert, key, user, password) -> str:
    from asyncua import Client, ua
    from asyncua.crypto import security_policies

    c = Client(url, timeout=10)
    c.application_uri = "urn:gwanje:test-client"
    await c.set_security(security_policies.SecurityPolicyBasic256Sha256, str(cert), str(key),
                         mode=ua.MessageSecurityMode.SignAndEncrypt)
    if user:
        c.set_user(user)
        c.set_password(password)
    try:
        await c.connect()
    except Exception as e:
        return f"refused: {e!r}"
    try:
        return f"session: server state {ua.ServerState(await c.nodes.server_state.read_value()).name}"
    finally:
        await c.disconnect()


def test_the_simulators_secure_server_takes_only_its_login(tmp_path):
    from collectors.opcua_certs import create_certificate
    from simulator.opcua_server import SiteServer

    cfg = load_config(REPO / "config", env={"GWANJE_DEMO": "0"})
    ep0 = cfg.system.opcua.endpoints[0]
    ep = OpcuaEndpoint(**{**ep0.model_dump(), "url": f"opc.tcp://127.0.0.1:{free_port()}/gwanje/{ep0.name}",
                          "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"})
    machines = [m for m in cfg.simulated_machines() if m.opcua_endpoint == ep.name][:1]
    cert, key, _ = create_certificate(tmp_path / "own", "localhost")

    async def run():
        server = SiteServer(ep, machines, demo=False, cert_dir=tmp_path / "sim", login=("gwanje-collect", "s3cret-pw"))
        await server.start()
        try:
            return [await _session(ep.url, cert, key, *login) for login in
                    (("gwanje-collect", "s3cret-pw"), ("gwanje-collect", "wrong-pw"), ("mallory", "s3cret-pw"),
                     (None, None))]
        finally:
            await server.stop()

    ok, wrong, other, anonymous = asyncio.run(run())
    assert ok == "session: server state Running", ok
    for refused in (wrong, other, anonymous):
        assert refused.startswith("refused") and ("BadUserAccessDenied" in refused or "BadIdentityToken" in refused), refused
