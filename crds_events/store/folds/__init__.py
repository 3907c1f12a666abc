"""Projection folds: every read model of the log, as pure functions of events.

* `core`      - `Fold`, `replay` (folding in memory: reads that see their own writes, the
  web's "as of event N")
* `catalog`   - the files catalog, submissions, deliveries
* `digests`   - the sha1s a new submission may not bring again (duplicate detection)
* `contexts`  - context pointers, their history, remote (pipeline) contexts
* `pipelines` - registered pipelines and their valid key hashes
* `accounts`  - users, instrument locks
* `mail`      - the e-mail outbox

`all_folds` is the complete set, written out: ``serve`` runs it as projection tables,
``rebuild`` replays it, and both see the same folds whatever was imported before.
"""

from crds_events.store.folds.accounts import LOCK_TYPES, LOCKS, USERS
from crds_events.store.folds.catalog import DELIVERIES, FILES, SUBMISSIONS
from crds_events.store.folds.contexts import CONTEXT_HISTORY, CONTEXT_POINTERS, REMOTE_CONTEXTS
from crds_events.store.folds.core import Fold, Key, Row, names, replay
from crds_events.store.folds.digests import FILE_DIGESTS
from crds_events.store.folds.mail import EMAILS
from crds_events.store.folds.pipelines import PIPELINE_KEYS, PIPELINES

__all__ = [
    "Fold",
    "Key",
    "Row",
    "replay",
    "names",
    "all_folds",
    "FILES",
    "SUBMISSIONS",
    "DELIVERIES",
    "FILE_DIGESTS",
    "CONTEXT_POINTERS",
    "CONTEXT_HISTORY",
    "REMOTE_CONTEXTS",
    "PIPELINES",
    "PIPELINE_KEYS",
    "USERS",
    "LOCKS",
    "LOCK_TYPES",
    "EMAILS",
]


def all_folds() -> tuple[Fold, ...]:
    """Every read model of the log (the projection tables of a server), in table order."""
    return (FILES, SUBMISSIONS, DELIVERIES, FILE_DIGESTS, CONTEXT_POINTERS, CONTEXT_HISTORY,
            REMOTE_CONTEXTS, PIPELINES, PIPELINE_KEYS, USERS, LOCKS, EMAILS)
