"""Remote contexts: what each registered pipeline reports it runs, against what it was told
to run.

After ``crds sync`` a pipeline pushes the context it now holds (CRDS's JSON-RPC
``push_remote_context(observatory, kind, key, context)``). The key is the secret the server
issued when an operator registered the pipeline (`crds_events.contexts.pipelines`): an
unknown, rotated or revoked key is refused and nothing is appended. A push is recorded as
`RemoteContextPushed` under the pipeline's *name* (never its key; the time is the event's).
``repro_pipeline`` in the settings (formerly ``pipeline_key``) names the pipeline whose push
releases held reprocessing e-mail.

`remote_contexts` is the read model: for every pipeline, the *commanded* context (the
``latest`` pointer now) and the *actual* one (what it last pushed), and whether they agree.

A push repeating the pipeline's last context is not recorded again unless ``latest`` changed
since (then the push answers the new command and must be seen): pipelines push after every
sync, and the log should not grow by one event per sync.

A push reads single rows - the key's owner, the pipeline's last push, the pushed context's
catalog row - from the projections (`crds_events.store.projections.current_row`), so it
costs the same at the 10,000th pipeline as at the first.
"""

from __future__ import annotations

import re
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.contexts.pipelines import key_owner
from crds_events.contexts.pointers import ContextError, check_pmap_name, get_pointers
from crds_events.errors import CrdsEventsError
from crds_events.store.folds import FILES, REMOTE_CONTEXTS
from crds_events.store.interface import EventReader, EventStore, Transaction
from crds_events.store.projections import current_row, current_rows

__all__ = ["RemoteContextError", "UnknownPipelineKeyError", "KEY_PATTERN", "validate_key",
           "push_remote_context", "remote_contexts", "remote_context"]

# the same keys the JSON-RPC push_remote_context accepts (crds_events.web.methods)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


class RemoteContextError(CrdsEventsError, ValueError):
    """A push refused (the message names the key or context and why)."""


class UnknownPipelineKeyError(RemoteContextError, PermissionError):
    """The key is not a registered pipeline's current key."""


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise RemoteContextError(
            f"key {key!r}: 1-128 characters from letters, digits and _ . : @ + -"
        )
    return key


def _known_context(settings: Settings, tx: Transaction, context: object) -> str:
    try:
        name = check_pmap_name(settings, context)
    except ContextError as exc:
        raise RemoteContextError(str(exc)) from None
    row = current_row(tx, FILES, (name,))
    if row is None or row["state"] not in ("delivered", "archived"):
        raise RemoteContextError(f"context {name}: unknown - this server has never "
                                 "cataloged it")
    return name


def _row(push: dict, commanded: str | None) -> dict:
    return {"pipeline": push["pipeline"], "observatory": push["observatory"],
            "actual": push["context"], "pushed_at": push["pushed_at"],
            "position": push["position"], "commanded": commanded,
            "in_sync": push["context"] == commanded}


def push_remote_context(settings: Settings, store: EventStore, key: str, context: str,
                        user: Any = None) -> dict:
    """Record that the pipeline whose key ``key`` is now holds ``context``; the pipeline's
    row as `remote_context` shows it, with ``recorded`` False when the push repeated what
    was already known. `UnknownPipelineKeyError` (nothing appended) unless ``key`` is a
    registered pipeline's current key."""
    key = validate_key(key)
    observatory = settings.observatory
    with store.transaction() as tx:
        # the key first: a caller without one learns nothing about the catalog
        name = key_owner(tx, key)
        if name is None:
            raise UnknownPipelineKeyError(
                "key: not the key of a registered pipeline (unknown, rotated or revoked); "
                "an operator issues one with `crds-events pipeline add NAME`")
        context = _known_context(settings, tx, context)
        last = current_row(tx, REMOTE_CONTEXTS, (observatory, name))
        latest = get_pointers(tx, observatory).get("latest")
        repeated = (last is not None and last["context"] == context
                    and (latest is None or last["position"] > latest["position"]))
        if not repeated:
            actor = getattr(user, "name", user) or name
            tx.record(ev.RemoteContextPushed(observatory=observatory, pipeline=name,
                                             context=context),
                      meta={"actor": str(actor)})
        row = _row(current_row(tx, REMOTE_CONTEXTS, (observatory, name)),
                   latest["context"] if latest else None)
    return {**row, "recorded": not repeated}


def remote_contexts(store: EventReader, observatory: str) -> list[dict]:
    """Every pipeline that ever pushed, by name: pipeline, actual (last pushed), pushed_at,
    commanded (the latest pointer now), in_sync."""
    commanded_row = get_pointers(store, observatory).get("latest")
    commanded = commanded_row["context"] if commanded_row else None
    return [_row(push, commanded)
            for key, push in sorted(current_rows(store, REMOTE_CONTEXTS).items())
            if key[0] == observatory]


def remote_context(store: EventReader, pipeline: str, observatory: str) -> dict | None:
    """One pipeline's row of `remote_contexts` (None if it never pushed)."""
    push = current_row(store, REMOTE_CONTEXTS, (observatory, pipeline))
    if push is None:
        return None
    commanded_row = get_pointers(store, observatory).get("latest")
    return _row(push, commanded_row["context"] if commanded_row else None)
