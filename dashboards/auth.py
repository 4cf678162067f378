"""Login and roles for the dashboard outside demo mode: a gate in front of every page and
every Dash request, and the one table of which role may change what (gwanje/roles.py).

Users come from the environment only (never from YAML, never logged):
    GWANJE_USERS="alice:supervisor:<hash>,bob:operator:<hash>"
where <hash> is an argon2id hash (`python -m dashboards.auth hash` prints one,
"$argon2id$v=19$m=65536,t=3,p=4$salt$hash"). Older werkzeug hashes ("scrypt:...",
"pbkdf2:sha256:...") still verify, with a warning per user at start asking to rehash;
colons inside a hash are fine, the entry is split on the first two. The role is one of
ROLES; anything else refuses the start. The Flask session is signed with GWANJE_SECRET_KEY,
which must be set: without it sessions would not survive a restart nor be shared by
gunicorn workers, so the app refuses to start instead.

A session lasts `ui.session_hours` from the login (absolute, however active the user is);
its cookie is Secure, HttpOnly and SameSite=Lax, so the dashboard must be served over HTTPS
outside demo mode. Logout is a POST carrying the session's token. Failed logins are
throttled per user and client address (LoginThrottle). Login, logout and failed logins are
audited (dashboards.audit_log; the name as typed, never the password).

Wall displays sign in with a read-only token instead: GWANJE_DISPLAY_TOKENS="wall-1:<token>,..."
(24+ characters each) and the display opens `/display?token=<token>` (or `/display/<token>`).
Its session is a viewer's flagged `display`: no action is ever allowed to it, it does not
expire after session_hours, and it ends when its token is removed from (or changed in) the
environment, which is read again on every request.

Every callback that changes state calls `authorize(action)` on the server, so a request
crafted by hand is judged like a button press. In demo mode (no login) every action is
allowed, as before.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sys
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping, Optional
from urllib.parse import quote, urlsplit

import flask
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from markupsafe import escape
from werkzeug.security import check_password_hash

from gwanje.rejects import Rejects

from dashboards import context
from dashboards.i18n import normalize_lang, t

from gwanje.roles import ACTIONS, ROLES, role_allows  # noqa: E402,F401  (the one table: gwanje/roles.py)

log = logging.getLogger("gwanje.ui.auth")

DEFAULT_SESSION_HOURS = 12.0
# /healthz: liveness only ({"status": "alive"}), for container healthchecks and probes without a login
PUBLIC_PREFIXES = ("/login", "/logout", "/display", "/assets/", "/_favicon", "/favicon", "/healthz")
MIN_DISPLAY_TOKEN = 24
_HASHER = PasswordHasher()  # argon2id, the library's default cost (RFC 9106 low-memory profile)
_dummy: list[str] = []  # a hash that never matches, checked for unknown users (lazily: it costs a hash)
_EXT = "gwanje_action_rejects"  # where install() keeps the server's counter of refused actions
_stray_rejects = Rejects("dashboard-actions")


class AuthConfigError(Exception):
    pass


class NotAllowed(Exception):
    """The session's role may not do the action (already counted and logged)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    pw_hash: str

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"User({self.name!r}, role={self.role!r})"


# entries are comma-separated, but an argon2 hash has commas of its own ("$m=65536,t=3,p=4$")
_ENTRY_SEP = re.compile(r",(?![tp]=\d+[,$])")


def parse_users(text: str) -> dict[str, User]:
    """GWANJE_USERS -> users; a bad entry is an error naming its position, never its content
    (a password pasted in the wrong place must not reach a log)."""
    users: dict[str, User] = {}
    for i, entry in enumerate(p.strip() for p in _ENTRY_SEP.split(text or "")):
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise AuthConfigError(f"GWANJE_USERS entry {i + 1}: expected user:role:hash")
        name, role, pw_hash = parts
        if role not in ROLES:
            raise AuthConfigError(f"GWANJE_USERS entry {i + 1}: unknown role (one of {' < '.join(ROLES)})")
        if name in users:
            raise AuthConfigError(f"GWANJE_USERS entry {i + 1}: user named twice")
        users[name] = User(name, role, pw_hash)
    return users


def is_argon2(pw_hash: str) -> bool:
    return pw_hash.startswith("$argon2")


def hash_password(password: str) -> str:
    """An argon2id hash for GWANJE_USERS."""
    return _HASHER.hash(password)


