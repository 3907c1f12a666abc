"""Users, roles, passwords and API tokens - all as events on ``user:<name>`` streams.

Who may do what (`can`):

============================  =========  ========  =====
action                        submitter  operator  admin
============================  =========  ========  =====
submit                        yes        yes       yes
confirm / cancel (own)        yes        yes       yes
confirm / cancel (another's)  no         no        yes
force                         yes        yes       yes   (any team member)
set_context, redeliver        no         yes       yes
read_all_mail                 no         yes       yes   (own e-mails: everyone)
mark_bad, manage_users        no         no        yes
release_lock (another's)      no         no        yes
============================  =========  ========  =====

A disabled user may do nothing. Passwords are kept only as scrypt hashes in a
self-describing string (``scrypt$n$r$p$salt$hash``, base64 parts), verified in constant
time. API tokens are random (``ce_<id>_<secret>``); only their SHA-256 is recorded - a
token has 256 bits of entropy, so a slow hash would add nothing. A token expires after
``days`` (default `DEFAULT_TOKEN_DAYS`, recorded in its `UserTokenIssued`; tokens issued before
expiry existed carry none and never expire) and can be revoked by its id (`revoke_token`);
`check_token` says in one line why a token is refused.

Web sessions carry the user's *session generation* (`User.session_generation`): logging out
(`revoke_sessions`) and changing the password bump it, which ends every session signed in
before (the web compares it on every request).

State is read by folding the log (`get_user`, `list_users`), so a command sees its own
writes at once; the ``users`` projection table is the same fold (`crds_events.store.folds.USERS`)
for the web.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from crds_events import events as ev
from crds_events.accounts.locks import format_time, parse_time
from crds_events.errors import CrdsEventsError
from crds_events.store.folds import USERS, Key, Row, replay
from crds_events.store.interface import NO_STREAM, ConcurrencyError, EventReader, EventStore

__all__ = [
    "ROLES",
    "ACTIONS",
    "User",
    "UserError",
    "UserExistsError",
    "UnknownUserError",
    "USERS",
    "validate_name",
    "validate_email",
    "validate_password",
    "validate_role",
    "hash_password",
    "verify_password",
    "add_user",
    "disable_user",
    "set_password",
    "get_user",
    "list_users",
    "authenticate",
    "issue_token",
    "user_for_token",
    "check_token",
    "list_tokens",
    "revoke_token",
    "revoke_sessions",
    "Token",
    "TokenRefused",
    "DEFAULT_TOKEN_DAYS",
    "MAX_TOKEN_DAYS",
    "can",
]

ROLES = ("submitter", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# action -> the least role allowed (on one's own submission or lock, where that matters)
_MIN_ROLE = {
    "submit": "submitter",
    "confirm": "submitter",
    "cancel": "submitter",
    "force": "submitter",
    "acquire_lock": "submitter",
    "release_lock": "submitter",
    "set_context": "operator",
    "redeliver": "operator",
    "mark_bad": "admin",
    "manage_users": "admin",
    # personal data in events and pages (e-mail addresses, names, message bodies, submission
    # manifests): every signed-in account, as the submission pages are; never anonymous
    "view_personal": "submitter",
    # every e-mail's body and headers on the web (a user always reads the e-mails sent to
    # them or about their submissions)
    "read_all_mail": "operator",
}
ACTIONS = tuple(_MIN_ROLE)
# Acting on another user's confirm/cancel/lock needs admin.
_OTHERS_ROLE = {"confirm": "admin", "cancel": "admin", "release_lock": "admin"}

# no leading dot (hidden directory) nor dash (read as an option by shell tools)
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
MIN_PASSWORD = 8

# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms here - the interactive-login setting.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DKLEN = 2**14, 8, 1, 32
_TOKEN_PREFIX = "ce"
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3660  # ten years: longer is "never", which we do not issue any more


class UserError(CrdsEventsError, ValueError):
    """A bad user name, e-mail, role or password, or a refused change (names the field)."""


class UserExistsError(UserError):
    pass


class UnknownUserError(UserError, LookupError):
    pass


class TokenRefused(UserError):
    """An API token that does not authenticate; the message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    email: str
    role: str
    disabled: bool = False
    full_name: str = ""
    # bumped by logout and password change: a session signed in at another generation is over
    session_generation: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> User:
        return cls(name=row["name"], email=row["email"], role=row["role"],
                   disabled=bool(row["disabled"]), full_name=row.get("full_name", ""),
                   session_generation=int(row.get("session_generation") or 0))


# --- validation --------------------------------------------------------------------------------


