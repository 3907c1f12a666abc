"""The REAL ``crds submit`` (crds 14.0.3, run as subprocesses; its connection class
in-process for the chunked upload) against our server with the ingest watcher and the
submission worker: submit + monitor + wait + autoconfirm ends with a new edit context
holding the file, ``python -m crds.submit.monitor --key`` follows a submission, ``--logout``
releases the lock, ``--wipe-existing-files`` empties the upload area, a file over 2 MB
arrives intact in chunks, and two submits at once by one user never share a file."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from fixtures.crdsweb import PASSWORDS, ProtocolSession, new_bpixtab, serving, submit_root

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.contexts.pointers import context_pointers
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.submissions import uploadarea

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("crds_submit_client")
    settings = submit_root(work / "root", work)
    with serving(settings) as url:
        yield settings, url, work


def _env(server, user: str = "jane") -> dict[str, str]:
    _, url, work = server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRDS_", "MAST_"))}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(work / "cache"), CRDS_OBSERVATORY="hst",
               CRDS_USERNAME=user, MAST_API_TOKEN=PASSWORDS[user])
    return env


def run(server, *args: str, user: str = "jane", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], env=_env(server, user),
                          capture_output=True, text=True, timeout=timeout, cwd=server[2])


def _log(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def _lock_name(server, user: str) -> str:
    s = ProtocolSession(server[1])
    try:
        return s.get(f"/lock_status/{user}/").json()["name"]
    finally:
        s.close()


def test_submit_monitor_wait_autoconfirm_makes_the_new_edit_context(server, tmp_path):
    settings = server[0]
    with SQLiteEventStore(settings.db_path) as store:
        before = context_pointers(store, "hst")["edit"]
    reference = new_bpixtab(tmp_path / "bpix_client.fits", "CLIENT01")
    result = run(server, "crds.submit", "--files", str(reference), "--monitor", "--wait",
                 "--autoconfirm", "--description", "new ACS bad pixels", "--change-level",
                 "TRIVIAL", "--creator", "ACS Team")
    text = _log(result)
    assert result.returncode == 0, text[-4000:]
    assert "COMPLETED: http" in text and "Traceback" not in text
    key = re.search(r"monitoring server on '([^']+)'", text).group(1)
    with SQLiteEventStore(settings.db_path) as store:
        edit = context_pointers(store, "hst")["edit"]
        assert edit != before
        started = [r.event for r in store.read_all(types=[ev.SubmissionStarted.type])
                   if reference.name in r.event.files]
        assert len(started) == 1 and started[0].change_level == "TRIVIAL"
        sid = started[0].submission_id
        confirmed = [r.event for r in store.read_stream(ev.submission_stream(sid))
                     if isinstance(r.event, ev.SubmissionConfirmed)]
        assert confirmed and confirmed[0].new_context == edit
    # the new edit context's rules hold the file (renamed to its official name)
    mappings = FileStore.from_settings(settings).directory_for("mapping")
    rmaps = [p for p in mappings.glob("hst_acs_bpixtab_*.rmap") if "CLIENT01" in p.read_text()]
    assert rmaps, "the new rmap selects the submitted reference"
    assert _lock_name(server, "jane") == ""  # confirm released the instrument lock
    assert uploadarea.list_files(settings, "jane") == []  # the area was taken whole
    # the monitor on its own follows the submission by its key, and ends with the outcome
    monitor = run(server, "crds.submit.monitor", "--key", key, "--poll-delay", "1",
                  timeout=120)
    assert monitor.returncode == 0, _log(monitor)[-3000:]
    assert "Certifying" in _log(monitor) and "COMPLETED:" in _log(monitor)
    assert sid in _log(monitor)


def test_logout_releases_the_lock(server):
    s = ProtocolSession(server[1])
    try:
        assert s.login("jane", instrument="acs").status_code == 200
        assert _lock_name(server, "jane") == "acs"
        result = run(server, "crds.submit", "--logout")
        assert result.returncode == 0, _log(result)[-3000:]
        assert _lock_name(server, "jane") == ""
        assert s.get("/upload/list/").status_code == 403  # that session ended as well
    finally:
        s.close()


def test_wipe_existing_files_empties_the_upload_area(server, tmp_path):
    settings = server[0]
    s = ProtocolSession(server[1])
    try:
        assert s.login("jane").status_code == 200
        for name in ("left_over.fits", "another.fits"):
            assert s.upload(name, b"junk" * 100).status_code == 200
    finally:
        s.close()
    assert len(uploadarea.list_files(settings, "jane")) == 2
    reference = new_bpixtab(tmp_path / "bpix_wipe.fits", "WIPE01")
    refused = run(server, "crds.submit", "--files", str(reference), "--description", "x",
                  "--submission-kind", "certify")
    assert refused.returncode != 0 and "Non-submitted file" in _log(refused)
    result = run(server, "crds.submit", "--files", str(reference), "--wipe-existing-files",
                 "--submission-kind", "none")
    assert result.returncode == 0, _log(result)[-3000:]
    assert "Wiping file" in _log(result)
    assert uploadarea.list_files(settings, "jane") == []


def test_a_file_over_2_mb_arrives_intact_in_chunks(server, tmp_path):
    from crds.submit import web

    settings = server[0]
    reference = new_bpixtab(tmp_path / "bpix_big.fits", "BIG01", padding=5_300_000)
    assert reference.stat().st_size > 2 * web._UPLOAD_CHUNK_SIZE  # three chunks
    connection = web.CrdsDjangoConnection(locked_instrument="none", username="jane",
                                          password=PASSWORDS["jane"], base_url=server[1])
    connection.login()
    connection.upload_file(str(reference))
    stored = uploadarea.area_dir(settings, "jane") / reference.name
    assert hashlib.sha1(stored.read_bytes()).hexdigest() == \
        hashlib.sha1(reference.read_bytes()).hexdigest()
    listed = connection.get("/upload/list/").json()["files"]
    assert [(f["name"], f["size"]) for f in listed] == [(reference.name,
                                                          reference.stat().st_size)]
    connection.get(listed[0]["deleteUrl"])
    assert uploadarea.list_files(settings, "jane") == []


def test_two_submits_at_once_by_one_user_never_share_a_file(server, tmp_path):
    settings = server[0]
    with SQLiteEventStore(settings.db_path) as store:
        seen = {r.event.submission_id for r in store.read_all(types=[ev.SubmissionStarted.type])}
    files = [new_bpixtab(tmp_path / f"bpix_twin{i}.fits", f"TWIN0{i}") for i in (1, 2)]
    results: dict[int, subprocess.CompletedProcess] = {}

    def submit(i: int) -> None:
        results[i] = run(server, "crds.submit", "--files", str(files[i]), "--monitor",
                         "--wait", "--description", f"twin {i}")

    threads = [threading.Thread(target=submit, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(400)
    logs = [_log(results[i]) for i in (0, 1)]
    assert all("status 5" not in text for text in logs), logs  # never a server error
    with SQLiteEventStore(settings.db_path) as store:
        started = [r.event for r in store.read_all(types=[ev.SubmissionStarted.type])
                   if r.event.submission_id not in seen]
    taken = [name for s in started for name in s.files]
    assert started, logs
    assert len(taken) == len(set(taken))  # no file in two submissions
    assert set(taken) <= {f.name for f in files}
    # each run either submitted, or its client refused to post beside the other's upload
    # (crds's own check: "Non-submitted file ... already in the ingest directory"), or the
    # server refused a step of the race with a 4xx (the client prints only the status there)
    for result, text in zip((results[0], results[1]), logs, strict=True):
        assert (result.returncode == 0 and "COMPLETED:" in text) or "Non-submitted file" in \
            text or "upload area is empty" in text or "status 4" in text, text[-3000:]
    with SQLiteEventStore(settings.db_path) as store:  # leave the lock free for others
        for lock in locks.list_locks(store, include_expired=True):
            locks.release_lock(store, lock.instrument, lock.owner, force=True)
    assert Path(settings.ingest).is_dir()


def test_rc_submit_stores_the_redcat_parameters_on_the_submission(server, tmp_path):
    settings = server[0]
    params = tmp_path / "redcat.yaml"
    params.write_text("history_updated: true\nmodes_affected: WFC full frame\n"
                      "useafter_matches: N/A\nfile_type: bad pixel table\n")
    reference = new_bpixtab(tmp_path / "bpix_redcat.fits", "REDCAT01")
    result = run(server, "crds.submit.rc_submit", "--files", str(reference),
                 "--redcat-parameters", str(params), "--description", "redcat fields",
                 "--monitor", "--wait")
    assert result.returncode == 0, _log(result)[-3000:]
    with SQLiteEventStore(settings.db_path) as store:
        started = [r.event for r in store.read_all(types=[ev.SubmissionStarted.type])
                   if reference.name in r.event.files]
        assert len(started) == 1
        assert started[0].redcat == {"history_updated": True,
                                     "modes_affected": "WFC full frame",
                                     "useafter_matches": "N/A",
                                     "file_type": "bad pixel table"}
        for lock in locks.list_locks(store, include_expired=True):  # free for the others
            locks.release_lock(store, lock.instrument, lock.owner, force=True)


def test_the_rc_submit_submission_class_reads_our_form_description(server):
    """``crds.submit.rc_submit.Submission`` (what ReDCaT scripts embed) builds its fields
    from our ``submission_form/redcat_description.yml``; its base URL table names STScI's
    servers, so the script points it at ours, as a site's copy would."""
    _, url, _ = server
    script = textwrap.dedent(f"""
        import crds.submit.rc_submit as rc
        rc.BASE_URLS["test"]["hst"] = {url.rstrip('/') + '/'!r}
        sub = rc.Submission("hst", "test")
        sub["history_updated"] = True
        sub["useafter_matches"] = "N/A"
        sub["modes_affected"] = "all ACS modes"
        try:
            sub["history_updated"] = "maybe"
        except Exception as exc:
            print("refused:", type(exc).__name__)
        print(sorted(sub.keys()))
        print(sub["history_updated"], sub["useafter_matches"])
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_env(server),
                            capture_output=True, text=True, timeout=120, cwd=server[2])
    output = _log(result)
    assert result.returncode == 0, output
    assert "history_updated" in output and "modes_affected" in output
    assert "True N/A" in output and "refused:" in output
