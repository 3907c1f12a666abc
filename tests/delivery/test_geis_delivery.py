"""A GEIS reference delivered whole: a real server (ingest watcher, submission worker,
delivery worker and observer, web app over HTTP) on an HST root imported from the corpus,
with the archive poller simulator (ops/archive_poller.py) taking the ``.cat``.

Dropped pair -> READY -> confirm -> the ``.cat`` lists header and data file -> archived ->
both released and downloadable at ``/unchecked_get/``; a confirm that would deliver half a
pair is refused and changes nothing.
"""

from __future__ import annotations

import textwrap
import urllib.error
import urllib.request
from functools import partial

import pytest
from fixtures.delivery import load_poller_module, ready_submission
from fixtures.geis import geis_cache, new_pair, write_wfpc2_context
from fixtures.rpc import running_server
from helpers import wait_for

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.delivery import publish as delivery
from crds_events.server import parts
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

ArchivePoller = load_poller_module().ArchivePoller
FIELDS = {"deliverer": "Jane Doe", "instrument": "WFPC2", "description": "a new A-to-D table"}


@pytest.fixture
def hst_root(corpus, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "crds-events.toml").write_text(textwrap.dedent("""
        observatory = "hst"
        [watcher]
        mode = "native"
        interval = 0.1
    """))
    settings = load_settings(root, environ={})
    init_root(settings)
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    pmap = write_wfpc2_context(mappings)
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, pmap, ("latest", "edit"))
    return settings


@pytest.fixture
def poller(hst_root):
    archive = ArchivePoller(hst_root.delivery, interval=0.05, delay=0.3)
    archive.start()
    yield archive
    archive.stop()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_a_dropped_pair_is_delivered_archived_and_served_together(hst_root, poller, corpus,
                                                                  tmp_path):
    settings = hst_root
    header, data = new_pair(corpus, tmp_path / "made")
    extra = [partial(parts.submissions, settle=0.1), partial(parts.delivery, scan_interval=1.0)]
    with running_server(settings, before=extra) as url, \
            SQLiteEventStore(settings.db_path) as store:
        sid = drop_submission(settings, "jane", [header, data], FIELDS)
        outcome = review.follow(store, sid, timeout=120)
        assert isinstance(outcome, ev.SubmissionReady), outcome
        names = [n for n in outcome.files if n.endswith((".r1h", ".r1d"))]
        assert sorted(n[-1] for n in names) == ["d", "h"]
        base = f"{url.rstrip('/')}/unchecked_get/references/hst/"
        for name in names:  # nothing is served before it is archived
            with pytest.raises(urllib.error.HTTPError) as caught:
                _get(base + name)
            assert caught.value.code == 404

        review.confirm(settings, store, sid, "jane")

        def archived() -> str | None:
            for name, info in delivery.delivery_states(store).items():
                if info.submission_id == sid and info.state == "archived":
                    return name
            return None

        name = wait_for(archived, 60)
        assert name, delivery.delivery_states(store)
        catalog = (settings.catalogs / f"{name}.cat").read_text().split()
        assert set(names) <= set(catalog)
        released = {r.event.name for r in store.read_all(types=[ev.FileReleased.type])
                    if r.event.delivery == name}
        assert set(names) <= released
        stored = FileStore.from_settings(settings)
        by_suffix = {n[-1]: n for n in names}
        assert wait_for(lambda: _served(base + by_suffix["d"]), 30)
        assert _get(base + by_suffix["d"]) == data.read_bytes()
        assert _get(base + by_suffix["h"]) == stored.path_for(by_suffix["h"]).read_bytes()


def _served(url: str) -> bool:
    try:
        _get(url)
    except urllib.error.HTTPError:
        return False
    return True


def test_confirming_half_a_pair_is_refused_and_changes_nothing(hst_root):
    """Processing never makes such a result; a forged or legacy one is still refused."""
    settings = hst_root
    with SQLiteEventStore(settings.db_path) as store:
        ready_submission(settings, store, "half", {"o1234567u_a2d.r1h": b"header only\n"},
                         instrument="wfpc2")
        head = store.head()
        stored = FileStore.from_settings(settings)
        before = stored.names("reference")
        with pytest.raises(review.ReviewError, match=r"unpaired: o1234567u_a2d\.r1h"):
            review.confirm(settings, store, "half", "jane")
        assert store.head() == head
        assert stored.names("reference") == before
        assert not list(settings.delivery.glob("*.cat"))


def test_allocation_refuses_a_delivery_that_splits_a_pair(hst_root):
    settings = hst_root
    with SQLiteEventStore(settings.db_path) as store:
        head = store.head()
        with pytest.raises(delivery.DeliveryError, match=r"unpaired: x1234567u\.r1d"), \
                store.transaction() as tx:
            delivery.allocate(tx, settings, "s9", ["x1234567u.r1d", "hst_9201.pmap"])
        assert store.head() == head
