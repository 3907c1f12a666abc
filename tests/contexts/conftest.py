"""Fixtures of the context tests: a JWST root with two generations archived."""

from __future__ import annotations

import pytest
from fixtures.contexts import add_people, make_settings, seed_generations

from crds_events.store import SQLiteEventStore


@pytest.fixture
def root(tmp_path):
    """A JWST root: generations 1 and 2 archived (latest = edit = jwst_0001.pmap), users;
    yields (settings, store, the generations' source directory, their references)."""
    settings = make_settings(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    source, refs = seed_generations(settings, store, tmp_path, archived=2)
    yield settings, store, source, refs
    store.close()