def validate_name(name: object) -> str:
    """A user name safe as a directory name: ``[a-z0-9_.-]``, no leading dot or dash,
    1-64 characters."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"user name {name!r}: use 1-64 characters from a-z 0-9 _ . - "
            "(lower case, not starting with a dot)"
        )
    return name


def validate_email(email: object) -> str:
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        raise UserError(f"e-mail {email!r}: not an e-mail address (name@domain)")
    return email


def validate_role(role: object) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"password: must be at least {MIN_PASSWORD} characters")
    if not password.strip():
        raise UserError("password: must not be blank")
    return password


# --- password hashing ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                             p=_SCRYPT_P, dklen=_DKLEN)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(derived)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``stored`` hash (constant-time comparison).

    Malformed or empty stored hashes never match.
    """
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        n_, r_, p_ = int(n), int(r), int(p)
        salt_bytes, expected_bytes = base64.b64decode(salt), base64.b64decode(expected)
        # the stored parameters choose the cost: refuse absurd ones rather than hang
        if not (2 <= n_ <= 2**20 and 1 <= r_ <= 32 and 1 <= p_ <= 16 and expected_bytes):
            return False
        derived = hashlib.scrypt(password.encode("utf-8"), salt=salt_bytes, n=n_, r=r_, p=p_,
                                 dklen=len(expected_bytes), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError, AttributeError):
        return False
    return hmac.compare_digest(derived, expected_bytes)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user is unknown (made once, on first need)."""
    return hash_password(secrets.token_hex(16))


# --- reads ---------------------------------------------------------------------------------


def _user_row(store: EventReader, name: str) -> tuple[Row | None, int]:
    """The fold of one user's stream and the stream's version."""
    records = store.read_all(0, streams=[ev.user_stream(name)])  # a store or a transaction
    state = replay(USERS, records)
    version = records[-1].version if records else NO_STREAM
    return state.get((name,)), version


def _all_rows(store: EventReader) -> dict[Key, Row]:
    return replay(USERS, store.read_all(types=USERS.consumes))


def get_user(store: EventReader, name: str) -> User | None:
    """The user called ``name`` (None if never added)."""
    row, _ = _user_row(store, name)
    return User.from_row(row) if row else None


def list_users(store: EventReader) -> list[User]:
    return [User.from_row(row) for _, row in sorted(_all_rows(store).items())]


# --- changes ---------------------------------------------------------------------------------


def _meta(actor: str | None) -> dict[str, Any] | None:
    return {"actor": actor} if actor else None


def add_user(store: EventStore, name: str, email: str, role: str = "submitter",
             password: str | None = None, *, full_name: str = "",
             actor: str | None = None) -> User:
    """Record a new user. Without ``password`` the account cannot log in (tokens still work).

    `UserExistsError` if the name is taken, even by a concurrent add.
    """
    validate_name(name)
    validate_email(email)
    validate_role(role)
    password_hash = hash_password(validate_password(password)) if password is not None else ""
    event = ev.UserAdded(username=name, email=email, full_name=full_name, role=role,
                         password_hash=password_hash)
    try:
        store.record(event, NO_STREAM, meta=_meta(actor))
    except ConcurrencyError:
        raise UserExistsError(f"user {name!r}: already exists") from None
    return User(name=name, email=email, role=role, full_name=full_name)


def _existing(store: EventReader, name: str) -> tuple[Row, int]:
    row, version = _user_row(store, name)
    if row is None:
        raise UnknownUserError(f"user {name!r}: no such user")
    return row, version


def disable_user(store: EventStore, name: str, reason: str = "", *,
                 actor: str | None = None) -> bool:
    """Disable ``name``; False if it already was (nothing recorded)."""
    row, version = _existing(store, name)
    if row["disabled"]:
        return False
    store.record(ev.UserDisabled(username=name, reason=reason), version, meta=_meta(actor))
    return True


def set_password(store: EventStore, name: str, password: str, *,
                 actor: str | None = None) -> None:
    _, version = _existing(store, name)
    password_hash = hash_password(validate_password(password))
    store.record(ev.UserPasswordChanged(username=name, password_hash=password_hash), version,
                 meta=_meta(actor))


def authenticate(store: EventReader, name: str, password: str) -> User | None:
    """The user when ``name``/``password`` are right and the account enabled, else None.

    An unknown name costs the same hashing time as a wrong password.
    """
    row = None
    if isinstance(name, str) and _NAME.fullmatch(name):
        row, _ = _user_row(store, name)
    stored = row["password_hash"] if row and row["password_hash"] else _dummy_hash()
    matched = verify_password(password if isinstance(password, str) else "", stored)
    if row is None or not row["password_hash"] or row["disabled"] or not matched:
        return None
    return User.from_row(row)


def revoke_sessions(store: EventStore, name: str, reason: str = "logout", *,
                    actor: str | None = None) -> None:
    """End every web session of ``name`` signed in so far (bumps the session generation)."""
    _existing(store, name)
    # no expected version: two logouts at once both end the sessions, in either order
    store.record(ev.UserSessionsRevoked(username=name, reason=reason[:200]), meta=_meta(actor))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _utc_now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def issue_token(store: EventStore, name: str, *, days: int | None = DEFAULT_TOKEN_DAYS,
                actor: str | None = None, now: datetime | None = None) -> str:
    """A new API token for ``name``, valid for ``days`` (shown once; only its hash is
    recorded). ``days=None`` is kept for callers of old; it issues a token that never expires.
    """
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                             or not 1 <= days <= MAX_TOKEN_DAYS):
        raise UserError(f"days {days!r}: a token is valid for 1 to {MAX_TOKEN_DAYS} days")
    row, version = _existing(store, name)
    if row["disabled"]:
        raise UserError(f"user {name!r}: disabled; no tokens for disabled users")
    token_id = secrets.token_hex(4)
    token = f"{_TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    expires_at = format_time(_utc_now(now) + timedelta(days=days)) if days is not None else ""
    store.record(ev.UserTokenIssued(username=name, token_id=token_id,
                                    token_hash=_token_hash(token), expires_at=expires_at),
                 version, meta=_meta(actor))
    return token


@dataclasses.dataclass(frozen=True)
class Token:
    """One API token as listings show it: never the token nor its hash."""

    token_id: str
    issued_at: str
    expires_at: str  # "" = never (issued before tokens expired)
    revoked_at: str = ""
    revoke_reason: str = ""

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and parse_time(self.expires_at) <= _utc_now(now):
            return "expired"
        return "active"


def _tokens(records: list) -> dict[str, tuple[Token, str]]:
    """token id -> (the token, its hash) from one user's stream."""
    found: dict[str, tuple[Token, str]] = {}
    for record in records:
        event = record.event
        if isinstance(event, ev.UserTokenIssued):
            found[event.token_id] = (Token(event.token_id, record.recorded_at,
                                           event.expires_at), event.token_hash)
        elif isinstance(event, ev.UserTokenRevoked) and event.token_id in found:
            token, digest = found[event.token_id]
            found[event.token_id] = (dataclasses.replace(
                token, revoked_at=record.recorded_at, revoke_reason=event.reason), digest)
    return found


