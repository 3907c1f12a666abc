"""The submission manifest: ``submission.yaml`` in a user's ingest directory.

A submission is the files in ``ingest/<user>/`` plus this manifest, written last (or
renamed into place)::

    deliverer: Jane Doe
    instrument: MIRI
    description: New IPC kernels for the MRS
    change_level: MODERATE          # SEVERE (default) | MODERATE | TRIVIAL
    derive_from: edit               # edit (default) | latest | an explicit pmap name
    kind: batch                     # batch (default) | references | mappings | delete | add_existing
    auto_rename: true
    other_emails: [a@example.org]
    files: [ipc_new.fits]           # optional: default every other (non-hidden) file
    # ReDCaT checklist fields (top level, or grouped under `redcat:`)
    calpipe_version: 1.15.0
    modes_affected: MIRIFULONG
    ...

A ``kind: delete`` submission (CRDS's "delete references") uploads nothing: its ``files``
list (required) names the references to take out of the rules of the derive-from context,
as CRDS gives them in the submission's file list::

    kind: delete
    instrument: NIRCAM
    description: Withdraw the bad flat
    files: [jwst_nircam_flat_0042.fits]

The names are checked as plain file names but not looked for in the drop directory;
processing refuses (BAD FILES) a name that no rmap of the context holds.

`load_manifest` parses it with ``yaml.safe_load`` and checks everything the server relies
on before a single byte is copied: every problem names its field and reason
(`ManifestError.problems`). File names must be plain names inside the ingest directory:
``../``, absolute paths, hidden files and symlinks leading out of the directory are
refused, as are empty files and files over the size limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from crds_events.errors import CrdsEventsError
from crds_events.events.limits import truncate_text
from crds_events.files.reftypes import hst_types
from crds_events.files.safeyaml import YamlLimitError, safe_load_limited
from crds_events.submissions import checklist

__all__ = [
    "MANIFEST_NAME",
    "CHANGE_LEVELS",
    "KINDS",
    "REDCAT_FIELDS",
    "DEFAULT_MAX_FILE_SIZE",
    "Manifest",
    "ManifestError",
    "instruments_for",
    "load_manifest",
    "read_manifest",
    "parse_manifest",
    "write_manifest",
]

MANIFEST_NAME = "submission.yaml"
CHANGE_LEVELS = ("SEVERE", "MODERATE", "TRIVIAL")
KINDS = ("batch", "references", "mappings", "delete", "add_existing")
DEFAULT_MAX_FILE_SIZE = 4 * 1024**3  # 4 GiB: larger than any CRDS reference delivered so far
MAX_MANIFEST_SIZE = 1024 * 1024

# The ReDCaT checklist of the CRDS batch submission form (all optional; typed: yes/no, a
# choice or text, `crds_events.submissions.checklist`).
REDCAT_FIELDS = checklist.NAMES
_CORE_FIELDS = ("deliverer", "instrument", "description", "change_level", "derive_from",
                "kind", "auto_rename", "other_emails", "files", "redcat")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_PMAP = re.compile(r"^(hst|jwst|roman)_\d{4,}\.pmap$")
_HST_INSTRUMENTS = ("acs", "cos", "nicmos", "stis", "wfc3", "wfpc2", "synphot")
_INSTRUMENTS = {
    "jwst": ("fgs", "miri", "nircam", "niriss", "nirspec", "system"),
    "roman": ("wfi", "system"),
}


def instruments_for(observatory: str) -> tuple[str, ...]:
    """The instrument names (lower case) a manifest may name for ``observatory``."""
    if observatory == "hst":
        try:
            return tuple(sorted(hst_types()))
        except Exception:  # noqa: BLE001 - the table is a nicety; fall back to the known list
            return _HST_INSTRUMENTS
    return _INSTRUMENTS.get(observatory, ())


class ManifestError(CrdsEventsError, ValueError):
    """A manifest that cannot be accepted. ``problems`` is a list of ``(field, reason)``;
    ``field`` is ``files[2]``-style for one entry of a list, ``manifest`` for the whole."""

    def __init__(self, path: str | os.PathLike, problems: Sequence[tuple[str, str]]):
        self.path = str(path)
        # Each reason bounded: they quote the user's values, and end up in events and mail.
        self.problems = [(field, truncate_text(reason, 500)) for field, reason in problems]
        lines = "; ".join(f"field {field!r}: {reason}" for field, reason in self.problems)
        super().__init__(f"{self.path}: {lines}")

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``files`` are plain names in ``directory``; ``sizes`` their
    sizes when checked; ``sha1`` the manifest text's digest (for idempotency)."""

    directory: Path
    deliverer: str
    instrument: str  # lower case
    description: str
    change_level: str = "SEVERE"
    derive_from: str = "edit"
    kind: str = "batch"
    auto_rename: bool = True
    other_emails: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    redcat: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sha1: str = ""
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_NAME

    @property
    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.files]

    @property
    def uploads(self) -> tuple[str, ...]:
        """The files to take from the drop directory: none for a delete submission, whose
        ``files`` name references in the rules."""
        return () if self.kind == "delete" else self.files

    def to_yaml_dict(self) -> dict[str, Any]:
        """The manifest as `write_manifest` would write it (no directory/sizes/sha1)."""
        data: dict[str, Any] = {
            "deliverer": self.deliverer, "instrument": self.instrument,
            "description": self.description, "change_level": self.change_level,
            "derive_from": self.derive_from, "kind": self.kind,
            "auto_rename": self.auto_rename, "other_emails": list(self.other_emails),
            "files": list(self.files),
        }
        if self.redcat:
            data["redcat"] = dict(self.redcat)
        return data


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _check_name(field: str, name: object, directory: Path, problems: list) -> str | None:
    """A plain file name inside ``directory``, or None after recording why not."""
    if not isinstance(name, str) or not name:
        problems.append((field, f"expected a file name, got {name!r}"))
        return None
    if os.path.isabs(name) or name.startswith("~"):
        problems.append((field, f"{name!r}: absolute paths are not allowed (name a file in "
                                f"the ingest directory)"))
        return None
    if "/" in name or "\\" in name or name in (".", ".."):
        problems.append((field, f"{name!r}: must be a plain file name, without directories "
                                f"or '..'"))
        return None
    if "\x00" in name:
        problems.append((field, f"{name!r}: NUL in file name"))
        return None
    if _is_hidden(name):
        problems.append((field, f"{name!r}: hidden files cannot be submitted"))
        return None
    if name == MANIFEST_NAME:
        problems.append((field, f"{name!r} is the manifest itself"))
        return None
    return name


