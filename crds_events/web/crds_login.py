"""The session half of the web protocol ``crds submit`` speaks: log in, log out, lock status,
and Django's CSRF convention.

* ``GET /login/`` answers a login form and a ``csrftoken`` cookie; ``POST /login/`` takes
  ``username``, ``password``, ``instrument`` and ``csrfmiddlewaretoken`` (Django's names).
  The account is ours (`crds_events.accounts.users`, with the login back-off of our own
  login form; a MAST-token-style password is just the password here) and must be allowed
  to submit. An ``instrument`` (not ``none``) takes or renews the user's instrument lock,
  as CRDS's instrument selection does; a lock held by someone else refuses the login,
  naming the holder and the expiry. The session is the one of our pages (signed cookie,
  session generation), so a ``crds submit`` login is a web login.
* ``GET /logout/`` (``crds submit --logout``) releases every instrument lock the user
  holds, then ends the session - every session of the user, as our logout does. A GET that
  does not carry the ``csrftoken`` cookie (a link followed from another site: the cookie is
  ``SameSite=Strict``) only shows a form to confirm.
* ``GET /lock_status/<user>/`` answers CRDS's JSON: ``name`` (the instrument, "" when
  none), ``type``, ``user``, ``is_expired``, ``created_on``, ``time_remaining``,
  ``status``. Public: it is what the client asks before logging in.

CSRF (`check_csrf`): every POST of the protocol must carry ``csrfmiddlewaretoken`` (or the
``X-CSRFToken`` header) equal to the ``csrftoken`` cookie, and both equal to the session's
CSRF token (the one our own forms carry), else 403 saying which is missing. The cookie is
set (`_set_csrftoken`) on every answer of the protocol and on the pages the client reads
before posting (the result page), for a session that has a token; it is HttpOnly and
SameSite=Strict (nothing but the client reads it).

Errors are HTML pages with the message in ``<div id="error_message">``, where the client
looks, and a 4xx status; never a traceback or a server path.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
)
from werkzeug.exceptions import HTTPException

from crds_events.accounts import locks, users
from crds_events.errors import CrdsEventsError
from crds_events.submissions.dropbox import LockRefusedError, take_lock
from crds_events.submissions.manifest import instruments_for
from crds_events.web import get_state
from crds_events.web.pages import auth

__all__ = ["bp", "register", "check_csrf", "crds_page", "CrdsFail", "require_user",
           "COOKIE", "FIELD"]

bp = Blueprint("crds_login", __name__)

COOKIE = "csrftoken"  # Django's names: the client reads the cookie, posts the field
FIELD = "csrfmiddlewaretoken"
HEADER = "X-CSRFToken"
INSTRUMENT_KEY = "crds_instrument"  # the session's selected instrument (login)
# The blueprints of the protocol: their answers always carry the cookie.
PROTOCOL_BLUEPRINTS = frozenset({"crds_login", "crds_uploads", "crds_submit"})


class CrdsFail(CrdsEventsError):
    """A refused request of the protocol: ``status`` and the one-line message shown."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def crds_page(title: str, *, status: int = 200, error: str = "", **context: Any) -> Response:
    """A page of the protocol (``error`` in ``div#error_message``, where the client looks)."""
    response = current_app.make_response(
        render_template("crds/page.html", title=title, error=error, **context))
    response.status_code = status
    return response


def _on_fail(exc: CrdsFail) -> Response:
    if request.path.startswith("/upload/") or request.path.startswith("/lock_status/"):
        response = jsonify(error=str(exc))
        response.status_code = exc.status
        return response
    return crds_page("Error", status=exc.status, error=str(exc))


def _on_http(exc: HTTPException) -> Response:
    return _on_fail(CrdsFail(exc.code or 500, f"{exc.name}: {exc.description}"))


# --- CSRF, Django style ----------------------------------------------------------------------


def check_csrf() -> None:
    """Refuse (403) a request without the matching ``csrftoken`` cookie and field pair."""
    if g.get("session_ended"):  # say why, rather than "token does not match"
        raise CrdsFail(401, "your session has ended (logged out, password changed or "
                            "account disabled): log in again")
    expected = session.get(auth.CSRF_FIELD, "")
    cookie = request.cookies.get(COOKIE, "")
    sent = request.headers.get(HEADER) or request.form.get(FIELD, "")
    if not cookie:
        raise CrdsFail(403, "CSRF verification failed: no csrftoken cookie (GET the form "
                            "first, with cookies kept)")
    if not sent:
        raise CrdsFail(403, f"CSRF verification failed: no {FIELD} field")
    if not expected or not hmac.compare_digest(str(sent), str(cookie)) \
            or not hmac.compare_digest(str(cookie), str(expected)):
        raise CrdsFail(403, "CSRF verification failed: the token does not match this "
                            "session's (GET the form again)")


def cookie_matches() -> bool:
    """Whether the request carries this session's ``csrftoken`` cookie (SameSite=Strict: a
    request started by another site never does)."""
    expected = session.get(auth.CSRF_FIELD, "")
    cookie = request.cookies.get(COOKIE, "")
    return bool(expected) and bool(cookie) and hmac.compare_digest(str(cookie), str(expected))


