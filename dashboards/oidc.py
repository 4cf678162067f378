"""Optional OpenID Connect login (system.yaml `ui.oidc`, secret GWANJE_OIDC_CLIENT_SECRET): the
authorization-code flow with PKCE, state and nonce, by authlib's client; the id token is
verified with joserfc (signature against the provider's JWKS, iss, aud, exp, nonce). The
role comes from one claim mapped through `role_map` to one of gwanje.roles.ROLES (several
mapped values: the highest); a claim mapping to none is refused. dashboards.auth turns the
result into the same session as a password login."""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from typing import Any, Mapping, Optional

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gwanje.config import OidcConfig
from gwanje.roles import ROLES

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
METADATA_TTL_S = 3600.0


class OidcRefused(Exception):
    """The login is refused; str(e) is the reason (for counters, logs and the audit)."""


def role_of(claim: Any, role_map: Mapping[str, str]) -> Optional[str]:
    """The highest role the claim's value(s) map to, or None."""
    values = claim if isinstance(claim, list) else [claim]
    roles = [role_map[v] for v in values if isinstance(v, str) and v in role_map]
    roles = [r for r in roles if r in ROLES]
    return max(roles, key=ROLES.index) if roles else None


def _clean_name(v: Any) -> Optional[str]:
    if not isinstance(v, str) or not v or len(v) > 64 or any(ord(c) < 32 or c in ",:" for c in v):
        return None
    return v


class OidcLogin:
    def __init__(self, cfg: OidcConfig, client_secret: str, timeout_s: float = 10.0) -> None:
        self.cfg, self.timeout_s = cfg, timeout_s
        self._secret = client_secret
        self._meta: Optional[tuple[float, dict]] = None
        self._keys: Optional[KeySet] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"OidcLogin(issuer={self.cfg.issuer!r}, client_id={self.cfg.client_id!r})"

    def metadata(self) -> dict:
        with self._lock:
            if self._meta is not None and time.monotonic() - self._meta[0] < METADATA_TTL_S:
                return self._meta[1]
        url = self.cfg.metadata_url or self.cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        r = requests.get(url, timeout=self.timeout_s)
        r.raise_for_status()
        meta = r.json()
        if meta.get("issuer") != self.cfg.issuer:
            raise OidcRefused("issuer_mismatch")
        with self._lock:
            self._meta = (time.monotonic(), meta)
            self._keys = None
        return meta

    def _keyset(self, refresh: bool = False) -> KeySet:
        with self._lock:
            if self._keys is not None and not refresh:
                return self._keys
        r = requests.get(self.metadata()["jwks_uri"], timeout=self.timeout_s)
        r.raise_for_status()
        keys = KeySet.import_key_set(r.json())
        with self._lock:
            self._keys = keys
        return keys

    def _session(self, redirect_uri: str, **kw: Any) -> OAuth2Session:
        return OAuth2Session(self.cfg.client_id, self._secret, scope=" ".join(self.cfg.scopes),
                             redirect_uri=redirect_uri, code_challenge_method="S256", **kw)

    def start(self, redirect_uri: str) -> tuple[str, dict]:
        """(the provider's authorization URL, what the session must keep until the callback)."""
        meta = self.metadata()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        with self._session(redirect_uri) as s:
            url, _ = s.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                                code_verifier=verifier)
        return url, {"state": state, "nonce": nonce, "verifier": verifier, "t": int(time.time())}

    def finish(self, redirect_uri: str, args: Mapping[str, str], saved: Any) -> tuple[str, str]:
        """The callback: (user name, role), or OidcRefused naming why."""
        if not isinstance(saved, dict) or not all(isinstance(saved.get(k), str) for k in ("state", "nonce", "verifier")):
            raise OidcRefused("no_login_started")
        if time.time() - float(saved.get("t", 0)) > 600:
            raise OidcRefused("login_too_old")
        if not hmac.compare_digest(str(args.get("state", "")), saved["state"]):
            raise OidcRefused("state_mismatch")
        if args.get("error"):
            raise OidcRefused("provider_error")
        code = args.get("code")
        if not code:
            raise OidcRefused("no_code")
        meta = self.metadata()
        try:
            with self._session(redirect_uri, state=saved["state"]) as s:
                token = s.fetch_token(meta["token_endpoint"], code=code, code_verifier=saved["verifier"],
                                      timeout=self.timeout_s)
        except Exception as e:  # the provider refused the code (or is away)
            raise OidcRefused(f"token_refused:{type(e).__name__}") from e
        raw = token.get("id_token")
        if not isinstance(raw, str):
            raise OidcRefused("no_id_token")
        claims = self._verify(raw, saved["nonce"])
        role = role_of(claims.get(self.cfg.role_claim), self.cfg.role_map)
        if role is None:
            raise OidcRefused("unmapped_role")
        name = _clean_name(claims.get(self.cfg.name_claim)) or _clean_name(claims.get("sub"))
        if name is None:
            raise OidcRefused("no_user_name")
        return name, role

    def _verify(self, raw: str, nonce: str) -> dict:
        for refresh in (False, True):  # a key rotated at the provider: fetch its keys once more
            try:
                tok = jwt.decode(raw, self._keyset(refresh), algorithms=ALGORITHMS)
                break
            except JoseError as e:
                if refresh:
                    raise OidcRefused(f"bad_id_token:{type(e).__name__}") from e
        claims = dict(tok.claims)
        reg = jwt.JWTClaimsRegistry(leeway=60, iss={"essential": True, "value": self.cfg.issuer},
                                    aud={"essential": True, "value": self.cfg.client_id},
                                    exp={"essential": True}, nonce={"essential": True, "value": nonce})
        try:
            reg.validate(claims)
        except JoseError as e:
            raise OidcRefused(f"bad_claims:{type(e).__name__}") from e
        return claims
