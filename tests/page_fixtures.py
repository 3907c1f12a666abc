"""Servers for the page tests: empty, a small generated JWST history, the corpus HST context.

Populated through the domain API only (import_cache, set_context, recorded events), then the
projections are rebuilt from the log as the server's runner would keep them.
"""

from __future__ import annotations

from pathlib import Path

from context_fixtures import add_people, make_settings, seed_generations

from crds_events import events as ev
from crds_events.config import init_root, load_settings
from crds_events.contexts import pointers as contexts
from crds_events.contexts.importcache import import_cache
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.projections import rebuild
from crds_events.web import create_app

INJECTED = "<script>alert('x')</script><b>bold</b>"


def empty_app(tmp_path: Path):
    settings = make_settings(tmp_path, "jwst")
    SQLiteEventStore(settings.db_path).close()
    return create_app(settings, config={"TESTING": True}), settings


def jwst_app(tmp_path: Path):
    """Generations 1 and 2 archived; latest: 1 then 2 (set by otto); an injected-HTML
    description recorded on an edit pointer event and on a submission."""
    settings = make_settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        add_people(store)
        seed_generations(settings, store, tmp_path, archived=2)
        contexts.set_context(settings, store, "latest", "jwst_0002.pmap",
                             "generation 2 is operational", "otto")
        store.record(ev.ContextSet(observatory="jwst", kind="edit", context="jwst_0002.pmap",
                                   previous="jwst_0001.pmap", description=INJECTED),
                     meta={"actor": "otto"})
        store.record(ev.SubmissionStarted(
            submission_id="s-1", observatory="jwst", deliverer="sam", instrument="nircam",
            description=INJECTED, files=("flat.fits",)), meta={"actor": "sam"})
        # the rest of a submission's life, and a reprocessing result, for the plots
        store.record(ev.SubmissionConfirmed(submission_id="s-1", by="sam", files=(),
                                            new_context="jwst_0002.pmap"))
        store.record(ev.DeliveryCreated(delivery="jwst_0001", observatory="jwst",
                                        submission_id="s-1", files=()))
        store.record(ev.DeliveryArchived(delivery="jwst_0001"))
        store.record(ev.AffectedDatasetsComputed(
            observatory="jwst", old_context="jwst_0001.pmap", new_context="jwst_0002.pmap",
            count=17, digest="0" * 40))
        rebuild(store)
    return create_app(settings, config={"TESTING": True}), settings


def hst_app(tmp_path: Path, corpus: Path):
    settings = load_settings(tmp_path / "root", {"observatory": "hst"}, environ={})
    init_root(settings)
    hst = corpus / "contexts" / "hst"
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, hst / "mappings", hst / "references", "hst_0001.pmap",
                     set_pointers=("latest", "edit"))
        rebuild(store)
    return create_app(settings, config={"TESTING": True}), settings