def _check_file(field: str, name: str, directory: Path, max_size: int,
                problems: list) -> int | None:
    """The file's size if it is a regular, non-empty file within the size limit that stays
    inside ``directory`` (symlinks are followed only when they stay inside)."""
    path = directory / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        problems.append((field, f"{name!r}: no such file in the drop directory"))
        return None
    except OSError as exc:
        problems.append((field, f"{name!r}: cannot read: {exc.strerror}"))
        return None
    if os.path.islink(path):
        real = Path(os.path.realpath(path))
        root = Path(os.path.realpath(directory))
        if real.parent != root and root not in real.parents:
            # the target is not named: it is a server path
            problems.append((field, f"{name!r}: symlink leads out of the ingest directory"))
            return None
        try:
            info = path.stat()
        except OSError:
            problems.append((field, f"{name!r}: dangling symlink"))
            return None
    if not stat.S_ISREG(info.st_mode):
        problems.append((field, f"{name!r}: not a regular file"))
        return None
    if info.st_size == 0:
        problems.append((field, f"{name!r}: file is empty (0 bytes)"))
        return None
    if info.st_size > max_size:
        problems.append((field, f"{name!r}: {info.st_size} bytes is over the limit of "
                                f"{max_size} bytes"))
        return None
    return info.st_size


def _text(data: Mapping, field: str, problems: list, *, required: bool,
          default: str = "") -> str:
    if field not in data or data[field] is None:
        if required:
            problems.append((field, "missing (required)"))
        return default
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append((field, f"expected text, got {type(value).__name__}"))
        return default
    value = str(value).strip()
    if required and not value:
        problems.append((field, "must not be empty"))
    return value


def default_files(directory: Path) -> list[str]:
    """Every regular, non-hidden entry of ``directory`` except the manifest (sorted).

    Directories (per-submission drop directories beside a flat drop), FIFOs, sockets and
    devices are not candidates: only regular files and symlinks (which `_check_file` then
    judges) are listed."""
    names = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name == MANIFEST_NAME or _is_hidden(entry.name):
            continue
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            continue  # vanished since the listing
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            names.append(entry.name)
    return names


