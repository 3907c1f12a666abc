"""Remote contexts: what each pipeline or shared cache reports it runs, against what it
was told to run.

After ``crds sync`` a pipeline pushes the context it now holds (CRDS's JSON-RPC
``push_remote_context(observatory, kind, key, context)``); `push_remote_context` records it
as `RemoteContextPushed` (key + context + observatory; the time is the event's). The key
names the pipeline or cache (``pipeline_key`` in the settings is the one whose push releases
held reprocessing e-mail).

`remote_contexts` is the read model: for every key, the *commanded* context (the ``latest``
pointer now) and the *actual* one (what the key last pushed), and whether they agree.

A push repeating the key's last context is not recorded again unless ``latest`` changed
since (then the push answers the new command and must be seen): pipelines push after every
sync, and the log should not grow by one event per sync.
"""

from __future__ import annotations

import re
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.contexts.contents import file_rows
from crds_events.contexts.pointers import ContextError, check_pmap_name, get_pointers
from crds_events.errors import CrdsEventsError
from crds_events.store.interface import EventReader, EventStore

__all__ = ["RemoteContextError", "KEY_PATTERN", "validate_key", "push_remote_context",
           "remote_contexts", "remote_context"]

# the same keys the JSON-RPC push_remote_context accepts (crds_events.web.methods)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


class RemoteContextError(CrdsEventsError, ValueError):
    """A push refused (the message names the key or context and why)."""


def validate_key(key: object) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise RemoteContextError(
            f"key {key!r}: 1-128 characters from letters, digits and _ . : @ + -"
        )
    return key


def _known_context(settings: Settings, rows: dict, context: object) -> str:
    try:
        name = check_pmap_name(settings, context)
    except ContextError as exc:
        raise RemoteContextError(str(exc)) from None
    row = rows.get(name)
    if row is None or row["state"] not in ("delivered", "archived"):
        raise RemoteContextError(f"context {name}: unknown - this server has never "
                                 "cataloged it")
    return name


def _pushes(store: EventReader, observatory: str) -> dict[str, dict]:
    """key -> its last push (context, pushed_at, position)."""
    pushes: dict[str, dict] = {}
    for record in store.read_all(streams=[ev.context_stream(observatory)],
                                 types=[ev.RemoteContextPushed.type]):
        event = record.event
        pushes[event.pipeline] = {"key": event.pipeline, "context": event.context,
                                  "pushed_at": record.recorded_at,
                                  "position": record.position, "actor": record.actor or ""}
    return pushes


def push_remote_context(settings: Settings, store: EventStore, key: str, context: str,
                        user: Any = None) -> dict:
    """Record that ``key`` now holds ``context``; the key's row as `remote_context` shows
    it, with ``recorded`` False when the push repeated what was already known."""
    key = validate_key(key)
    observatory = settings.observatory
    actor = getattr(user, "name", user) or key
    with store.transaction() as tx:
        context = _known_context(settings, file_rows(tx), context)
        last = _pushes(tx, observatory).get(key)
        latest = get_pointers(tx, observatory).get("latest")
        repeated = (last is not None and last["context"] == context
                    and (latest is None or last["position"] > latest["position"]))
        if not repeated:
            tx.record(ev.RemoteContextPushed(observatory=observatory, pipeline=key,
                                             context=context),
                      meta={"actor": str(actor)})
    row = remote_context(store, key, observatory)
    assert row is not None
    return {**row, "recorded": not repeated}


def remote_contexts(store: EventReader, observatory: str) -> list[dict]:
    """Every key that ever pushed, by key: key, actual (last pushed), pushed_at, commanded
    (the latest pointer now), in_sync."""
    commanded_row = get_pointers(store, observatory).get("latest")
    commanded = commanded_row["context"] if commanded_row else None
    rows = []
    for key, push in sorted(_pushes(store, observatory).items()):
        rows.append({"key": key, "observatory": observatory, "actual": push["context"],
                     "pushed_at": push["pushed_at"], "position": push["position"],
                     "commanded": commanded, "in_sync": push["context"] == commanded})
    return rows


def remote_context(store: EventReader, key: str, observatory: str) -> dict | None:
    """One key's row of `remote_contexts` (None if it never pushed)."""
    for row in remote_contexts(store, observatory):
        if row["key"] == key:
            return row
    return None
