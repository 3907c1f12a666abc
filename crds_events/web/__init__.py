"""The web application: a Flask app factory with injected settings.

``create_app(settings, store=None)`` builds the app for one server root:

* ``/json/...``: the CRDS JSON-RPC service (`crds_events.web.rpc`);
* ``/unchecked_get/...``: file downloads (`crds_events.web.downloads`);
* ``/upload/...``: remote submission with a token (`crds_events.web.upload`);
* the web protocol of the real ``crds submit`` (``/login/``, ``/upload/chunked/``, the
  submission forms, ``/submit_confirm_pipeline/``: `crds_events.web.crds_login`,
  `crds_events.web.crds_uploads`, `crds_events.web.crds_submit`).

Reads go to the projection tables through a per-request read-only SQLite connection kept on
``flask.g`` (`get_db`), so a slow request never holds the writer's lock. Writes (a pushed
remote context, an upload's submission review) go through the event store passed in as
``store`` (the server's writer), or one the app opens itself when run on its own.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from flask import Flask, current_app, g

from crds_events.config import Settings
from crds_events.store import EventStore, log_target, open_store
from crds_events.web.streams import StreamBudget

__all__ = ["create_app", "get_db", "get_state", "WebState", "DEFAULT_MAX_CONTENT_LENGTH"]

# Uploads of reference files can be large; RPC bodies are small (the RPC blueprint applies
# its own, smaller limit before parsing).
DEFAULT_MAX_CONTENT_LENGTH = 2 * 1024**3
RPC_MAX_BODY = 16 * 1024**2


class WebState:
    """What the app keeps between requests: settings, the writer, caches (thread-safe)."""

    def __init__(self, settings: Settings, store: EventStore | None):
        self.settings = settings
        self._store = store
        self._own_store = store is None
        self._lock = threading.Lock()
        self.caches: dict[str, Any] = {}
        # Set when the server stops: long-lived responses (event streams) end at once.
        self.stopping = threading.Event()
        # How many long-lived responses may be open at once (the web server adds as many
        # threads, so they never take the page threads).
        self.streams = StreamBudget(settings.stream_limit, settings.stream_limit_per_user)

    @property
    def store(self) -> EventStore:
        """The event store for writes (opened on first use when none was injected)."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    def close(self) -> None:
        """Close what the app opened itself (an injected store belongs to its owner)."""
        with self._lock:
            if self._own_store and self._store is not None:
                self._store.close()
                self._store = None


def get_state() -> WebState:
    return current_app.extensions["crds_events"]


def _connect(settings: Settings) -> sqlite3.Connection:
    target = log_target(settings)
    if isinstance(target, str):  # PostgreSQL: a read-only connection, same contract
        from crds_events.store.postgres_reader import ReadConnection

        return ReadConnection(target)  # type: ignore[return-value]
    conn = sqlite3.connect(str(settings.db_path), timeout=30.0, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    return conn


_local = threading.local()


def get_db() -> sqlite3.Connection:
    """The request's read-only connection to the log database, kept on ``g``.

    Opening a connection costs more than a typical request's queries, so each server thread
    keeps one and lends it to the request it is serving (never to two at once). In autocommit
    mode every statement reads the latest committed state (WAL), so reuse is never stale.
    """
    if "crds_db" not in g:
        state = get_state()
        pool = getattr(_local, "connections", None)
        if pool is None:
            pool = _local.connections = {}
        conn = pool.pop(str(log_target(state.settings)), None)
        g.crds_db = conn if conn is not None else _connect(state.settings)
    return g.crds_db


def _release_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("crds_db", None)
    if conn is None:
        return
    if conn.in_transaction:  # never hand on a connection mid-transaction
        conn.close()
        return
    pool = getattr(_local, "connections", None)
    if pool is None:
        pool = _local.connections = {}
    key = str(log_target(get_state().settings))
    previous = pool.get(key)
    if previous is not None:
        previous.close()
    pool[key] = conn


def create_app(settings: Settings, store: EventStore | None = None,
               config: dict[str, Any] | None = None) -> Flask:
    """The crds-events web app for ``settings``; ``store``: the writer to share (optional).

    ``config``: extra Flask configuration (e.g. ``MAX_CONTENT_LENGTH``, ``TESTING``).
    """
    from crds_events.web import converters, downloads, internal_errors, rpc, upload

    if not isinstance(log_target(settings), str) and not settings.db_path.is_file():
        raise FileNotFoundError(
            f"{settings.db_path}: no event log here; run `crds-events init --root "
            f"{settings.root}` first"
        )
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=DEFAULT_MAX_CONTENT_LENGTH,
        RPC_MAX_BODY=RPC_MAX_BODY,
        JSON_SORT_KEYS=False,
    )
    if config:
        app.config.update(config)
    app.extensions["crds_events"] = WebState(settings, store)
    app.teardown_appcontext(_release_db)
    converters.install(app)  # before the blueprints: their <int:...> rules are bound now
    internal_errors.install(app)
    app.register_blueprint(rpc.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(upload.bp)
    from crds_events.web.pages import register_pages

    register_pages(app)
    # the web protocol of `crds submit` (login, uploads, forms): on our sessions, so after
    # the pages (auth) are registered
    from crds_events.web import crds_login, crds_submit, crds_uploads

    crds_login.register(app)
    app.register_blueprint(crds_uploads.bp)
    app.register_blueprint(crds_submit.bp)
    rpc.register_error_handlers(app)
    app.wsgi_app = downloads.FastDownloads(app.wsgi_app, settings)
    return app