def list_tokens(store: EventReader, name: str) -> list[Token]:
    """``name``'s tokens, oldest first (`UnknownUserError` if there is no such user)."""
    _existing(store, name)
    records = store.read_all(0, streams=[ev.user_stream(name)])
    return [token for token, _ in _tokens(records).values()]


def revoke_token(store: EventStore, name: str, token_id: str, reason: str = "", *,
                 actor: str | None = None) -> bool:
    """Revoke ``name``'s token ``token_id``; False if it already was (nothing recorded)."""
    _, version = _existing(store, name)
    records = store.read_all(0, streams=[ev.user_stream(name)])
    found = _tokens(records).get(token_id) if isinstance(token_id, str) else None
    if found is None:
        raise UserError(f"token {token_id!r}: user {name!r} has no such token "
                        f"(`crds-events user tokens {name}` lists them)")
    if found[0].revoked_at:
        return False
    try:
        store.record(ev.UserTokenRevoked(username=name, token_id=token_id, reason=reason[:200]),
                     version, meta=_meta(actor))
    except ConcurrencyError:  # the stream moved since we read it: look again once
        return revoke_token(store, name, token_id, reason, actor=actor)
    return True


def check_token(store: EventReader, token: str, *, now: datetime | None = None) -> User:
    """The enabled user ``token`` authenticates, else `TokenRefused` saying why in one line
    (unknown, revoked, expired, account disabled)."""
    if not isinstance(token, str) or not token.startswith(_TOKEN_PREFIX + "_") \
            or len(token) > 200:
        raise TokenRefused("invalid token")
    wanted = _token_hash(token)
    for record in store.read_all(types=[ev.UserTokenIssued.type]):
        if not hmac.compare_digest(record.event.token_hash, wanted):
            continue
        name, token_id = record.event.username, record.event.token_id
        found = _tokens(store.read_all(0, streams=[ev.user_stream(name)])).get(token_id)
        if found is None or found[1] != record.event.token_hash:
            break  # a token id reused in the stream: only the latest issue counts
        info = found[0]
        if info.revoked_at:
            raise TokenRefused(f"token {token_id} was revoked on {info.revoked_at[:10]}")
        if info.state(now) == "expired":
            raise TokenRefused(f"token {token_id} expired on {info.expires_at[:10]}; "
                               f"ask for a new one (crds-events user token {name})")
        user = get_user(store, name)
        if user is None or user.disabled:
            raise TokenRefused(f"token {token_id}: the account is disabled")
        return user
    raise TokenRefused("invalid token")


def user_for_token(store: EventReader, token: str) -> User | None:
    """The enabled user a valid (not expired, not revoked) token was issued to, else None."""
    try:
        return check_token(store, token)
    except TokenRefused:
        return None


# --- policy ----------------------------------------------------------------------------------


def can(user: User | Mapping[str, Any] | None, action: str, *, owner: str | None = None) -> bool:
    """May ``user`` do ``action``? ``owner``: whose submission/lock it is, where that matters.

    Unknown actions are refused (a typo must not grant anything).
    """
    if user is None:
        return False
    if not isinstance(user, User):
        user = User.from_row(user)
    if user.disabled or user.role not in _RANK or action not in _MIN_ROLE:
        return False
    needed = _MIN_ROLE[action]
    if owner is not None and owner != user.name and action in _OTHERS_ROLE:
        needed = _OTHERS_ROLE[action]
    return _RANK[user.role] >= _RANK[needed]
