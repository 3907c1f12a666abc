"""The JSON-RPC URL methods: where a known file is downloaded from.

``get_mapping_url(context, mapping)``, ``get_reference_url(context, reference)`` and
``get_url(context, filename)`` answer the file's ``/unchecked_get/...`` URL on this server,
as CRDS answers its download URL. The context only names the observatory: it may be the
observatory's name, any known mapping (``crds.client.api.is_known_mapping(m)`` asks
``get_mapping_url(m, m)`` with an rmap too) or a context specifier. A name the catalog does
not know, or of the other kind, is an error; that is how ``is_known_mapping`` answers False.
"""

from __future__ import annotations

from typing import Any

from flask import request

from crds_events.store.filestore import is_safe_name
from crds_events.web import catalog, get_db, get_state
from crds_events.web.methods import _text, resolve_mapping
from crds_events.web.rpc import RpcError, rpc_method

__all__ = ["download_url"]

_URL_PATHS = {"mapping": "mappings", "reference": "references"}


def _check_context(value: Any, what: str = "context") -> None:
    text = _text(value, what)
    observatory = get_state().settings.observatory
    if text.lower() == observatory:
        return
    resolve_mapping(get_db(), text, what)  # any known mapping or context specifier


def download_url(name: Any, what: str, kind: str | None = None) -> str:
    """The download URL of the known file ``name`` (of ``kind`` when given)."""
    text = _text(name, what)
    info = catalog.file_info(get_db(), text) if is_safe_name(text) else None
    if info is None:
        raise RpcError(f"{what} {text!r}: not known to this server")
    if (kind is not None and info["kind"] != kind) or info["kind"] not in _URL_PATHS:
        raise RpcError(f"{what} {text!r}: not a {kind or 'mapping or reference'} "
                       f"({info['kind']})")
    observatory = get_state().settings.observatory
    base = request.url_root.rstrip("/")
    return f"{base}/unchecked_get/{_URL_PATHS[info['kind']]}/{observatory}/{text}"


@rpc_method
def get_mapping_url(context: str, mapping: str) -> str:
    _check_context(context)
    return download_url(mapping, "mapping", "mapping")


@rpc_method
def get_reference_url(context: str, reference: str) -> str:
    _check_context(context)
    return download_url(reference, "reference", "reference")


@rpc_method
def get_url(context: str, filename: str) -> str:
    _check_context(context)
    return download_url(filename, "filename")
