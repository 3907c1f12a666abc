"""An rmap naming a path (`../../../../tmp/evil.fits`) reaches the store through no door:
the drop directory and the web upload give BAD FILES (nothing stored, no context made), and
import-cache refuses the context (nothing recorded). Real server, real SQLite, HTTP upload."""

from __future__ import annotations

import io
import json
from functools import partial

import pytest
from fixtures.submissions import seed_root, write_context

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.contexts.importcache import ImportCacheError, import_cache
from crds_events.contexts.pointers import context_pointers
from crds_events.rules.checksum import with_checksum
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission
from crds_events.web import create_app

EVIL = "../../../../tmp/evil.fits"
FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "hand-edited rules",
          "change_level": "MODERATE", "kind": "mappings"}


def _evil_rmap(directory, context_dir):
    """jwst_nircam_flat_0001.rmap of the seeded context, edited to name EVIL."""
    text = (context_dir / "jwst_nircam_flat_0001.rmap").read_text()
    path = directory / "jwst_nircam_flat_0001.rmap"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("'jwst_nircam_flat_0001.fits'", f"'{EVIL}'"))
    return path


@pytest.fixture
def running(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        token = users.issue_token(store, "jane")
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                    poll_interval=0.05)
    server.start()
    try:
        app = create_app(settings, server.store, {"TESTING": True})
        yield settings, server, app.test_client(), token
    finally:
        server.stop()


def _stored_names(settings) -> set[str]:
    return {p.name for p in settings.store.rglob("*") if p.is_file()}


def _assert_rejected(settings, store, sid, before):
    outcome = review.follow(store, sid, timeout=60)
    assert isinstance(outcome, ev.SubmissionRejected), outcome
    assert "jwst_nircam_flat_0001.rmap" in outcome.bad_files
    certified = [r.event for r in store.read_all(types=[ev.FileCertified.type])
                 if r.data["submission_id"] == sid]
    assert any(EVIL in c.summary and "names a path" in c.summary for c in certified), certified
    assert _stored_names(settings) == before  # nothing new in the file store
    assert context_pointers(store, "jwst")["edit"] == "jwst_0001.pmap"
    assert not (settings.root.parent / "tmp").exists()


def test_drop_directory_rmap_naming_a_path_is_bad_files(running, tmp_path):
    settings, server, _, _ = running
    before = _stored_names(settings)
    rmap = _evil_rmap(tmp_path / "made", tmp_path / "context")
    sid = drop_submission(settings, "jane", [rmap], FIELDS)
    _assert_rejected(settings, server.store, sid, before)


def test_web_upload_rmap_naming_a_path_is_bad_files(running, tmp_path):
    settings, server, client, token = running
    before = _stored_names(settings)
    rmap = _evil_rmap(tmp_path / "made", tmp_path / "context")
    response = client.post(
        "/upload/submit", content_type="multipart/form-data",
        headers={"Authorization": f"Bearer {token}"},
        data={"fields": json.dumps(FIELDS), "file": [(io.BytesIO(rmap.read_bytes()), rmap.name)]})
    assert response.status_code == 200, response.get_json()
    _assert_rejected(settings, server.store, response.get_json()["submission_id"], before)


def test_import_cache_refuses_a_context_naming_a_path(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    source = tmp_path / "cache"
    write_context(source, ["nircam"])
    rmap = _evil_rmap(source, source)
    # a correct sha1sum, so that only the name can be what refuses it
    rmap.write_text(with_checksum(rmap.read_text(), rmap.name))
    with SQLiteEventStore(settings.db_path) as store:
        head = store.head()
        with pytest.raises(ImportCacheError, match="names a path"):
            import_cache(settings, store, source, None, "jwst_0001.pmap", ("latest", "edit"))
        assert store.head() == head  # nothing recorded
    assert not _stored_names(settings)  # nothing copied into the file store
