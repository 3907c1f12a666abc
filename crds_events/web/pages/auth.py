"""Log in and out; sessions, the current user on ``g``, role checks and CSRF for every form.

* Sessions are Flask's signed cookies. The signing key is made once per root
  (``<root>/web-secret.key``, 256 random bits, file mode 0600, created atomically so two
  processes starting at once agree on it) and refused when others can read it. Cookies are
  HttpOnly and SameSite=Lax, and Secure when ``settings.web_https`` says the UI is served
  over https.
* ``g.user`` is the logged-in `crds_events.accounts.users.User` (None when anonymous); it is read
  again from the log on every request, so a disabled account is logged out at once.
* A session is signed in at the user's *session generation* (kept in the cookie); logout
  and a password change bump it (`crds_events.accounts.users.revoke_sessions`), so every
  cookie of that user issued before - saved, copied or stolen - is anonymous from then on.
* Login back-off (`crds_events.accounts.backoff`, in memory and per process): after 10
  failures within a minute for an account or from an address, attempts are refused with 429
  (even with the right password) until the window passes. Unknown names cost the same
  hashing time as wrong passwords and count the same, so neither says whether a name exists.
* `login_required` sends an anonymous visitor to the login page (GET) or answers 401;
  `role_required(action)` answers 403 unless ``users.can(g.user, action)``.
* CSRF: each session holds a random token; every form carries it in a hidden field
  (``{{ csrf_field() }}``) and every POST/PUT/PATCH/DELETE must send it back (field
  ``csrf_token`` or header ``X-CSRF-Token``), else 400 saying what was wrong. The
  token-authenticated blueprints (JSON-RPC, downloads, uploads with an API token) carry no
  ambient cookie authority and are exempt.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
import secrets
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from crds_events.accounts import users
from crds_events.accounts.backoff import LoginBackoff
from crds_events.errors import CrdsEventsError
from crds_events.web import get_state

__all__ = [
    "bp",
    "register",
    "SECRET_NAME",
    "CSRF_FIELD",
    "load_secret_key",
    "csrf_token",
    "csrf_field",
    "login_required",
    "role_required",
    "current_user",
    "safe_next",
]

bp = Blueprint("auth", __name__)

SECRET_NAME = "web-secret.key"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_HOURS = 12
SESSION_GENERATION = "generation"  # the session key holding the generation signed in at
_BACKOFF = "crds_events_login_backoff"  # app.extensions key: the app's LoginBackoff
# Blueprints authenticated per request by an API token (no cookie authority): no CSRF.
CSRF_EXEMPT_BLUEPRINTS = frozenset({"rpc", "upload", "downloads",
                                    # the crds submit protocol: Django's CSRF convention
                                    # (crds_events.web.crds_login checks it instead)
                                    "crds_login", "crds_uploads", "crds_submit"})
# ... and their URL prefixes: a request that fails routing there has no blueprint, and must
# get its own error (a JSON-RPC 405), not a CSRF 400.
CSRF_EXEMPT_PREFIXES = ("/json", "/unchecked_get/", "/upload/")
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

F = TypeVar("F", bound=Callable[..., Any])


class SecretKeyError(CrdsEventsError, RuntimeError):
    """The session key file exists but is unusable (names the file and the fix)."""


# --- the session key -------------------------------------------------------------------------


def load_secret_key(root: str | os.PathLike) -> bytes:
    """The root's session-signing key, created on first use (0600, atomically)."""
    path = Path(root) / SECRET_NAME
    if not path.exists():
        temp = path.with_name(f".{SECRET_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as stream:
                stream.write(secrets.token_hex(32) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretKeyError(f"{path}: readable by group or others (mode "
                             f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise SecretKeyError(f"{path}: too short to be a session key; delete it and restart "
                             f"(a new one is made; everyone logs in again)")
    return key.encode("ascii")


# --- CSRF ----------------------------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def csrf_field() -> Markup:
    """The hidden input every form must carry."""
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token())}">')


def _check_csrf() -> None:
    if request.method not in _UNSAFE_METHODS or request.blueprint in CSRF_EXEMPT_BLUEPRINTS \
            or request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    if g.get("session_ended"):  # say why, rather than "CSRF token wrong"
        abort(401, "your session has ended (logged out, password changed or account "
                   "disabled): log in again")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    if not sent:
        abort(400, "CSRF token missing: this form was not sent by a page of this site "
                   "(reload the page and submit it again)")
    expected = session.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, "CSRF token wrong or expired (your session changed, e.g. you logged in "
                   "or out in another tab): reload the page and submit it again")


# --- the current user ----------------------------------------------------------------------


def current_user() -> users.User | None:
    return g.get("user")


