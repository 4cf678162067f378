"""Login for the dashboard outside demo mode: a minimal but real gate in front of every page
and every Dash request.

Users come from the environment only (never from YAML, never logged):
    GWANJE_USERS="alice:supervisor:<hash>,bob:operator:<hash>"
where <hash> is a werkzeug password hash (`python -m dashboards.auth hash` prints one;
e.g. "scrypt:32768:8:1$salt$hex" or "pbkdf2:sha256:600000$salt$hex" — colons inside the hash
are fine, the entry is split on the first two). The Flask session is signed with
GWANJE_SECRET_KEY, which must be set: without it sessions would not survive a restart nor be
shared by gunicorn workers, so the app refuses to start instead.

The role is stored in the session (`current_user()`) for pages that later restrict actions
(e.g. alarm acknowledgement); this module only decides logged-in or not.
"""
from __future__ import annotations

import hmac
import sys
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import quote

import flask
from markupsafe import escape
from werkzeug.security import check_password_hash, generate_password_hash

from gwanje.rejects import Rejects

from dashboards.i18n import normalize_lang, t

PUBLIC_PREFIXES = ("/login", "/logout", "/assets/", "/_favicon", "/favicon")
# a hash that never matches, checked for unknown users so timing does not reveal names
_DUMMY_HASH = generate_password_hash("gwanje-unused-dummy", method="pbkdf2:sha256:1000")


class AuthConfigError(Exception):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: str
    pw_hash: str

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"User({self.name!r}, role={self.role!r})"


def parse_users(text: str) -> dict[str, User]:
    """GWANJE_USERS -> users; a malformed entry is an error naming its position, not its content."""
    users: dict[str, User] = {}
    for i, entry in enumerate(p.strip() for p in (text or "").split(",")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise AuthConfigError(f"GWANJE_USERS entry {i + 1}: expected user:role:hash")
        name, role, pw_hash = parts
        users[name] = User(name, role, pw_hash)
    return users


def check(users: Mapping[str, User], name: str, password: str) -> Optional[User]:
    u = users.get(name)
    ok = check_password_hash(u.pw_hash if u else _DUMMY_HASH, password or "")
    return u if (u is not None and ok) else None


def current_user() -> Optional[dict]:
    """{"name", "role"} of the logged-in user, or None (demo mode, or outside a request)."""
    if not flask.has_request_context():
        return None
    u = flask.session.get("user")
    return u if isinstance(u, dict) else None


def _safe_next(target: Optional[str]) -> str:
    # only same-site paths: "//evil.example" or "https://..." would be an open redirect
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(lang: str, next_url: str, failed: bool) -> str:
    err = f'<p class="gw-login-error">{escape(t("login_failed", lang))}</p>' if failed else ""
    return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t("app_title", lang))} — {escape(t("login", lang))}</title>
<link rel="stylesheet" href="/assets/gwanje.css"></head>
<body class="gw-login-body"><form class="gw-login" method="post" action="/login?lang={lang}">
<h1>{escape(t("app_title", lang))}</h1>{err}
<label>{escape(t("username", lang))}<input name="username" autocomplete="username" required autofocus></label>
<label>{escape(t("password", lang))}<input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{escape(next_url)}">
<button type="submit">{escape(t("login", lang))}</button></form></body></html>"""


def install(server: flask.Flask, env: Mapping[str, str], default_lang: str = "ko") -> None:
    """Put the login gate in front of the Flask server Dash runs on."""
    secret = env.get("GWANJE_SECRET_KEY")
    if not secret or len(secret) < 16:
        raise AuthConfigError("outside demo mode GWANJE_SECRET_KEY must be set (16+ characters)")
    users = parse_users(env.get("GWANJE_USERS", ""))
    if not users:
        raise AuthConfigError("outside demo mode GWANJE_USERS must name at least one user")
    server.secret_key = secret
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    rejects = Rejects("dashboard-login")

    @server.before_request
    def _gate():  # type: ignore[no-untyped-def]
        path = flask.request.path
        if current_user() is not None or path.startswith(PUBLIC_PREFIXES):
            return None
        if path.startswith("/_dash-") or path.startswith("/_reload"):
            return flask.Response("login required", status=401)
        lang = normalize_lang(flask.request.args.get("lang"), default_lang)
        return flask.redirect(f"/login?lang={lang}&next=" + quote(flask.request.full_path.rstrip("?"), safe=""))

    @server.route("/login", methods=["GET", "POST"])
    def _login():  # type: ignore[no-untyped-def]
        lang = normalize_lang(flask.request.args.get("lang"), default_lang)
        if flask.request.method == "GET":
            return _login_page(lang, _safe_next(flask.request.args.get("next")), False)
        form = flask.request.form
        name, password = form.get("username", "")[:128], form.get("password", "")[:1024]
        user = check(users, name, password)
        nxt = _safe_next(form.get("next"))
        if user is None:
            rejects.reject("bad_credentials", name)
            return _login_page(lang, nxt, True), 401
        flask.session.clear()
        flask.session["user"] = {"name": user.name, "role": user.role}
        return flask.redirect(nxt)

    @server.route("/logout")
    def _logout():  # type: ignore[no-untyped-def]
        flask.session.clear()
        return flask.redirect("/login")


def _main(argv: list[str]) -> int:
    if argv[:1] == ["hash"]:
        import getpass

        pw = getpass.getpass("password: ")
        if not hmac.compare_digest(pw, getpass.getpass("again: ")):
            print("passwords differ", file=sys.stderr)
            return 1
        print(generate_password_hash(pw))
        return 0
    print("usage: python -m dashboards.auth hash", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
