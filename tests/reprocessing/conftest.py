"""A fresh root (``settings``) and its event store (``store``) for the dataset-catalog tests;
a module may define its own (test_repro's is over the corpus)."""

from __future__ import annotations

import pytest

from crds_events.config import load_settings
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root


@pytest.fixture
def settings(tmp_path):
    settings = load_settings(tmp_path / "root")
    init_root(settings)
    return settings


@pytest.fixture
def store(settings):
    store = SQLiteEventStore(settings.db_path)
    yield store
    store.close()