def verify(pw_hash: str, password: str) -> bool:
    if is_argon2(pw_hash):
        try:
            return _HASHER.verify(pw_hash, password)
        except (VerificationError, InvalidHashError):
            return False
    try:
        return check_password_hash(pw_hash, password)
    except (ValueError, TypeError):  # not a werkzeug hash either
        return False


def _dummy_hash() -> str:
    if not _dummy:
        _dummy.append(_HASHER.hash(secrets.token_urlsafe(16)))
    return _dummy[0]


def check(users: Mapping[str, User], name: str, password: str) -> Optional[User]:
    """The user when name and password match. An unknown name is checked against an argon2
    hash of the default cost too, so the answer takes as long as for a real user."""
    u = users.get(name)
    ok = verify(u.pw_hash if u else _dummy_hash(), password or "")
    return u if (u is not None and ok) else None


def legacy_users(users: Mapping[str, User]) -> list[str]:
    """Users whose hash is an older werkzeug one (verified, but to be replaced)."""
    return sorted(u.name for u in users.values() if not is_argon2(u.pw_hash))


def parse_display_tokens(text: str) -> dict[str, str]:
    """GWANJE_DISPLAY_TOKENS="wall-1:<token>,wall-2:<token>" -> {name: token}; an error names
    the entry's position, never its token."""
    out: dict[str, str] = {}
    for i, entry in enumerate(p.strip() for p in (text or "").split(",")):
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        if not sep or not name or not token:
            raise AuthConfigError(f"GWANJE_DISPLAY_TOKENS entry {i + 1}: expected name:token")
        if len(token) < MIN_DISPLAY_TOKEN:
            raise AuthConfigError(f"GWANJE_DISPLAY_TOKENS entry {i + 1}: token shorter than {MIN_DISPLAY_TOKEN} characters")
        if name in out or any(hmac.compare_digest(token, t) for t in out.values()):
            raise AuthConfigError(f"GWANJE_DISPLAY_TOKENS entry {i + 1}: name or token given twice")
        out[name] = token
    return out


def _fingerprint(secret: str, token: str) -> str:
    """What a display session keeps of its token: changing the token ends the session."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:32]


def find_display(tokens: Mapping[str, str], presented: str) -> Optional[str]:
    """The display name whose token was presented; every token is compared (constant time)."""
    found = None
    for name, token in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = name
    return found



def current_user() -> Optional[dict]:
    """{"name", "role"} of the logged-in user, or None (demo mode, or outside a request)."""
    if not flask.has_request_context():
        return None
    u = flask.session.get("user")
    return u if isinstance(u, dict) else None


def csrf_token() -> Optional[str]:
    """The session's token for forms that post to the server (logout)."""
    if not flask.has_request_context():
        return None
    tok = flask.session.get("csrf")
    return tok if isinstance(tok, str) else None


def authorize(action: str) -> Optional[str]:
    """Who does `action`: the logged-in user's name, or None in demo mode (no login; the page's
    own name field or the demo user stands in). Raises NotAllowed when the session's role is
    below ACTIONS[action] or, outside demo mode, there is no session at all."""
    if action not in ACTIONS:  # a bug in the calling page: fail loudly, in demo mode too
        raise KeyError(f"no minimum role for action {action!r} in gwanje.roles.ACTIONS")
    if context.config().system.demo:
        return None
    u = current_user() or {}
    name, role = u.get("name"), u.get("role")
    # a wall display never acts, whatever the table says of its role
    display = bool(flask.session.get("display")) if flask.has_request_context() else False
    if isinstance(name, str) and name and not display and role_allows(role, action):
        return name
    # counted per server (its /metrics); a request outside one (a bare test request) still counts here
    rejects = flask.current_app.extensions.get(_EXT) if flask.has_app_context() else None
    (rejects or _stray_rejects).reject("not_allowed", f"user={name} role={role} action={action}")
    raise NotAllowed(action)


