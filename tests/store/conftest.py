"""The event-store backends the contract tests run against: SQLite (a temp file) and
PostgreSQL (a database of its own in a throwaway cluster started once per session).

`backend` is parametrised over `BACKENDS`; a test that takes it (or `store`) runs once per
backend. Without PostgreSQL installed its cases skip, and the reason names PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crds_events.store import EventStore, SQLiteEventStore

# `postgres_cluster` and `postgres_url` are in tests/conftest.py (every package uses them).


@dataclasses.dataclass
class Backend:
    """One backend under test: its store, a way to run raw SQL on another connection (for
    the append-only checks), the driver's IntegrityError, and a way to open a second store
    on the same log (``target``: a path or a URL, what `open_store` takes)."""

    name: str
    store: Any
    target: str | Path
    raw_sql: Callable[[str], Any]
    integrity_error: type[Exception]
    open_other: Callable[[], EventStore]
    cleanup: list[Callable[[], None]] = dataclasses.field(default_factory=list)


def _sqlite(request, tmp_path: Path) -> Backend:
    path = tmp_path / "events.db"
    store = SQLiteEventStore(path)
    return Backend("sqlite", store, path, store.db.conn.execute, sqlite3.IntegrityError,
                   lambda: SQLiteEventStore(path))


def _postgres(request, tmp_path: Path) -> Backend:
    import psycopg

    from crds_events.store.postgres import PostgresEventStore

    url = request.getfixturevalue("postgres_url")
    store = PostgresEventStore(url)
    raw = psycopg.connect(url, autocommit=True)
    return Backend("postgresql", store, url, raw.execute, psycopg.IntegrityError,
                   lambda: PostgresEventStore(url), cleanup=[raw.close])


BACKENDS = {"sqlite": _sqlite, "postgresql": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path) -> Iterator[Backend]:
    opened = BACKENDS[request.param](request, tmp_path)
    yield opened
    for close in opened.cleanup:
        with contextlib.suppress(Exception):
            close()
    opened.store.close()


@pytest.fixture
def store(backend):
    return backend.store


@pytest.fixture(params=sorted(BACKENDS))
def new_log(request, tmp_path_factory) -> Callable[[], contextlib.AbstractContextManager[str]]:
    """A factory of new, empty logs of each backend, for tests (hypothesis) that need a
    fresh one per example: ``with new_log() as target: open_store(target)``."""
    cluster = request.getfixturevalue("postgres_cluster") if request.param != "sqlite" \
        else None

    @contextlib.contextmanager
    def make() -> Iterator[str]:
        if cluster is None:
            yield str(tmp_path_factory.mktemp("log") / "events.db")
            return
        url = cluster.create_schema()
        try:
            yield url
        finally:
            cluster.drop_schema(url)

    return make


@pytest.fixture(params=sorted(BACKENDS))
def log_target(request, tmp_path) -> str:
    """What `open_store` takes to open a new, empty, migrated log of each backend (a SQLite
    path or a PostgreSQL URL): for tests whose writers run in processes of their own."""
    from crds_events.store import open_store

    if request.param == "sqlite":
        target = str(tmp_path / "events.db")
    else:
        target = request.getfixturevalue("postgres_url")
    open_store(target).close()  # create and migrate once, before any racer opens it
    return target