def _set_csrftoken(response: Response) -> Response:
    """Hand the session's CSRF token to the client as Django's cookie (see the module)."""
    protocol = request.blueprint in PROTOCOL_BLUEPRINTS
    page = request.method == "GET" and response.mimetype == "text/html" \
        and g.get("user") is not None  # e.g. the result page read before confirming
    if not (protocol or page):
        return response
    token = session.get(auth.CSRF_FIELD) or (auth.csrf_token() if protocol else "")
    if token:
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                            secure=bool(getattr(get_state().settings, "web_https", False)),
                            max_age=auth.SESSION_HOURS * 3600)
    return response


def require_user(action: str = "submit") -> users.User:
    """The logged-in user allowed ``action`` (403 for anonymous callers and other roles)."""
    user = g.get("user")
    if user is None:
        raise CrdsFail(403, "log in first (crds submit logs in with your CRDS user name "
                            "and password)")
    if not users.can(user, action):
        raise CrdsFail(403, f"user {user.name!r} (role {user.role}) may not "
                            f"{action.replace('_', ' ')}")
    return user


# --- login / logout ------------------------------------------------------------------------


def _instrument(value: str) -> str:
    """The instrument selected at login ('' for none), checked against the observatory's."""
    name = (value or "").strip().lower()
    if name in ("", "none"):
        return ""
    known = instruments_for(get_state().settings.observatory)
    if known and name not in known:
        raise CrdsFail(400, f"instrument: unknown {get_state().settings.observatory.upper()} "
                            f"instrument {name.upper()!r} (known: "
                            f"{', '.join(i.upper() for i in known)})")
    return name


@bp.route("/login/", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        auth.csrf_token()
        return crds_page("Log in", form="login", next_url=request.args.get("next", ""))
    check_csrf()
    name = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not name or not password:
        raise CrdsFail(400, "username and password are both required")
    instrument = _instrument(request.form.get("instrument", ""))
    backoff = auth.login_backoff()
    keys = (f"account:{name[:100]}", f"address:{request.remote_addr or '-'}")
    wait = backoff.retry_after(keys)
    if wait:
        response = crds_page("Log in", status=429,
                             error=f"too many failed logins for this account or from this "
                                   f"address: try again in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response
    state = get_state()
    user = users.authenticate(state.store, name, password)
    if user is None:
        backoff.failed(keys)
        raise CrdsFail(401, "wrong user name or password, or the account is disabled")
    backoff.succeeded(keys[0])
    if not users.can(user, "submit"):
        raise CrdsFail(403, f"user {user.name!r} (role {user.role}) may not submit")
    if instrument:
        try:  # CRDS's instrument selection: take (or renew) the lock, or refuse the login
            take_lock(state.store, state.settings, instrument, user.name, "")
        except LockRefusedError as exc:
            raise CrdsFail(409, f"instrument {instrument.upper()}: {exc}") from None
    auth.sign_in(user)
    session[INSTRUMENT_KEY] = instrument
    return redirect(auth.safe_next(request.form.get("next") or None))


def release_user_locks(user: str) -> list[str]:
    """Release every instrument lock ``user`` holds; the instruments released."""
    store = get_state().store
    released = []
    for lock in locks.list_locks(store, include_expired=True):
        if lock.owner != user:
            continue
        try:
            if locks.release_lock(store, lock.instrument, user) is not None:
                released.append(lock.instrument)
        except locks.LockError:  # taken over meanwhile (expired, then someone else's)
            continue
    return released


@bp.route("/logout/", methods=["GET", "POST"])
def logout() -> Any:
    user = g.get("user")
    if user is None:
        session.clear()
        return redirect(auth.safe_next(None))
    if request.method == "POST":
        check_csrf()
    elif not cookie_matches():  # a link from elsewhere: never log out (and unlock) on it
        return crds_page("Log out", form="logout")
    released = release_user_locks(user.name)
    session.clear()
    users.revoke_sessions(get_state().store, user.name, "logout", actor=user.name)
    return crds_page("Logged out", released=released, who=user.name)


@bp.route("/lock_status/<username>/")
def lock_status(username: str) -> Response:
    try:
        users.validate_name(username)
    except users.UserError as exc:
        raise CrdsFail(400, f"user: {exc}") from None
    now = datetime.now(UTC)
    held = [lock for lock in locks.list_locks(get_state().store, now)
            if lock.owner == username]
    if not held:
        return jsonify(status="ok", name="", type="", user=username, is_expired=True,
                       created_on="", time_remaining="0:00:00")
    lock = held[0]
    remaining = max(0, int((lock.expires_at - now).total_seconds()))
    hours, rest = divmod(remaining, 3600)
    return jsonify(status="ok", name=lock.instrument, type="instrument", user=lock.owner,
                   is_expired=lock.expired(now),
                   created_on=lock.acquired_at.replace("T", " ")[:19],
                   time_remaining=f"{hours}:{rest // 60:02d}:{rest % 60:02d}")


def register(app: Flask) -> None:
    """The login blueprint and the ``csrftoken`` cookie on the answers that need it."""
    app.register_blueprint(bp)
    app.after_request(_set_csrftoken)


def install_errors(blueprint: Blueprint) -> None:
    """The protocol's error answers (HTML with ``div#error_message``, JSON for uploads)."""
    blueprint.register_error_handler(CrdsFail, _on_fail)
    blueprint.register_error_handler(HTTPException, _on_http)


install_errors(bp)
