"""The folds of the accounts: users (with their password hashes and token hashes) and
instrument locks. `crds_events.accounts` reads them by folding a stream; the projection
tables ``users`` and ``locks`` are the same folds for the web."""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["USERS", "LOCKS", "LOCK_TYPES"]

LOCK_TYPES = names(ev.LockAcquired, ev.LockRenewed, ev.LockReleased, ev.LockExpired)


def _users_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.UserAdded):
        row = {
            "name": event.username, "email": event.email, "full_name": event.full_name,
            "role": event.role, "disabled": False, "password_hash": event.password_hash,
            "tokens": (), "session_generation": 0, "created_at": record.recorded_at,
        }
    elif row is None:
        return None
    else:
        row = dict(row)
        if isinstance(event, ev.UserDisabled):
            row["disabled"] = True
        elif isinstance(event, ev.UserPasswordChanged):
            row["password_hash"] = event.password_hash
            # a new password ends every session signed in with the old one
            row["session_generation"] = row.get("session_generation", 0) + 1
        elif isinstance(event, ev.UserSessionsRevoked):
            row["session_generation"] = row.get("session_generation", 0) + 1
        elif isinstance(event, ev.UserTokenIssued):
            row["tokens"] = (*row["tokens"], event.token_hash)
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


USERS = Fold(
    table="users",
    columns={
        "name": str, "email": str, "full_name": str, "role": str, "disabled": bool,
        "password_hash": str, "tokens": tuple, "session_generation": int, "created_at": str,
        "updated_at": str, "position": int,
    },
    pk=("name",),
    consumes=frozenset({ev.UserAdded.type, ev.UserDisabled.type, ev.UserPasswordChanged.type,
                        ev.UserTokenIssued.type, ev.UserSessionsRevoked.type}),
    keys=lambda record: [(record.event.username,)],
    apply=_users_apply,
)


def _locks_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.LockAcquired):
        row = {"instrument": event.instrument, "owner": event.owner, "state": "held",
               "acquired_at": event.acquired_at or record.recorded_at,
               "expires_at": event.expires_at,
               "submission_id": event.submission_id}
    elif row is None:
        return None
    else:
        row = dict(row)
        if isinstance(event, ev.LockRenewed):
            row["expires_at"] = event.expires_at
        elif isinstance(event, ev.LockReleased):
            row["state"] = "released"
        elif isinstance(event, ev.LockExpired):
            row["state"] = "expired"
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


LOCKS = Fold(
    table="locks",
    columns={"instrument": str, "owner": str, "state": str, "acquired_at": str,
             "expires_at": str, "submission_id": str, "updated_at": str, "position": int},
    pk=("instrument",),
    consumes=LOCK_TYPES,
    keys=lambda record: [(record.event.instrument,)],
    apply=_locks_apply,
)
