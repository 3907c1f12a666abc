"""Sync a CRDS-layout cache from a CRDS server, so that the real `crds` client can use it.

The cache is the one `crds sync` keeps (``$CRDS_PATH``)::

    mappings/<obs>/<name>                 rules files (.pmap/.imap/.rmap)
    references/<obs>/<name>               reference files ("flat" organisation)
    config/<obs>/ref_cache_subdir_mode    "flat": tells crds where references live
    config/<obs>/server_config            the server's get_server_info, a Python literal
    config/<obs>/bad_files.txt            bad_files_list, one name per line

`crds` reads ``server_config`` with `ast.literal_eval` when it is off-line (that is how
it knows the default context and the bad files), so it is written exactly as crds writes
it: ``pprint.pformat`` of the info dict, with the download URLs unwrapped and the
``server``/``status``/``connected`` keys crds adds. It is written LAST, only when every
download succeeded: a half-synced cache never advertises a context it cannot serve.

Each file is streamed into a temporary name beside its destination, its size and sha1 are
checked against the server's ``download_metadata`` (or ``get_file_info_map``), and only
then is it renamed into place; a mismatch leaves the cache as it was.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pprint
import re
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crds_events.client.rpc import RpcClient, RpcClientError, crds_decode
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.files.geis import geis_data_name, is_geis_header

__all__ = [
    "SyncError",
    "SyncProgress",
    "SyncProblem",
    "SyncResult",
    "RichSyncProgress",
    "cache_paths",
    "sync",
]

MAPPING_SUFFIXES = (".pmap", ".imap", ".rmap")
_CONTEXT_KINDS = ("latest", "operational", "edit", "versions", "build")
# A name the server gives us becomes a path in the cache: only plain basenames.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20
_DEFAULT_WORKERS = 4


class SyncError(CrdsEventsError):
    """The sync could not complete; `problems` lists each file and reason."""

    def __init__(self, message: str, problems: Iterable[SyncProblem] = ()) -> None:
        self.problems = list(problems)
        details = "".join(f"\n  {p.name}: {p.reason}" for p in self.problems[:20])
        more = len(self.problems) - 20
        if more > 0:
            details += f"\n  ... and {more} more"
        super().__init__(message + details)


@dataclass(frozen=True)
class SyncProblem:
    name: str
    reason: str


@dataclass
class SyncResult:
    server_url: str
    observatory: str
    cache_dir: Path
    contexts: list[str]
    mappings: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    already_cached: int = 0
    repaired: list[str] = field(default_factory=list)
    not_on_server: list[str] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    default_context: str = ""
    pushed_context: str | None = None

    def summary(self) -> str:
        parts = [f"{len(self.mappings)} mappings"]
        if self.references or self.not_on_server:
            parts.append(f"{len(self.references)} references")
        parts.append(f"{len(self.downloaded)} downloaded ({self.bytes_downloaded} bytes)")
        parts.append(f"{self.already_cached} already cached")
        if self.repaired:
            parts.append(f"{len(self.repaired)} repaired")
        if self.not_on_server:
            parts.append(f"{len(self.not_on_server)} not on the server")
        return f"synced {', '.join(self.contexts)} into {self.cache_dir}: " + ", ".join(parts)


class SyncProgress(Protocol):
    """What `sync` reports while downloading (called from worker threads, serialised)."""

    def start(self, files: int, total_bytes: int) -> None: ...

    def advance(self, name: str, nbytes: int) -> None: ...


class RichSyncProgress:
    """A rich progress bar (bytes, rate, files) on stderr; use as a context manager."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]sync[/bold] {task.fields[name]}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), console=Console(stderr=True),
            transient=True)
        self._bytes_task = None
        self._files = 0
        self._files_total = 0

    def __enter__(self) -> RichSyncProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, files: int, total_bytes: int) -> None:
        # the bar counts bytes; the file count goes in the label
        self._bytes_task = self._progress.add_task("download", total=total_bytes or None,
                                                   name=f"0/{files} files")
        self._files_total = files

    def advance(self, name: str, nbytes: int) -> None:
        self._files += 1
        self._progress.update(self._bytes_task, advance=nbytes,
                              name=f"{self._files}/{self._files_total} files {name}")


@dataclass(frozen=True)
class _Paths:
    mappings: Path
    references: Path
    config: Path


