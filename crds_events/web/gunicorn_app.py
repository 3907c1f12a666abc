"""The web app as a WSGI entry point for gunicorn (or any WSGI server), separate processes.

    CRDS_EVENTS_ROOT=/srv/crds-events gunicorn -c ops/gunicorn.conf.py \\
        crds_events.web.gunicorn_app:application

The app is built lazily, on the first request each worker serves, from the root that
``CRDS_EVENTS_ROOT`` names (settings as `crds-events serve` reads them: the root's
``crds-events.toml`` and ``CRDS_EVENTS_*`` variables). Building on first use rather than at
import keeps gunicorn's ``preload_app`` safe: no SQLite connection is ever opened in the
master and inherited across ``fork``.

Why this is safe next to a running ``crds-events serve``: the web workers are read-mostly.
Pages and JSON-RPC reads use per-request read-only connections (WAL: they never block the
server's writer). The few writes (a pipeline's ``push_remote_context``, a web submission,
a confirm) append events through the store with ``BEGIN IMMEDIATE``, exactly as in-process
requests do; the server's handler loop (the only process running handlers, observers,
the scheduler and the mailer) picks them up from the log. Run exactly one ``serve`` per
root; run as many gunicorn workers as you like.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["application", "build_application"]

_lock = threading.Lock()
_app: Any = None


def build_application(root: str | None = None) -> Any:
    """The Flask app for `root` (default: ``$CRDS_EVENTS_ROOT``, else ``./var``)."""
    from crds_events.config import load_settings
    from crds_events.web import create_app

    return create_app(load_settings(root))


def application(environ: dict, start_response: Any) -> Any:
    """WSGI callable: builds the app once per process, then delegates to it."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_application()
    return _app(environ, start_response)
