"""The JSON-RPC methods of the CRDS protocol, with the parameters and results the ``crds``
client (``crds.client.api``) uses.

Every method checks its parameters (types, the observatory this server manages, a context
it knows) and raises `RpcError` with a message naming the parameter and the reason. State
comes from the projection tables (`crds_events.web.catalog`); best references from
`crds_events.rules` with loaded contexts cached per pmap name. A context may be named as
CRDS names it (`resolve_mapping`: a mapping name or a specifier such as ``hst-acs-edit``).
The best-references methods are in `crds_events.web.methods_bestrefs`, the download-URL
methods in `crds_events.web.methods_urls`, ``get_sqlite_db`` in
`crds_events.web.methods_sqlite`; they reuse the parameter checks here.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from flask import request

from crds_events import __version__ as version
from crds_events import events as ev
from crds_events.accounts import users
from crds_events.contexts import pointers as contexts
from crds_events.contexts import remote, specs
from crds_events.contexts.pointers import context_pointers
from crds_events.rules.bestrefs import Context, load_context
from crds_events.rules.context import ContextLoadError, InstrumentContext, MappingStore
from crds_events.rules.index import ReferenceIndex
from crds_events.rules.parse import MappingError
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.reader import LogReader
from crds_events.submissions import uploadarea
from crds_events.web import affected, catalog, get_db, get_state, jpoll, upload
from crds_events.web.rpc import RpcError, crds_encode, rpc_method, warn

__all__ = ["loaded_context", "server_info", "resolve_context", "resolve_mapping",
           "CONTEXT_CACHE_SIZE"]

CONTEXT_CACHE_SIZE = 8  # loaded pmaps kept in memory (an HST context is ~50 MB compiled)
MAX_HEADERS_PER_RPC = 500
MAX_BESTREFS_PER_RPC = 5000
POINTER_KINDS = ("latest", "operational", "edit", "versions", "build")
_FILE_FIELDS = ("name", "observatory", "instrument", "filekind", "type", "state", "sha1sum",
                "size", "rejected", "blacklisted", "reject_reason", "useafter_date",
                "delivery_date", "delivery", "submission_id", "reference_file_type",
                "available")


# --- parameter checks -----------------------------------------------------------------------


def _settings():
    return get_state().settings


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RpcError(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _observatory(value: Any, what: str = "observatory") -> str:
    observatory = _settings().observatory
    if value is None:
        return observatory
    if not isinstance(value, str) or value.lower() != observatory:
        raise RpcError(f"{what} {value!r}: unknown observatory; this server manages "
                       f"{observatory!r}")
    return observatory


def _str_list(value: Any, what: str, *, optional: bool = True) -> list[str] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RpcError(f"{what}: expected a list of strings, got {type(value).__name__}")
    return list(value)


def _header(value: Any, what: str = "header") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RpcError(f"{what}: expected an object of keyword: value, got "
                       f"{type(value).__name__}")
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool) and item is not None:
            raise RpcError(f"{what}[{key!r}]: expected a string or number, got "
                           f"{type(item).__name__}")
    return value


def _pointers(conn) -> dict[str, str]:
    pointers = context_pointers(LogReader(conn), _settings().observatory)
    latest = pointers.get("latest") or pointers.get("operational")
    if latest is None:
        pmaps = [name for name, *_ in catalog.available_files(conn, "mapping")
                 if name.endswith(".pmap")]
        latest = pmaps[-1] if pmaps else None
    pointers["latest"] = pointers["operational"] = latest
    for kind in ("edit", "versions", "build"):
        pointers.setdefault(kind, latest)
    return pointers


def _pointer(conn, kind: str) -> str:
    context = _pointers(conn).get(kind)
    if not context:
        raise RpcError(f"no {kind} context is set on this server yet")
    return context


def resolve_context(conn, value: Any, what: str = "context") -> str:
    """A known pmap name for ``value``: a pmap name, ``<obs>-latest|edit|...`` or a date."""
    name = resolve_mapping(conn, value, what)
    if not name.endswith(".pmap"):
        raise RpcError(f"{what} {value!r}: names {name}, expected a .pmap (or "
                       f"{_settings().observatory}-latest, -edit, a date)")
    return name


def resolve_mapping(conn, value: Any, what: str = "context") -> str:
    """A known mapping name for ``value``: a pmap, imap or rmap name, or a CRDS context
    specifier (`crds_events.contexts.specs`: ``hst-latest``, ``hst-acs-edit``,
    ``jwst-miri-2024-01-01T00:00:00``, a date). A date before the first recorded latest
    answers the earliest known context and says so (`crds_events.web.rpc.warn`)."""
    text = _text(value, what)
    observatory = _settings().observatory
    spec = specs.parse_spec(text)
    if spec is not None:
        try:
            resolved = specs.resolve_spec(
                spec, observatory, lambda kind: _pointer(conn, kind), get_state().store,
                FileStore.from_settings(_settings()).mappings_dir)
        except specs.ContextSpecError as exc:
            raise RpcError(f"{what}: {exc}") from None
        if resolved.warning:
            warn(resolved.warning)
        return resolved.name
    try:
        check_name(text)
    except FileStoreError as exc:
        raise RpcError(f"{what}: {exc}") from None
    if not text.endswith((".pmap", ".imap", ".rmap")):
        raise RpcError(f"{what} {text!r}: expected a mapping name (.pmap, .imap, .rmap) or "
                       f"a context such as {observatory}-latest, {observatory}-edit, "
                       f"{observatory}-<instrument>-<date>, a date")
    info = catalog.file_info(conn, text)
    if info is None or info["kind"] != "mapping":
        kind = "context" if text.endswith(".pmap") else "mapping"
        raise RpcError(f"{what} {text!r}: unknown {kind} on this server")
    return text


def loaded_context(name: str) -> Context:
    """The loaded `Context` of a known pmap (kept in a small per-app LRU cache)."""
    state = get_state()
    with state._lock:
        cache = state.caches.setdefault("contexts", OrderedDict())
        lock = state.caches.setdefault("contexts_lock", threading.Lock())
    with lock:
        context = cache.get(name)
        if context is None:
            path = FileStore.from_settings(state.settings).path_for(name, "mapping")
            try:
                context = load_context(path)
            except (OSError, ValueError) as exc:
                raise RpcError(f"context {name!r}: cannot be loaded: {exc}") from None
            cache[name] = context
            while len(cache) > CONTEXT_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(name)
    return context


def _context(value: Any, what: str = "context") -> tuple[str, Context]:
    name = resolve_context(get_db(), value, what)
    return name, loaded_context(name)


# --- server info ----------------------------------------------------------------------------


def _download_metadata(conn) -> dict[str, str]:
    return crds_encode({name: {"size": str(size), "sha1sum": sha1}
                        for name, _kind, size, sha1 in catalog.available_files(conn)})


def server_info(conn, base_url: str) -> dict[str, Any]:
    """What ``get_server_info`` answers (cached until the projections change)."""
    state = get_state()
    token = (catalog.state_token(conn, ("files", "context_pointers", "context_history")),
             base_url)
    cached = state.caches.get("server_info")
    if cached is None or cached[0] != token:
        cached = (token, _build_server_info(conn, base_url))
        state.caches["server_info"] = cached
    info = dict(cached[1])
    info["last_synced"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return info


def _build_server_info(conn, base_url: str) -> dict[str, Any]:
    observatory = _settings().observatory
    pointers = _pointers(conn)
    base = base_url.rstrip("/") + "/unchecked_get"
    bad = catalog.bad_files(conn)
    return {
        "observatory": observatory,
        "latest_context": pointers["latest"],
        "operational_context": pointers["latest"],
        "edit_context": pointers["edit"],
        "versions_context": pointers["versions"],
        "build_context": pointers["build"],
        "bad_files": " ".join(bad),
        "bad_files_list": bad,
        "mappings": [name for name, *_ in catalog.available_files(conn, "mapping")],
        "mapping_url": {observatory: f"{base}/mappings/{observatory}/"},
        "reference_url": {observatory: f"{base}/references/{observatory}/"},
        "config_url": {observatory: f"{base}/config/{observatory}/"},
        "pickle_url": {observatory: f"{base}/pickles/{observatory}/"},
        "download_metadata": _download_metadata(conn),
        "force_remote_mode": False,
        "crds_version": {"str": f"crds-events {version}", "major": 0, "minor": 1},
        "server_software": f"crds-events {version}",
        "max_headers_per_rpc": MAX_HEADERS_PER_RPC,
        "max_bestrefs_per_rpc": MAX_BESTREFS_PER_RPC,
        "context_history": [list(item) for item in
                            catalog.latest_history(conn, observatory)],
    }


@rpc_method
def get_server_info() -> dict[str, Any]:
    return server_info(get_db(), request.url_root)


# --- contexts -------------------------------------------------------------------------------


@rpc_method
def get_default_context(observatory: str | None = None, state: str | None = None) -> str:
    _observatory(observatory)
    if state is None:
        state = "latest"
    if not isinstance(state, str) or state not in POINTER_KINDS:
        raise RpcError(f"state {state!r}: expected one of {', '.join(POINTER_KINDS)}")
    return _pointer(get_db(), state)


@rpc_method
def get_build_context(observatory: str | None = None, calver: str | None = None) -> str:
    _observatory(observatory)
    if calver is None:
        return _pointer(get_db(), "build")
    try:
        calver = contexts.validate_calver(calver)
    except contexts.ContextError as exc:
        raise RpcError(str(exc)) from None
    found = contexts.build_context(get_state().store, calver, _settings().observatory)
    return found or _pointer(get_db(), "build")


@rpc_method
def get_context_by_date(date: str, observatory: str | None = None) -> str:
    _observatory(observatory)
    # an instrument (or instrument and type) specifier answers that imap (rmap), as CRDS's
    return resolve_mapping(get_db(), date, "date")


@rpc_method
def get_context_history(observatory: str | None = None) -> list[list[str]]:
    observatory = _observatory(observatory)
    return [list(item) for item in catalog.latest_history(get_db(), observatory)]


def _mapping_closure(value: Any, what: str) -> tuple[list[str], list[str]]:
    """(mapping names, reference names) of a known pmap, imap or rmap; clients fall back to
    asking for an imap's or rmap's closure when their cached copy does not load."""
    text = resolve_mapping(get_db(), value, what)  # a known mapping from here on
    if text.endswith(".pmap"):
        loaded = loaded_context(text)
        return loaded.mapping_names(), loaded.reference_names()
    store = MappingStore(FileStore.from_settings(_settings()).mappings_dir)
    try:
        document = store.document(text)
        if text.endswith(".rmap"):
            return [text], ReferenceIndex(document).reference_names()
        rmaps = InstrumentContext(document, store).rmaps()
    except (ContextLoadError, MappingError, OSError) as exc:
        raise RpcError(f"{what} {text!r}: cannot be loaded: {exc}") from None
    references = sorted({r for rmap in rmaps.values() for r in rmap.reference_names()})
    return sorted({text, *(rmap.name for rmap in rmaps.values())}), references


@rpc_method
def get_mapping_names(pipeline_context: str) -> list[str]:
    return _mapping_closure(pipeline_context, "pipeline_context")[0]


@rpc_method
def get_reference_names(pipeline_context: str) -> list[str]:
    return _mapping_closure(pipeline_context, "pipeline_context")[1]


@rpc_method
def get_required_parkeys(context: str) -> dict[str, list[str]]:
    _name, loaded = _context(context)
    return {instrument: loaded.required_parkeys(instrument)
            for instrument in loaded.pipeline.instruments
            if _has_imap(loaded, instrument)}


def _has_imap(loaded: Context, instrument: str) -> bool:
    value = loaded.pipeline.selections[instrument]
    return isinstance(value, str) and value.lower().endswith(".imap")


# --- files ----------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _public_info(row: catalog.FileInfo) -> dict[str, str]:
    return {
        "name": row["name"],
        "observatory": row["observatory"] or _settings().observatory,
        "instrument": row["instrument"],
        "filekind": row["filekind"],
        "reference_file_type": row["filekind"],
        "type": row["kind"],
        "state": row["state"],
        "sha1sum": row["sha1"],
        "size": str(row["size"]),
        "rejected": _flag(row["rejected"]),
        "blacklisted": _flag(row["blacklisted"]),
        "reject_reason": row["reject_reason"],
        "useafter_date": row["useafter"] or "none",
        "delivery_date": catalog.crds_date(row["created_at"] or ""),
        "delivery": row["delivery"],
        "submission_id": row["submission_id"],
        "available": _flag(row["available"]),
    }


@rpc_method
def get_file_info(pipeline_context: str, filename: str) -> dict[str, str]:
    # CRDS accepts an observatory name or a context here; both only name the observatory.
    if isinstance(pipeline_context, str) and pipeline_context.lower() != _settings().observatory:
        resolve_context(get_db(), pipeline_context, "pipeline_context")
    else:
        _observatory(pipeline_context, "pipeline_context")
    _text(filename, "filename")
    row = catalog.file_info(get_db(), filename)
    if row is None:
        raise RpcError(f"file {filename!r}: not known to this server")
    return _public_info(row)


@rpc_method
def get_file_info_map(observatory: str, files: list[str] | None = None,
                      fields: list[str] | None = None) -> dict[str, Any]:
    _observatory(observatory)
    files = _str_list(files, "files")
    fields = _str_list(fields, "fields")
    if fields is not None:
        unknown = sorted(set(fields) - set(_FILE_FIELDS))
        if unknown:
            raise RpcError(f"fields: unknown {unknown}; known fields: {', '.join(_FILE_FIELDS)}")
    rows = catalog.file_infos(get_db(), files)
    result: dict[str, Any] = {}
    for name in files if files is not None else sorted(rows):
        row = rows.get(name)
        if row is None:
            result[name] = "NOT FOUND"
            continue
        info = _public_info(row)
        result[name] = info if fields is None else {f: info[f] for f in fields}
    return result


def _glob(value: Any) -> str:
    if value is None:
        return "*"
    return _text(value, "glob_pattern")


@rpc_method
def list_mappings(observatory: str | None = None, glob_pattern: str = "*") -> list[str]:
    _observatory(observatory)
    pattern = _glob(glob_pattern)
    return [name for name, *_ in catalog.available_files(get_db(), "mapping")
            if fnmatch.fnmatchcase(name, pattern)]


@rpc_method
def list_references(observatory: str | None = None, glob_pattern: str = "*") -> list[str]:
    _observatory(observatory)
    pattern = _glob(glob_pattern)
    return [name for name, *_ in catalog.available_files(get_db(), "reference")
            if fnmatch.fnmatchcase(name, pattern)]


# --- datasets (the archive's parameters, imported by `crds-events datasets import`) ---------


def _datasets_since(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return contexts.parse_date(value).strftime("%Y-%m-%d %H:%M:%S")
    except contexts.ContextError as exc:
        raise RpcError(f"datasets_since: {exc}") from None


@rpc_method
def get_dataset_ids(context: str, instrument: str, datasets_since: str | None = None
                    ) -> list[str]:
    name = resolve_context(get_db(), context)
    _text(instrument, "instrument")
    since = _datasets_since(datasets_since)
    del name  # CRDS lists the archive's ids whatever the context; it only has to be known
    return catalog.dataset_ids(get_db(), instrument, since)


@rpc_method
def get_dataset_headers_by_id(context: str, dataset_ids: list[str],
                              datasets_since: str | None = None) -> dict[str, Any]:
    resolve_context(get_db(), context)
    ids = _str_list(dataset_ids, "dataset_ids", optional=False)
    if len(ids) > MAX_HEADERS_PER_RPC:
        raise RpcError(f"dataset_ids: {len(ids)} ids; at most {MAX_HEADERS_PER_RPC} per call")
    since = _datasets_since(datasets_since)
    headers = catalog.dataset_headers(get_db(), ids, since)
    missing = {i: f"NOT FOUND dataset {i!r} is not in the catalog" for i in ids
               if not any(_same_dataset(i, found) for found in headers)}
    return {**headers, **missing}


def _same_dataset(wanted: str, found: str) -> bool:
    # any spelling CRDS accepts: case, and a JWST detector after "." or "_"
    return catalog.same_dataset(wanted, found)


# --- reprocessing ---------------------------------------------------------------------------


@rpc_method
def get_affected_datasets(observatory: str, old_context: str | None = None,
                          new_context: str | None = None) -> dict[str, Any]:
    observatory = _observatory(observatory)
    conn = get_db()
    if (old_context is None) != (new_context is None):
        raise RpcError("old_context and new_context: give both, or neither (the last "
                       "change of latest)")
    if old_context is None:
        history = catalog.latest_history(conn, observatory)
        if len(history) < 2:
            raise RpcError("No precomputed affected datasets results exist: latest has "
                           "never changed on this server")
        old_context, new_context = history[-2][1], history[-1][1]
    else:
        old_context = resolve_context(conn, old_context, "old_context")
        new_context = resolve_context(conn, new_context, "new_context")
    return affected.affected_datasets(get_state(), observatory, old_context, new_context)


# --- pipelines echo their contexts ----------------------------------------------------------


@rpc_method
def push_remote_context(observatory: str, kind: str, key: str, context: str) -> str:
    observatory = _observatory(observatory)
    if kind not in ("latest", "operational"):
        raise RpcError(f"kind {kind!r}: expected 'latest' (or the older 'operational')")
    state = get_state()
    try:
        # the key is the pipeline's secret: it authenticates the push and is never recorded
        # (the event and its actor carry the pipeline's name)
        row = remote.push_remote_context(state.settings, state.store, key, context)
    except remote.RemoteContextError as exc:
        raise RpcError(str(exc)) from None
    return row["actual"]


@rpc_method
def get_remote_context(observatory: str, pipeline_name: str) -> str:
    observatory = _observatory(observatory)
    _text(pipeline_name, "pipeline_name")
    row = remote.remote_context(get_state().store, pipeline_name, observatory)
    if row is None:
        raise RpcError(f"pipeline {pipeline_name!r}: has not pushed a context to this server")
    return row["actual"]


# --- submission progress (jpoll) ------------------------------------------------------------


@rpc_method
def jpoll_pull_messages(key: str, since_id: int | str | None = None) -> list[dict[str, Any]]:
    _text(key, "key")
    if since_id is not None:
        try:
            since_id = int(since_id)
        except (TypeError, ValueError):
            raise RpcError(f"since_id {since_id!r}: expected a message id (integer)") from None
    submission_id = _channel(key)
    store = get_state().store
    if store.stream_version(ev.submission_stream(submission_id)) == 0:
        return []  # a channel opened before its submission started: nothing yet
    return upload.progress_messages(store, submission_id, since_id or 0,
                                    base_url=request.url_root)


def _channel(key: str) -> str:
    """The submission a jpoll key reads (only its unguessable key does: the progress is
    personal; `crds_events.web.jpoll`)."""
    submission_id = jpoll.submission_of(key)
    if submission_id is None:  # CRDS's wording: its monitor waits on "Channel ... not found"
        raise RpcError(f"Channel {key!r} not found")
    return submission_id


@rpc_method
def jpoll_abort(key: str) -> bool:
    _text(key, "key")
    upload.progress_messages(get_state().store, _channel(key), 0)  # unknown -> error
    raise RpcError(f"Channel {key!r}: submission processing cannot be aborted remotely; "
                   f"cancel the submission once it is ready (POST /upload/<id>/cancel)")


# --- submissions (crds submit) ---------------------------------------------------------------

# What ``--submission-kind`` may name, and the form each posts to (crds_events.web.crds_submit).
SUBMISSION_KINDS = {"batch": "/batch_submit_references/", "references": "/submit/reference/",
                    "mappings": "/submit/mapping/", "certify": "/certify/"}


@rpc_method
def get_submission_info(observatory: str, username: str) -> dict[str, Any]:
    """Where ``username``'s files go before a submission and which kinds there are. The
    ingest directory is named relative to the server's ingest root (no server path: the
    files reach it through ``/upload/chunked/``)."""
    observatory = _observatory(observatory)
    _text(username, "username")
    try:
        users.validate_name(username)
    except users.UserError as exc:
        raise RpcError(f"username: {exc}") from None
    return {"observatory": observatory, "username": username,
            "ingest_dir": f"{username}/{uploadarea.AREA_NAME}/",
            "upload_url": request.url_root.rstrip("/") + "/upload/chunked/",
            "submission_kinds": list(SUBMISSION_KINDS),
            "submission_urls": dict(SUBMISSION_KINDS)}


# The methods of the other concepts register themselves on import; they use the parameter
# checks above, so they are imported once this module is complete.
from crds_events.web import methods_bestrefs as _methods_bestrefs  # noqa: E402,F401
from crds_events.web import methods_sqlite as _methods_sqlite  # noqa: E402,F401
from crds_events.web import methods_urls as _methods_urls  # noqa: E402,F401
