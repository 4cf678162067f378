"""The OPC UA server certificates this installation trusts: one file per endpoint of
system.yaml, under `<data dir>/<opcua.trust_dir>` (default data/opcua-trust/).

  trusted/<endpoint>.der   the certificate (DER) the collector accepts for that endpoint
  pending/<endpoint>.der   the last certificate it refused there, for an operator to inspect

Rules, checked at every connect before the session is activated (so no credentials reach a
server we do not trust):
  - the trusted certificate: accepted.
  - none trusted yet: demo mode records it (trust on first use, logged with its fingerprint);
    production (GWANJE_DEMO=0) refuses until an operator confirms it, by
    `python app.py trust-server <endpoint>` (shows the SHA-256 fingerprint, asks) or by
    moving pending/<endpoint>.der to trusted/<endpoint>.der.
  - another certificate than the trusted one: refused in every mode, logged at ERROR. A
    server that really got a new certificate is confirmed the same way.
An endpoint's `server_certificate` in system.yaml is an operator's explicit pin: it is the
trusted certificate for that endpoint and the trust list is not consulted.

With security_policy None the certificate is only what the server says it has (nothing is
signed), so the check then tells a replaced server from the known one but proves nothing;
with Basic256Sha256 the server has signed our nonce with that certificate's key.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("gwanje.collectors.opcua")

_FILE_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ServerNotTrusted(Exception):
    """The server's certificate is not (or no longer) the trusted one; reason is the counted
    rejection reason (server_certificate_unknown / server_certificate_changed)."""

    def __init__(self, reason: str, message: str, short: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.short = short or message  # for status().detail, which is cut at 300 characters


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, as colon-separated upper-case hex (what UaExpert and
    openssl x509 -fingerprint -sha256 show)."""
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def same_fingerprint(a: str, b: str) -> bool:
    """Fingerprints compared without case, colons or spaces (as an operator may type one)."""
    def norm(x: str) -> str:
        return re.sub(r"[^0-9A-Fa-f]", "", x).upper()
    return norm(a) == norm(b) and len(norm(a)) == 64


def to_der(data: bytes) -> bytes:
    """A certificate file's bytes (PEM or DER) as DER."""
    if b"-----BEGIN" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def describe(der: bytes) -> str:
    """Subject, application URI, validity and fingerprint, for a log line or the CLI."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        valid = f"{cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}"
    except Exception:
        return f"(not a readable X.509 certificate) SHA-256 {fingerprint(der)}"
    return (f"subject {subject}; application URI {uris[0] if uris else '-'}; valid {valid}; "
            f"SHA-256 {fingerprint(der)}")


class TrustList:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _file(self, kind: str, endpoint: str) -> Path:
        return self.directory / kind / f"{_FILE_SAFE.sub('_', endpoint)}.der"

    def trusted_file(self, endpoint: str) -> Path:
        return self._file("trusted", endpoint)

    def pending_file(self, endpoint: str) -> Path:
        return self._file("pending", endpoint)

    def trusted(self, endpoint: str) -> Optional[bytes]:
        try:
            return to_der(self.trusted_file(endpoint).read_bytes())
        except FileNotFoundError:
            return None

    def trust(self, endpoint: str, der: bytes) -> Path:
        """Store der as the endpoint's trusted certificate (atomically; the pending copy goes)."""
        path = self.trusted_file(endpoint)
        _write(path, der)
        self.pending_file(endpoint).unlink(missing_ok=True)
        return path

    def check(self, endpoint: str, der: bytes, demo: bool, pinned: Optional[bytes] = None) -> None:
        """Accept der for endpoint or raise ServerNotTrusted; records it on first use in demo
        mode. pinned: the endpoint's configured server_certificate, which overrides the list."""
        known = pinned if pinned is not None else self.trusted(endpoint)
        if known == der:
            return
        if known is not None:
            _write(self.pending_file(endpoint), der)
            where = "system.yaml server_certificate" if pinned is not None else str(self.trusted_file(endpoint))
            raise ServerNotTrusted(
                "server_certificate_changed",
                f"SERVER CERTIFICATE CHANGED for endpoint {endpoint!r}: the server presents {describe(der)}, "
                f"but {where} holds SHA-256 {fingerprint(known)}. Refusing to connect: this can be another "
                f"machine answering at this address. If the server really has a new certificate, check the "
                f"fingerprint with its administrator and run `python app.py trust-server {endpoint}` "
                f"(the presented certificate is in {self.pending_file(endpoint)})",
                f"SERVER CERTIFICATE CHANGED, refused: SHA-256 {fingerprint(der)}; to trust it: "
                f"python app.py trust-server {endpoint}")
        if demo:
            path = self.trust(endpoint, der)
            log.warning("opcua endpoint %s: trusting the server certificate on first use (demo mode): %s; "
                        "stored in %s", endpoint, describe(der), path)
            return
        _write(self.pending_file(endpoint), der)
        raise ServerNotTrusted(
            "server_certificate_unknown",
            f"unknown server certificate for endpoint {endpoint!r}: {describe(der)}. Outside demo mode a "
            f"server is trusted only once an operator confirms it: `python app.py trust-server {endpoint}` "
            f"(or move {self.pending_file(endpoint)} to {self.trusted_file(endpoint)})",
            f"unknown server certificate, refused: SHA-256 {fingerprint(der)}; to trust it: "
            f"python app.py trust-server {endpoint}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def fetch_server_certificate(url: str, security_policy: str = "None",
                                   security_mode: str = "None") -> bytes:
    """The certificate the server at url announces (GetEndpoints, no session): the one of
    the endpoint with the configured policy and mode, else the first that carries one."""
    from asyncua import Client

    client = Client(url, timeout=10)
    endpoints: list[Any] = await client.connect_and_get_server_endpoints()
    want_policy = f"http://opcfoundation.org/UA/SecurityPolicy#{security_policy}"
    mode_no = {"None": 1, "Sign": 2, "SignAndEncrypt": 3}[security_mode]
    ranked = sorted(endpoints, key=lambda e: not (e.SecurityPolicyUri == want_policy
                                                  and int(e.SecurityMode) == mode_no))
    for ep in ranked:
        if ep.ServerCertificate:
            return _first_certificate(ep.ServerCertificate)
    raise ServerNotTrusted("server_certificate_unknown", f"{url}: the server announces no certificate")


def _first_certificate(chain: bytes) -> bytes:
    """The leaf of a DER certificate chain (servers may send the chain concatenated)."""
    from asyncua.client.client import _first_cert_from_chain

    return _first_cert_from_chain(chain)
