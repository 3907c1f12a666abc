"""Delete submissions (CRDS's "delete references") end to end, through each way in: the
drop directory, `crds-events submit --kind delete` and the web form, on a real server
(ingest observer, submission worker, e-mail outbox to aiosmtpd, the web app over HTTP).

Each one goes STARTED -> READY (the rmap without the reference, a new context, diffs, the
READY e-mail) -> confirm, and the new edit context no longer selects the reference (checked
with the rules library's best references and by reading the rmap). A name that no rmap
holds is BAD FILES with that reason; bad input never reaches the log.
"""

from __future__ import annotations

import re
import textwrap
from functools import partial

import pytest
import requests
from click.testing import CliRunner
from fixtures.smtp import Inbox
from fixtures.submissions import seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.contexts.pointers import context_pointers
from crds_events.rules.bestrefs import load_context
from crds_events.rules.parse import parse_mapping
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.manifest import ManifestError, parse_manifest

PASSWORD = "correct horse"
DOOMED = "jwst_nircam_flat_0001.fits"  # the one reference of jwst_nircam_flat_0001.rmap
HEADER = {"META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCA1",
          "META.INSTRUMENT.FILTER": "F070W", "META.OBSERVATION.DATE": "2025-01-01",
          "META.OBSERVATION.TIME": "00:00:00"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def server(tmp_path, smtp):
    root = tmp_path / "root"
    root.mkdir()
    (root / "crds-events.toml").write_text(textwrap.dedent(f"""
        observatory = "jwst"
        [smtp]
        host = "127.0.0.1"
        port = {smtp.port}
        from = "crds@example.org"
        [recipients]
        redcat = ["redcat@example.org"]
        [watcher]
        mode = "native"
    """))
    settings = load_settings(root, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.submissions, settle=0.1, scan_interval=2.0),
                               partial(parts.web, threads=4)],
                    host="127.0.0.1", port=0, poll_interval=0.05)
    server.start()
    yield server
    server.stop()


def _outcome(store, sid: str) -> ev.Event | None:
    return review.follow(store, sid, timeout=60)


def _confirm_and_check(server, sid: str, smtp: Inbox) -> None:
    """READY -> the READY e-mail names the deletion -> confirm -> the edit context's rules
    no longer select the reference; the reference stays in the store and the catalog."""
    settings, store = server.settings, server.store
    outcome = _outcome(store, sid)
    assert isinstance(outcome, ev.SubmissionReady), outcome
    assert outcome.new_context == "jwst_0002.pmap"
    assert set(outcome.files) == set(outcome.generated) == {
        "jwst_0002.pmap", "jwst_nircam_0002.imap", "jwst_nircam_flat_0002.rmap"}
    shown = review.show(settings, store, sid)
    assert any(d["action"].startswith("delete") and DOOMED in d["text"]
               for d in shown["result"]["diffs"])
    assert DOOMED in shown["result"]["text_diffs"]["jwst_nircam_flat_0002.rmap"]
    found = wait_for(lambda: smtp.find(sid, "READY"), 20)
    assert found is not None, smtp.subjects()
    _, ready = found
    assert "References deleted from the rules:" in ready.get_content()
    assert DOOMED in ready.get_content()

    decision = review.confirm(settings, store, sid, "jane")
    assert isinstance(decision, ev.SubmissionConfirmed)
    assert context_pointers(store, "jwst")["edit"] == "jwst_0002.pmap"
    mappings = FileStore.from_settings(settings).directory_for("mapping")
    rmap = parse_mapping((mappings / "jwst_nircam_flat_0002.rmap").read_text(),
                         "jwst_nircam_flat_0002.rmap")
    assert DOOMED not in str(rmap.selector)
    new = load_context(mappings / "jwst_0002.pmap").best_references(HEADER, ["flat"])
    old = load_context(mappings / "jwst_0001.pmap").best_references(HEADER, ["flat"])
    assert old["flat"] == DOOMED and new["flat"] != DOOMED
    # The deleted reference is no file of this submission: the catalog keeps it as it was.
    cataloged = [r.data["name"] for r in store.read_all(types=["FileCataloged"])
                 if r.data["submission_id"] == sid]
    assert DOOMED not in cataloged and "jwst_nircam_flat_0002.rmap" in cataloged
    assert not [r for r in store.read_all(types=["FileCertified"])
                if r.data["submission_id"] == sid and r.data["name"] == DOOMED]


def test_drop_directory_delete_ready_confirm(server, smtp):
    settings = server.settings
    directory = settings.ingest / "jane"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "submission.yaml").write_text(textwrap.dedent(f"""
        deliverer: Jane Doe
        instrument: NIRCAM
        description: Withdraw the flat
        kind: delete
        files: [{DOOMED}]
    """))
    store = server.store
    started = wait_for(lambda: [r.event for r in store.read_all(types=["SubmissionStarted"])],
                       30)
    assert started and started[0].kind == "delete" and started[0].files == (DOOMED,)
    _confirm_and_check(server, started[0].submission_id, smtp)


