"""Registered pipelines: who may push the context it runs back to the server.

CRDS's ``push_remote_context(observatory, kind, key, context)`` carries nothing but the key,
so the key is the pipeline's secret: an operator registers a pipeline by name
(``crds-events pipeline add NAME``) and the server issues a random key, shown once
(``NAME-<32 random characters>``). The log keeps only its SHA-256 (`PipelineRegistered`,
the hash declared secret); a key of 192 random bits needs no slow hash, and a plain digest
is what makes the check one indexed lookup (`key_owner`: the `PIPELINE_KEYS` projection).

``rotate`` issues a new key and refuses the old one from then on; ``revoke`` refuses the
pipeline's key (its pushes stay in the history); ``add`` of a revoked name registers it
again with a new key. Every change is checked and appended in one write transaction, so two
operators acting at once cannot both register a name or rotate from the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from typing import Any

from crds_events import events as ev
from crds_events.errors import CrdsEventsError
from crds_events.store.folds import PIPELINE_KEYS, PIPELINES, REMOTE_CONTEXTS
from crds_events.store.interface import EventReader, EventStore, Transaction
from crds_events.store.projections import current_row, current_rows

__all__ = ["PipelineError", "IssuedKey", "NAME_PATTERN", "validate_name", "key_hash",
           "key_owner", "add_pipeline", "rotate_pipeline", "revoke_pipeline",
           "list_pipelines"]

# a name shows on pages and in commands; the key (name + "-" + 32) stays within the
# 128 characters `crds_events.contexts.remote.KEY_PATTERN` accepts
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PipelineError(CrdsEventsError, ValueError):
    """A pipeline change refused (the message names the pipeline or field and why)."""


@dataclasses.dataclass(frozen=True)
class IssuedKey:
    """A pipeline's new key: shown to the operator once, never stored."""

    name: str
    key: str


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PipelineError(f"name {name!r}: 1-64 letters, digits and _ . -, starting with a "
                            "letter or digit")
    return name


def key_hash(key: str) -> str:
    """What the log keeps of a key."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key(name: str) -> str:
    return f"{name}-{secrets.token_urlsafe(24)}"


def key_owner(store: EventReader | Transaction, key: str) -> str | None:
    """The name of the pipeline whose valid key ``key`` is (None: unknown, rotated away or
    revoked). One primary-key read of the projection, whatever the number of pipelines."""
    row = current_row(store, PIPELINE_KEYS, (key_hash(key),))
    return row["name"] if row is not None else None


def _meta(actor: Any) -> dict[str, Any] | None:
    actor = getattr(actor, "name", actor)
    return {"actor": str(actor)} if actor else None


def add_pipeline(store: EventStore, name: str, *, actor: Any = None) -> IssuedKey:
    """Register ``name`` and issue its key (a revoked name may be registered again)."""
    name = validate_name(name)
    key = _new_key(name)
    with store.transaction() as tx:
        row = current_row(tx, PIPELINES, (name,))
        if row is not None and row["state"] == "active":
            raise PipelineError(f"pipeline {name!r}: already registered (rotate its key with "
                                f"`crds-events pipeline rotate {name}`)")
        tx.record(ev.PipelineRegistered(name=name, key_hash=key_hash(key)), meta=_meta(actor))
    return IssuedKey(name, key)


def _active(tx: Transaction, name: object) -> dict:
    name = validate_name(name)
    row = current_row(tx, PIPELINES, (name,))
    if row is None:
        raise PipelineError(f"pipeline {name!r}: not registered")
    if row["state"] != "active":
        raise PipelineError(f"pipeline {name!r}: revoked (register it again with "
                            f"`crds-events pipeline add {name}`)")
    return row


def rotate_pipeline(store: EventStore, name: str, *, actor: Any = None) -> IssuedKey:
    """Issue ``name`` a new key; its old key is refused from now on."""
    with store.transaction() as tx:
        row = _active(tx, name)
        key = _new_key(row["name"])
        tx.record(ev.PipelineKeyRotated(name=row["name"], key_hash=key_hash(key),
                                        previous_hash=row["key_hash"]), meta=_meta(actor))
    return IssuedKey(row["name"], key)


def revoke_pipeline(store: EventStore, name: str, *, actor: Any = None) -> None:
    """Refuse ``name``'s key from now on (its pushes stay in the history)."""
    with store.transaction() as tx:
        row = _active(tx, name)
        tx.record(ev.PipelineRevoked(name=row["name"], key_hash=row["key_hash"]),
                  meta=_meta(actor))


def list_pipelines(store: EventReader, observatory: str) -> list[dict]:
    """Every pipeline ever registered, by name: state, registered_at, changed_at and its
    last push (context, pushed_at; None if it never pushed). Never a key or its hash."""
    pushes = {key[1]: row for key, row in current_rows(store, REMOTE_CONTEXTS).items()
              if key[0] == observatory}
    rows = []
    for (name,), row in sorted(current_rows(store, PIPELINES).items()):
        push = pushes.get(name)
        rows.append({"name": name, "state": row["state"],
                     "registered_at": row["registered_at"], "changed_at": row["changed_at"],
                     "last_context": push["context"] if push else None,
                     "last_pushed_at": push["pushed_at"] if push else None})
    return rows
