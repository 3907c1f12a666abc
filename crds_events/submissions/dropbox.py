"""The drop box: ``ingest/<user>/`` + ``submission.yaml`` -> ``SubmissionStarted``.

The ingest layout: a user drops files and then the manifest (written last) into
``<ingest>/<user>/`` (`drop_submission` does it for ``crds-events submit``; `drop_uploads`
for the web form and the upload API, checking the manifest first). Taking a manifest
(`take_manifest`, called by the ingest watcher once the directory has settled): validate
it (`crds_events.submissions.manifest`), copy the files into ``<root>/work/<id>/uploads/``,
take the instrument lock and append ``SubmissionStarted``, then rename the manifest to
``.submission.yaml.<id>.taken`` so it is not seen again.

The append carries an idempotency key made from the user, the manifest's sha1 and its
mtime (`ingest_key`): a crash anywhere in between, or a rescan, finds the key recorded and
only finishes the rename, so one manifest is one submission. A bad manifest or a locked
instrument is a ``SubmissionRejected`` (same key rule) naming the field, or the lock holder
and expiry; its manifest becomes ``.submission.yaml.<id>.rejected``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.store.interface import NO_STREAM, EventStore
from crds_events.submissions.manifest import (
    DEFAULT_MAX_FILE_SIZE,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    load_manifest,
    parse_manifest,
    write_manifest,
)

__all__ = [
    "IngestOutcome",
    "LockRefusedError",
    "Upload",
    "drop_submission",
    "drop_uploads",
    "ingest_key",
    "submission_id_for",
    "take_lock",
    "take_manifest",
    "uploads_dir",
    "work_dir",
]


def work_dir(settings: Settings, submission_id: str) -> Path:
    """Where a submission's temporary copies and generated files live until confirmed."""
    return settings.root / "work" / submission_id


def uploads_dir(settings: Settings, submission_id: str) -> Path:
    """Where a taken submission's copies of the dropped files are."""
    return work_dir(settings, submission_id) / "uploads"


def ingest_key(user: str, manifest_sha1: str, mtime_ns: int) -> str:
    """The idempotency key of one manifest: one manifest (content + time) = one submission."""
    digest = hashlib.sha1(f"{user}\0{manifest_sha1}\0{mtime_ns}".encode()).hexdigest()
    return f"ingest:{digest}"


def submission_id_for(key: str, mtime_ns: int) -> str:
    """A readable id derived from the key alone (so a retry names the same submission)."""
    stamp = datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{key.split(':', 1)[1][:6]}"


@dataclasses.dataclass(frozen=True)
class IngestOutcome:
    """What reconciling one user directory did."""

    user: str
    state: str  # started | rejected | duplicate | unsettled | empty
    submission_id: str = ""
    reason: str = ""
    position: int = 0


class LockRefusedError(CrdsEventsError):
    """The instrument is locked by someone else (message names the holder and expiry)."""


def take_lock(store: EventStore, settings: Settings, instrument: str, user: str,
              submission_id: str) -> None:
    """Take or renew ``user``'s lock on ``instrument``; `LockRefusedError` (naming the holder
    and the expiry) when another user holds it or ``user`` holds another instrument."""
    try:
        locks.acquire_lock(store, instrument, user, timeout=settings.lock_timeout,
                           submission_id=submission_id)
    except locks.LockHeldError as exc:
        raise LockRefusedError(
            f"{exc}; try again after that, or ask {exc.lock.owner} to release it"
        ) from None
    except locks.LockError as exc:
        raise LockRefusedError(str(exc)) from None


# --- taking a manifest (the server side) -------------------------------------------------


