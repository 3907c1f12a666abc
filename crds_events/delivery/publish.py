"""Delivery to the archive: confirmed files linked into the delivery directory with a ``.cat``.

The protocol (CRDS's, with SDP's archive poller on the other side):

1. **Allocate** (at confirm, inside the confirm's write transaction): the submission gets
   the next serial and so its delivery name ``<obs>_<nnnn>``; `DeliveryRequested` records
   it on the stream ``delivery:<name>`` with the idempotency key
   ``delivery-requested:<submission id>``, so asking again (the handler after the review,
   a replay, a restart) returns the same name and never allocates a second serial. A GEIS
   header and its data file (``x.r1h``, ``x.r1d``) are one reference: a delivery that
   holds only one of them is refused.
2. **Publish** (the delivery worker, outside any transaction): every file is hard-linked
   from the file store into ``settings.delivery`` (read-only; a read-only copy where a link
   is impossible), the manifest ``<name>.cat`` (one file name per line) is written
   atomically and LAST, with a permanent copy in ``settings.catalogs``; then
   `DeliveryCreated` (key ``delivery:<name>:created``).
3. The archive renames ``.cat`` -> ``.cat_proc`` -> deleted (or ``.cat_err``);
   `crds_events.delivery.reconcile` turns what is on disk into events.

Crash safety of publish. The steps are: links; the manifest text into a hidden temporary
``.<name>.cat.tmp`` in the delivery directory (fsync'd); the permanent catalog copy
(temp + fsync + rename); the rename of the temporary to ``<name>.cat``. A restarted worker
reads the disk to know how far it got: a manifest in any state means published; a catalog
copy without the temporary means the manifest was published and the archive has already
consumed it (the temporary is created before the catalog copy and only disappears by the
rename); otherwise it (re)does the remaining steps. So a restart never writes a second
``.cat`` for a submission, nor re-publishes one the archive already took.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.delivery.directory import check_directory, directory_state
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.files.geis import pair_names
from crds_events.store.filestore import FileStore, fsync_path
from crds_events.store.interface import EventReader, EventStore, RecordedEvent, Transaction

__all__ = [
    "DeliveryError",
    "DeliveryInfo",
    "MANIFEST_SUFFIXES",
    "allocate",
    "delivery_name",
    "delivery_states",
    "list_deliveries",
    "manifest_name_of",
    "pending_deliveries",
    "publish",
    "publish_many",
    "read_manifest",
    "requested_key",
]

MANIFEST_SUFFIXES = (".cat", ".cat_proc", ".cat_err")
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_MANIFEST_RE = re.compile(r"^(?P<name>[^./][^/]*?)\.cat(?P<state>_proc|_err)?$")
_DELIVERY_TYPES = frozenset({
    ev.DeliveryRequested.type, ev.DeliveryCreated.type, ev.DeliveryArchiving.type,
    ev.DeliveryFailed.type, ev.DeliveryArchived.type, ev.DeliveryProblemFound.type,
    ev.DeliveryRedelivered.type,
})
_STATE_OF = {
    ev.DeliveryRequested.type: "requested",
    ev.DeliveryCreated.type: "created",
    ev.DeliveryArchiving.type: "archiving",
    ev.DeliveryFailed.type: "failed",
    ev.DeliveryArchived.type: "archived",
}


class DeliveryError(CrdsEventsError, RuntimeError):
    """A delivery that cannot be published (the message names the delivery and why)."""


def delivery_name(observatory: str, serial: int) -> str:
    """``jwst_0042``: the observatory and the serial, at least four digits."""
    return f"{observatory}_{serial:04d}"


def requested_key(submission_id: str) -> str:
    """The idempotency key of a submission's delivery allocation (one per submission)."""
    return f"delivery-requested:{submission_id}"


def manifest_name_of(filename: str) -> tuple[str, str] | None:
    """``("jwst_0042", ".cat_proc")`` for ``jwst_0042.cat_proc``; None for anything else."""
    match = _MANIFEST_RE.match(filename)
    if match is None:
        return None
    return match.group("name"), ".cat" + (match.group("state") or "")


# --- 1. allocation -------------------------------------------------------------------------


def _check_geis_pairs(submission_id: str, files: Sequence[str]) -> None:
    """A GEIS reference is delivered whole: its header and its data file in one ``.cat``
    (processing pairs them; this refuses a delivery that would split one)."""
    found = pair_names(files)
    unpaired = found.headers_without_data + found.data_without_header
    if unpaired:
        raise DeliveryError(f"submission {submission_id}: GEIS header and data file must be "
                            f"delivered together; unpaired: {', '.join(unpaired)}")


