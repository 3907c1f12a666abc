"""Shared fixtures.

`corpus` is the one way tests reach the real CRDS test data in ../shared/corpus; where it is
absent (a user's fresh clone) the tests that need it skip and say why.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _corpus_path() -> Path:
    return Path(os.environ.get("CRDS_EVENTS_CORPUS", REPO.parent / "shared" / "corpus")).resolve()


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The root of ../shared/corpus (or $CRDS_EVENTS_CORPUS); skips where it is absent."""
    path = _corpus_path()
    if not (path / "README.md").is_file():
        pytest.skip(
            f"CRDS test corpus not found at {path}: it lives in ../shared/corpus beside the "
            "repository (absent in a fresh clone); set CRDS_EVENTS_CORPUS to use another copy"
        )
    return path


@pytest.fixture
def crds_test_data_names():
    """Compare with crds on its own test data: the HST test mappings name children
    `test/data/hst/<name>`, which crds loads and our parser refuses outside this mode (a
    rules file naming a path is never accepted by certify, the store or the server)."""
    from crds_events.rules.parse import crds_test_data_names as allow

    with allow():
        yield


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (aiosmtpd) whose `fixtures.smtp.Inbox` keeps every
    message: ``smtp.port``, ``smtp.find(sid, "READY")``, ``smtp.subjects()``."""
    from fixtures.smtp import running_inbox

    with running_inbox() as inbox:
        yield inbox


@pytest.fixture(scope="session")
def postgres_cluster():
    """A PostgreSQL cluster for the whole session (tests/fixtures/postgres.py: initdb and
    pg_ctl in a temp directory); skips, naming PostgreSQL, where it is not installed."""
    from fixtures.postgres import missing_reason, running_cluster

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster):
    """The URL of a new, empty log (a schema of its own, dropped after the test)."""
    url = postgres_cluster.create_schema()
    yield url
    postgres_cluster.drop_schema(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """The ``database_url`` setting of a test that runs on both backends: "" (the SQLite
    default under the root) or the URL of a new, empty PostgreSQL log."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres_url")


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves threads running: observers and workers must be joined."""
    before = set(threading.enumerate())
    yield
    leaked = []
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"threads left running: {leaked}"
