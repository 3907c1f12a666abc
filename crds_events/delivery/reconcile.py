"""Archive reconciliation: what the archive's poller did to ``.cat`` manifests -> events.

The truth is on disk. For a delivery the log says is published (`DeliveryCreated`):

=================  ===========================================================
``<name>.cat``     created (the archive has not taken it yet)
``<name>.cat_proc``  `DeliveryArchiving`
``<name>.cat_err``   `DeliveryFailed` (the e-mail to devs is the composer's job)
no manifest        `DeliveryArchived`, then `FileReleased` for each file
=================  ===========================================================

Each fact carries a deterministic idempotency key (``delivery:<name>:archiving``, ...), so
a rescan, a second watcher or a restarted server never records it twice. States only move
forward (created -> archiving -> archived, or -> failed): a ``.cat`` reappearing after
archiving, or anything happening to a failed delivery's ``.cat_err``, is logged, not
recorded. A ``.cat`` whose files are not all in the delivery directory is recorded as
`DeliveryProblemFound` (state unchanged); a manifest for a delivery the log does not know
is only logged (with the missing files, if it names any).

After `DeliveryArchived` the delivery's file links still in the directory are removed (the
archive has the files, the file store keeps ours): the delivery directory holds only what
the archive still has to take. A failed delivery keeps its links and ``.cat_err`` for the
operators.

`reconcile` is safe to run at any time and from any process; the delivery watcher
(`crds_events.watch.delivery`) runs a `Reconciler` for the deliveries it sees change and a
full reconciliation at start-up and on a schedule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.delivery.publish import (
    DeliveryInfo,
    delivery_states,
    manifest_name_of,
    read_manifest,
)
from crds_events.files.checksums import sha1_file
from crds_events.store.filestore import FileStore
from crds_events.store.interface import EventStore, Transaction

__all__ = ["BATCH", "Reconciler", "ReconcileReport", "disk_state", "reconcile"]

log = logging.getLogger(__name__)

BATCH = 200  # deliveries reconciled per write transaction


def disk_state(directory: Path, name: str) -> str:
    """``cat``, ``proc``, ``err`` or ``gone``: the furthest manifest state on disk.

    The names are looked at in the order the archive moves a manifest (``.cat``, then
    ``.cat_proc``, then ``.cat_err``): a rename happening between two looks is then seen at
    its new name, never missed (looking the other way round, a ``.cat`` renamed to
    ``.cat_proc`` between the looks would seem gone, i.e. archived).
    """
    found = "gone"
    for suffix, state in ((".cat", "cat"), (".cat_proc", "proc"), (".cat_err", "err")):
        if os.path.lexists(directory / f"{name}{suffix}"):
            found = state
    return found


@dataclasses.dataclass
class ReconcileReport:
    """What one reconciliation did: facts recorded, problems found, oddities logged."""

    examined: int = 0
    recorded: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, type)
    problems: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: ReconcileReport) -> None:
        self.examined += other.examined
        self.recorded += other.recorded
        self.problems += other.problems
        self.ignored += other.ignored


def _manifests_on_disk(directory: Path) -> set[str]:
    try:
        entries = os.listdir(directory)
    except OSError:
        return set()
    names = set()
    for filename in entries:
        found = manifest_name_of(filename)
        if found is not None:
            names.add(found[0])
    return names


def _missing_files(directory: Path, manifest: Path) -> list[str] | None:
    """Files a manifest names that are not in ``directory`` (None: manifest unreadable)."""
    try:
        names = read_manifest(manifest)
    except OSError:
        return None
    return [n for n in names if "/" in n or not (directory / n).is_file()]


def _key(name: str, what: str) -> str:
    return f"delivery:{name}:{what}"


class Reconciler:
    """Compares disk and log for a set of deliveries and records the difference."""

    def __init__(self, settings: Settings, store: EventStore):
        self.settings = settings
        self.store = store
        self.directory = Path(settings.delivery)
        self._unknown_logged: set[tuple[str, str]] = set()

    def run(self, names: Iterable[str] | None) -> ReconcileReport:
        report = ReconcileReport()
        if names is None:
            on_disk = _manifests_on_disk(self.directory)
            infos = delivery_states(self.store)
            wanted = {n for n, i in infos.items() if i.state in ("created", "archiving")}
            wanted |= on_disk
        else:
            wanted = set(names)
        ordered = sorted(wanted)
        for start in range(0, len(ordered), BATCH):
            chunk = ordered[start:start + BATCH]
            archived: list[DeliveryInfo] = []
            with self.store.transaction() as tx:
                # States read under the write lock: another reconciler cannot interleave.
                infos = delivery_states(tx, chunk)
                for name in chunk:
                    report.examined += 1
                    info = infos.get(name)
                    if self._one(tx, name, info, report):
                        archived.append(info)  # type: ignore[arg-type]
            for info in archived:
                self._remove_links(info)  # after the commit; idempotent
        return report

    def _one(self, tx: Transaction, name: str, info: DeliveryInfo | None,
             report: ReconcileReport) -> bool:
        """Reconcile one delivery inside ``tx``; True when it is archived (now or before)
        and its manifest is gone: its leftover links may go."""
        state = disk_state(self.directory, name)
        if info is None or info.state == "requested":
            if state != "gone" and info is None:
                self._unknown(name, state, report)
            return False  # requested: the delivery worker records DeliveryCreated first
        meta = {"actor": "archive"}
        if info.state == "created" and state == "cat":
            missing = _missing_files(self.directory, self.directory / f"{name}.cat")
            state = disk_state(self.directory, name)
            if state == "cat":  # still there: the archive takes the manifest before files
                if missing:
                    self._problem(tx, name, missing, report)
                return False
        if info.state == "created" and state == "proc":
            self._record(tx, ev.DeliveryArchiving(delivery=name), _key(name, "archiving"),
                         meta, report)
            return False
        if info.state in ("created", "archiving") and state == "err":
            reason = f"the archive renamed {name}.cat to {name}.cat_err"
            self._record(tx, ev.DeliveryFailed(delivery=name, reason=reason),
                         _key(name, "failed"), meta, report)
            return False
        if info.state in ("created", "archiving") and state == "gone":
            self._record(tx, ev.DeliveryArchived(delivery=name), _key(name, "archived"),
                         meta, report)
            for filename in info.files:
                self._record(tx, ev.FileReleased(name=filename, delivery=name),
                             _key(name, f"released:{filename}"), meta, report)
            return True
        if (info.state, state) == ("archived", "gone"):
            return True
        if (info.state, state) in (("archiving", "proc"), ("failed", "err")):
            return False  # nothing new
        seen = "no manifest" if state == "gone" else f"{name}.{_suffix(state)}"
        note = (f"delivery {name}: {info.state} in the log but {seen} on disk; "
                f"states never go backwards, nothing recorded")
        if (name, note) not in self._unknown_logged:
            self._unknown_logged.add((name, note))
            log.warning(note)
        report.ignored.append(note)
        return False

    def _record(self, tx: Transaction, event: ev.Event, key: str, meta: dict,
                report: ReconcileReport) -> None:
        result = tx.record(event, meta=meta, idempotency_key=key)
        if not result.duplicate:
            report.recorded.append((event.stream, event.type))

    def _problem(self, tx: Transaction, name: str, missing: list[str],
                 report: ReconcileReport) -> None:
        problem = (f"delivery {name}: {name}.cat names {len(missing)} file(s) missing from "
                   f"the delivery directory {self.directory}: {', '.join(missing)}")
        digest = hashlib.sha1(problem.encode()).hexdigest()[:12]
        result = tx.record(ev.DeliveryProblemFound(delivery=name, problem=problem,
                                                   missing=tuple(missing)),
                           meta={"actor": "archive"},
                           idempotency_key=_key(name, f"problem:{digest}"))
        if not result.duplicate:
            log.error(problem)
        report.problems.append(problem)

    def _unknown(self, name: str, state: str, report: ReconcileReport) -> None:
        manifest = self.directory / f"{name}.{_suffix(state)}"
        missing = _missing_files(self.directory, manifest)
        if missing:
            problem = (f"{manifest}: not a delivery of this server, and it names "
                       f"{len(missing)} file(s) that do not exist in {self.directory}: "
                       f"{', '.join(missing)}; nothing recorded")
            report.problems.append(problem)
        else:
            problem = f"{manifest}: not a delivery of this server; nothing recorded"
            report.ignored.append(problem)
        if (name, problem) not in self._unknown_logged:
            self._unknown_logged.add((name, problem))
            log.error(problem)

    def _remove_links(self, info: DeliveryInfo) -> None:
        """Remove the archived delivery's files still in the directory, but only where they
        are our links (or copies) of the stored file: anything else is left alone."""
        files = FileStore(self.settings.store, info.observatory or self.settings.observatory)
        for filename in info.files:
            target = self.directory / filename
            try:
                source = files.path_for(filename)
            except ValueError:
                continue
            try:
                if not target.is_file():
                    continue
                if os.path.samefile(source, target) or sha1_file(source) == sha1_file(target):
                    target.unlink()
            except OSError:
                continue


def _suffix(state: str) -> str:
    return {"cat": "cat", "proc": "cat_proc", "err": "cat_err", "gone": "cat"}[state]


def reconcile(settings: Settings, store: EventStore,
              names: Iterable[str] | None = None) -> ReconcileReport:
    """Bring the log up to what the delivery directory shows (all deliveries, or ``names``).

    Safe to run at any time and from any process: every fact has an idempotency key.
    """
    return Reconciler(settings, store).run(names)
