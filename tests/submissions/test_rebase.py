"""A confirm built on a stale edit context never undoes an earlier confirm: it is refused
and the submission rebased onto the current edit context (READY again, with a progress
line and a READY e-mail), then confirmed; conflicting changes are refused with the reason;
processing warns of other pending submissions on the same mappings. Real server (ingest
watcher, submission worker, e-mail composer, waitress) over HTTP, and the real CLI."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.cli.group import cli
from crds_events.config import load_settings
from crds_events.contexts.pointers import context_pointers
from crds_events.rules.context import MappingStore, PipelineContext
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

FIELDS = {"deliverer": "Jane Doe", "description": "New flats", "change_level": "MODERATE"}


@pytest.fixture
def served(tmp_path):
    """A running server (mail to the maildir, submissions, web), its URL, users' tokens."""
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        tokens = {}
        for name in ("jane", "bob"):
            users.add_user(store, name, f"{name}@example.org")
            tokens[name] = users.issue_token(store, name)
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.submissions, settle=0.1, scan_interval=2.0),
                               partial(parts.web, threads=6)],
                    host="127.0.0.1", port=0, poll_interval=0.05)
    server.start()
    try:
        yield server, server.component("web", WebServer).url, tokens
    finally:
        server.stop()


def _ready(server, tmp_path: Path, user: str, instrument: str, seed: int, *,
           filter_: str = "F200W", useafter: str = "2024-01-01T00:00:00"
           ) -> ev.SubmissionReady:
    flat = make_flat(tmp_path / "made" / user / f"flat_{seed}.fits", instrument,
                     filter_=filter_, seed=seed, useafter=useafter)
    sid = drop_submission(server.settings, user, [flat],
                          {**FIELDS, "instrument": instrument.upper()})
    ready = review.follow(server.store, sid, timeout=90)
    assert isinstance(ready, ev.SubmissionReady), ready
    return ready


def _post(url: str, token: str, sid: str, action: str = "confirm") -> requests.Response:
    return requests.post(f"{url}/upload/submissions/{sid}/{action}", json={}, timeout=120,
                         headers={"Authorization": f"Bearer {token}"})


def _cli_confirm(server, sid: str, user: str):
    return CliRunner().invoke(cli, ["submission", "confirm", sid, "--user", user,
                                    "--root", str(server.settings.root)])


def _context(server) -> PipelineContext:
    edit = context_pointers(server.store, "jwst")["edit"]
    store = MappingStore(FileStore.from_settings(server.settings).mappings_dir)
    return PipelineContext(store.document(edit), store)


def _references(server, instrument: str) -> set[str]:
    return set(_context(server).imap(instrument).rmap("flat").reference_names())


def _reference_of(ready: ev.SubmissionReady) -> str:
    [name] = [n for n in ready.files if n.endswith(".fits")]
    return name


def _rebased(server, sid: str) -> ev.SubmissionReady:
    view = review.load(server.store, sid)
    assert view.state == "ready" and isinstance(view.outcome, ev.SubmissionReady)
    return view.outcome


def _ready_mails(server, sid: str) -> list[ev.EmailQueued]:
    return [r.event for r in server.store.read_all(types=[ev.EmailQueued.type])
            if r.event.kind == "READY" and sid in r.event.subject]


