"""Online backup and restore of a crds-events root.

    backup(settings, "backups/2026-11-28")        # while the server runs
    restore("backups/2026-11-28", load_settings("var-restored"))

A backup is a **directory** (easy to rsync, inspect and prune; tar it yourself if you want
one file, or give a DEST ending in ``.tar`` / ``.tar.gz`` and `backup` writes the tar):

    DEST/events.db           the event log with every projection and the datasets table,
                             copied with SQLite's online backup API
    DEST/crds-events.toml    the root's configuration (if it has one)
    DEST/store/ artifacts/ catalogs/ maildir/
                             the file store (mappings, references), result artifacts, the
                             permanent .cat copies and the delivered e-mails
    DEST/MANIFEST.json       when, from where, the log head and event count, file counts

Why it is consistent while the server writes: the database is copied in **one backup step**
(``pages=-1``), which reads a single snapshot (WAL mode: writers carry on meanwhile; the
copy is the log exactly as of one commit). The directories are copied *afterwards*, and
everything in them is written before the event that names it is committed and never
changed later (content-addressed or append-only), so every file the snapshot's events name
is present; files newer than the snapshot are harmless extras.

Not backed up: ``ingest/`` (transient drop directories: an unfinished submission is
re-submitted) and ``delivery/`` (the archive's interface directory; after a restore the
delivery reconciliation scan compares it with the log).

`restore` refuses a target root that already holds an event log (unless ``force``), checks
the copied database with ``PRAGMA integrity_check`` and the head against the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from crds_events.config import CONFIG_NAME, Settings, load_settings
from crds_events.errors import CrdsEventsError

__all__ = ["BackupError", "BackupResult", "backup", "restore", "DIRECTORIES"]

DIRECTORIES = ("store", "artifacts", "catalogs", "maildir")
DB_NAME = "events.db"
MANIFEST = "MANIFEST.json"


class BackupError(CrdsEventsError, RuntimeError):
    """A backup or restore that cannot proceed (the message names the path and reason)."""


@dataclasses.dataclass
class BackupResult:
    path: Path
    head: int
    events: int
    files: int
    seconds: float

    def summary(self) -> str:
        return (f"{self.path}: event log up to position {self.head} ({self.events} events), "
                f"{self.files} files, {self.seconds:.1f} s")


def _directories(settings: Settings) -> dict[str, Path]:
    return {"store": settings.store, "artifacts": settings.root / "artifacts",
            "catalogs": settings.catalogs, "maildir": settings.maildir}


def _log_facts(connection: sqlite3.Connection) -> tuple[int, int]:
    head, count = connection.execute(
        "SELECT coalesce(max(position), 0), count(*) FROM events").fetchone()
    return int(head), int(count)


def backup_database(source: Path, target: Path) -> tuple[int, int]:
    """Copy the live database at `source` to `target` in one snapshot; (head, events)."""
    if not source.is_file():
        raise BackupError(f"{source}: no event log to back up")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)  # one step: one consistent snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        return _log_facts(dst)
    finally:
        dst.close()
        src.close()


def _copy_tree(source: Path, target: Path) -> int:
    """Copy `source` into `target` (files that vanish meanwhile are skipped); file count."""
    count = 0
    if not source.is_dir():
        return 0
    for directory, _subdirs, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                shutil.copy2(Path(directory) / name, target / relative / name)
            except FileNotFoundError:
                continue  # a temporary file that was renamed or deleted: not needed
            count += 1
    return count


def _refuse_postgres(settings: Settings, what: str) -> None:
    """The log on PostgreSQL is backed up by PostgreSQL's own tools, not by copying a file."""
    url = settings.database_url or ""
    if url.startswith(("postgresql://", "postgres://")):
        raise BackupError(
            f"{what}: the event log is in PostgreSQL (database_url); back it up with "
            "pg_dump (or WAL archiving / a base backup) and the root's files (store/, "
            "catalogs/, artifacts/) with your file backups; see docs/operator-guide.md")