def parse_manifest(
    text: str | bytes,
    directory: str | os.PathLike,
    *,
    observatory: str,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    check_files: bool = True,
    source: str | os.PathLike | None = None,
) -> Manifest:
    """Validate manifest ``text`` for the submission in ``directory``.

    Raises `ManifestError` listing every problem found. With ``check_files`` (default),
    each file must exist in ``directory`` and pass the size and path checks.
    """
    directory = Path(directory)
    source = source if source is not None else directory / MANIFEST_NAME
    problems: list[tuple[str, str]] = []
    try:
        # No aliases at all (a manifest has no use for them; a 461-byte alias bomb once
        # became a 352 MB rejection message), and bounded depth and size.
        data = safe_load_limited(text, max_aliases=0, max_depth=16, max_nodes=100_000)
    except YamlLimitError as exc:
        raise ManifestError(source, [("manifest", str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(source, [("manifest", f"not valid YAML{where}: {reason}")]) from None
    if data is None:
        raise ManifestError(source, [("manifest", "empty manifest")])
    if not isinstance(data, dict):
        raise ManifestError(source, [("manifest", f"expected a mapping of fields, got "
                                                  f"{type(data).__name__}")])
    for key in data:
        if not isinstance(key, str):
            problems.append((str(key), "field names must be text"))
        elif key not in _CORE_FIELDS and key not in REDCAT_FIELDS:
            problems.append((key, "unknown field"))

    deliverer = _text(data, "deliverer", problems, required=True)
    description = _text(data, "description", problems, required=True)
    instrument = _text(data, "instrument", problems, required=True).lower()
    known = instruments_for(observatory)
    if instrument and known and instrument not in known:
        problems.append(("instrument", f"unknown {observatory.upper()} instrument "
                                       f"{instrument.upper()!r} (known: "
                                       f"{', '.join(i.upper() for i in known)})"))
    change_level = _text(data, "change_level", problems, required=False,
                         default="SEVERE").upper()
    if change_level not in CHANGE_LEVELS:
        problems.append(("change_level", f"{change_level!r} is not one of "
                                         f"{', '.join(CHANGE_LEVELS)}"))
    derive_from = _text(data, "derive_from", problems, required=False, default="edit")
    if derive_from.lower() in ("edit", "latest", "operational"):
        derive_from = "latest" if derive_from.lower() == "operational" else derive_from.lower()
    elif not _PMAP.match(derive_from):
        problems.append(("derive_from", f"{derive_from!r}: expected edit, latest or a "
                                        f"context name like {observatory}_0042.pmap"))
    elif not derive_from.startswith(observatory + "_"):
        problems.append(("derive_from", f"{derive_from!r} is not a {observatory} context"))
    kind = _text(data, "kind", problems, required=False, default="batch").lower()
    kind = kind.replace("-", "_").replace(" ", "_")
    if kind not in KINDS:
        problems.append(("kind", f"{kind!r} is not one of {', '.join(KINDS)}"))
    auto_rename = data.get("auto_rename", True)
    if not isinstance(auto_rename, bool):
        problems.append(("auto_rename", f"expected true or false, got {auto_rename!r}"))
        auto_rename = True

    other = data.get("other_emails") or []
    if isinstance(other, str):
        other = [e.strip() for e in re.split(r"[,;\s]+", other) if e.strip()]
    emails: list[str] = []
    if not isinstance(other, list):
        problems.append(("other_emails", f"expected a list of addresses, got "
                                         f"{type(other).__name__}"))
    else:
        for i, address in enumerate(other):
            if not isinstance(address, str) or not _EMAIL.match(address.strip()):
                problems.append((f"other_emails[{i}]", f"{address!r} is not an e-mail address"))
            else:
                emails.append(address.strip())

    redcat: dict[str, Any] = {}
    grouped = data.get("redcat") or {}
    if not isinstance(grouped, dict):
        problems.append(("redcat", f"expected a mapping of checklist fields, got "
                                   f"{type(grouped).__name__}"))
        grouped = {}
    for key, value in [*grouped.items(), *((k, data[k]) for k in REDCAT_FIELDS if k in data)]:
        field = key if key in data else f"redcat.{key}"
        if key not in REDCAT_FIELDS:
            problems.append((field, f"unknown ReDCaT checklist field (known: "
                                    f"{', '.join(REDCAT_FIELDS)})"))
        elif value is not None and not isinstance(value, str | bool | int | float):
            problems.append((field, f"expected text or yes/no, got {type(value).__name__}"))
        else:
            answer, problem = checklist.normalize(key, value)
            if problem:
                problems.append((field, problem))
            elif answer is not None:  # not answered: left out
                redcat[key] = answer

    names: list[str] = []
    if "files" in data and data["files"] is not None:
        listed = data["files"]
        if isinstance(listed, str):
            listed = [listed]
        if not isinstance(listed, list):
            problems.append(("files", f"expected a list of file names, got "
                                      f"{type(listed).__name__}"))
            listed = []
        for i, name in enumerate(listed):
            name = _check_name(f"files[{i}]", name, directory, problems)
            if name is None:
                continue
            if name in names:
                problems.append((f"files[{i}]", f"{name!r} is listed twice"))
            else:
                names.append(name)
        explicit = True
    elif kind == "delete":
        explicit = False
        problems.append(("files", "a delete submission must list the references to delete "
                                  "(their names in the rules)"))
    else:
        explicit = False
        if check_files:
            try:
                names = default_files(directory)
            except OSError as exc:
                problems.append(("files", f"cannot list the drop directory: {exc.strerror}"))

    sizes: dict[str, int] = {}
    if check_files and kind != "delete":  # a delete names references, it uploads nothing
        for i, name in enumerate(names):
            field = f"files[{i}]" if explicit else "files"
            size = _check_file(field, name, directory, max_file_size, problems)
            if size is not None:
                sizes[name] = size
    if not names and not any(f.startswith("files") for f, _ in problems):
        problems.append(("files", "no files to submit in the drop directory"))
    if problems:
        raise ManifestError(source, problems)
    raw = text.encode() if isinstance(text, str) else text
    return Manifest(
        directory=directory, deliverer=deliverer, instrument=instrument,
        description=description, change_level=change_level, derive_from=derive_from,
        kind=kind, auto_rename=auto_rename, other_emails=tuple(emails), files=tuple(names),
        redcat=redcat, sha1=hashlib.sha1(raw).hexdigest(), sizes=sizes,
    )


def read_manifest(path: str | os.PathLike) -> bytes:
    """The bytes of the manifest at ``path``, read without ever blocking.

    Only a regular file is read: a symlink, FIFO, socket or device named ``submission.yaml``
    is refused (`ManifestError`, field ``manifest``). The file is opened with ``O_NOFOLLOW``
    and ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO swapped
    in after any earlier look cannot hang the (single) ingest worker on ``open`` or
    ``read``. At most `MAX_MANIFEST_SIZE` + 1 bytes are read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ManifestError(path, [("manifest", "no submission.yaml here")]) from None
    except OSError as exc:
        reason = ("the manifest must be a regular file, not a symlink"
                  if os.path.islink(path) else f"cannot read: {exc.strerror}")
        raise ManifestError(path, [("manifest", reason)]) from None
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError(path, [("manifest", "the manifest must be a regular file "
                                                    "(not a FIFO, socket or device)")])
        try:
            return stream.read(MAX_MANIFEST_SIZE + 1)
        except OSError as exc:
            raise ManifestError(path, [("manifest", f"cannot read: {exc.strerror}")]) from None


def load_manifest(
    directory: str | os.PathLike,
    *,
    observatory: str,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    check_files: bool = True,
    raw: bytes | None = None,
) -> Manifest:
    """Read and validate ``<directory>/submission.yaml`` (see `parse_manifest`); ``raw``:
    its bytes, already read (`read_manifest`), so what is validated is what was hashed."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if raw is None:
        raw = read_manifest(path)
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(path, [("manifest", f"over {MAX_MANIFEST_SIZE} bytes: too large "
                                                f"for a manifest")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(path, [("manifest", f"not UTF-8 text ({exc.reason} at byte "
                                                f"{exc.start})")]) from None
    return parse_manifest(text, directory, observatory=observatory,
                          max_file_size=max_file_size, check_files=check_files, source=path)


def write_manifest(directory: str | os.PathLike, fields: Mapping[str, Any]) -> Path:
    """Write ``fields`` as ``<directory>/submission.yaml`` atomically: a hidden temporary
    file renamed into place, so a watcher never sees half a manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / MANIFEST_NAME
    text = yaml.safe_dump(dict(fields), sort_keys=False, allow_unicode=True)
    # A unique temporary name: two writers (threads or processes) never share one.
    fd, temp = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", suffix=".tmp", dir=directory)
    try:
        with open(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return final
