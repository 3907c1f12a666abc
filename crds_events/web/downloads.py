"""File downloads at ``/unchecked_get/``, the URLs ``get_server_info`` hands the client.

* ``/unchecked_get/mappings/<obs>/<name>`` and ``/unchecked_get/references/<obs>/<name>``
  serve a file only when the catalog says it is archived and released (the release rule),
  of that kind, for this server's observatory;
* ``/unchecked_get/config/<obs>/server_config`` serves the server info as the client caches
  it (a Python literal, what ``CRDS_CONFIG_URI`` users read).

Nothing outside the file store can be named: the name must be a plain CRDS file name
(`crds_events.store.filestore.is_safe_name`: letters, digits, ``_ . + -``; no separators,
no ``..``, no ``%``) before anything touches the filesystem, and the file is opened with
``O_NOFOLLOW`` and checked to be a regular file of the cataloged size (the name has no
separator, so O_NOFOLLOW on it is enough: nothing can lead outside the store directory).
Responses are streamed (the WSGI server's file wrapper), with ``ETag`` = the sha1 that
``download_metadata`` lists, ``Last-Modified``, and conditional and range requests.
"""

from __future__ import annotations

import os
import pprint
import re
import sqlite3
import stat
import threading

from flask import Blueprint, Response, abort, request, send_file
from werkzeug.http import http_date

from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.store import log_target
from crds_events.store.filestore import FileStore, is_safe_name
from crds_events.web import catalog, get_db, get_state
from crds_events.web.methods import server_info

__all__ = ["bp", "open_released", "FastDownloads"]

bp = Blueprint("downloads", __name__, url_prefix="/unchecked_get")

_KINDS = {"mappings": "mapping", "references": "reference"}


class _Refused(CrdsEventsError):
    pass


def open_released(settings, conn, name: str, kind: str) -> tuple[int, os.stat_result, dict]:
    """An open descriptor on the released file ``name`` of ``kind``, its stat and catalog
    row; `_Refused` (-> 404) for anything else."""
    if not is_safe_name(name):
        raise _Refused(f"{name!r}: not a CRDS file name")
    row = catalog.file_info(conn, name)
    if (row is None or row["kind"] != kind or row["state"] not in catalog.SERVED_STATES
            or not row["available"]):
        raise _Refused(f"{name!r}: not an archived {kind}")
    store = FileStore.from_settings(settings)
    directory = store.directory_for(kind)
    path = directory / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _Refused(f"{name!r}: cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"{name!r}: not a regular file")
        if info.st_size != row["size"]:
            raise _Refused(f"{name!r}: stored size {info.st_size} differs from the catalog's "
                           f"{row['size']}")
    except BaseException:
        os.close(fd)
        raise
    return fd, info, row


def _serve(kind: str, observatory: str, name: str) -> Response:
    state = get_state()
    if observatory != state.settings.observatory:
        abort(404)
    try:
        fd, info, row = open_released(state.settings, get_db(), name, kind)
    except _Refused:
        abort(404)
    handle = os.fdopen(fd, "rb")
    try:
        response = send_file(handle, mimetype="application/octet-stream", download_name=name,
                             etag=row["sha1"], last_modified=info.st_mtime, conditional=False,
                             max_age=3600)
    except BaseException:
        handle.close()
        raise
    response.content_length = info.st_size
    try:
        response = response.make_conditional(request.environ, accept_ranges=True,
                                              complete_length=info.st_size)
    except BaseException:  # 416: the body will not be sent
        handle.close()
        raise
    if response.status_code in (304, 412):  # no body: release the descriptor now
        handle.close()
    return response


@bp.route("/mappings/<observatory>/<path:name>", methods=["GET", "HEAD"], merge_slashes=False)
def mapping(observatory: str, name: str) -> Response:
    return _serve("mapping", observatory, name)


@bp.route("/references/<observatory>/<path:name>", methods=["GET", "HEAD"], merge_slashes=False)
def reference(observatory: str, name: str) -> Response:
    return _serve("reference", observatory, name)


@bp.route("/config/<observatory>/server_config", methods=["GET", "HEAD"], merge_slashes=False)
def server_config(observatory: str) -> Response:
    if observatory != get_state().settings.observatory:
        abort(404)
    info = server_info(get_db(), request.url_root)
    return Response(pprint.pformat(info), mimetype="text/plain")


# --- the fast path -----------------------------------------------------------------------------

_FAST = re.compile(r"^/unchecked_get/(mappings|references)/([a-z]+)/([^/]+)$")
_CONDITIONAL = ("HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
                "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE")


class FastDownloads:
    """WSGI middleware serving plain GETs of released files without the Flask request cycle
    (a sync fetches thousands of files one request each, so the per-request cost is the
    sync's speed). Everything else, conditional and range requests and every refusal
    included, goes to the app, which applies the same checks (`open_released`) itself.

    Released rows are cached: a file once archived and released stays so with the same
    bytes (the store is write-once), so a cached row can never let through a file that
    is not released; a row not released yet is never cached.
    """

    def __init__(self, wsgi_app, settings):
        self.wsgi_app = wsgi_app
        self.settings = settings
        self.released: dict[tuple[str, str], dict] = {}
        self._local = threading.local()

    def _row(self, name: str, kind: str) -> dict | None:
        row = self.released.get((kind, name))
        if row is None:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = _read_connection(self.settings)
            found = catalog.file_info(conn, name)
            if (found is None or found["kind"] != kind or not found["available"]
                    or found["state"] not in catalog.SERVED_STATES):
                return None
            row = self.released[(kind, name)] = found
        return row

    def __call__(self, environ, start_response):
        match = _FAST.match(environ.get("PATH_INFO", ""))
        if (match is None or environ.get("REQUEST_METHOD") != "GET"
                or any(key in environ for key in _CONDITIONAL)):
            return self.wsgi_app(environ, start_response)
        folder, observatory, name = match.groups()
        kind = _KINDS[folder]
        if observatory != self.settings.observatory or not is_safe_name(name):
            return self.wsgi_app(environ, start_response)
        row = self._row(name, kind)
        if row is None:
            return self.wsgi_app(environ, start_response)
        path = FileStore.from_settings(self.settings).directory_for(kind) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return self.wsgi_app(environ, start_response)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != row["size"]:
            os.close(fd)
            return self.wsgi_app(environ, start_response)
        handle = os.fdopen(fd, "rb")
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(info.st_size)),
            ("Content-Disposition", f"inline; filename={name}"),
            ("ETag", f'"{row["sha1"]}"'),
            ("Last-Modified", http_date(info.st_mtime)),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", "public, max-age=3600"),
        ])
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(handle, 1 << 20)
        return _chunks(handle)


def _chunks(handle):
    with handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def _read_connection(settings: Settings) -> sqlite3.Connection:
    target = log_target(settings)
    if isinstance(target, str):  # PostgreSQL: no PRAGMAs; read-only by its session setting
        from crds_events.store.postgres_reader import ReadConnection

        return ReadConnection(target)  # type: ignore[return-value]
    conn = sqlite3.connect(str(settings.db_path), timeout=30.0, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    return conn
