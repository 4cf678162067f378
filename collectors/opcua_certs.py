"""The collector's own OPC UA application certificate (`python app.py certs`) and the checks of
every security file a process is configured with, made at start so a missing or unreadable
file is a clear configuration error, not a traceback at the first connect.

The application instance certificate (OPC UA Part 6 6.2.2): self-signed, RSA 2048 / SHA-256
(what Basic256Sha256 asks for), subjectAltName with the application URI
urn:<host>:gwanje:collector and the host's DNS name. asyncua's client checks both against
its own settings (application_uri, socket.gethostname()) and many servers reject a client
whose CreateSession ApplicationUri differs from the certificate's URI, so the collector takes
its application URI from the certificate (collectors.opcua._set_security).

Default location, under the data dir: pki/own/cert.der (DER, what PLCs import) and
pki/own/key.pem (PEM, mode 0600). An endpoint with security but no certificate/private_key
in system.yaml uses these.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Optional

from gwanje.config import Config, OpcuaEndpoint

OWN_DIR = Path("pki") / "own"
CERT_FILE = "cert.der"
KEY_FILE = "key.pem"


def application_uri(host: str) -> str:
    return f"urn:{host}:gwanje:collector"


def default_paths(data_dir: Path) -> tuple[Path, Path]:
    d = Path(data_dir) / OWN_DIR
    return d / CERT_FILE, d / KEY_FILE


def with_default_certificate(ep: OpcuaEndpoint, data_dir: Optional[Path]) -> OpcuaEndpoint:
    """The endpoint with certificate/private_key defaulting to the data dir's pki/own/ files
    when it uses security and system.yaml names none."""
    if data_dir is None or ep.security_policy == "None" or (ep.certificate and ep.private_key):
        return ep
    cert, key = default_paths(Path(data_dir))
    return ep.model_copy(update={"certificate": ep.certificate or str(cert),
                                 "private_key": ep.private_key or str(key)})


class CertificateExists(Exception):
    pass


def create_certificate(out_dir: Path, host: Optional[str] = None, days: int = 3650,
                       force: bool = False) -> tuple[Path, Path, bytes]:
    """Write cert.der + key.pem into out_dir; returns (cert path, key path, DER). Refuses to
    replace existing files unless force (a PLC that trusts the old certificate would then
    refuse us)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host = host or socket.gethostname()
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / CERT_FILE, out_dir / KEY_FILE
    existing = [p for p in (cert_path, key_path) if p.exists()]
    if existing and not force:
        raise CertificateExists(f"{', '.join(map(str, existing))} already exist(s); --force replaces them "
                                f"(every server that trusts the old certificate must then trust the new one)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Gwanje collector@{host}"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gwanje")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(application_uri(host)),
                                                        x509.DNSName(host)]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private(key_path, pem)
    tmp = cert_path.with_suffix(".tmp")
    tmp.write_bytes(der)
    os.replace(tmp, cert_path)
    return cert_path, key_path, der


def write_private(path: Path, data: bytes) -> None:
    """The key file, mode 0600 from its first byte (never world-readable, not even briefly)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- start-up checks
def _certificate_problem(what: str, path: str) -> Optional[str]:
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"{what}: cannot read {path} ({e.strerror or e})"
    try:
        if b"-----BEGIN" in data:
            x509.load_pem_x509_certificate(data)
        else:
            x509.load_der_x509_certificate(data)
    except Exception:
        return f"{what}: {path} is not an X.509 certificate (PEM or DER)"
    return None


def _key_problem(what: str, path: str) -> Optional[str]:
    from cryptography.hazmat.primitives import serialization

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"{what}: cannot read {path} ({e.strerror or e})"
    try:
        if b"-----BEGIN" in data:
            serialization.load_pem_private_key(data, password=None)
        else:
            serialization.load_der_private_key(data, password=None)
    except TypeError:
        return f"{what}: {path} is encrypted with a passphrase; Gwanje needs an unencrypted key (mode 0600)"
    except Exception:
        return f"{what}: {path} is not a private key (PEM or DER)"
    return None


def _bundle_problem(what: str, path: str) -> Optional[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"{what}: cannot read {path} ({e.strerror or e})"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return f"{what}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def security_file_problems(config: Config, data_dir: Optional[Path], roles: tuple[str, ...]) -> list[str]:
    """Every certificate, key and CA file the process will use, read and parsed now (I/O):
    one line per problem, naming the setting and the file. Checked in every mode: a file
    that is configured must be usable."""
    out: list[Optional[str]] = []
    mqtt = config.system.mqtt
    url = mqtt.url or ""
    if url.startswith("mqtts://") and mqtt.tls is not None:
        t = mqtt.tls
        if t.ca_file and t.ca_file != "system":
            out.append(_bundle_problem("mqtt.tls.ca_file", t.ca_file))
        if t.cert_file:
            out.append(_certificate_problem("mqtt.tls.cert_file", t.cert_file))
        if t.key_file:
            out.append(_key_problem("mqtt.tls.key_file", t.key_file))
    if "collect" in roles:
        used = {m.opcua_endpoint for m in config.machines() if m.opcua_endpoint and m.definition.source == "opcua"}
        for ep in config.system.opcua.endpoints:
            if ep.name not in used or ep.security_policy == "None":
                continue
            ep = with_default_certificate(ep, data_dir)
            pre = f"opcua endpoint {ep.name}"
            hint = "" if ep.certificate and Path(ep.certificate).exists() else " — `python app.py certs` creates it"
            if ep.certificate:
                p = _certificate_problem(f"{pre} certificate", ep.certificate)
                out.append(p + hint if p else None)
            if ep.private_key:
                out.append(_key_problem(f"{pre} private_key", ep.private_key))
            if ep.server_certificate:
                out.append(_certificate_problem(f"{pre} server_certificate", ep.server_certificate))
            if ep.user_certificate:
                out.append(_certificate_problem(f"{pre} user_certificate", ep.user_certificate))
            if ep.user_private_key:
                out.append(_key_problem(f"{pre} user_private_key", ep.user_private_key))
    return [p for p in out if p]