def cache_paths(cache_dir: str | os.PathLike, observatory: str) -> dict[str, Path]:
    """The directories of ``observatory`` in a CRDS cache (mappings, references, config)."""
    root = Path(cache_dir)
    return {kind: root / kind / observatory for kind in ("mappings", "references", "config")}


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise SyncError(f"the server named a {what} {name!r}: not a plain file name")
    return name


def _server_info(client: RpcClient) -> dict[str, Any]:
    info = client.call("get_server_info")
    if not isinstance(info, dict):
        raise SyncError(f"{client.server_url}: get_server_info answered {type(info).__name__}, "
                        "not a dict")
    missing = [k for k in ("observatory", "mapping_url") if k not in info]
    if missing:
        raise SyncError(f"{client.server_url}: get_server_info lacks {', '.join(missing)}")
    # crds unwraps the {"checked", "unchecked"} URL forms before caching the info
    for key in ("reference_url", "mapping_url", "config_url", "pickle_url"):
        value = info.get(key)
        if isinstance(value, dict) and "unchecked" in value:
            info[key] = value["unchecked"]
    return info


def _resolve_context(name: str, info: dict[str, Any], observatory: str) -> str:
    """A mapping name as is; ``latest``/``edit``/... or ``<obs>-latest`` through the info."""
    name = name.strip()
    if name.endswith(MAPPING_SUFFIXES):
        return _check_name(name, "context")
    kind = name.removeprefix(f"{observatory}-")
    if kind in _CONTEXT_KINDS:
        for key in (f"{kind}_context", "operational_context" if kind == "latest" else ""):
            if key and info.get(key):
                return _check_name(info[key], "context")
        raise SyncError(f"--contexts {name}: the server reports no {kind} context")
    raise SyncError(f"--contexts {name}: expected a .pmap/.imap/.rmap name or one of "
                    f"{', '.join(_CONTEXT_KINDS)}")


def _base_url(info: dict[str, Any], key: str, observatory: str, client: RpcClient,
              default_path: str) -> str:
    value = info.get(key)
    if isinstance(value, dict):
        value = value.get(observatory)
    if not isinstance(value, str) or not value or value == "none":
        value = f"{client.server_url}/{default_path}/{observatory}/"
    return value if value.endswith("/") else value + "/"


def _metadata(client: RpcClient, info: dict[str, Any], observatory: str, names: list[str],
              authoritative: bool) -> dict[str, dict[str, Any]]:
    """{name: {"size", "sha1sum", ...}} for ``names`` the server knows."""
    if authoritative or "download_metadata" not in info:
        fields = ["size", "sha1sum", "state", "rejected", "blacklisted"] if authoritative \
            else ["size", "sha1sum"]
        found = client.call("get_file_info_map", observatory, sorted(names), fields)
    else:
        found = crds_decode(info["download_metadata"])
    if not isinstance(found, dict):
        raise SyncError(f"{client.server_url}: file metadata is {type(found).__name__}, "
                        "not a dict")
    return {name: found[name] for name in names
            if isinstance(found.get(name), dict)}


def _expected(meta: dict[str, Any], name: str) -> tuple[int, str]:
    try:
        size = int(meta["size"])
        sha1 = str(meta.get("sha1sum", "") or "")
    except (KeyError, TypeError, ValueError):
        raise SyncError(f"{name}: the server's metadata has no valid size: {meta!r}") from None
    return size, sha1


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


class _Downloader:
    """Streams one file to a temporary name, checks size and sha1, renames it into place."""

    def __init__(self, client: RpcClient, progress: SyncProgress | None) -> None:
        self.client = client
        self.progress = progress
        self._lock = threading.Lock()

    def __call__(self, name: str, url: str, dest: Path, size: int, sha1: str) -> int:
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha1()
        received = 0
        try:
            with self.client.open_url(url) as response, open(temp, "wb") as out:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    received += len(block)
                    if received > size:  # never let a server fill the disk
                        raise SyncError(f"{name}: the download exceeds the server's size {size}")
                    digest.update(block)
                    out.write(block)
            if received != size:
                raise SyncError(f"{name}: downloaded {received} bytes, the server's size is "
                                f"{size}")
            if sha1 and sha1 != "none" and digest.hexdigest() != sha1:
                raise SyncError(f"{name}: sha1 {digest.hexdigest()} does not match the "
                                f"server's sha1sum {sha1}")
            os.replace(temp, dest)
        finally:
            temp.unlink(missing_ok=True)
        if self.progress is not None:
            with self._lock:
                self.progress.advance(name, received)
        return received


