"""The provider app (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import secrets
import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, ClientMixin
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet, RSAKey


class Client(ClientMixin):
    def __init__(self, client_id: str, secret: str, redirect_uri: str) -> None:
        self.client_id, self.secret, self.redirect_uri = client_id, secret, redirect_uri

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uri

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile", "email", "groups"))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret or "", self.secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post") if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Code(AuthorizationCodeMixin):
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None

    def is_expired(self):
        return time.time() - self.auth_time > 300


def make_app(issuer: str, client: Client, users: dict[str, dict[str, Any]]) -> Flask:
    app = Flask("oidc-provider")
    key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
    codes: dict[str, Code] = {}
    nonces: set[str] = set()

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code, req):
            nonce = req.payload.data.get("nonce")
            if nonce:
                nonces.add(nonce)
            codes[code] = Code(code=code, client_id=req.payload.client_id, redirect_uri=req.payload.redirect_uri,
                               scope=req.payload.scope, user=req.user, nonce=nonce,
                               code_challenge=req.payload.data.get("code_challenge"),
                               code_challenge_method=req.payload.data.get("code_challenge_method"))

        def query_authorization_code(self, code, cl):
            c = codes.get(code)
            return c if c is not None and c.client_id == cl.get_client_id() and not c.is_expired() else None

        def delete_authorization_code(self, authorization_code):
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return authorization_code.user

    class OIDC(OpenIDCode):
        def exists_nonce(self, nonce, req):
            return nonce in nonces

        def resolve_client_private_key(self, cl):
            return key

        def get_client_algorithm(self, cl):
            return "RS256"

        def get_encode_header(self, cl):
            return {"alg": "RS256", "kid": "test-key-1"}

        def get_client_claims(self, cl):
            return {"iss": issuer, "aud": [cl.get_client_id()]}

        def generate_user_info(self, user, scope):
            info = UserInfo(sub=f"sub-{user}", preferred_username=user, name=user.title())
            info.update(users.get(user, {}))
            return info

    def save_token(token, req):
        pass

    server = AuthorizationServer(app, query_client=lambda cid: client if cid == client.client_id else None,
                                 save_token=save_token)
    server.register_grant(CodeGrant, [OIDC(require_nonce=True), CodeChallenge(required=True)])

    @app.route("/.well-known/openid-configuration")
    def discovery():
        return jsonify({"issuer": issuer, "authorization_endpoint": issuer + "/authorize",
                        "token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks",
                        "response_types_supported": ["code"], "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "code_challenge_methods_supported": ["S256"],
                        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})

    @app.route("/jwks")
    def jwks():
        return jsonify(KeySet([key]).as_dict(private=False))

    @app.route("/authorize")
    def authorize():
        user = request.args.get("user")
        if user not in users:
            return "unknown user", 403
        return server.create_authorization_response(grant_user=user)

    @app.route("/token", methods=["POST"])
    def token():
        return server.create_token_response()

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--redirect-uri", required=True)
    ap.add_argument("--users", default="{}")
    a = ap.parse_args(argv)
    issuer = f"http://127.0.0.1:{a.port}"
    app = make_app(issuer, Client(a.client_id, a.client_secret, a.redirect_uri), json.loads(a.users))
    from werkzeug.serving import make_server

    make_server("127.0.0.1", a.port, app, threaded=True).serve_forever()
    return 0
