"""Collisions: other pending (READY) submissions that derive from the same mappings.

CRDS warns when two submissions replace the same mapping: whichever is confirmed second
would otherwise drop the first's change. Here the second is rebased at its confirm
(`crds_events.submissions.rebase`), and processing warns up front: `collision_hook` gives
processing (`ProcessingRequest.collisions`) the ids of the other READY submissions whose
result replaced a given mapping (rmap, imap or pmap).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.interface import EventReader

__all__ = ["collision_hook", "pending_bases"]

_LAST = (ev.SubmissionReady, ev.SubmissionRejected, ev.SubmissionFailed,
         ev.SubmissionConfirmed, ev.SubmissionForced, ev.SubmissionCancelled)


def pending_bases(store: EventReader, settings: Settings, *, exclude: str = ""
                  ) -> dict[str, set[str]]:
    """submission id -> the mappings its current READY result replaces, for every READY
    submission but ``exclude``."""
    latest: dict[str, ev.Event] = {}
    for record in store.iter_all(types=[cls.type for cls in _LAST]):
        latest[record.data["submission_id"]] = record.event
    artifacts = ArtifactStore.for_root(settings.root)
    bases: dict[str, set[str]] = {}
    for sid, event in latest.items():
        if sid == exclude or not isinstance(event, ev.SubmissionReady) \
                or not event.result_digest:
            continue
        # A result whose artifact cannot be read names nothing: the warning is advice.
        with contextlib.suppress(Exception):
            replaced = artifacts.get_json(event.result_digest).get("replaced")
            bases[sid] = set(replaced or ())
    return bases


def collision_hook(store: EventReader, settings: Settings, submission_id: str
                   ) -> Callable[[str], list[str]]:
    """``hook(mapping) -> ids`` of the other READY submissions that replaced ``mapping``,
    read once, when processing first asks."""
    bases: dict[str, set[str]] | None = None

    def hook(mapping: str) -> list[str]:
        nonlocal bases
        if bases is None:
            bases = pending_bases(store, settings, exclude=submission_id)
        return sorted(sid for sid, names in bases.items() if mapping in names)

    return hook
