"""The OPC UA servers of the simulated sites: one asyncua Server per endpoint, serving its
simulated OPC UA machines the way the site's PLC gateway would. An endpoint of real machines
is never served (it is their real server's address); an address that cannot be listened on
raises EndpointUnavailable before anything is built, so the caller can leave it to whatever
server holds it.

Node ids follow what the collector expects (docs/payloads.md): a machine's `nodes` or a
signal's `node` in plant.yaml, else the endpoint's node_template (`ns=2;s={site}.{line}.{machine}.{signal}`).
Our namespace is registered first so that its index is 2. Variables hang in an Objects
folder tree site / line / machine for browsing. Types are the ones PLCs use: state Int32
(String for text codes), counters UInt16/UInt32/UInt64 by counter_bits, analog Double (also
lot_qty), text String (lot, lot_product, lot_parents). Each write carries the model step's
time as the source timestamp: the four LOT variables of a machine change with one.

Security is what the endpoint in system.yaml says, since the collector connects by the same
entry: None (demo only; outside demo mode it is served with a warning), or Basic256Sha256
(SignAndEncrypt, plus Sign when the mode is Sign) with a self-signed certificate generated
once into `<data dir>/opcua/<endpoint>/`. Secured and outside demo mode, a server given a login
(the simulate process's GWANJE_OPCUA_USERNAME/PASSWORD, per endpoint _<NAME> first: the ones
the collectors send) demands it like a PLC would: another user, a wrong password or an
anonymous session is refused (BadUserAccessDenied).
"""
from __future__ import annotations

import hmac
import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Optional
from urllib.parse import urlparse

from asyncua import Server, ua

from gwanje.config import Config, MachineSpec, OpcuaEndpoint, Secrets, SignalDef

log = logging.getLogger("gwanje.simulator.opcua")

NAMESPACE_URI = "urn:gwanje:simulator"
_COUNTER_TYPES = {16: ua.VariantType.UInt16, 32: ua.VariantType.UInt32, 64: ua.VariantType.UInt64}


def node_id_for(endpoint: OpcuaEndpoint, spec: MachineSpec, signal: SignalDef) -> str:
    """The node id string a signal is served under (the same rule the collector reads by)."""
    return spec.node(signal, endpoint)


def variant_type(spec: MachineSpec, signal: SignalDef) -> ua.VariantType:
    if signal.kind == "text":
        return ua.VariantType.String
    if signal.kind == "state":
        sc = spec.klass.state_codes
        codes = [*sc.running, *sc.idle, *sc.down, *sc.setup, *sc.planned_stop]
        return ua.VariantType.String if any(isinstance(c, str) for c in codes) else ua.VariantType.Int32
    if signal.kind == "counter":
        return _COUNTER_TYPES[spec.definition.counter_bits]
    return ua.VariantType.Double


def _initial(vtype: ua.VariantType) -> object:
    if vtype == ua.VariantType.String:
        return ""
    return 0.0 if vtype == ua.VariantType.Double else 0


def _convert(value: object, vtype: ua.VariantType) -> object:
    if vtype == ua.VariantType.String:
        return str(value)
    if vtype == ua.VariantType.Double:
        return float(value)  # type: ignore[arg-type]
    return int(value)  # type: ignore[call-overload]


@dataclass(frozen=True)
class _Var:
    node_id: ua.NodeId
    vtype: ua.VariantType


class EndpointUnavailable(RuntimeError):
    """The endpoint's address cannot be listened on here: taken (by a real server, or anything
    else), or not an address of this host."""


