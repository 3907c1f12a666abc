"""Instrument locks, as CRDS has them: while a user works on an instrument, nobody else may.

* One lock per instrument, and one instrument per user: a user holding ``acs`` must release
  it before locking ``wfc3``.
* Taken when a submission starts (or explicitly), renewed by the holder's activity, released
  on confirm / cancel / ``crds-events lock release``, and expired ``lock_timeout`` seconds
  after the last acquire/renew by `expire_locks` (a scheduler job). A lock past its expiry
  is already free for others, even before `expire_locks` records it.
* Every change is an event on ``lock:<instrument>`` appended with the stream version it was
  decided on (optimistic concurrency): of two users racing for a free lock, one append wins
  and the other gets a `ConcurrencyError`, re-reads, and is refused with `LockHeldError`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from datetime import UTC, datetime, timedelta

from crds_events import events as ev
from crds_events.errors import CrdsEventsError
from crds_events.store.folds import LOCK_TYPES, LOCKS, Row, replay
from crds_events.store.interface import NO_STREAM, ConcurrencyError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Lock",
    "LockError",
    "LockHeldError",
    "LockNotHeldError",
    "LOCKS",
    "acquire_lock",
    "renew_lock",
    "release_lock",
    "release_if_held_by",
    "expire_locks",
    "current_lock",
    "list_locks",
    "format_time",
    "parse_time",
    "acquire",
    "renew",
    "release",
    "current",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 4 * 3600.0
_ATTEMPTS = 20  # optimistic retries; each lost race re-reads, so few are ever needed
_INSTRUMENT = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class LockError(CrdsEventsError, RuntimeError):
    """A lock operation that cannot be done (the message says why)."""


class LockHeldError(LockError):
    """Another user holds the lock; ``lock`` says who and until when."""

    def __init__(self, lock: Lock):
        self.lock = lock
        self.owner = lock.owner
        self.expires_at = lock.expires_at
        super().__init__(
            f"instrument {lock.instrument!r} is locked by {lock.owner!r} until "
            f"{format_time(lock.expires_at)}"
        )


class LockNotHeldError(LockError):
    """The user does not hold the lock they tried to renew or release."""


def format_time(when: datetime) -> str:
    """ISO 8601 UTC to the second, ``Z`` suffix (what events store)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def _expiry(now: datetime, timeout: float) -> datetime:
    # whole seconds, as stored: the Lock returned equals the one read back from the log
    return now + timedelta(seconds=math.ceil(timeout))


@dataclasses.dataclass(frozen=True)
class Lock:
    instrument: str
    owner: str
    expires_at: datetime
    acquired_at: str = ""
    submission_id: str = ""

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= _now(now)

    @classmethod
    def from_row(cls, row: Row) -> Lock:
        return cls(instrument=row["instrument"], owner=row["owner"],
                   expires_at=parse_time(row["expires_at"]), acquired_at=row["acquired_at"],
                   submission_id=row["submission_id"])


def _instrument(instrument: str) -> str:
    name = instrument.lower() if isinstance(instrument, str) else instrument
    if not isinstance(name, str) or not _INSTRUMENT.fullmatch(name):
        raise LockError(f"instrument {instrument!r}: not an instrument name")
    return name


def _stream_state(store, instrument: str) -> tuple[Lock | None, int]:
    """The lock recorded as held on ``instrument`` (expired or not) and the stream version.

    ``store`` may be an event store or an open transaction (both offer ``read_all`` and
    ``append``), so handlers can take and release locks inside their write transaction.
    """
    records = store.read_all(0, streams=[ev.lock_stream(instrument)])
    row = replay(LOCKS, records).get((instrument,))
    version = records[-1].version if records else NO_STREAM
    held = Lock.from_row(row) if row and row["state"] == "held" else None
    return held, version


def _held_locks(store) -> list[Lock]:
    rows = replay(LOCKS, store.read_all(types=LOCK_TYPES)).values()
    return sorted((Lock.from_row(r) for r in rows if r["state"] == "held"),
                  key=lambda lock: lock.instrument)


def current_lock(store, instrument: str, now: datetime | None = None) -> Lock | None:
    """Who holds ``instrument`` now (None when free or past expiry)."""
    held, _ = _stream_state(store, _instrument(instrument))
    return held if held is not None and not held.expired(now) else None


def list_locks(store, now: datetime | None = None, *, include_expired: bool = False) -> list[Lock]:
    """Locks in force (with ``include_expired``: also those past expiry not yet expired)."""
    return [lock for lock in _held_locks(store) if include_expired or not lock.expired(now)]


def _meta(user: str) -> dict:
    return {"actor": user}


