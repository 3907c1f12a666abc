"""The JSON-RPC best-references methods, answering in CRDS's shapes.

``get_best_references`` answers ``{reftype: file}`` (or an error for the dataset as a
whole). The context may be a pmap, an imap or an rmap, by name or by CRDS specifier
(``hst-acs-edit``, ``jwst-miri-2024-01-01T00:00:00``: `methods.resolve_mapping`); an imap
or rmap answers its own types (`crds_events.rules.mapping_bestrefs`). Asked for every type
of a JWST dataset, the answer holds the types CRDS's ``hv_best_references`` keeps for its
``EXP_TYPE`` and calibration software version (`crds_events.rules.jwst_reftypes`), so remote
and local best references agree. The multi-dataset methods answer per dataset id what the CRDS server does:
``(True, {reftype: file})`` for a dataset that could be looked up (single types that fail
are ``"NOT FOUND ..."`` values inside), ``(False, "NOT FOUND <reason>")`` for one that could
not; ``get_best_references_by_ids(..., include_headers=True)`` adds the matching parameters
under the top-level key ``"headers"``; ``get_aui_best_references`` (the archive user
interface's call) flattens each success to the list of found file names.
``get_system_versions(master_version, context)`` looks up the ``SYSTEM`` instrument's
``calver`` reference for a calibration software version (the versions context when the
context is ``null``/``none``) and answers that JSON reference's contents, as CRDS does.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from crds_events.rules.bestrefs import Context, DatasetError
from crds_events.rules.context import ContextLoadError, MappingStore
from crds_events.rules.jwst_reftypes import ReftypeFilter
from crds_events.rules.mapping_bestrefs import MappingLookup, load_mapping_lookup
from crds_events.rules.parse import MappingError
from crds_events.store.filestore import FileStore
from crds_events.web import catalog, get_db, get_state
from crds_events.web.jsoninput import JsonInputError, loads_bounded
from crds_events.web.methods import (
    MAX_BESTREFS_PER_RPC,
    _context,
    _header,
    _same_dataset,
    _str_list,
    _text,
    loaded_context,
    resolve_mapping,
)
from crds_events.web.rpc import RpcError, rpc_method

__all__ = ["dataset_results"]

_VERSION = re.compile(r"^[a-zA-Z\-.0-9_]{1,128}$")  # what CRDS accepts as a master version
MAX_CALVER_BYTES = 4 * 1024 * 1024  # calver references are small JSON documents


Lookup = Context | MappingLookup
MAPPING_CACHE_SIZE = 16  # imaps / rmaps used as contexts, kept loaded


def _lookup(value: Any, what: str = "context") -> tuple[str, Lookup]:
    """The loaded pmap, imap or rmap that ``value`` names."""
    name = resolve_mapping(get_db(), value, what)
    if name.endswith(".pmap"):
        return name, loaded_context(name)
    state = get_state()
    with state._lock:
        cache = state.caches.setdefault("mapping_lookups", OrderedDict())
        found = cache.get(name)
    if found is None:
        store = MappingStore(FileStore.from_settings(state.settings).mappings_dir)
        try:
            found = load_mapping_lookup(store, name)
        except (ContextLoadError, MappingError, DatasetError, OSError) as exc:
            raise RpcError(f"{what} {name!r}: cannot be loaded: {exc}") from None
        with state._lock:
            cache[name] = found
            while len(cache) > MAPPING_CACHE_SIZE:
                cache.popitem(last=False)
    return name, found


def _reftype_filter() -> ReftypeFilter:
    """The app's JWST type filter; a context's own SYSTEM CRDSCFG is read from the store."""
    state = get_state()
    with state._lock:
        found = state.caches.get("reftype_filter")
        if found is None:
            files = FileStore.from_settings(state.settings)

            def load(name: str) -> bytes | None:
                try:
                    with files.path_for(name, "reference").open("rb") as handle:
                        data = handle.read(MAX_CALVER_BYTES + 1)
                except (OSError, ValueError):
                    return None
                return data if len(data) <= MAX_CALVER_BYTES else None

            found = state.caches["reftype_filter"] = ReftypeFilter(load)
    return found


def _types(loaded: Lookup, header: dict, reftypes: list[str] | None) -> list[str] | None:
    """The types to answer: those asked for, else CRDS's choice for the dataset (every type
    of the instrument, or for JWST those its EXP_TYPE and version need)."""
    if reftypes is not None:
        return reftypes
    return _reftype_filter().reftypes(loaded, header)


def _bestrefs(loaded: Lookup, header: dict, reftypes: list[str] | None) -> dict[str, Any]:
    try:
        return loaded.best_references(header, _types(loaded, header, reftypes))
    except DatasetError as exc:
        raise RpcError(str(exc)) from None


def _outcome(loaded: Lookup, header: dict, reftypes: list[str] | None
             ) -> tuple[bool, Any]:
    """CRDS's per-dataset answer: (True, refs) or (False, the NOT FOUND reason)."""
    try:
        return True, loaded.best_references(header, _types(loaded, header, reftypes))
    except DatasetError as exc:
        return False, exc.not_found


@rpc_method
def get_best_references(context: str, header: dict, reftypes: list[str] | None = None
                        ) -> dict[str, Any]:
    _name, loaded = _lookup(context)
    return _bestrefs(loaded, _header(header), _str_list(reftypes, "reftypes"))


