"""``get_affected_datasets``: the stored result of an affected-datasets computation.

The reprocessing handler records ``AffectedDatasetsComputed`` (old, new, counts, errors, the
artifacts holding the result and the id list; see `crds_events.reprocessing.results`). This module
shapes the latest such result for a context transition as the ``crds query_affected``
client reads it: ``affected_ids``, ``bestrefs_status`` (0 = no errors),
``bestrefs_err_summary`` (the text it prints) and ``computation_dir``.
"""

from __future__ import annotations

from typing import Any

from crds_events.reprocessing import results as repro_results
from crds_events.store.artifacts import ArtifactError
from crds_events.web.rpc import RpcError

__all__ = ["affected_datasets"]


def affected_datasets(state, observatory: str, old_context: str, new_context: str
                      ) -> dict[str, Any]:
    store, settings = state.store, state.settings
    event = repro_results.stored_event(store, observatory, old_context, new_context)
    if event is None:
        raise RpcError(f"No precomputed affected datasets results exist for {old_context} "
                       f"--> {new_context}")
    if repro_results.is_held(store, observatory, new_context):
        # Served only once the pipeline runs the new context: ids acted on earlier would be
        # reprocessed with the old rules (the race the hold exists to close).
        raise RpcError(f"No precomputed affected datasets results exist for {old_context} "
                       f"--> {new_context} yet: held until the pipeline runs {new_context}")
    problems: list[str] = []
    try:
        ids = repro_results.affected_ids(settings, store, old_context, new_context) or []
    except (ArtifactError, ValueError, KeyError, TypeError) as exc:
        ids = []
        problems.append(f"stored result unreadable: {exc}")
    if len(ids) != event.count and not problems:
        problems.append(f"stored result holds {len(ids)} ids, the computation counted "
                        f"{event.count}")
    errors = dict(event.errors or {})
    lines = [f"Affected datasets {old_context} --> {new_context}: {len(ids)} of "
             f"{event.candidates or '?'} candidate datasets"]
    lines += [f"  {instrument}: {count}" for instrument, count in
              sorted((event.by_instrument or {}).items())]
    lines += [f"  ERROR ({count} datasets) {message}" for message, count in
              sorted(errors.items())]
    lines += [f"  ERROR {problem}" for problem in problems]
    return {
        "old_context": old_context,
        "new_context": new_context,
        "affected_ids": ids,
        "affected_count": len(ids),
        "by_instrument": dict(event.by_instrument or {}),
        "by_type": dict(event.by_type or {}),
        # CRDS: the exit status of the server's bestrefs run, non-zero when it had errors
        "bestrefs_status": 1 if (errors or problems) else 0,
        "bestrefs_err_summary": "\n".join(lines),
        "computation_dir": f"artifact:{event.digest}",
    }