def take_manifest(store: EventStore, settings: Settings, user: str, directory: Path, *,
                  max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> IngestOutcome:
    """Turn the manifest in ``directory`` (``ingest/<user>/``, settled) into a submission:
    ``started``, ``rejected`` (with the reason), ``duplicate`` (taken before) or ``empty``
    (the manifest vanished)."""
    manifest_path = directory / MANIFEST_NAME
    try:
        raw = manifest_path.read_bytes()
        mtime_ns = manifest_path.stat().st_mtime_ns
    except OSError:
        return IngestOutcome(user, "empty")
    key = ingest_key(user, hashlib.sha1(raw).hexdigest(), mtime_ns)
    submission_id = submission_id_for(key, mtime_ns)
    earlier = store.find_key(key)
    if earlier is not None:  # taken before a crash or by another scanner
        state = "rejected" if isinstance(earlier.event, ev.SubmissionRejected) else "started"
        _set_aside(manifest_path, submission_id, state)
        return IngestOutcome(user, "duplicate", submission_id)
    try:
        manifest = load_manifest(directory, observatory=settings.observatory,
                                 max_file_size=max_file_size)
    except ManifestError as exc:
        return _reject(store, user, manifest_path, submission_id, key, str(exc))
    refusal = _refuse_user(store, user)
    if refusal:
        return _reject(store, user, manifest_path, submission_id, key, refusal)
    _copy_uploads(manifest, uploads_dir(settings, submission_id))
    try:
        position = _record_start(store, settings, user, manifest, submission_id, key)
    except LockRefusedError as exc:
        shutil.rmtree(work_dir(settings, submission_id), ignore_errors=True)
        return _reject(store, user, manifest_path, submission_id, key, str(exc))
    _set_aside(manifest_path, submission_id, "started")
    return IngestOutcome(user, "started", submission_id, position=position)


def _refuse_user(store: EventStore, user: str) -> str:
    """Why ``user`` may not submit ('' if they may). Unknown users are accepted: the
    existence of their drop directory is the administrator's say-so."""
    record = users.get_user(store, user)
    if record is not None and not users.can(record, "submit"):
        return f"user {user!r} may not submit (disabled or no submitter role)"
    return ""


def _copy_uploads(manifest: Manifest, uploads: Path) -> None:
    # Copies, not links: the user may rewrite a file in place after dropping it, and the
    # submission must keep what was there when the manifest was taken.
    uploads.mkdir(parents=True, exist_ok=True)
    for name in manifest.files:
        shutil.copyfile(manifest.directory / name, uploads / name)
    (uploads / MANIFEST_NAME).write_bytes(manifest.path.read_bytes())


def _record_start(store: EventStore, settings: Settings, user: str, manifest: Manifest,
                  submission_id: str, key: str) -> int:
    started = ev.SubmissionStarted(
        submission_id=submission_id, observatory=settings.observatory,
        deliverer=manifest.deliverer, instrument=manifest.instrument,
        description=manifest.description, files=manifest.files,
        change_level=manifest.change_level, other_emails=manifest.other_emails,
        redcat=dict(manifest.redcat), user=user, kind=manifest.kind,
        derive_from=manifest.derive_from, auto_rename=manifest.auto_rename,
        manifest_sha1=manifest.sha1,
    )
    # The lock first, in its own append (locks decide on their stream's version); if we
    # crash before SubmissionStarted, the rescan re-acquires, which only renews it.
    take_lock(store, settings, manifest.instrument, user, submission_id)
    result = store.record(started, NO_STREAM, meta={"actor": user}, idempotency_key=key)
    return result.position


def _reject(store: EventStore, user: str, manifest_path: Path, submission_id: str, key: str,
            reason: str) -> IngestOutcome:
    event = ev.SubmissionRejected(submission_id=submission_id, reason=reason)
    result = store.record(event, meta={"actor": user}, idempotency_key=key)
    _set_aside(manifest_path, submission_id, "rejected")
    return IngestOutcome(user, "rejected", submission_id, reason, result.position)


def _set_aside(manifest_path: Path, submission_id: str, state: str) -> None:
    """Rename the manifest out of the watcher's way (hidden), keeping it for the record."""
    taken = manifest_path.with_name(f".{MANIFEST_NAME}.{submission_id}.{state}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(manifest_path, taken)


# --- dropping a submission (the `crds-events submit` and web side) ------------------------


def drop_submission(settings: Settings, user: str, files: list[Path],
                    fields: dict[str, Any]) -> str:
    """Copy ``files`` into ``ingest/<user>/`` and write the manifest last (atomically);
    return the id the server will give the submission (derived from the manifest)."""
    if not user or "/" in user or user.startswith("."):
        raise ValueError(f"user {user!r}: not a user name")
    directory = Path(settings.ingest) / user
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        temp = directory / f".{path.name}.part"
        shutil.copyfile(path, temp)
        os.replace(temp, directory / path.name)  # renamed into place: never half a file
        names.append(path.name)
    manifest = write_manifest(directory, {**fields, "files": names})
    raw = manifest.read_bytes()
    mtime_ns = manifest.stat().st_mtime_ns
    key = ingest_key(user, hashlib.sha1(raw).hexdigest(), mtime_ns)
    return submission_id_for(key, mtime_ns)


class Upload(Protocol):
    """An uploaded file as a web framework hands it over (werkzeug's ``FileStorage``)."""

    filename: str | None

    def save(self, dst: Path) -> None: ...


def drop_uploads(settings: Settings, user: str, uploads: Sequence[Upload],
                 fields: dict[str, Any], *, staging_prefix: str = ".upload-") -> str:
    """Save ``uploads`` in a private staging directory under the root, check the manifest
    there, then `drop_submission` them; the submission id.

    The watcher would reject a bad manifest later; checking first answers the uploader at
    once (`ManifestError`, naming every problem) and leaves nothing in the ingest
    directory. The upload names must have been checked (`is_safe_name`) by the caller.
    """
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix, dir=settings.root))
    try:
        paths = []
        for upload in uploads:
            target = staging / str(upload.filename)
            upload.save(target)
            paths.append(target)
        manifest = write_manifest(staging, {**fields, "files": [p.name for p in paths]})
        parse_manifest(manifest.read_text(encoding="utf-8"), staging,
                       observatory=settings.observatory)
        return drop_submission(settings, user, paths, fields)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