@rpc_method
def get_best_references_by_header_map(context: str, header_map: dict,
                                      reftypes: list[str] | None = None) -> dict[str, Any]:
    _name, loaded = _lookup(context)
    reftypes = _str_list(reftypes, "reftypes")
    if not isinstance(header_map, dict):
        raise RpcError(f"header_map: expected an object of dataset id: header, got "
                       f"{type(header_map).__name__}")
    if len(header_map) > MAX_BESTREFS_PER_RPC:
        raise RpcError(f"header_map: {len(header_map)} datasets; at most "
                       f"{MAX_BESTREFS_PER_RPC} per call")
    # every header is checked before any lookup: one bad header refuses the whole call
    headers = {dataset_id: _header(header, f"header_map[{dataset_id!r}]")
               for dataset_id, header in header_map.items()}
    if isinstance(loaded, Context):  # answered together: the datasets share mode plans
        answers = loaded.best_references_many(
            headers.values(), lambda header: _types(loaded, header, reftypes))
        return {dataset_id: (False, answer.not_found) if isinstance(answer, DatasetError)
                else (True, answer) for dataset_id, answer in zip(headers, answers, strict=True)}
    return {dataset_id: _outcome(loaded, header, reftypes)
            for dataset_id, header in headers.items()}


def _dataset_ids(value: Any) -> list[str]:
    ids = _str_list(value, "dataset_ids", optional=False)
    if len(ids) > MAX_BESTREFS_PER_RPC:
        raise RpcError(f"dataset_ids: {len(ids)} ids; at most {MAX_BESTREFS_PER_RPC} per call")
    return ids


def dataset_results(loaded: Lookup, ids: list[str], reftypes: list[str] | None
                    ) -> tuple[dict[str, dict], dict[str, tuple[bool, Any]]]:
    """(headers found, {dataset id: (True, refs) | (False, reason)}) for archive ids."""
    headers = catalog.dataset_headers(get_db(), ids)
    results: dict[str, tuple[bool, Any]] = {
        i: (False, f"NOT FOUND dataset {i!r} is not in the catalog")
        for i in ids if not any(_same_dataset(i, found) for found in headers)}
    for dataset_id, header in headers.items():
        results[dataset_id] = _outcome(loaded, header, reftypes)
    return headers, results


@rpc_method
def get_best_references_by_ids(context: str, dataset_ids: list[str],
                               reftypes: list[str] | None = None,
                               include_headers: bool = False) -> dict[str, Any]:
    _name, loaded = _lookup(context)
    ids = _dataset_ids(dataset_ids)
    reftypes = _str_list(reftypes, "reftypes")
    if not isinstance(include_headers, bool):
        raise RpcError(f"include_headers: expected true or false, got {include_headers!r}")
    headers, results = dataset_results(loaded, ids, reftypes)
    return {"headers": headers, **results} if include_headers else dict(results)


@rpc_method
def get_aui_best_references(date: str, dataset_ids: list[str]) -> dict[str, Any]:
    _name, loaded = _context(date, "date")
    _headers, results = dataset_results(loaded, _dataset_ids(dataset_ids), None)
    simpler: dict[str, Any] = {}
    for dataset_id, (found, refs) in results.items():
        if found:  # the AUI wants the files to fetch: the types that found none are left out
            refs = [name for name in refs.values()
                    if isinstance(name, str) and not name.startswith("NOT FOUND")]
        simpler[dataset_id] = (found, refs)
    return simpler


@rpc_method
def get_system_versions(master_version: str, context: str | None = None) -> Any:
    version = _text(master_version, "master_version")
    if not _VERSION.match(version):
        raise RpcError(f"master_version {version[:40]!r}: expected 1-128 characters of "
                       f"A-Z, a-z, 0-9, '.', '-', '_'")
    if context is None or (isinstance(context, str) and context.lower() in ("null", "none")):
        context = get_state().settings.observatory + "-versions"
    name, loaded = _context(context)
    # the header CRDS builds: the version under both its keywords, the date far ahead
    header = {"INSTRUME": "SYSTEM", "META.INSTRUMENT.NAME": "SYSTEM", "CAL_VER": version,
              "META.CALIBRATION_SOFTWARE_VERSION": version,
              "DATE-OBS": "2050-01-01", "TIME-OBS": "00:00:00",
              "META.OBSERVATION.DATE": "2050-01-01", "META.OBSERVATION.TIME": "00:00:00"}
    found = _bestrefs(loaded, header, ["calver"]).get("calver", "NOT FOUND n/a")
    if not isinstance(found, str) or found.startswith("NOT FOUND"):
        raise RpcError(f"master_version {version!r}: no calver reference in {name}: {found}")
    info = catalog.file_info(get_db(), found)
    if info is None or info["kind"] != "reference":
        raise RpcError(f"calver reference {found!r}: not known to this server")
    path = FileStore.from_settings(get_state().settings).path_for(found, "reference")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CALVER_BYTES + 1)
        return loads_bounded(data, f"calver reference {found}", max_bytes=MAX_CALVER_BYTES)
    except OSError:
        raise RpcError(f"calver reference {found!r}: not in the file store") from None
    except JsonInputError as exc:
        raise RpcError(str(exc)) from None