class SiteServer:
    """One site's OPC UA server. All methods run on the asyncio loop that started it."""

    def __init__(self, endpoint: OpcuaEndpoint, machines: Iterable[MachineSpec], demo: bool = True,
                 cert_dir: Optional[Path] = None, login: Optional[tuple[Optional[str], Optional[str]]] = None) -> None:
        self.endpoint = endpoint
        self.login = login if login and login[0] and login[1] else None
        self.machines = [m for m in machines if m.opcua_endpoint == endpoint.name]
        self.demo = demo
        self.cert_dir = cert_dir
        self.server: Optional[Server] = None
        self.vars: dict[tuple[str, str, str, str], _Var] = {}
        self.skipped: list[str] = []  # node ids that could not be served, with the reason

    async def start(self) -> None:
        # fail before the seconds asyncua takes to build its address space
        self._check_port()
        secured = not (self.endpoint.security_policy == "None" or self.endpoint.security_mode == "None")
        users = OneLogin(*self.login) if self.login and secured and not self.demo else None
        s = Server(user_manager=users)
        await s.init()
        # listen on the url's host:port; asyncua binds what set_endpoint names
        s.set_endpoint(self.endpoint.url)
        s.set_server_name(f"Gwanje simulated site {self.endpoint.name}")
        await self._security(s)
        ns = await s.register_namespace(NAMESPACE_URI)
        if ns != 2:
            raise RuntimeError(f"simulator namespace got index {ns}, node ids assume 2")
        await self._build(s, ns)
        try:
            await s.start()
        except OSError as e:
            raise self._cannot_listen(e) from e
        self.server = s
        log.info("OPC UA server %s listening on %s (%d variables)", self.endpoint.name, self.endpoint.url,
                 len(self.vars))

    def _cannot_listen(self, e: OSError) -> EndpointUnavailable:
        env = "GWANJE_OPCUA_URL_" + self.endpoint.name.upper().replace("-", "_")
        return EndpointUnavailable(f"OPC UA endpoint {self.endpoint.name}: cannot listen on {self.endpoint.url}: {e} "
                            f"(set {env} to another port)")

    def _check_port(self) -> None:
        u = urlparse(self.endpoint.url)
        with socket.socket() as probe:
            # asyncua's listener reuses the address too: a socket lingering in TIME_WAIT is no clash
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((u.hostname or "0.0.0.0", u.port or 4840))
            except OSError as e:
                raise self._cannot_listen(e) from e

    async def _security(self, s: Server) -> None:
        # serve what the endpoint says: the collector connects by the same entry
        if self.endpoint.security_policy == "None" or self.endpoint.security_mode == "None":
            if not self.demo:
                log.warning("OPC UA endpoint %s has no security outside demo mode", self.endpoint.name)
            s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        from cryptography.x509.oid import ExtendedKeyUsageOID

        from asyncua.crypto.cert_gen import setup_self_signed_certificate

        d = (self.cert_dir or Path("data/opcua")) / self.endpoint.name
        d.mkdir(parents=True, exist_ok=True)
        uri = f"urn:gwanje:simulator:{self.endpoint.name}"
        await s.set_application_uri(uri)
        cert, key = d / "server_cert.der", d / "server_key.pem"
        # the host name goes into the certificate's DNS names; asyncua checks it against its own
        await setup_self_signed_certificate(
            key, cert, uri, socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "KR", "organizationName": "Gwanje", "commonName": f"gwanje-sim-{self.endpoint.name}"},
        )
        await s.load_certificate(str(cert))
        await s.load_private_key(str(key))
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if self.endpoint.security_mode == "Sign":
            policies.append(ua.SecurityPolicyType.Basic256Sha256_Sign)
        s.set_security_policy(policies)

    async def _build(self, s: Server, ns: int) -> None:
        folders: dict[tuple[str, ...], object] = {}
        objects = s.nodes.objects

        async def folder(path: tuple[str, ...]):
            if path not in folders:
                parent = objects if len(path) == 1 else await folder(path[:-1])
                folders[path] = await parent.add_folder(ua.NodeId(".".join(path), ns), f"{ns}:{path[-1]}")
            return folders[path]

        for spec in self.machines:
            parent = await folder(spec.key)
            for sig in spec.signals:
                raw = node_id_for(self.endpoint, spec, sig)
                try:
                    nid = ua.NodeId.from_string(raw)
                except Exception:
                    # a browse path ("0:Objects/2:Press1/2:Tonnage") is the collector's to resolve;
                    # the simulator serves node ids only
                    self.skipped.append(f"{raw}: not a node id")
                    continue
                while nid.NamespaceIndex >= len(await s.get_namespace_array()):
                    await s.register_namespace(f"{NAMESPACE_URI}:{len(await s.get_namespace_array())}")
                vtype = variant_type(spec, sig)
                try:
                    var = await parent.add_variable(nid, f"{ns}:{sig.id}", ua.Variant(_initial(vtype), vtype))
                except ua.UaStatusCodeError as e:
                    self.skipped.append(f"{raw}: {e}")
                    continue
                self.vars[(*spec.key, sig.id)] = _Var(var.nodeid, vtype)
        for msg in self.skipped:
            log.warning("OPC UA server %s does not serve %s", self.endpoint.name, msg)

    async def write(self, ts_ns: int, batch: Iterable[tuple[MachineSpec, Mapping[str, object]]]) -> int:
        """Write the values of this site's machines with source time ts_ns; returns how many."""
        assert self.server is not None
        src = datetime.fromtimestamp(ts_ns / 1e9, timezone.utc)
        srv = datetime.now(timezone.utc)
        n = 0
        for spec, values in batch:
            if spec.opcua_endpoint != self.endpoint.name:
                continue
            for sid, value in values.items():
                v = self.vars.get((*spec.key, sid))
                if v is None:
                    continue
                dv = ua.DataValue(ua.Variant(_convert(value, v.vtype), v.vtype), SourceTimestamp=src,
                                  ServerTimestamp=srv)
                await self.server.write_attribute_value(v.node_id, dv)
                n += 1
        return n

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


class OneLogin:
    """asyncua user manager: exactly one username/password (compared in constant time)."""

    def __init__(self, username: str, password: str) -> None:
        self._user, self._password = username.encode(), password.encode()

    def __repr__(self) -> str:  # the password stays out of logs
        return "OneLogin(***)"

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None or password is None:
            return None
        ok_user = hmac.compare_digest(str(username).encode(), self._user)
        ok_pw = hmac.compare_digest(password if isinstance(password, bytes) else str(password).encode(),
                                    self._password)
        return User(role=UserRole.User) if ok_user and ok_pw else None


def site_servers(config: Config, machines: Optional[Iterable[MachineSpec]] = None,
                 cert_dir: Optional[Path] = None, secrets: Optional[Secrets] = None) -> list[SiteServer]:
    """A server for every endpoint with at least one of the machines on it (default: the
    simulated ones): an endpoint of real machines is their real server's address."""
    machines = [m for m in (config.simulated_machines() if machines is None else machines) if m.opcua_endpoint]
    out = []
    for ep in config.system.opcua.endpoints:
        if any(m.opcua_endpoint == ep.name for m in machines):
            out.append(SiteServer(ep, machines, demo=config.system.demo, cert_dir=cert_dir,
                                  login=secrets.opcua_login(ep.name) if secrets is not None else None))
    return out