def _load_user() -> None:
    g.user = None
    name = session.get("user")
    if not name:
        return
    from crds_events.web.pages.common import log

    user = users.get_user(log(), name)  # the request's read-only view: no writer lock
    if user is None or user.disabled or session.get(SESSION_GENERATION) != \
            user.session_generation:
        # account gone or disabled, or this session ended (logout, new password) since
        # login; a cookie from before generations existed has none: log in again
        session.clear()
        g.session_ended = True
        return
    g.user = user


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, not ``//host``) is followed."""
    if not target:
        return url_for("home.index") if "home.index" in _views() else "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return "/"
    return target


def _views() -> dict:
    from flask import current_app

    return current_app.view_functions


def login_required(view: F) -> F:
    """Anonymous GETs go to the login page (and come back); other methods get 401."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            if request.method in ("GET", "HEAD"):
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            abort(401, "log in first")
        return view(*args, **kwargs)

    wrapped.login_needed = True  # type: ignore[attr-defined]  # the nav hides such links
    return wrapped  # type: ignore[return-value]


def role_required(action: str) -> Callable[[F], F]:
    """`login_required` plus ``users.can(g.user, action)``, else 403 naming the role."""
    if action not in users.ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(users.ACTIONS)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            user = g.user
            if not users.can(user, action):
                abort(403, f"user {user.name!r} (role {user.role}) may not {action.replace('_', ' ')}")
            return view(*args, **kwargs)

        guarded = login_required(checked)
        guarded.required_action = action  # type: ignore[attr-defined]  # read by the nav
        return guarded  # type: ignore[return-value]

    return decorate


# --- pages ---------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = request.values.get("next", "")
    if request.method == "GET":
        return render_template("forms/login.html", next_url=next_url, name="", error="")
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    if not name or not password:
        return render_template("forms/login.html", next_url=next_url, name=name,
                               error="user name and password are both required"), 400
    backoff = _backoff()
    keys = (f"account:{name[:100]}", f"address:{request.remote_addr or '-'}")
    wait = backoff.retry_after(keys)
    if wait:
        response = current_app.make_response((render_template(
            "forms/login.html", next_url=next_url, name=name,
            error=f"too many failed logins for this account or from this address: try again "
                  f"in {wait} s"), 429))
        response.headers["Retry-After"] = str(wait)
        return response
    user = users.authenticate(get_state().store, name, password)
    if user is None:
        backoff.failed(keys)
        return render_template("forms/login.html", next_url=next_url, name=name,
                               error="wrong user name or password, or the account is "
                                     "disabled"), 401
    backoff.succeeded(keys[0])
    session.clear()  # a fresh session (and CSRF token) on every login: no fixation
    session.permanent = True
    session["user"] = user.name
    session[SESSION_GENERATION] = user.session_generation
    csrf_token()
    flash(f"Logged in as {user.name} ({user.role}).", "info")
    return redirect(safe_next(next_url))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """End the session - and every other session of the same user (its cookies, wherever they
    were saved, are refused from now on)."""
    user = g.get("user")
    session.clear()
    if user is not None:
        users.revoke_sessions(get_state().store, user.name, "logout", actor=user.name)
        flash(f"Logged out {user.name}.", "info")
    return redirect(safe_next(None))


def _backoff() -> LoginBackoff:
    return current_app.extensions[_BACKOFF]


def login_backoff() -> LoginBackoff:
    """The app's login back-off (shared by every login form, ours and CRDS's)."""
    return _backoff()


def sign_in(user: users.User) -> None:
    """Start a fresh session for ``user`` (new CSRF token: no fixation), as login does."""
    session.clear()
    session.permanent = True
    session["user"] = user.name
    session[SESSION_GENERATION] = user.session_generation
    csrf_token()


def error_page(exc: HTTPException) -> Any:
    """An HTML error page naming the problem (JSON for ``.json`` paths)."""
    code = exc.code or 500
    message = exc.description or exc.name
    if request.path.endswith(".json"):
        return {"error": message, "status": code}, code
    return render_template("error.html", code=code, name=exc.name, message=message), code


def register_error_pages(blueprint: Blueprint) -> None:
    for code in (400, 401, 403, 404, 405, 409, 413, 429):
        blueprint.register_error_handler(code, error_page)


def register(app: Flask) -> None:
    """Sessions, ``g.user``, CSRF, the login pages and the ``csrf_field`` template global."""
    settings = get_state_from(app).settings
    app.secret_key = load_secret_key(settings.root)
    app.config.update(
        SESSION_COOKIE_NAME="crds_events_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(getattr(settings, "web_https", False)),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.extensions.setdefault(_BACKOFF, LoginBackoff())
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.add_template_global(csrf_field)
    app.add_template_global(csrf_token)
    app.add_template_global(lambda endpoint: endpoint in app.view_functions, "has_endpoint")
    app.register_blueprint(bp)


def get_state_from(app: Flask):
    return app.extensions["crds_events"]


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
