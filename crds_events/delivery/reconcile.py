"""Archive reconciliation: what the archive's poller did to ``.cat`` manifests -> events.

The truth is on disk. For a delivery the log says is published (`DeliveryCreated`):

=================  ===========================================================
``<name>.cat``     created (the archive has not taken it yet)
``<name>.cat_proc``  `DeliveryArchiving`
``<name>.cat_err``   `DeliveryFailed` with the archive's words, if any (e-mail: the composer)
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

Nothing is concluded from absence unless the directory is verifiably ours
(`crds_events.delivery.directory`: it holds the marker recorded in the log): a missing,
replaced or empty directory (an unmounted share) records `DeliveryDirectoryUnavailable`
once per outage, and nothing else, until the marker is back (`DeliveryDirectoryRestored`).

Disk first, then the log: every look at the directory (which may be a hung NFS mount, or
hold a FIFO named like a manifest) happens before the write transaction opens, and only
regular files are read, never blocking. The transaction then re-reads each delivery's
state; one that changed since the look (e.g. `DeliveryCreated` recorded meanwhile) is left
for the next round (``report.retry``) rather than judged on a look older than its state.

`reconcile` is safe to run at any time and from any process; the delivery watcher
(`crds_events.watch.delivery`) runs a `Reconciler` for the deliveries it sees change and a
full reconciliation at start-up and on a schedule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.delivery.directory import (
    check_directory,
    directory_state,
    ensure_marker,
    read_regular,
)
from crds_events.delivery.publish import (
    DeliveryInfo,
    delivery_states,
    manifest_name_of,
)
from crds_events.files.checksums import sha1_file
from crds_events.store.filestore import FileStore
from crds_events.store.interface import EventStore, Transaction

__all__ = ["BATCH", "Reconciler", "ReconcileReport", "disk_state", "reconcile"]

log = logging.getLogger(__name__)

BATCH = 200  # deliveries reconciled per write transaction


def disk_state(directory: Path, name: str) -> str:
    """``cat``, ``proc``, ``err`` or ``gone``: the furthest manifest state on disk; ``odd``
    when that name is not a regular file (a FIFO, a directory, a link: never read).

    The names are looked at in the order the archive moves a manifest (``.cat``, then
    ``.cat_proc``, then ``.cat_err``): a rename happening between two looks is then seen at
    its new name, never missed (looking the other way round, a ``.cat`` renamed to
    ``.cat_proc`` between the looks would seem gone, i.e. archived).
    """
    found = "gone"
    for suffix, state in ((".cat", "cat"), (".cat_proc", "proc"), (".cat_err", "err")):
        try:
            info = os.lstat(directory / f"{name}{suffix}")
        except FileNotFoundError:
            continue
        except OSError:
            found = "odd"  # there, but not even its type can be known: conclude nothing
            continue
        found = state if stat.S_ISREG(info.st_mode) else "odd"
    return found


@dataclasses.dataclass(frozen=True)
class _Look:
    """What the disk showed of one delivery, gathered before the write transaction."""

    state: str  # as `disk_state`
    missing: list[str] | None = None  # files the manifest names that are absent
    reason: str = ""  # a .cat_err's own words


@dataclasses.dataclass
class ReconcileReport:
    """What one reconciliation did: facts recorded, problems found, oddities logged."""

    examined: int = 0
    recorded: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, type)
    problems: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    retry: list[str] = dataclasses.field(default_factory=list)  # changed during the look
    unavailable: str = ""  # why the directory was not trusted ('' : it was)
    restored: bool = False  # the directory came back in this run

    def merge(self, other: ReconcileReport) -> None:
        self.examined += other.examined
        self.recorded += other.recorded
        self.problems += other.problems
        self.ignored += other.ignored
        self.retry += other.retry
        self.unavailable = other.unavailable or self.unavailable
        self.restored = self.restored or other.restored


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


def _manifest_names(text: str) -> list[str]:
    """The file names a manifest lists (first column; blank lines ignored)."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _missing_files(directory: Path, manifest: Path) -> list[str] | None:
    """Files a manifest names that are not in ``directory`` (None: manifest unreadable,
    or not a regular file)."""
    try:
        names = _manifest_names(read_regular(manifest))
    except OSError:
        return None
    return [n for n in names if "/" in n or not (directory / n).is_file()]


MAX_REASON = 2000  # characters of a .cat_err's own text kept in DeliveryFailed


