"""Fixtures of the watcher tests: a JWST root watched by the native (inotify) and the
polling observer in turn, and its event log."""

from __future__ import annotations

from pathlib import Path

import pytest

from crds_events.config import Settings, load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root


@pytest.fixture(params=["native", "polling"])
def settings(request, tmp_path: Path) -> Settings:
    settings = load_settings(tmp_path / "root", {
        "observatory": "jwst", "watcher_mode": request.param, "watcher_interval": 0.1,
    }, environ={})
    init_root(settings)
    return settings


@pytest.fixture
def store(settings):
    store = SQLiteEventStore(settings.db_path)
    yield store
    store.close()
