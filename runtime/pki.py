"""A plant's broker PKI and password file, for docker-compose.yml and small installations.

    python -m runtime.pki OUT_DIR --dns mosquitto [--dns broker.plant.local] [--days 825]
                          [--client collect] [--client serve] [--user ENVPREFIX ...]

writes into OUT_DIR (created, mode 0700):
  ca.pem, ca.key            a private CA (kept when present: re-running adds, never replaces it)
  server.pem, server.key    the broker's certificate for the --dns names (and 127.0.0.1)
  <client>.pem/.key         a client certificate per --client (CN = the name)
  passwd                    a mosquitto password file (PBKDF2-SHA512, mosquitto's "$7$" format)
                            with one line per --user PREFIX: the user <PREFIX>_USERNAME and
                            password <PREFIX>_PASSWORD read from the environment (never from
                            the command line, never printed)

Private keys are mode 0600. The CA key never has to leave this directory: keep it offline once
the certificates are made. Certificates are RSA 2048 / SHA-256, server ones with
serverAuth and the DNS/IP names in the SAN (hostname verification needs them).
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collectors.opcua_certs import write_private  # mode 0600 from the first byte, atomic

MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default for "$7$" (PBKDF2-SHA512)


def mosquitto_hash(password: str, salt: Optional[bytes] = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The password_file hash mosquitto 2 reads: $7$<iterations>$<salt b64>$<hash b64>."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gwanje"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ensure_ca(out: Path, days: int) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    cert_p, key_p = out / "ca.pem", out / "ca.key"
    if cert_p.exists() and key_p.exists():
        cert = x509.load_pem_x509_certificate(cert_p.read_bytes())
        key = serialization.load_pem_private_key(key_p.read_bytes(), password=None)
        return cert, key  # type: ignore[return-value]
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("Gwanje plant CA")).issuer_name(_name("Gwanje plant CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    write_private(key_p, _pem_key(key))
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(out: Path, stem: str, cn: str, ca: tuple[x509.Certificate, rsa.RSAPrivateKey], days: int, *,
          server: bool, dns: Sequence[str] = ()) -> Path:
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    write_private(out / f"{stem}.key", _pem_key(key))
    path = out / f"{stem}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def password_file(prefixes: Sequence[str], env: Mapping[str, str]) -> str:
    """One mosquitto password line per prefix from <PREFIX>_USERNAME / <PREFIX>_PASSWORD."""
    lines = []
    for p in prefixes:
        user, pw = env.get(f"{p}_USERNAME"), env.get(f"{p}_PASSWORD")
        if not user or not pw:
            raise SystemExit(f"pki: set {p}_USERNAME and {p}_PASSWORD in the environment")
        if ":" in user or "\n" in user:
            raise SystemExit(f"pki: {p}_USERNAME must not contain ':' or a newline")
        lines.append(f"{user}:{mosquitto_hash(pw)}")
    return "\n".join(lines) + "\n"


def _own(path: Path, uid: Optional[int]) -> None:
    if uid is not None:
        os.chown(path, uid, -1)


def main(argv: Optional[list[str]] = None, env: Optional[Mapping[str, str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.pki", description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--dns", action="append", default=[], help="a DNS name of the broker (repeat)")
    ap.add_argument("--client", action="append", default=[], help="a client certificate to issue (repeat)")
    ap.add_argument("--user", action="append", default=[],
                    help="env prefix of a broker user: <PREFIX>_USERNAME, <PREFIX>_PASSWORD (repeat)")
    ap.add_argument("--days", type=int, default=825)
    ap.add_argument("--server-uid", type=int, default=None,
                    help="owner of server.key and passwd (e.g. 1883, the eclipse-mosquitto image's user)")
    ap.add_argument("--client-uid", type=int, default=None,
                    help="owner of the client keys (e.g. 10001, the gwanje image's user)")
    a = ap.parse_args(argv)
    env = os.environ if env is None else env
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ca = ensure_ca(out, a.days * 4)
    made = [out / "ca.pem"]
    # the directory must be enterable by the broker's and the clients' users; the keys are not
    os.chmod(out, 0o711)
    if a.dns:
        made.append(issue(out, "server", a.dns[0], ca, a.days, server=True, dns=a.dns))
        _own(out / "server.key", a.server_uid)
    for c in a.client:
        made.append(issue(out, c, c, ca, a.days, server=False))
        _own(out / f"{c}.key", a.client_uid)
    if a.user:
        text = password_file(a.user, env)
        write_private(out / "passwd", text.encode())
        _own(out / "passwd", a.server_uid)
        made.append(out / "passwd")
    for p in made:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