def _serials_in_log(log: EventReader, observatory: str) -> int:
    """The highest serial any ``delivery:<obs>_<n>`` stream has (0 if none).

    A range over the stream index: cheap however long the log is.
    """
    prefix = f"delivery:{observatory}_"
    best = 0
    for stream in log.streams_with_prefix(prefix):
        tail = stream[len(prefix):]
        if tail.isdigit():
            best = max(best, int(tail))
    return best


def _serials_on_disk(directory: Path | None, observatory: str) -> int:
    """The highest serial of a permanent catalog copy already in ``directory`` (0 if none):
    a serial is never reused, even if the log was started afresh beside old catalogs."""
    best = 0
    if directory is None or not directory.is_dir():
        return 0
    prefix = f"{observatory}_"
    for entry in os.scandir(directory):
        found = manifest_name_of(entry.name)
        if found and found[0].startswith(prefix) and found[0][len(prefix):].isdigit():
            best = max(best, int(found[0][len(prefix):]))
    return best


def allocate(
    tx: Transaction,
    settings: Settings,
    submission_id: str,
    files: Sequence[str],
    *,
    observatory: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """The delivery name of ``submission_id``, allocating the next serial on first call.

    Call inside a write transaction (``tx``); the serial is taken
    under its write lock, so concurrent confirms get distinct serials. Idempotent per
    submission (key `requested_key`): a second call returns the first name.
    """
    observatory = observatory or settings.observatory
    key = requested_key(submission_id)
    earlier = tx.find_key(key)
    if earlier is not None:
        return earlier.stream.split(":", 1)[1]
    if not files:
        raise DeliveryError(f"submission {submission_id}: nothing to deliver (no files)")
    _check_geis_pairs(submission_id, files)
    serial = max(_serials_in_log(tx, observatory),
                 _serials_on_disk(settings.catalogs, observatory)) + 1
    name = delivery_name(observatory, serial)
    tx.append(
        ev.delivery_stream(name),
        ev.DeliveryRequested(delivery=name, observatory=observatory,
                             submission_id=submission_id, files=tuple(files), serial=serial),
        0,  # NO_STREAM: a fresh name, or the append fails rather than mix two deliveries
        meta=meta, idempotency_key=key,
    )
    return name


# --- read model from the log -----------------------------------------------------------


@dataclasses.dataclass
class DeliveryInfo:
    """One delivery as its stream tells it (state and when each state was reached)."""

    name: str
    state: str = ""  # requested | created | archiving | failed | archived
    observatory: str = ""
    submission_id: str = ""
    files: tuple[str, ...] = ()
    catalog: str = ""
    reason: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    times: dict[str, str] = dataclasses.field(default_factory=dict)  # state -> recorded_at
    version: int = 0
    redelivery_of: str = ""  # the failed delivery this one delivers again
    redelivered_as: str = ""  # the delivery that delivers this failed one again

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["files"] = list(self.files)
        return data


def _fold(info: DeliveryInfo, type_name: str, data: Mapping[str, Any], recorded_at: str,
          version: int) -> None:
    info.version = version
    if type_name == ev.DeliveryProblemFound.type:
        info.problems.append(data.get("problem", ""))
        return
    if type_name == ev.DeliveryRedelivered.type:  # the state stays "failed"
        info.redelivered_as = data.get("redelivery", "")
        info.times.setdefault("redelivered", recorded_at)
        return
    state = _STATE_OF.get(type_name)
    if state is None:
        return
    info.state = state
    info.times.setdefault(state, recorded_at)
    if type_name in (ev.DeliveryRequested.type, ev.DeliveryCreated.type):
        info.observatory = data.get("observatory", info.observatory)
        info.submission_id = data.get("submission_id", info.submission_id)
        info.files = tuple(data.get("files", info.files))
        info.catalog = data.get("catalog", info.catalog)
        info.redelivery_of = data.get("redelivery_of", info.redelivery_of)
    elif type_name == ev.DeliveryFailed.type:
        info.reason = data.get("reason", "")


def delivery_states(log: EventReader, names: Iterable[str] | None = None
                    ) -> dict[str, DeliveryInfo]:
    """Every delivery (or only ``names``) folded from the log, by name.

    Reads the ``delivery:`` streams through the stream index, so the cost follows the
    number of delivery events, not the length of the log. ``log``: a store or a
    transaction.
    """
    if names is None:
        records = log.read_prefix("delivery:", types=_DELIVERY_TYPES)
    else:
        records = []
        for name in names:
            records += log.read_stream(ev.delivery_stream(name))
    result: dict[str, DeliveryInfo] = {}
    for record in records:
        if record.type not in _DELIVERY_TYPES:
            continue  # e.g. FileCataloged on the same stream
        name = record.stream.split(":", 1)[1]
        info = result.get(name)
        if info is None:
            info = result[name] = DeliveryInfo(name)
        _fold(info, record.type, record.data, record.recorded_at, record.version)
    return {name: info for name, info in result.items() if info.state}


def list_deliveries(store: EventReader) -> list[DeliveryInfo]:
    """Every delivery, oldest first (by the time it was requested or created)."""
    infos = delivery_states(store)
    return sorted(infos.values(),
                  key=lambda i: (i.times.get("requested") or i.times.get("created", ""), i.name))


def pending_deliveries(store: EventReader) -> list[str]:
    """Names requested but not yet published (`DeliveryCreated` missing), oldest first."""
    return [name for name, info in delivery_states(store).items() if info.state == "requested"]


# --- 2. publish ----------------------------------------------------------------------------


def manifest_text(files: Iterable[str]) -> str:
    return "".join(f"{name}\n" for name in files)


def read_manifest(path: Path) -> list[str]:
    """The file names a ``.cat`` lists (blank lines ignored; CRDS-style extra columns after
    the name are ignored too)."""
    names = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line:
            names.append(line.split()[0])
    return names


def _same_content(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if not stat.S_ISREG(os.lstat(b).st_mode):
            return False  # a FIFO (or anything but a file) is never read: it could block
        if os.path.samefile(a, b):
            return True
        return a.stat().st_size == b.stat().st_size and sha1_file(a) == sha1_file(b)
    return False


def _link_read_only(source: Path, target: Path) -> str:
    """Hard-link ``source`` as ``target`` (a read-only copy where linking is impossible).
    ``"linked"``, ``"copied"`` or ``"present"`` (already there with the same content)."""
    if target.exists():
        if _same_content(source, target):
            return "present"
        raise DeliveryError(f"{target}: a different file with this name is already in the "
                            f"delivery directory; remove it or deliver under another name")
    try:
        os.link(source, target)
        return "linked"
    except FileExistsError:
        return _link_read_only(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    temp = target.with_name(f".{target.name}.copy")
    shutil.copyfile(source, temp)
    os.chmod(temp, _READ_ONLY)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, target)
    return "copied"


@dataclasses.dataclass(frozen=True)
class Paths:
    manifest: Path
    temporary: Path
    catalog: Path

    @classmethod
    def of(cls, settings: Settings, name: str) -> Paths:
        delivery = Path(settings.delivery)
        return cls(delivery / f"{name}.cat", delivery / f".{name}.cat.tmp",
                   Path(settings.catalogs) / f"{name}.cat")

    def manifest_present(self) -> bool:
        return any(self.manifest.with_name(self.manifest.stem + suffix).exists()
                   for suffix in MANIFEST_SUFFIXES)


def _problem(store: EventStore, name: str, problem: str, missing: Sequence[str] = (),
             meta: Mapping[str, Any] | None = None) -> None:
    digest = hashlib.sha1(problem.encode()).hexdigest()[:12]
    store.record(ev.DeliveryProblemFound(delivery=name, problem=problem, missing=tuple(missing)),
                 meta=meta, idempotency_key=f"delivery:{name}:problem:{digest}")


def _fsync_all(paths: Sequence[Path]) -> None:
    """fsync many files at once: in parallel, the file system commits them together
    (one at a time costs a journal commit each, ~4 ms here; 200 together take ~80 ms)."""
    if len(paths) <= 1:
        for path in paths:
            fsync_path(path)
        return
    with ThreadPoolExecutor(max_workers=min(16, len(paths)),
                            thread_name_prefix="crds-events-fsync") as pool:
        list(pool.map(fsync_path, paths))


@dataclasses.dataclass
class _Plan:
    name: str
    request: RecordedEvent  # of DeliveryRequested
    sources: dict[str, Path]
    paths: Paths
    meta: dict[str, Any]

    @property
    def requested(self) -> ev.DeliveryRequested:
        return self.request.event


def _plan(settings: Settings, store: EventStore, name: str
          ) -> _Plan | ev.DeliveryCreated | DeliveryError | None:
    records = store.read_stream(ev.delivery_stream(name))
    request = next((r for r in records if r.type == ev.DeliveryRequested.type), None)
    if request is None:
        return None
    for record in records:
        if record.type == ev.DeliveryCreated.type:
            return record.event  # type: ignore[return-value]
    requested: ev.DeliveryRequested = request.event  # type: ignore[assignment]
    meta = {"actor": request.actor, "causation_id": request.position,
            "correlation_id": request.meta.get("correlation_id") or request.position}
    files = FileStore(settings.store, requested.observatory)
    sources = {}
    for filename in requested.files:
        try:
            sources[filename] = files.path_for(filename)
        except ValueError:  # FileStoreError: not a plain name
            sources[filename] = Path("/nonexistent") / "bad-name"
    missing = [f for f, path in sources.items() if not path.is_file()]
    if missing:
        problem = (f"delivery {name}: {len(missing)} file(s) are not in the file store "
                   f"({files.directory}): {', '.join(missing)}; no .cat was written")
        _problem(store, name, problem, missing, meta)
        return DeliveryError(problem)
    return _Plan(name, request, sources, Paths.of(settings, name), meta)


def _directory_unavailable(settings: Settings, store: EventStore) -> str:
    """Why the delivery directory is not to be written now ('' : it is ours, or no marker
    was recorded yet, before the watcher's first start)."""
    marker = directory_state(store, settings.observatory).marker
    return check_directory(Path(settings.delivery), marker) if marker else ""


def publish_many(settings: Settings, store: EventStore, names: Sequence[str]
                 ) -> dict[str, ev.DeliveryCreated | DeliveryError | None]:
    """Publish several deliveries with one fsync round per step and one transaction.

    Per delivery: the `DeliveryCreated` (also when recorded before), None when it is not
    (yet) requested, or the `DeliveryError` that stopped it (a `DeliveryProblemFound` is
    recorded then, and no manifest written).
    """
    results: dict[str, ev.DeliveryCreated | DeliveryError | None] = {}
    plans: list[_Plan] = []
    for name in dict.fromkeys(names):
        plan = _plan(settings, store, name)
        if isinstance(plan, _Plan):
            plans.append(plan)
        else:
            results[name] = plan
    if not plans:
        return results
    delivery_dir, catalogs = Path(settings.delivery), Path(settings.catalogs)
    unavailable = _directory_unavailable(settings, store)
    if unavailable:
        # A .cat written into the wrong directory (an empty mount point) would never reach
        # the archive, and would seem archived once the real one is back: wait for it.
        for plan in plans:
            results[plan.name] = DeliveryError(f"delivery {plan.name}: not published: "
                                               f"{unavailable}")
        return results
    delivery_dir.mkdir(parents=True, exist_ok=True)
    catalogs.mkdir(parents=True, exist_ok=True)
    to_write: list[_Plan] = []
    for plan in plans:
        paths = plan.paths
        if paths.manifest_present() or (paths.catalog.exists() and not paths.temporary.exists()):
            continue  # published before a crash (and maybe consumed by the archive since)
        try:
            for filename, source in plan.sources.items():
                _link_read_only(source, delivery_dir / filename)
        except (DeliveryError, OSError) as exc:
            _problem(store, plan.name, str(exc), (), plan.meta)
            results[plan.name] = DeliveryError(str(exc))
            continue
        to_write.append(plan)
    # The temporaries are durable before any catalog copy exists (see the module doc).
    for plan in to_write:
        plan.paths.temporary.write_text(manifest_text(plan.requested.files), encoding="utf-8")
    _fsync_all([p.paths.temporary for p in to_write])
    if to_write:
        fsync_path(delivery_dir)
    catalog_temps = []
    for plan in to_write:
        temp = plan.paths.catalog.with_name(f".{plan.paths.catalog.name}.tmp")
        temp.write_text(manifest_text(plan.requested.files), encoding="utf-8")
        catalog_temps.append(temp)
    _fsync_all(catalog_temps)
    for plan, temp in zip(to_write, catalog_temps, strict=True):
        os.replace(temp, plan.paths.catalog)  # the permanent copy
    if to_write:
        fsync_path(catalogs)
    for plan in to_write:
        os.replace(plan.paths.temporary, plan.paths.manifest)  # published
    if to_write:
        fsync_path(delivery_dir)
    created_events = []
    with store.transaction() as tx:
        for plan in plans:
            if plan.name in results:
                continue
            requested = plan.requested
            created = ev.DeliveryCreated(
                delivery=plan.name, observatory=requested.observatory,
                submission_id=requested.submission_id, files=requested.files,
                catalog=str(plan.paths.catalog))
            tx.record(created, meta=plan.meta, idempotency_key=f"delivery:{plan.name}:created")
            created_events.append(created)
    for created in created_events:
        results[created.delivery] = created
    return results


def publish(settings: Settings, store: EventStore, name: str) -> ev.DeliveryCreated | None:
    """Link the files of delivery ``name`` and write its ``.cat``; record `DeliveryCreated`.

    Returns the event (also when it was recorded before), or None when the delivery is not
    (yet) requested in the log. Files missing from the store (or a different file under a
    delivered name in the delivery directory) are a `DeliveryError`, after a
    `DeliveryProblemFound` is recorded; no manifest is written then.
    """
    result = publish_many(settings, store, [name])[name]
    if isinstance(result, DeliveryError):
        raise result
    return result