def _err_reason(directory: Path, name: str, files: Iterable[str]) -> str:
    """Why the archive failed ``name``: its ``.cat_err``'s lines that are not just the
    manifest's file names (the archive may append its error), else the rename itself."""
    base = f"the archive renamed {name}.cat to {name}.cat_err"
    try:
        text = read_regular(directory / f"{name}.cat_err", 64 * 1024)
    except OSError:
        return base
    listed = set(files)
    # A line that is only a file name is the manifest itself; a name with words is kept.
    extra = [line.strip() for line in text.splitlines()
             if line.strip() and line.strip() not in listed]
    if not extra:
        return base
    words = " ".join(extra)
    if len(words) > MAX_REASON:
        words = words[:MAX_REASON] + " ..."
    return f"{base}: {words}"


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
        if not self._directory_trusted(report):
            return report  # absence proves nothing now; the outage is recorded
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
            # Disk first, outside any transaction: a hung read or a FIFO must not hold the
            # write lock that every other writer waits for.
            before = delivery_states(self.store, chunk)
            looks = {name: self._look(name, before.get(name)) for name in chunk}
            if not self._directory_trusted(report):
                return report  # it went away during the looks: they prove nothing
            archived: list[DeliveryInfo] = []
            with self.store.transaction() as tx:
                # States read under the write lock: another reconciler cannot interleave.
                infos = delivery_states(tx, chunk)
                for name in chunk:
                    info, seen = infos.get(name), before.get(name)
                    if (info.version if info else 0) != (seen.version if seen else 0):
                        report.retry.append(name)  # newer than our look: look again
                        continue
                    report.examined += 1
                    if self._one(tx, name, info, looks[name], report):
                        archived.append(info)  # type: ignore[arg-type]
            for info in archived:
                self._remove_links(info)  # after the commit; idempotent
        return report

    # --- the directory ---------------------------------------------------------------------

    def _directory_trusted(self, report: ReconcileReport) -> bool:
        """Check the directory (disk first), then record an outage or its end (once)."""
        observatory = self.settings.observatory
        state = directory_state(self.store, observatory)
        marker = state.marker or ensure_marker(self.settings, self.store)
        reason = check_directory(self.directory, marker)
        if not reason and not state.unavailable:
            return True
        meta = {"actor": "server"}
        key = f"delivery-directory:{observatory}"
        with self.store.transaction() as tx:
            now = directory_state(tx, observatory)
            if reason:
                if not now.unavailable:  # once per outage: the key names where it began
                    self._record(tx, ev.DeliveryDirectoryUnavailable(
                        observatory=observatory, directory=str(self.directory),
                        reason=reason), f"{key}:unavailable:{now.version}", meta, report)
                    log.error("delivery directory unavailable: %s", reason)
                report.unavailable = reason
                return False
            if now.unavailable and now.version == state.version:
                self._record(tx, ev.DeliveryDirectoryRestored(
                    observatory=observatory, directory=str(self.directory)),
                    f"{key}:restored:{now.version}", meta, report)
                log.warning("delivery directory %s is back; reconciling", self.directory)
                report.restored = True
            elif now.unavailable:  # someone recorded a new outage since our check
                report.unavailable = now.reason
                return False
        return True

    # --- one delivery ----------------------------------------------------------------------

    def _look(self, name: str, info: DeliveryInfo | None) -> _Look:
        """What the disk shows of ``name`` (no transaction open; never blocks on a read)."""
        state = disk_state(self.directory, name)
        missing = None
        if state == "cat" and (info is None or info.state == "created"):
            missing = _missing_files(self.directory, self.directory / f"{name}.cat")
            # Looked again after reading: the archive takes the manifest before its files.
            state = disk_state(self.directory, name)
        elif state in ("proc", "err") and info is None:
            missing = _missing_files(self.directory, self.directory / f"{name}.{_suffix(state)}")
        reason = ""
        if state == "err" and info is not None and info.state in ("created", "archiving"):
            reason = _err_reason(self.directory, name, info.files)
        return _Look(state, missing, reason)

    def _one(self, tx: Transaction, name: str, info: DeliveryInfo | None, look: _Look,
             report: ReconcileReport) -> bool:
        """Reconcile one delivery inside ``tx`` from ``look``; True when it is archived (now
        or before) and its manifest is gone: its leftover links may go."""
        state = look.state
        if state == "odd":
            self._note(name, f"{self.directory / name}.cat*: a manifest name that is not a "
                             f"regular file (a FIFO, directory or link); ignored, nothing "
                             f"recorded", report)
            return False
        if info is None or info.state == "requested":
            if state != "gone" and info is None:
                self._unknown(name, state, look.missing, report)
            return False  # requested: the delivery worker records DeliveryCreated first
        meta = {"actor": "archive"}
        if info.state == "created" and state == "cat":
            if look.missing:
                self._problem(tx, name, look.missing, report)
            return False
        if info.state == "created" and state == "proc":
            self._record(tx, ev.DeliveryArchiving(delivery=name), _key(name, "archiving"),
                         meta, report)
            return False
        if info.state in ("created", "archiving") and state == "err":
            reason = look.reason or f"the archive renamed {name}.cat to {name}.cat_err"
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
        self._note(name, f"delivery {name}: {info.state} in the log but {seen} on disk; "
                         f"states never go backwards, nothing recorded", report)
        return False

    def _note(self, name: str, note: str, report: ReconcileReport) -> None:
        if (name, note) not in self._unknown_logged:
            self._unknown_logged.add((name, note))
            log.warning(note)
        report.ignored.append(note)

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

    def _unknown(self, name: str, state: str, missing: list[str] | None,
                 report: ReconcileReport) -> None:
        manifest = self.directory / f"{name}.{_suffix(state)}"
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