def acquire_lock(store, instrument: str, user: str, *, timeout: float = DEFAULT_TIMEOUT,
                 now: datetime | None = None, submission_id: str = "") -> Lock:
    """Lock ``instrument`` for ``user`` until ``now + timeout``; the holder acquiring again
    renews. `LockHeldError` if another user holds it, `LockError` if ``user`` holds another
    instrument."""
    instrument = _instrument(instrument)
    if not user:
        raise LockError("a lock needs a user")
    now = _now(now)
    expires = _expiry(now, timeout)
    stream = ev.lock_stream(instrument)
    for _ in range(_ATTEMPTS):
        held, version = _stream_state(store, instrument)
        if held is not None and held.owner != user and not held.expired(now):
            raise LockHeldError(held)
        for other in _held_locks(store):
            if other.owner == user and other.instrument != instrument and not other.expired(now):
                raise LockError(
                    f"{user!r} already holds the lock on {other.instrument!r} (until "
                    f"{format_time(other.expires_at)}); release it first: one instrument "
                    "per user"
                )
        events: list[ev.Event] = []
        if held is not None and held.owner == user and not held.expired(now):
            events.append(ev.LockRenewed(instrument=instrument, owner=user,
                                         expires_at=format_time(expires)))
            result = Lock(instrument, user, expires, held.acquired_at, held.submission_id)
        else:
            if held is not None:  # past expiry but not yet recorded as expired
                events.append(ev.LockExpired(instrument=instrument, owner=held.owner))
            events.append(ev.LockAcquired(instrument=instrument, owner=user,
                                          expires_at=format_time(expires),
                                          submission_id=submission_id,
                                          acquired_at=format_time(now)))
            result = Lock(instrument, user, expires, format_time(now), submission_id)
        try:
            store.append(stream, events, version, meta=_meta(user))
        except ConcurrencyError:
            continue  # someone changed this lock since we read it: decide again
        return result
    raise LockError(f"instrument {instrument!r}: lock contended too long; try again")


def renew_lock(store, instrument: str, user: str, *, timeout: float = DEFAULT_TIMEOUT,
               now: datetime | None = None) -> Lock:
    """Push the holder's expiry to ``now + timeout`` (`LockNotHeldError` unless held by
    ``user`` and not yet expired)."""
    instrument = _instrument(instrument)
    now = _now(now)
    expires = _expiry(now, timeout)
    for _ in range(_ATTEMPTS):
        held, version = _stream_state(store, instrument)
        if held is None or held.owner != user:
            raise LockNotHeldError(f"{user!r} does not hold the lock on {instrument!r}")
        if held.expired(now):
            raise LockNotHeldError(
                f"{user!r}'s lock on {instrument!r} expired at {format_time(held.expires_at)}"
            )
        try:
            store.append(ev.lock_stream(instrument),
                         ev.LockRenewed(instrument=instrument, owner=user,
                                        expires_at=format_time(expires)),
                         version, meta=_meta(user))
        except ConcurrencyError:
            continue
        return Lock(instrument, user, expires, held.acquired_at, held.submission_id)
    raise LockError(f"instrument {instrument!r}: lock contended too long; try again")


def release_lock(store, instrument: str, user: str, *, force: bool = False,
                 now: datetime | None = None) -> Lock | None:
    """Release ``user``'s lock on ``instrument``; the released lock, or None if it was free.

    With ``force`` (an admin) any holder's lock is released; otherwise releasing another
    user's lock is `LockNotHeldError` naming the holder - unless that lock is past its
    expiry, which is then recorded as expired.
    """
    instrument = _instrument(instrument)
    for _ in range(_ATTEMPTS):
        held, version = _stream_state(store, instrument)
        if held is None:
            return None
        event: ev.Event = ev.LockReleased(instrument=instrument, owner=held.owner)
        if held.owner != user and not force:
            if not held.expired(now):
                raise LockNotHeldError(
                    f"instrument {instrument!r} is locked by {held.owner!r}, not {user!r}"
                )
            event = ev.LockExpired(instrument=instrument, owner=held.owner)
        try:
            store.append(ev.lock_stream(instrument), event, version, meta=_meta(user))
        except ConcurrencyError:
            continue
        return held
    raise LockError(f"instrument {instrument!r}: lock contended too long; try again")


def release_if_held_by(tx, instrument: str, owner: str, *, actor: str = "",
                       idempotency_key: str | None = None,
                       submission_id: str | None = None) -> Lock | None:
    """Release ``instrument``'s lock if ``owner`` holds it (in force or past expiry) - and,
    with ``submission_id``, only if that submission took it; the released lock, or None
    when it is free, someone else's or taken otherwise.

    For a caller's own write transaction (``tx``: a `Transaction`, whose writes exclude
    every other writer, so the state read here is the state appended on): a submission
    that ended releasing its submitter's lock together with its outcome.
    """
    instrument = _instrument(instrument)
    if idempotency_key is not None and tx.find_key(idempotency_key) is not None:
        return None  # released by an earlier run of the same step
    held, version = _stream_state(tx, instrument)
    if held is None or held.owner != owner:
        return None
    if submission_id is not None and held.submission_id != submission_id:
        return None
    tx.append(ev.lock_stream(instrument),
              ev.LockReleased(instrument=instrument, owner=owner), version,
              meta=_meta(actor or owner), idempotency_key=idempotency_key)
    return held


def expire_locks(store, now: datetime | None = None) -> list[Lock]:
    """Record `LockExpired` for every lock past its expiry; the locks expired.

    Safe to run concurrently and repeatedly: a lock renewed or expired meanwhile is skipped.
    """
    now = _now(now)
    expired = []
    for lock in _held_locks(store):
        if not lock.expired(now):
            continue
        held, version = _stream_state(store, lock.instrument)
        if held is None or held != lock:
            continue
        try:
            store.append(ev.lock_stream(lock.instrument),
                         ev.LockExpired(instrument=lock.instrument, owner=lock.owner),
                         version, meta={"actor": "scheduler"})
        except ConcurrencyError:
            continue
        expired.append(lock)
    return expired


# Short names, as the submission flow calls them.
acquire = acquire_lock
renew = renew_lock
release = release_lock
current = current_lock