def _safe_next(target: Optional[str]) -> str:
    """Only a path of this site. Browsers drop tabs and newlines inside a URL and read "\\" as
    "/", so "/\\t/evil" or "/\\evil" would become "//evil", another site: any control character,
    whitespace or backslash, and anything with a scheme or host, gives "/"."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(c.isspace() or c == "\\" or unicodedata.category(c)[0] in "CZ" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


class LoginThrottle:
    """After `limit` failed logins of one (user, client address) within `window_s`, that pair is
    refused for `lockout_s`, right password or not. Kept per process (each gunicorn worker counts
    its own) and bounded, so a flood of invented names cannot grow it without end."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, lockout_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.limit, self.window_s, self.lockout_s = limit, window_s, lockout_s
        self.clock, self.max_keys = clock, max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def locked_for(self, key: tuple[str, str]) -> float:
        """Seconds this pair must still wait (0: it may try)."""
        with self._lock:
            until = self._locked.get(key)
            if until is None:
                return 0
            left = until - self.clock()
            if left <= 0:
                del self._locked[key]
                return 0
            return left

    def failed(self, key: tuple[str, str]) -> bool:
        """Count a failure; True when it locks the pair."""
        now = self.clock()
        with self._lock:
            q = self._failures.pop(key, None) or deque()
            while q and now - q[0] >= self.window_s:
                q.popleft()
            q.append(now)
            if len(q) >= self.limit:
                self._locked[key] = now + self.lockout_s
                self._trim(self._locked)
                return True
            self._failures[key] = q  # re-inserted: the dict's order is the order of use
            self._trim(self._failures)
            return False

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _trim(self, d: dict) -> None:
        while len(d) > self.max_keys:
            d.pop(next(iter(d)))


def _page(lang: str, title: str, body: str) -> str:
    return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t("app_title", lang))} — {escape(title)}</title>
<link rel="stylesheet" href="/assets/gwanje.css"></head>
<body class="gw-login-body">{body}</body></html>"""


def _login_page(lang: str, next_url: str, error: Optional[str] = None, sso: bool = False) -> str:
    err = f'<p class="gw-login-error">{escape(t(error, lang))}</p>' if error else ""
    sso_link = (f'<p><a class="gw-login-sso" id="gw-login-sso" href="/login/oidc?lang={lang}&amp;next='
                f'{escape(quote(next_url, safe=""))}">{escape(t("login_sso", lang))}</a></p>') if sso else ""
    return _page(lang, t("login", lang), f"""<form class="gw-login" method="post" action="/login?lang={lang}">
<h1>{escape(t("app_title", lang))}</h1>{err}
<label>{escape(t("username", lang))}<input name="username" autocomplete="username" required autofocus></label>
<label>{escape(t("password", lang))}<input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{escape(next_url)}">
<button type="submit">{escape(t("login", lang))}</button>{sso_link}</form>""")


def _logout_page(lang: str, name: str, token: str) -> str:
    # GET /logout changes nothing (an <img> on another site could request it): it offers the button
    return _page(lang, t("logout", lang), f"""<form class="gw-login" method="post" action="/logout?lang={lang}">
