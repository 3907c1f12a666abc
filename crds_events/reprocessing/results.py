"""Stored affected-dataset results: computed once, read by the CLI, the RPC and e-mail.

`compute_and_record` runs `crds_events.reprocessing.affected.affected_datasets` over the server's
dataset catalog and file store, then stores the result three ways:

* the whole result as a JSON artifact (ids grouped by their changes) and the id list as a
  text artifact (one id per line): content-addressed, so a recomputation with the same
  answer stores nothing new;
* the ``repro_results`` table, one row per (dataset, changed type) with old and new
  references, for queries (``crds-events repro show``, ``get_affected_datasets``);
* `AffectedDatasetsComputed` (counts, error summary, both digests), appended in the same
  transaction as the table rows, with an idempotency key made of the contexts and the
  result digest (a crash and a rerun record it once).

Like the ``datasets`` table, ``repro_results`` is bulk data derived from artifacts, not a
projection of events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.reprocessing.affected import AffectedDatasets, affected_datasets
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore
from crds_events.store.interface import EventStore, Transaction

__all__ = [
    "RESULTS_TABLE",
    "affected_ids",
    "is_held",
    "compute",
    "compute_and_record",
    "record_result",
    "stored_result",
]

RESULTS_TABLE = "repro_results"
_BATCH = 20_000


def ensure_tables(tx: Transaction) -> None:
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {RESULTS_TABLE} ("
        " old_context TEXT NOT NULL, new_context TEXT NOT NULL, dataset_id TEXT NOT NULL,"
        " filekind TEXT NOT NULL, old_reference TEXT NOT NULL, new_reference TEXT NOT NULL,"
        " PRIMARY KEY (new_context, old_context, dataset_id, filekind))"
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def compute(settings: Settings, store: EventStore, old: str, new: str) -> AffectedDatasets:
    """Affected datasets of the server's catalog between two contexts of its file store."""
    mappings = FileStore.from_settings(settings).directory_for("mapping")
    return affected_datasets(old, new, mappings, store)


def record_result(settings: Settings, store: EventStore, result: AffectedDatasets, *,
                  hold_for: str | None = None, cause: int = 0,
                  meta: Mapping[str, Any] | None = None) -> int:
    """Store `result` (artifacts, table rows, `AffectedDatasetsComputed`); with
    ``hold_for`` (a pipeline key) also `ReprocessingHeld`, once per ``cause`` (the position
    of the context change). Returns the position of `AffectedDatasetsComputed`."""
    artifacts = ArtifactStore.for_root(settings.root)
    ids = result.ids
    digest = artifacts.put_json(result.to_json())
    ids_digest = artifacts.put_text("".join(f"{i}\n" for i in ids))
    observatory = settings.observatory
    event = ev.AffectedDatasetsComputed(
        observatory=observatory, old_context=result.old_context,
        new_context=result.new_context, count=len(ids), digest=digest,
        by_instrument=result.by_instrument, by_type=result.by_type,
        candidates=result.candidates, errors=dict(result.errors), ids_digest=ids_digest,
    )
    insert = (f"INSERT INTO {RESULTS_TABLE} (old_context, new_context, dataset_id,"
              " filekind, old_reference, new_reference) VALUES (?, ?, ?, ?, ?, ?)"
              " ON CONFLICT (new_context, old_context, dataset_id, filekind) DO UPDATE SET"
              " old_reference = excluded.old_reference, new_reference = excluded.new_reference")
    with store.transaction() as tx:
        ensure_tables(tx)
        tx.execute(f"DELETE FROM {RESULTS_TABLE} WHERE old_context = ? AND new_context = ?",
                   (result.old_context, result.new_context))
        rows = []
        for dataset_id, filekind, was, now in result.changes():
            rows.append((result.old_context, result.new_context, dataset_id, filekind,
                         _text(was), _text(now)))
            if len(rows) >= _BATCH:
                tx.executemany(insert, rows)
                rows.clear()
        if rows:
            tx.executemany(insert, rows)
        appended = tx.record(
            event, meta=meta,
            idempotency_key=(f"affected:{observatory}:{result.old_context}:"
                             f"{result.new_context}:{digest[:16]}"),
        )
        if hold_for is not None:
            tx.record(
                ev.ReprocessingHeld(
                    observatory=observatory, new_context=result.new_context,
                    pipeline=hold_for,
                    reason=f"held until pipeline {hold_for!r} pushes {result.new_context}"),
                meta=meta,
                idempotency_key=f"repro-held:{observatory}:{result.old_context}:"
                                f"{result.new_context}:{cause}",
            )
    return appended.position


def compute_and_record(settings: Settings, store: EventStore, old: str, new: str, *,
                       hold_for: str | None = None,
                       meta: Mapping[str, Any] | None = None) -> tuple[AffectedDatasets, int]:
    """`compute` then `record_result`: (result, position of AffectedDatasetsComputed)."""
    result = compute(settings, store, old, new)
    return result, record_result(settings, store, result, hold_for=hold_for, meta=meta)


def stored_event(store: EventStore, observatory: str, old: str,
                 new: str) -> ev.AffectedDatasetsComputed | None:
    """The latest `AffectedDatasetsComputed` for ``old`` -> ``new`` (None if never)."""
    found = None
    for record in store.read_stream(ev.reprocessing_stream(observatory)):
        if record.type != ev.AffectedDatasetsComputed.type:
            continue
        data = record.data
        if data.get("old_context") == old and data.get("new_context") == new:
            found = record.event
    return found  # type: ignore[return-value]


def stored_result(settings: Settings, store: EventStore, old: str,
                  new: str) -> AffectedDatasets | None:
    """The stored result for ``old`` -> ``new`` (from its artifact), or None."""
    event = stored_event(store, settings.observatory, old, new)
    if event is None:
        return None
    return AffectedDatasets.from_json(ArtifactStore.for_root(settings.root).get_json(event.digest))


def affected_ids(settings: Settings, store: EventStore, old: str, new: str) -> list[str] | None:
    """The affected dataset ids for ``old`` -> ``new`` (sorted), None if not computed.

    What the JSON-RPC method ``get_affected_datasets`` serves.
    """
    event = stored_event(store, settings.observatory, old, new)
    if event is None:
        return None
    if event.ids_digest:
        text = ArtifactStore.for_root(settings.root).get_text(event.ids_digest)
        return [line for line in text.splitlines() if line]
    result = stored_result(settings, store, old, new)
    return result.ids if result is not None else []


def is_held(store: EventStore, observatory: str, new: str) -> bool:
    """True while the result for ``new`` waits for its pipeline (held, not released):
    ``get_affected_datasets`` should not serve it yet, or the race the hold closes (ids
    acted on before the pipeline runs the new rules) reopens through the RPC."""
    state = False
    for record in store.read_stream(ev.reprocessing_stream(observatory)):
        if record.data.get("new_context") != new:
            continue
        if record.type == ev.ReprocessingHeld.type:
            state = True
        elif record.type == ev.ReprocessingReleased.type:
            state = False
    return state