def sync(server_url: str, contexts: Iterable[str], cache_dir: str | os.PathLike,
         fetch_references: bool = False, check_files: bool = False,
         push_context_key: str | None = None, progress: SyncProgress | None = None, *,
         workers: int = _DEFAULT_WORKERS, timeout: float = 30.0) -> SyncResult:
    """Bring ``cache_dir`` up to date with ``contexts`` on ``server_url``.

    Downloads every mapping of the contexts' closures (and, with ``fetch_references``,
    every reference they name that the server has) that is missing or of the wrong size;
    ``check_files`` also verifies the sha1 of files already cached against the server's
    catalog and replaces those that differ. Then writes the cache config (last), and with
    ``push_context_key`` tells the server which context this cache now defaults to.
    Raises `SyncError` (the config untouched) when any file could not be synced.
    """
    client = RpcClient(server_url, timeout=timeout)
    try:
        info = _server_info(client)
    except RpcClientError as exc:
        raise SyncError(f"{client.server_url}: {exc}") from None
    observatory = str(info["observatory"]).lower()
    if not re.fullmatch(r"[a-z]{1,8}", observatory):
        raise SyncError(f"{client.server_url}: observatory {observatory!r} is not valid")
    wanted = [c for c in (contexts or []) if c and c.strip()]
    if not wanted:
        raise SyncError("--contexts: name at least one context")
    resolved = list(dict.fromkeys(_resolve_context(c, info, observatory) for c in wanted))
    paths = _Paths(**cache_paths(cache_dir, observatory))
    result = SyncResult(server_url=client.server_url, observatory=observatory,
                        cache_dir=Path(cache_dir), contexts=resolved)
    _check_layout(paths)

    try:
        mappings: set[str] = set()
        for context in resolved:
            names = client.call("get_mapping_names", context)
            if not isinstance(names, list):
                raise SyncError(f"get_mapping_names({context}): not a list")
            mappings |= {_check_name(n, "mapping") for n in names}
            mappings.add(context)
        references: set[str] = set()
        conjugates: set[str] = set()
        if fetch_references:
            for context in resolved:
                names = client.call("get_reference_names", context)
                if not isinstance(names, list):
                    raise SyncError(f"get_reference_names({context}): not a list")
                references |= {_check_name(n, "reference") for n in names
                               if isinstance(n, str) and n.upper() not in ("N/A", "OMIT")
                               and not n.startswith("NOT FOUND")}
        # GEIS headers (.r1h) come with their data files (.r1d), as crds sync fetches both;
        # the rules do not name those, so one the server lacks is not reported missing
        conjugates = {geis_data_name(n) for n in references if is_geis_header(n)} - references
        meta = _metadata(client, info, observatory,
                         sorted(mappings | references | conjugates), check_files)
    except RpcClientError as exc:
        raise SyncError(f"{client.server_url}: {exc}") from None

    missing_mappings = sorted(mappings - meta.keys())
    if missing_mappings:
        raise SyncError(f"{client.server_url} does not serve every mapping of "
                        f"{', '.join(resolved)}",
                        [SyncProblem(n, "not on the server") for n in missing_mappings])
    result.mappings = sorted(mappings)
    result.references = sorted((references | conjugates) & meta.keys())
    result.not_on_server = sorted(references - meta.keys())

    mapping_base = _base_url(info, "mapping_url", observatory, client, "unchecked_get/mappings")
    reference_base = _base_url(info, "reference_url", observatory, client,
                               "unchecked_get/references")
    jobs, problems = [], []
    for names, directory, base in ((result.mappings, paths.mappings, mapping_base),
                                   (result.references, paths.references, reference_base)):
        for name in names:
            size, sha1 = _expected(meta[name], name)
            dest = directory / name
            state = _cached_state(dest, size, sha1, check_files)
            if state == "ok":
                result.already_cached += 1
                continue
            if state == "differs":
                result.repaired.append(name)
            jobs.append((name, base + name, dest, size, sha1))
    _note_bad_files(result, info, meta, check_files)

    download = _Downloader(client, progress)
    if progress is not None:
        progress.start(len(jobs), sum(job[3] for job in jobs))
    if jobs:
        with ThreadPoolExecutor(max_workers=max(1, workers),
                                thread_name_prefix="crds-events-sync") as pool:
            futures = {pool.submit(download, *job): job[0] for job in jobs}
            for future, name in futures.items():
                try:
                    result.bytes_downloaded += future.result()
                    result.downloaded.append(name)
                except (SyncError, RpcClientError, OSError, http.client.HTTPException) as exc:
                    problems.append(SyncProblem(name, _reason(exc, name)))
    if problems:
        raise SyncError(f"sync from {client.server_url} failed for {len(problems)} file(s); "
                        "the cache config was not updated", problems)
    result.downloaded.sort()
    result.repaired.sort()

    result.default_context = str(info.get("latest_context")
                                 or info.get("operational_context") or "")
    if result.default_context and result.default_context not in mappings:
        result.warnings.append(
            f"the server's default context {result.default_context} is not among the synced "
            "contexts: off-line crds will need an explicit context")
    _write_config(paths, info, client.server_url)
    if push_context_key:
        result.pushed_context = push_context(client, observatory, info, push_context_key)
    return result


