"""Redelivery: a failed delivery's files delivered again under a new name.

When the archive fails a delivery (``.cat_err``, `DeliveryFailed`), an operator redelivers
it: a new delivery name (the next serial) is requested for the same submission and the same
files (`DeliveryRequested` with ``redelivery_of``), and the failed delivery's stream records
`DeliveryRedelivered` naming the new one. The delivery worker then publishes the new
``.cat`` like any other (its files are already in the delivery directory: the failed
delivery's links stay there for the operators, and publishing finds them "present"); once
the archive takes and deletes it, the files are archived and released, and a context made
of them can become ``latest``.

Exactly once: both events are appended in one write transaction after the failed
delivery's state is read under its lock, and each has an idempotency key, so a double click
or two operators at once give one redelivery and a `RedeliveryConflictError` naming it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import Settings
from crds_events.delivery.publish import (
    DeliveryError,
    _serials_in_log,
    _serials_on_disk,
    delivery_name,
    delivery_states,
)
from crds_events.store.filestore import FileStore
from crds_events.store.interface import NO_STREAM, EventStore

__all__ = [
    "Redelivery",
    "RedeliveryConflictError",
    "RedeliveryError",
    "RedeliveryPermissionError",
    "redeliver",
]

_NAME = re.compile(r"^[a-z]+_\d{4,8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f<>&]")
MAX_REASON = 500


class RedeliveryError(DeliveryError):
    """A redelivery refused: the message names the field or the delivery, and why."""


class RedeliveryPermissionError(RedeliveryError, PermissionError):
    """The user may not redeliver (operators and admins may)."""


class RedeliveryConflictError(RedeliveryError):
    """The delivery was redelivered already (a second click, or another operator)."""


@dataclasses.dataclass(frozen=True)
class Redelivery:
    delivery: str  # the failed one
    redelivery: str  # the new name
    position: int  # of the DeliveryRedelivered event


def _user(store: EventStore, user: Any) -> users.User:
    if isinstance(user, users.User):
        return user
    if not user:
        raise RedeliveryPermissionError("user: who is redelivering? (--user)")
    found = users.get_user(store, str(user))
    if found is None:
        raise RedeliveryPermissionError(f"user {user!r}: no such user")
    return found


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if _CONTROL.search(reason):
        raise RedeliveryError("reason: printable text only (no control characters, < > &)")
    if len(reason) > MAX_REASON:
        raise RedeliveryError(f"reason: at most {MAX_REASON} characters")
    return reason


def redeliver(settings: Settings, store: EventStore, name: str, user: Any,
              reason: str = "") -> Redelivery:
    """Deliver failed delivery ``name`` again under the next delivery name (operators)."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise RedeliveryError(f"delivery {name[:40]!r}: not a delivery name (e.g. "
                              f"{delivery_name(settings.observatory, 42)})")
    reason = _check_reason(reason)
    who = _user(store, user)
    if not users.can(who, "redeliver"):
        raise RedeliveryPermissionError(
            f"user {who.name!r} ({'disabled' if who.disabled else who.role}) may not "
            f"redeliver: operators and admins may")
    # Disk first (outside the write lock): the files must still be in the file store, and
    # the highest catalog serial on disk is never reused.
    info = delivery_states(store, [name]).get(name)
    if info is None:
        raise RedeliveryError(f"delivery {name}: no such delivery")
    observatory = info.observatory or settings.observatory
    files = FileStore(settings.store, observatory)
    missing = [f for f in info.files if not files.path_for(f).is_file()]
    if missing:
        raise RedeliveryError(f"delivery {name}: {len(missing)} file(s) are no longer in the "
                              f"file store: {', '.join(missing[:10])}")
    on_disk = _serials_on_disk(Path(settings.catalogs) if settings.catalogs else None,
                               observatory)
    meta = {"actor": who.name}
    with store.transaction() as tx:
        info = delivery_states(tx, [name]).get(name)
        if info is None:  # cannot happen (the log is append-only); never a traceback
            raise RedeliveryError(f"delivery {name}: no such delivery")
        if info.redelivered_as:
            earlier = tx.find_key(f"delivery:{name}:redelivered")
            by = earlier.event.by if earlier is not None else "?"
            at = earlier.recorded_at[:19].replace("T", " ") if earlier is not None else "?"
            raise RedeliveryConflictError(f"delivery {name} was already redelivered as "
                                          f"{info.redelivered_as} by {by} at {at}")
        if info.state != "failed":
            raise RedeliveryError(f"delivery {name} is {info.state}: only a failed delivery "
                                  f"(.cat_err) is redelivered")
        serial = max(_serials_in_log(tx, observatory), on_disk) + 1
        new = delivery_name(observatory, serial)
        tx.append(ev.delivery_stream(new),
                  ev.DeliveryRequested(delivery=new, observatory=observatory,
                                       submission_id=info.submission_id, files=info.files,
                                       serial=serial, redelivery_of=name),
                  NO_STREAM, meta=meta, idempotency_key=f"delivery-requested:redelivery:{name}")
        result = tx.append(ev.delivery_stream(name),
                           ev.DeliveryRedelivered(delivery=name, redelivery=new, by=who.name,
                                                  reason=reason),
                           info.version, meta=meta,
                           idempotency_key=f"delivery:{name}:redelivered")
    return Redelivery(name, new, result.position)
