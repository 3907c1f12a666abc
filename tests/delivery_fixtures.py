"""Helpers for the delivery tests: READY submissions made through the domain events (fast,
no certify run), confirmed with the real `review.confirm`, and waiting helpers."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from crds_events import events as ev
from crds_events.config import init_root, load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore
from crds_events.watch.ingest import work_dir

REPO = Path(__file__).resolve().parent.parent
DEVS = "devs@example.org"


def load_poller_module():
    """``ops/archive_poller.py`` as a module (ops/ is not a package)."""
    name = "archive_poller"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "ops" / "archive_poller.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_root(tmp_path: Path, *, mode: str = "native", interval: float = 0.2,
              extra: str = "") -> object:
    """A fresh jwst root whose config file holds the settings (so a subprocess sees them)."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "crds-events.toml").write_text(textwrap.dedent(f"""
        observatory = "jwst"
        [recipients]
        devs = ["{DEVS}"]
        [watcher]
        mode = "{mode}"
        interval = {interval}
    """) + extra)
    settings = load_settings(root, environ={})
    init_root(settings)
    return settings


def ready_submission(settings, store: SQLiteEventStore, sid: str, files: dict[str, bytes],
                     *, user: str = "jane", instrument: str = "nircam") -> None:
    """Record a READY submission whose processed files are ``files`` (name -> bytes), as
    the submission worker would (work-dir copies + result artifact + events)."""
    out = work_dir(settings, sid) / "processing"
    out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, data in files.items():
        (out / name).write_bytes(data)
        outputs[name] = str(out / name)
    digest = ArtifactStore.for_root(settings.root).put_json({"outputs": outputs})
    with store.transaction() as tx:
        tx.record(ev.SubmissionStarted(
            submission_id=sid, observatory=settings.observatory, deliverer=user,
            instrument=instrument, description="delivery test", files=tuple(files),
            user=user), meta={"actor": user})
        for name, data in files.items():
            tx.record(ev.FileCertified(
                submission_id=sid, name=name, original_name=name,
                sha1=hashlib.sha1(data).hexdigest(), size=len(data),
                kind="mapping" if name.endswith("map") else "reference",
                instrument=instrument, filekind="flat"), meta={"actor": user})
        tx.record(ev.SubmissionReady(submission_id=sid, files=tuple(files), new_context="",
                                     result_digest=digest), meta={"actor": user})


def confirmed_in_bulk(settings, store: SQLiteEventStore, count: int, *,
                      prefix: str = "bulk") -> list[str]:
    """``count`` confirmed submissions of one small reference each, appended in one
    transaction through the domain events (no allocation: the handler does it)."""
    files = FileStore.from_settings(settings)
    contents = {f"jwst_nircam_flat_{prefix}{i:05d}.fits": f"{prefix} flat {i}\n".encode()
                for i in range(count)}
    with ThreadPoolExecutor(8) as pool:  # each put fsyncs: together they commit together
        list(pool.map(lambda item: files.put(item[1], item[0]), contents.items()))
    sids = []
    with store.transaction() as tx:
        for i, (name, data) in enumerate(contents.items()):
            sid = f"{prefix}-{i:05d}"
            tx.record(ev.FileCertified(
                submission_id=sid, name=name, original_name=name,
                sha1=hashlib.sha1(data).hexdigest(), size=len(data), kind="reference",
                instrument="nircam", filekind="flat"))
            tx.record(ev.SubmissionConfirmed(submission_id=sid, by="jane", files=(name,),
                                             new_context=""), meta={"actor": "jane"})
            sids.append(sid)
    return sids


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def events_of(store: SQLiteEventStore, types) -> list:
    return store.read_all(types=list(types))


def duplicate_facts(store: SQLiteEventStore) -> list[tuple]:
    """(stream, type, payload) facts recorded more than once among delivery facts."""
    seen: dict[tuple, int] = {}
    for record in store.read_all(types=[
            "DeliveryRequested", "DeliveryCreated", "DeliveryArchiving", "DeliveryFailed",
            "DeliveryArchived", "FileReleased", "FileCataloged"]):
        key = (record.stream, record.type, repr(sorted(record.data.items())))
        seen[key] = seen.get(key, 0) + 1
    return [key for key, n in seen.items() if n > 1]