<h1>{escape(t("app_title", lang))}</h1><p>{escape(name)}</p>
<input type="hidden" name="csrf" value="{escape(token)}">
<button type="submit">{escape(t("logout", lang))}</button></form>""")


def install(server: flask.Flask, env: Mapping[str, str], default_lang: str = "ko",
            session_hours: float = DEFAULT_SESSION_HOURS, oidc_config: Optional[object] = None) -> list[Rejects]:
    """Put the login gate in front of the Flask server Dash runs on. Returns the counters of
    what it refuses (for /metrics). oidc_config: system.yaml ui.oidc (gwanje.config.OidcConfig)."""
    from dashboards import audit_log

    secret = env.get("GWANJE_SECRET_KEY")
    if not secret or len(secret) < 16:
        raise AuthConfigError("outside demo mode GWANJE_SECRET_KEY must be set (16+ characters)")
    users = parse_users(env.get("GWANJE_USERS", ""))
    sso = None
    if oidc_config is not None:
        from dashboards.oidc import OidcLogin

        oidc_secret = env.get("GWANJE_OIDC_CLIENT_SECRET")
        if not oidc_secret:
            raise AuthConfigError("ui.oidc is configured: GWANJE_OIDC_CLIENT_SECRET must be set")
        sso = OidcLogin(oidc_config, oidc_secret)  # type: ignore[arg-type]
    if not users and sso is None:
        raise AuthConfigError("outside demo mode GWANJE_USERS must name at least one user (or configure ui.oidc)")
    parse_display_tokens(env.get("GWANJE_DISPLAY_TOKENS", ""))  # a bad list refuses the start
    for name in legacy_users(users):
        log.warning("GWANJE_USERS: user %s has an older werkzeug password hash; rehash with "
                    "`python -m dashboards.auth hash` (argon2id)", name)
    lifetime_s = session_hours * 3600
    server.secret_key = secret
    server.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                         PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime_s),
                         # the cookie is not re-sent on every request: its expiry stays that of the login
                         SESSION_REFRESH_EACH_REQUEST=False)
    rejects = Rejects("dashboard-login")
    server.extensions[_EXT] = action_rejects = Rejects("dashboard-actions")
    throttle = LoginThrottle()
    parsed: dict[str, dict[str, str]] = {}

    def display_tokens() -> dict[str, str]:
        """Read again on every request: removing a token ends its displays' sessions."""
        text = env.get("GWANJE_DISPLAY_TOKENS", "")
        if text not in parsed:
            try:
                tokens = parse_display_tokens(text)
            except AuthConfigError as e:
                log.error("%s: no display token accepted until it is fixed", e)
                tokens = {}
            parsed.clear()
            parsed[text] = tokens
        return parsed[text]

    def session_user() -> Optional[dict]:
        """The session's user, checked against the user list of this start: a user removed since
        is logged out, a changed role applies at once, a session past its lifetime ends. A
        display's session lasts while its token is in the environment, unchanged."""
        u = current_user()
        if u is None:
            return None
        display = flask.session.get("display")
        if display:
            token = display_tokens().get(str(display))
            if token is None or not hmac.compare_digest(str(flask.session.get("dtok", "")),
                                                        _fingerprint(secret, token)):
                flask.session.clear()
                return None
            return u
        login_at = flask.session.get("login_at")
        if flask.session.get("via") == "oidc":  # the provider gave the role at login; the lifetime applies
            if sso is None or not isinstance(login_at, (int, float)) or time.time() - login_at >= lifetime_s:
                flask.session.clear()
                return None
            return u
        known = users.get(u.get("name"))  # type: ignore[arg-type]
        # (a little clock skew between servers must not end a fresh session: only age counts)
        if known is None or not isinstance(login_at, (int, float)) or time.time() - login_at >= lifetime_s:
            flask.session.clear()
            return None
        if u.get("role") != known.role:
            flask.session["user"] = {"name": known.name, "role": known.role}
        return flask.session["user"]

    def lang_of() -> str:
        return normalize_lang(flask.request.args.get("lang"), default_lang)

    @server.before_request
    def _gate():  # type: ignore[no-untyped-def]
        path = flask.request.path
        if session_user() is not None or path.startswith(PUBLIC_PREFIXES):
            return None
        if path.startswith("/_dash-") or path.startswith("/_reload"):
            return flask.Response("login required", status=401)
        return flask.redirect(f"/login?lang={lang_of()}&next=" + quote(flask.request.full_path.rstrip("?"), safe=""))

    def start_session(user: dict, **extra: object) -> None:
        flask.session.clear()
        flask.session.update({"user": user, "login_at": int(time.time()), "csrf": secrets.token_urlsafe(32), **extra})

    @server.route("/login", methods=["GET", "POST"])
    def _login():  # type: ignore[no-untyped-def]
        lang = lang_of()
        if flask.request.method == "GET":
            return _login_page(lang, _safe_next(flask.request.args.get("next")), sso=sso is not None)
        form = flask.request.form
        name, password = form.get("username", "")[:128], form.get("password", "")[:1024]
        nxt = _safe_next(form.get("next"))
        key = (name, flask.request.remote_addr or "")
        wait = throttle.locked_for(key)
        if wait:
            rejects.reject("throttled", f"{name} from {key[1]}")
            audit_log.record("login_failed", user=name[:64], role="", ok=False, detail="throttled")
            return _login_page(lang, nxt, "login_throttled", sso=sso is not None), 429, {"Retry-After": str(int(wait) + 1)}
        user = check(users, name, password)
        if user is None:
            rejects.reject("bad_credentials", name)
            throttle.failed(key)
            audit_log.record("login_failed", user=name[:64], role="", ok=False, detail="bad_credentials")
            return _login_page(lang, nxt, "login_failed", sso=sso is not None), 401
        throttle.succeeded(key)
        start_session({"name": user.name, "role": user.role})
        flask.session.permanent = True  # the cookie expires with the session, not "when the browser closes"
        audit_log.record("login", user=user.name, role=user.role, detail="password")
        return flask.redirect(nxt)

    def oidc_redirect_uri() -> str:
        return getattr(oidc_config, "redirect_url", None) or flask.request.url_root.rstrip("/") + "/login/oidc/callback"

    @server.route("/login/oidc", methods=["GET"])
    def _login_oidc():  # type: ignore[no-untyped-def]
        if sso is None:
            return flask.Response("not found", status=404)
        try:
            url, saved = sso.start(oidc_redirect_uri())
        except Exception as e:
            log.error("OIDC provider not answering: %s", type(e).__name__)
            return _login_page(lang_of(), "/", "oidc_failed", sso=True), 502
        flask.session.clear()
        flask.session["oidc"] = {**saved, "next": _safe_next(flask.request.args.get("next")), "lang": lang_of()}
        return flask.redirect(url)

    @server.route("/login/oidc/callback", methods=["GET"])
    def _login_oidc_callback():  # type: ignore[no-untyped-def]
        from dashboards.oidc import OidcRefused

        if sso is None:
            return flask.Response("not found", status=404)
        saved = flask.session.pop("oidc", None)
        lang = normalize_lang((saved or {}).get("lang") if isinstance(saved, dict) else None, default_lang)
        try:
            name, role = sso.finish(oidc_redirect_uri(), flask.request.args, saved)
        except OidcRefused as e:
            reason = str(e)
            rejects.reject("oidc_refused", reason)
            log.warning("OIDC login refused: %s", reason)
            audit_log.record("login_failed", user="oidc:?", role="", ok=False, detail=f"oidc {reason}"[:200])
            return _login_page(lang, "/", "oidc_failed", sso=True), 403
        start_session({"name": name, "role": role}, via="oidc")
        flask.session.permanent = True
        audit_log.record("login", user=name, role=role, detail="oidc")
        return flask.redirect(saved.get("next") or "/")  # type: ignore[union-attr]

    @server.route("/display", methods=["GET"])
    @server.route("/display/<path:token>", methods=["GET"])
    def _display(token: Optional[str] = None):  # type: ignore[no-untyped-def]
        presented = (token or flask.request.args.get("token") or "")[:512]
        addr = flask.request.remote_addr or ""
        key = ("display", addr)
        wait = throttle.locked_for(key)
        if wait:
            rejects.reject("throttled", f"display from {addr}")
            return flask.Response("too many attempts", status=429, headers={"Retry-After": str(int(wait) + 1)})
        name = find_display(display_tokens(), presented) if presented else None
        if name is None:
            rejects.reject("bad_display_token", f"from {addr}")
            throttle.failed(key)
            audit_log.record("login_failed", user="display:?", role="viewer", ok=False, detail="bad_display_token")
            return flask.Response("not a display token", status=403, mimetype="text/plain")
        throttle.succeeded(key)
        tokens = display_tokens()
        start_session({"name": f"display:{name}", "role": "viewer"}, display=name,
                      dtok=_fingerprint(secret, tokens[name]))
        flask.session.permanent = False  # lives as long as the kiosk browser, not session_hours
        audit_log.record("login", user=f"display:{name}", role="viewer", detail="display token")
        lang = normalize_lang(flask.request.args.get("lang"), default_lang)
        return flask.redirect(f"/?lang={lang}&kiosk=1")

    @server.route("/logout", methods=["GET", "POST"])
    def _logout():  # type: ignore[no-untyped-def]
        lang = lang_of()
        u, token = session_user(), csrf_token()
        if u is None or token is None:
            flask.session.clear()
            return flask.redirect(f"/login?lang={lang}")
        if flask.request.method == "GET":
            return _logout_page(lang, str(u.get("name", "")), token)
        if not hmac.compare_digest(flask.request.form.get("csrf", ""), token):
            rejects.reject("logout_without_token", str(u.get("name", "")))
            return flask.Response("forbidden", status=403)
        audit_log.record("logout", user=str(u.get("name", "")), role=str(u.get("role", "")))
        flask.session.clear()
        return flask.redirect(f"/login?lang={lang}")

    return [rejects, action_rejects]


def _main(argv: list[str]) -> int:
    """`python -m dashboards.auth hash [--stdin]`: an argon2id hash for GWANJE_USERS (asks twice;
    --stdin reads one line, for scripts)."""
    if argv[:1] == ["hash"]:
        if "--stdin" in argv[1:]:
            pw = sys.stdin.readline().rstrip("\r\n")
        else:
            import getpass

            pw = getpass.getpass("password: ")
            if not hmac.compare_digest(pw, getpass.getpass("again: ")):
                print("passwords differ", file=sys.stderr)
                return 1
        if not pw:
            print("empty password", file=sys.stderr)
            return 1
        print(hash_password(pw))
        return 0
    print("usage: python -m dashboards.auth hash [--stdin]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