@pytest.mark.slow
def test_two_users_two_instruments_confirmed_at_once(served, tmp_path):
    server, url, tokens = served
    first = _ready(server, tmp_path, "jane", "nircam", seed=1)
    second = _ready(server, tmp_path, "bob", "miri", seed=2)
    # processing warned bob of jane's pending submission on the same context
    warnings = review.show(server.settings, server.store, second.submission_id)[
        "result"]["warnings"]
    assert any(first.submission_id in w and "jwst_0001.pmap" in w for w in warnings), warnings
    # both confirmed at the same moment: one lands, the other is rebased onto it
    posts = [("jane", first), ("bob", second)]
    answers: dict[str, requests.Response] = {}
    barrier = threading.Barrier(2)

    def post(user: str, ready: ev.SubmissionReady) -> None:
        barrier.wait()
        answers[user] = _post(url, tokens[user], ready.submission_id)

    threads = [threading.Thread(target=post, args=p) for p in posts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert sorted(a.status_code for a in answers.values()) == [200, 409], {
        u: a.text for u, a in answers.items()}
    winner = next(u for u, a in answers.items() if a.status_code == 200)
    loser = "bob" if winner == "jane" else "jane"
    won, lost = (first, second) if winner == "jane" else (second, first)
    assert answers[winner].json()["new_context"] == won.new_context
    error = answers[loser].json()["error"]
    assert f"rebased onto {won.new_context}: review the new result and confirm again" in error
    rebased = _rebased(server, lost.submission_id)
    assert rebased.rebased_onto == won.new_context
    assert rebased.new_context not in (won.new_context, lost.new_context)
    assert _reference_of(rebased) == _reference_of(lost)  # the same official name
    shown = review.show(server.settings, server.store, lost.submission_id)
    assert f">> Rebased onto {won.new_context}: review the new result and confirm again" in \
        shown["progress"]
    assert shown["result"]["derived_from"] == won.new_context
    mails = wait_for(lambda: len(_ready_mails(server, lost.submission_id)) == 2 and
                     _ready_mails(server, lost.submission_id), 20)
    assert mails and f"Rebased onto {won.new_context}" in mails[-1].body
    assert rebased.new_context in mails[-1].body
    # what the submitter has now seen is confirmed
    again = _post(url, tokens[loser], lost.submission_id)
    assert again.status_code == 200, again.text
    assert again.json()["new_context"] == rebased.new_context
    assert context_pointers(server.store, "jwst")["edit"] == rebased.new_context
    pmap = _context(server)
    imaps = {pmap.imap(i).name for i in ("nircam", "miri")}
    assert imaps == {n for n in (*won.generated, *rebased.generated) if n.endswith(".imap")}
    assert _reference_of(first) in _references(server, "nircam")
    assert _reference_of(second) in _references(server, "miri")
    files = FileStore.from_settings(server.settings)
    assert all(files.exists(name) for name in (*won.files, *rebased.files))


@pytest.mark.slow
def test_same_user_two_files_one_instrument_via_cli(served, tmp_path):
    server, _, _ = served
    first = _ready(server, tmp_path, "jane", "nircam", seed=3, filter_="F200W")
    second = _ready(server, tmp_path, "jane", "nircam", seed=4, filter_="F150W")
    warnings = review.show(server.settings, server.store, second.submission_id)[
        "result"]["warnings"]
    assert any(first.submission_id in w and "jwst_nircam_flat_0001.rmap" in w
               for w in warnings), warnings
    assert _cli_confirm(server, first.submission_id, "jane").exit_code == 0
    refused = _cli_confirm(server, second.submission_id, "jane")
    assert refused.exit_code != 0
    assert f"rebased onto {first.new_context}: review the new result and confirm " \
           f"again" in refused.output
    assert context_pointers(server.store, "jwst")["edit"] == first.new_context
    rebased = _rebased(server, second.submission_id)
    confirmed = _cli_confirm(server, second.submission_id, "jane")
    assert confirmed.exit_code == 0, confirmed.output
    assert context_pointers(server.store, "jwst")["edit"] == rebased.new_context
    assert {_reference_of(first), _reference_of(second)} <= _references(server, "nircam")
    # the rebased rmap derives from the first's rmap, not from the original one
    [rmap] = [n for n in rebased.generated if n.endswith(".rmap")]
    assert _context(server).imap("nircam").rmap("flat").name == rmap
    [first_rmap] = [n for n in first.generated if n.endswith(".rmap")]
    text = (FileStore.from_settings(server.settings).mappings_dir / rmap).read_text()
    assert f"'derived_from' : '{first_rmap}'" in text


@pytest.mark.slow
def test_conflicting_change_is_refused_with_the_reason(served, tmp_path):
    server, url, tokens = served
    first = _ready(server, tmp_path, "jane", "nircam", seed=5, filter_="F200W")
    second = _ready(server, tmp_path, "jane", "nircam", seed=6, filter_="F200W",
                    useafter="2024-02-01T00:00:00")
    assert _post(url, tokens["jane"], first.submission_id).status_code == 200
    head = server.store.head()
    for _ in range(2):  # refused each time, the same way
        refused = _post(url, tokens["jane"], second.submission_id)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert "cannot be rebased" in error and "('NRCA1', 'F200W')" in error, error
        assert "changed both by this submission" in error
        assert "stays READY on jwst_0001.pmap" in error
        assert str(server.settings.root) not in error
    view = review.load(server.store, second.submission_id)
    assert view.state == "ready" and view.outcome == second  # still on its old base
    assert [r.type for r in server.store.read_all(head)
            if r.stream == ev.submission_stream(second.submission_id)] == []
    assert context_pointers(server.store, "jwst")["edit"] == first.new_context
    assert _post(url, tokens["jane"], second.submission_id, "cancel").status_code == 200


@pytest.mark.slow
def test_racing_confirms_of_a_stale_submission_rebase_once(served, tmp_path):
    server, url, tokens = served
    first = _ready(server, tmp_path, "jane", "nircam", seed=7)
    second = _ready(server, tmp_path, "bob", "miri", seed=8)
    assert _post(url, tokens["jane"], first.submission_id).status_code == 200
    answers: list[requests.Response] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        barrier.wait()
        answers.append(_post(url, tokens["bob"], second.submission_id))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert [a.status_code for a in answers] == [409] * 4, [a.text for a in answers]
    assert all(f"rebased onto {first.new_context}" in a.json()["error"] for a in answers)
    stream = server.store.read_stream(ev.submission_stream(second.submission_id))
    assert [r.type for r in stream].count(ev.SubmissionReady.type) == 2  # one rebase
    assert _post(url, tokens["bob"], second.submission_id).status_code == 200
    assert _reference_of(first) in _references(server, "nircam")
    assert _reference_of(second) in _references(server, "miri")