def _reason(exc: BaseException, name: str) -> str:
    text = str(exc)
    return text.removeprefix(f"{name}: ")


def _note_bad_files(result: SyncResult, info: dict[str, Any], meta: dict[str, Any],
                    flags_known: bool) -> None:
    """Synced files the server lists as bad (and, from get_file_info_map, those whose
    rejected/blacklisted flags are set): usable, but crds will warn about them."""
    synced = set(result.mappings) | set(result.references)
    bad = set(info.get("bad_files_list") or []) & synced
    if flags_known:
        for name in synced:
            if any(str(meta[name].get(flag, "false")).lower() not in ("false", "", "none")
                   for flag in ("rejected", "blacklisted")):
                bad.add(name)
    result.bad_files = sorted(bad)
    result.warnings.extend(f"{name}: marked bad on the server" for name in result.bad_files)


def _cached_state(dest: Path, size: int, sha1: str, check_sha1: bool) -> str:
    """"ok", "absent", or "differs" (wrong size, or wrong sha1 when checked)."""
    try:
        actual = dest.stat().st_size
    except FileNotFoundError:
        return "absent"
    if actual != size:
        return "differs"
    if check_sha1 and sha1 and sha1 != "none" and sha1_file(dest)[0] != sha1:
        return "differs"
    return "ok"


def _check_layout(paths: _Paths) -> None:
    mode_file = paths.config / "ref_cache_subdir_mode"
    try:
        mode = mode_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SyncError(f"{mode_file}: cannot read: {exc}") from None
    if mode != "flat":
        raise SyncError(f"{mode_file}: this cache keeps references by {mode!r}; crds-events "
                        "sync writes the 'flat' layout (use a new cache, or "
                        "`crds sync --organize=flat` first)")


def _write_config(paths: _Paths, info: dict[str, Any], server_url: str) -> None:
    """The files crds reads off-line; server_config last, as the commit point."""
    mode_file = paths.config / "ref_cache_subdir_mode"
    if not mode_file.exists():
        _atomic_write(mode_file, "flat")
    bad = info.get("bad_files_list") or []
    if isinstance(bad, str):
        bad = bad.split()
    _atomic_write(paths.config / "bad_files.txt", "\n".join(str(b) for b in bad))
    cached = dict(info)
    cached.setdefault("bad_files_list", list(bad))
    cached["server"] = server_url
    cached["status"] = "server"
    cached["connected"] = True
    _atomic_write(paths.config / "server_config", pprint.pformat(cached))


def push_context(client: RpcClient, observatory: str, info: dict[str, Any], key: str) -> str:
    """Tell the server which context this cache now defaults to, as `crds sync
    --push-context KEY` does ("latest", or "operational" for servers predating it). KEY
    is the pipeline's secret (issued by `crds-events pipeline add`): never echoed."""
    kind = "latest" if info.get("latest_context") else "operational"
    context = str(info.get(f"{kind}_context") or "")
    if not context:
        raise SyncError("--push-context: the server reports no latest/operational context")
    try:
        client.call("push_remote_context", observatory, kind, key, context)
    except RpcClientError as exc:
        raise SyncError(f"--push-context: the server refused: {exc.message}") from None
    return context