def backup(settings: Settings, dest: str | os.PathLike) -> BackupResult:
    """Back up the root `settings` describes into `dest` (a new directory, or a tar)."""
    _refuse_postgres(settings, "backup")
    started = time.perf_counter()
    dest = Path(dest)
    as_tar = dest.name.endswith((".tar", ".tar.gz", ".tgz"))
    if dest.exists() and (as_tar or any(dest.iterdir())):
        raise BackupError(f"{dest}: already exists and is not empty; choose a new destination")
    if as_tar:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".crds-events-backup-", dir=dest.parent))
    else:
        work = dest
        work.mkdir(parents=True, exist_ok=True)
    try:
        head, count = backup_database(settings.db_path, work / DB_NAME)
        files = 0
        for name, source in _directories(settings).items():
            files += _copy_tree(source, work / name)
        if settings.config_path.is_file():
            shutil.copy2(settings.config_path, work / CONFIG_NAME)
        manifest = {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "root": str(settings.root), "observatory": settings.observatory,
                    "head": head, "events": count, "files": files,
                    "directories": list(DIRECTORIES)}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if as_tar:
            mode = "w:gz" if dest.name.endswith(("gz", ".tgz")) else "w"
            with tarfile.open(dest, mode) as archive:
                for item in sorted(work.iterdir()):
                    archive.add(item, arcname=item.name)
    finally:
        if as_tar:
            shutil.rmtree(work, ignore_errors=True)
    return BackupResult(dest, head, count, files, time.perf_counter() - started)


def _unpacked(source: Path, scratch: Path) -> Path:
    if source.is_dir():
        return source
    if source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            archive.extractall(scratch, filter="data")
        return scratch
    raise BackupError(f"{source}: not a backup directory or tar file")


def restore(source: str | os.PathLike, settings: Settings, *, force: bool = False) -> BackupResult:
    """Restore the backup at `source` into the root `settings` describes.

    The target's configuration decides where things go (its ``crds-events.toml`` if it has
    one; else the backup's is copied in and the root's paths are those defaults)."""
    _refuse_postgres(settings, "restore")
    started = time.perf_counter()
    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="crds-events-restore-") as scratch:
        unpacked = _unpacked(source, Path(scratch))
        manifest_path = unpacked / MANIFEST
        if not manifest_path.is_file() or not (unpacked / DB_NAME).is_file():
            raise BackupError(f"{source}: not a crds-events backup ({MANIFEST} or {DB_NAME} missing)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise BackupError(f"{manifest_path}: unreadable manifest: {exc}") from None
        settings.root.mkdir(parents=True, exist_ok=True)
        if not settings.config_path.is_file() and (unpacked / CONFIG_NAME).is_file():
            shutil.copy2(unpacked / CONFIG_NAME, settings.config_path)
            settings = load_settings(settings.root)
        if settings.db_path.exists() and not force:
            raise BackupError(f"{settings.db_path}: an event log is already there; restore into "
                              "an empty root, or pass --force to replace it")
        with sqlite3.connect(unpacked / DB_NAME) as check:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
            head, count = _log_facts(check)
        if verdict != "ok":
            raise BackupError(f"{source}: the backed-up database fails integrity_check: {verdict}")
        if (head, count) != (manifest.get("head"), manifest.get("events")):
            raise BackupError(f"{source}: the database holds {count} events up to {head}, the "
                              f"manifest says {manifest.get('events')} up to {manifest.get('head')}")
        for suffix in ("-wal", "-shm"):
            Path(f"{settings.db_path}{suffix}").unlink(missing_ok=True)
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = settings.db_path.with_name(settings.db_path.name + ".restoring")
        shutil.copy2(unpacked / DB_NAME, temporary)
        os.replace(temporary, settings.db_path)
        files = 0
        for name, target in _directories(settings).items():
            files += _copy_tree(unpacked / name, target)
        for directory in (settings.ingest, settings.delivery):
            directory.mkdir(parents=True, exist_ok=True)
    return BackupResult(settings.root, head, count, files, time.perf_counter() - started)