def test_cli_delete_ready_confirm(server, smtp):
    root = str(server.settings.root)
    result = CliRunner().invoke(cli, ["submit", DOOMED, "--kind", "delete", "--instrument",
                                      "NIRCAM", "--description", "withdraw the flat",
                                      "--wait", "--user", "jane", "--root", root,
                                      "--timeout", "60"])
    assert result.exit_code == 0, result.output
    sid = result.output.splitlines()[0].split()[1].rstrip(":")
    assert result.output.splitlines()[-1] == \
        f"submission {sid}: READY (new context jwst_0002.pmap)"
    _confirm_and_check(server, sid, smtp)


def _login(session: requests.Session, url: str) -> None:
    token = _CSRF.search(session.get(f"{url}/login").text).group(1)
    answer = session.post(f"{url}/login", data={"name": "jane", "password": PASSWORD,
                                                "csrf_token": token}, allow_redirects=False)
    assert answer.status_code == 302, answer.text


def test_web_form_delete_ready_confirm(server, smtp):
    url = server.component("web", WebServer).url
    with requests.Session() as session:
        _login(session, url)
        token = _CSRF.search(session.get(f"{url}/submit").text).group(1)
        form = {"instrument": "NIRCAM", "description": "withdraw the flat", "kind": "delete",
                "derive_from": "edit", "change_level": "SEVERE", "csrf_token": token}
        # a delete names references; it refuses uploads and an empty list (400, nothing
        # recorded)
        head = server.store.head()
        empty = session.post(f"{url}/submit", data=form, allow_redirects=False)
        assert empty.status_code == 400 and "delete_references" in empty.text
        upload = session.post(f"{url}/submit", data={**form, "delete_references": DOOMED},
                              files={"files": ("x.fits", b"SIMPLE")}, allow_redirects=False)
        assert upload.status_code == 400 and "uploads nothing" in upload.text
        escaping = session.post(f"{url}/submit",
                                data={**form, "delete_references": "../../etc/passwd"},
                                allow_redirects=False)
        assert escaping.status_code == 400 and "plain file name" in escaping.text
        assert str(server.settings.root) not in escaping.text
        assert server.store.head() == head
        assert not any(server.settings.ingest.rglob("submission.yaml"))

        answer = session.post(f"{url}/submit", data={**form, "delete_references": DOOMED},
                              allow_redirects=False)
        assert answer.status_code == 302, answer.text
        sid = answer.headers["Location"].rstrip("/").split("/")[-2]
        assert isinstance(_outcome(server.store, sid), ev.SubmissionReady)
        page = session.get(f"{url}/submissions/{sid}")
        assert page.status_code == 200 and "jwst_nircam_flat_0002.rmap" in page.text
    _confirm_and_check(server, sid, smtp)


def test_a_name_in_no_rmap_is_bad_files(server, smtp):
    root = str(server.settings.root)
    result = CliRunner().invoke(cli, ["submit", "jwst_nircam_flat_0099.fits", "--kind",
                                      "delete", "--instrument", "NIRCAM", "--description",
                                      "no such reference", "--wait", "--user", "jane",
                                      "--root", root, "--timeout", "60"])
    assert result.exit_code == 1, result.output
    assert ": BAD FILES: " in result.output
    assert "jwst_nircam_flat_0099.fits is not in the NIRCAM rules of jwst_0001.pmap" in \
        result.output
    assert context_pointers(server.store, "jwst")["edit"] == "jwst_0001.pmap"
    # the MIRI flat is not a NIRCAM reference either
    miri = CliRunner().invoke(cli, ["submit", "jwst_miri_flat_0001.fits", "--kind", "delete",
                                    "--instrument", "NIRCAM", "--description", "wrong one",
                                    "--wait", "--user", "jane", "--root", root,
                                    "--timeout", "60"])
    assert miri.exit_code == 1 and "is not in the NIRCAM rules" in miri.output
    # the stored reference's catalog row is untouched by the refusal
    rows = [r.data for r in server.store.read_all(types=["FileCertified"])
            if r.data["name"] in ("jwst_miri_flat_0001.fits", "jwst_nircam_flat_0099.fits")]
    assert rows == []


def test_cli_refuses_a_path_for_a_delete_and_a_missing_file_otherwise(tmp_path):
    runner = CliRunner()
    root = str(tmp_path / "nowhere")
    as_path = runner.invoke(cli, ["submit", f"some/dir/{DOOMED}", "--kind", "delete",
                                  "--instrument", "NIRCAM", "--description", "x",
                                  "--user", "jane", "--root", root])
    assert as_path.exit_code == 2 and "plain file name" in as_path.output
    missing = runner.invoke(cli, ["submit", str(tmp_path / "absent.fits"), "--instrument",
                                  "NIRCAM", "--description", "x", "--user", "jane",
                                  "--root", root])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_delete_manifest_names_references_not_uploads(tmp_path):
    fields = "deliverer: J\ninstrument: NIRCAM\ndescription: d\nkind: delete\n"
    manifest = parse_manifest(fields + f"files: [{DOOMED}]\n", tmp_path, observatory="jwst")
    assert manifest.files == (DOOMED,) and manifest.uploads == ()
    with pytest.raises(ManifestError) as missing:
        parse_manifest(fields, tmp_path, observatory="jwst")
    assert missing.value.fields == ["files"]
    assert "must list the references to delete" in str(missing.value)
    with pytest.raises(ManifestError) as escaping:
        parse_manifest(fields + "files: [../etc/passwd]\n", tmp_path, observatory="jwst")
    assert escaping.value.fields == ["files[0]"]
