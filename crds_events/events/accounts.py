"""Account events: instrument locks acquired, renewed, released or expired, and users added,
given a password or a token, or disabled.
"""

from __future__ import annotations

from crds_events.events.registry import Event, register
from crds_events.events.streams import lock_stream, user_stream

__all__ = [
    "LockAcquired",
    "LockRenewed",
    "LockReleased",
    "LockExpired",
    "UserAdded",
    "UserPasswordChanged",
    "UserTokenIssued",
    "UserTokenRevoked",
    "UserSessionsRevoked",
    "UserDisabled",
]


# --- instrument locks --------------------------------------------------------------------------


@register()
class LockAcquired(Event):
    instrument: str
    owner: str
    expires_at: str  # ISO 8601 UTC
    submission_id: str = ""
    acquired_at: str = ""  # ISO 8601 UTC, the lock's clock (older events: use recorded_at)

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockRenewed(Event):
    instrument: str
    owner: str
    expires_at: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockReleased(Event):
    instrument: str
    owner: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockExpired(Event):
    instrument: str
    owner: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


# --- users ---------------------------------------------------------------------------------------


@register()
class UserAdded(Event):
    secret_fields = ("password_hash",)
    personal_fields = ("email", "full_name")

    username: str
    email: str
    full_name: str = ""
    groups: tuple[str, ...] = ()
    # Optional fields added by the accounts module (older payloads decode with these
    # defaults: a user recorded before roles existed is a submitter without a password).
    role: str = "submitter"  # submitter | operator | admin
    password_hash: str = ""  # self-describing scrypt hash (crds_events.accounts.users)

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserPasswordChanged(Event):
    secret_fields = ("password_hash",)

    username: str
    password_hash: str  # self-describing scrypt hash, never the password

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserTokenIssued(Event):
    """An API token was issued; only its SHA-256 is recorded (the token is shown once)."""

    secret_fields = ("token_hash",)

    username: str
    token_id: str  # the token's public prefix, to name it in listings
    token_hash: str  # sha256 hex of the whole token
    # ISO 8601 UTC; "" = never expires (every token issued before expiry existed)
    expires_at: str = ""

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserTokenRevoked(Event):
    """An API token was revoked: from now on it is refused."""

    username: str
    token_id: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserSessionsRevoked(Event):
    """Every web session of the user so far ends (logout; the password change bumps the
    same session generation without this event)."""

    username: str
    reason: str = ""  # "logout", "admin", ...

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserDisabled(Event):
    personal_fields = ("reason",)

    username: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return user_stream(self.username)
