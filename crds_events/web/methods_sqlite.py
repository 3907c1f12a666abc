"""The JSON-RPC ``get_sqlite_db(observatory)``: the catalog and context history as a SQLite
file in CRDS's schema, zlib-compressed and base64-encoded as CRDS sends it
(``crds.client.api.get_sqlite_db`` decodes it into ``<cache>/config/<obs>/crds_db.sqlite3``,
which ``crds sql`` queries). Built by `crds_events.contexts.sqlite_export` from the
projections and kept until they change.
"""

from __future__ import annotations

from crds_events.contexts.sqlite_export import SqliteExport, SqliteExportError
from crds_events.web import get_db, get_state
from crds_events.web.methods import _observatory
from crds_events.web.rpc import RpcError, rpc_method

__all__ = ["get_sqlite_db"]


def _export() -> SqliteExport:
    state = get_state()
    with state._lock:
        export = state.caches.get("sqlite_db")
        if export is None:
            export = state.caches["sqlite_db"] = SqliteExport(state.settings.observatory)
    return export


@rpc_method
def get_sqlite_db(observatory: str) -> str:
    _observatory(observatory)
    try:
        return _export().encoded(get_db())
    except SqliteExportError as exc:
        raise RpcError(str(exc)) from None
