"""The ``crds submit`` web protocol over real HTTP: login with Django's CSRF pair and the
instrument lock, lock status, logout, the upload area (whole and chunked files, list,
delete), jpoll channels, and the hostile cases: anonymous callers, missing or wrong CSRF,
traversal names, chunks past the limit or out of order, two uploads of one name at once."""

from __future__ import annotations

import threading

import pytest
from bs4 import BeautifulSoup
from fixtures.crdsweb import ProtocolSession, serving, submit_root

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.submissions import uploadarea
from crds_events.submissions.manifest import DEFAULT_MAX_FILE_SIZE


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("crds_protocol")
    settings = submit_root(work / "root", work)
    with serving(settings) as url:
        yield settings, url


@pytest.fixture
def session(server):
    made = []

    def make(user: str | None = "jane", instrument: str = "none") -> ProtocolSession:
        s = ProtocolSession(server[1])
        made.append(s)
        if user is not None:
            answer = s.login(user, instrument=instrument)
            assert answer.status_code == 200, answer.text
        return s

    yield make
    for s in made:
        s.close()
    with SQLiteEventStore(server[0].db_path) as store:  # each test starts unlocked
        for lock in locks.list_locks(store, include_expired=True):
            locks.release_lock(store, lock.instrument, lock.owner, force=True)
    for user in ("jane", "bob"):
        for f in uploadarea.list_files(server[0], user):
            uploadarea.delete_file(server[0], user, f.name)


def error_div(response) -> str:
    div = BeautifulSoup(response.text, "html.parser").find("div", id="error_message")
    return div.get_text() if div else ""


def lock_status(s: ProtocolSession, user: str) -> dict:
    answer = s.get(f"/lock_status/{user}/")
    assert answer.status_code == 200
    return answer.json()


# --- login, locks, logout ------------------------------------------------------------------


def test_login_takes_the_instrument_lock_and_logout_releases_it(session):
    anonymous = session(None)
    status = lock_status(anonymous, "jane")  # what the client asks before logging in
    assert status["name"] == "" and status["status"] == "ok"
    jane = session("jane", instrument="acs")
    status = lock_status(anonymous, "jane")
    assert status["name"] == "acs" and status["type"] == "instrument"
    assert status["user"] == "jane" and status["is_expired"] is False
    assert status["time_remaining"].count(":") == 2
    # bob cannot log in on ACS while jane holds it; the refusal names her
    bob = session(None)
    refused = bob.login("bob", instrument="acs")
    assert refused.status_code == 409 and "jane" in error_div(refused)
    assert lock_status(anonymous, "bob")["name"] == ""
    jane.get("/logout/")
    assert lock_status(anonymous, "jane")["name"] == ""
    assert jane.get("/upload/list/").status_code == 403  # the session ended too
    assert bob.login("bob", instrument="acs").status_code == 200


def test_logout_from_a_foreign_link_only_asks(session, server):
    jane = session("jane", instrument="acs")
    # a link followed from another site carries no SameSite=Strict csrftoken cookie
    del jane.http.cookies["csrftoken"]
    answer = jane.get("/logout/")
    assert answer.status_code == 200 and 'id="crds-logout"' in answer.text
    assert lock_status(jane, "jane")["name"] == "acs"


def test_login_refusals_name_the_reason(session):
    s = session(None)
    wrong = s.login("jane", password="not-her-password")
    assert wrong.status_code == 401 and "wrong user name or password" in error_div(wrong)
    unknown = s.login("jane", instrument="hubble_cam")
    assert unknown.status_code == 400 and "instrument" in error_div(unknown)
    empty = s.form("/login/", username="", password="")
    assert empty.status_code == 400 and "required" in error_div(empty)
    assert lock_status(s, "jane")["name"] == ""
    assert s.get("/lock_status/..%2Fetc/").status_code in (400, 404)
    assert s.get("/lock_status/Bad Name!/").status_code == 400


def test_csrf_pair_is_required(session, server):
    s = session(None)
    s.get("/login/")
    token = s.csrf
    assert token
    fields = {"username": "jane", "password": "jane-secret-pw", "instrument": "acs"}
    no_field = s.post("/login/", data=fields)
    assert no_field.status_code == 403 and "csrfmiddlewaretoken" in error_div(no_field)
    wrong = s.post("/login/", data={**fields, "csrfmiddlewaretoken": "x" * len(token)})
    assert wrong.status_code == 403 and "does not match" in error_div(wrong)
    cookieless = ProtocolSession(server[1])
    try:  # the field without the cookie (another site posting the form) is refused
        answer = cookieless.post("/login/", data={**fields, "csrfmiddlewaretoken": token})
        assert answer.status_code == 403 and "cookie" in error_div(answer)
    finally:
        cookieless.close()
    assert lock_status(s, "jane")["name"] == ""  # none of them logged in or locked


# --- anonymous callers ---------------------------------------------------------------------


def test_anonymous_callers_get_403_and_nothing_is_stored(session, server):
    settings = server[0]
    s = session(None)
    s.get("/login/")  # a csrftoken, but no login
    for path in ("/upload/chunked/", "/batch_submit_references/", "/submit/reference/",
                 "/submit/mapping/", "/certify/", "/submit_confirm_pipeline/",
                 "/submission_form/redcat_submit/"):
        answer = s.post(path, data={"csrfmiddlewaretoken": s.csrf, "description": "x",
                                    "results_id": "x", "button": "confirm"},
                        files={"files": ("a.fits", b"SIMPLE")})
        assert answer.status_code == 403, (path, answer.status_code)
    for path in ("/upload/list/", "/jpoll/open_channel", "/upload/delete/a.fits"):
        assert s.get(path).status_code == 403, path
    assert not uploadarea.area_dir(settings, "jane").exists() or \
        uploadarea.list_files(settings, "jane") == []
    with SQLiteEventStore(settings.db_path) as store:
        assert not store.read_all(types=[ev.SubmissionStarted.type, ev.SubmissionRejected.type])


# --- the upload area -----------------------------------------------------------------------


def test_whole_and_chunked_uploads_list_and_delete(session, server):
    settings = server[0]
    jane = session()
    assert jane.upload("small.fits", b"x" * 1000).status_code == 200
    data = bytes(range(256)) * 40  # 10,240 bytes in three chunks
    chunks = [(0, 4095), (4096, 8191), (8192, len(data) - 1)]
    for i, (start, end) in enumerate(chunks):
        answer = jane.upload("big.fits", data[start:end + 1],
                             f"bytes {start}-{end}/{len(data)}")
        assert answer.status_code == 200, answer.text
        info = answer.json()["files"][0]
        assert info["complete"] is (i == 2)
        if i < 2:  # a partial upload is never a file of the area
            assert "big.fits" not in jane.listing()
    assert jane.listing() == {"small.fits": 1000, "big.fits": len(data)}
    area = uploadarea.area_dir(settings, "jane")
    assert (area / "big.fits").read_bytes() == data
    listed = jane.get("/upload/list/").json()["files"]
    delete_url = next(f["deleteUrl"] for f in listed if f["name"] == "small.fits")
    assert jane.get(delete_url).status_code == 200  # the client GETs the deleteUrl
    assert jane.listing() == {"big.fits": len(data)}
    assert jane.get("/upload/delete/small.fits").status_code == 404
    # only with the session's csrftoken cookie (a foreign link deletes nothing)
    token = jane.csrf
    del jane.http.cookies["csrftoken"]
    jane.http.cookies.set("csrftoken", "forged")
    foreign = jane.get("/upload/delete/big.fits")
    del jane.http.cookies["csrftoken"]
    jane.http.cookies.set("csrftoken", token)
    assert foreign.status_code == 403 and jane.listing() == {"big.fits": len(data)}
    # bob's area is his own
    assert session("bob").listing() == {}


def test_bad_names_and_csrf_on_uploads(session, server):
    jane = session()
    for name in ("..evil.fits", ".hidden.fits", "a b.fits", "sub%2Fdir.fits"):
        answer = jane.upload(name, b"data")
        assert answer.status_code == 400 and "files" in answer.json()["error"], name
        assert str(server[0].root) not in answer.text
    assert jane.upload("ok.fits", b"data", csrf="").status_code == 403
    assert jane.upload("ok.fits", b"data", csrf="nope").status_code == 403
    assert jane.upload("empty.fits", b"").status_code == 400
    assert jane.get("/upload/delete/..evil.fits").status_code == 400
    assert jane.listing() == {}


def test_chunks_past_the_limit_or_out_of_order_are_refused(session, server):
    jane = session()
    huge = DEFAULT_MAX_FILE_SIZE + 1
    answer = jane.upload("huge.fits", b"x" * 10, f"bytes 0-9/{huge}")
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    answer = jane.upload("late.fits", b"x" * 10, "bytes 10-19/30")  # no first chunk
    assert answer.status_code == 409 and "in order" in answer.json()["error"]
    answer = jane.upload("short.fits", b"x" * 5, "bytes 0-9/30")  # shorter than it says
    assert answer.status_code == 400
    answer = jane.upload("long.fits", b"x" * 50, "bytes 0-9/30")  # longer than it says
    assert answer.status_code == 400
    for header in ("bytes 9-0/30", "bytes 0-30/30", "octets 0-9/30", "bytes 0-9/*"):
        assert jane.upload("bad.fits", b"x" * 10, header).status_code == 400, header
    assert jane.listing() == {}
    partial = uploadarea.area_dir(server[0], "jane") / ".partial"
    assert all(p.stat().st_size == 0 for p in partial.iterdir())  # nothing half-kept


def test_two_chunked_uploads_of_one_name_at_once_stay_whole(session, server):
    one, two = session(), session()
    size, step = 64 * 1024, 8 * 1024
    contents = {one: bytes([1]) * size, two: bytes([2]) * size}
    errors = []
    barrier = threading.Barrier(2)

    def send(s: ProtocolSession) -> None:
        barrier.wait()
        for start in range(0, size, step):
            answer = s.upload("same.fits", contents[s][start:start + step],
                              f"bytes {start}-{start + step - 1}/{size}")
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=send, args=(s,)) for s in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    stored = (uploadarea.area_dir(server[0], "jane") / "same.fits").read_bytes()
    assert stored in contents.values()  # one of them, whole: never a mix


def test_uploads_survive_the_area_being_removed(session, server):
    import shutil

    jane = session()
    assert jane.upload("first.fits", b"1" * 100).status_code == 200
    shutil.rmtree(uploadarea.area_dir(server[0], "jane").parent)  # ingest/jane gone
    assert jane.listing() == {}
    assert jane.upload("second.fits", b"2" * 100).status_code == 200
    assert jane.listing() == {"second.fits": 100}


# --- jpoll channels and submission info ----------------------------------------------------


def test_open_channel_gives_an_unguessable_key(session):
    jane = session()
    first, second = jane.get("/jpoll/open_channel").json(), jane.get("/jpoll/open_channel").json()
    assert first != second
    sid, _, mac = first.rpartition(".")
    assert len(mac) == 32 and sid
    import re

    assert re.fullmatch(r"[a-zA-Z0-9:.\-]{1,128}", first)  # CRDS's process-key pattern
    rpc = jane.post("/json/", json={"jsonrpc": "1.0", "id": 1, "method": "jpoll_pull_messages",
                                    "params": [first, "0"]}).json()
    assert rpc["result"] == [] and rpc["error"] is None
    rpc = jane.post("/json/", json={"jsonrpc": "1.0", "id": 1, "method": "jpoll_pull_messages",
                                    "params": [sid, "0"]}).json()
    assert "not found" in rpc["error"]["message"]


def test_get_submission_info(session):
    s = session(None)
    rpc = s.post("/json/", json={"jsonrpc": "1.0", "id": 1, "method": "get_submission_info",
                                 "params": ["hst", "jane"]}).json()
    info = rpc["result"]
    assert info["ingest_dir"] == "jane/.crds-uploads/" and "batch" in info["submission_kinds"]
    assert info["upload_url"].endswith("/upload/chunked/")
    bad = s.post("/json/", json={"jsonrpc": "1.0", "id": 1, "method": "get_submission_info",
                                 "params": ["hst", "../x"]}).json()
    assert bad["result"] is None and "username" in bad["error"]["message"]


# --- submissions through the forms ---------------------------------------------------------


def _pull(s: ProtocolSession, key: str, timeout: float = 120.0) -> list[dict]:
    import time

    messages, since, deadline = [], "0", time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = s.post("/json/", json={"jsonrpc": "1.0", "id": 1, "method":
                                       "jpoll_pull_messages", "params": [key, since]}).json()
        assert reply["error"] is None, reply
        messages += reply["result"]
        if reply["result"]:
            since = str(reply["result"][-1]["id"])
        if any(m["type"] in ("done", "fail", "cancel") for m in messages):
            return messages
        time.sleep(0.3)
    raise AssertionError(f"no outcome within {timeout} s: {messages}")


@pytest.mark.slow
def test_batch_form_submits_the_area_and_confirm_page_parses(session, server, tmp_path):
    from fixtures.crdsweb import new_bpixtab

    settings = server[0]
    jane = session("jane", instrument="acs")
    reference = new_bpixtab(tmp_path / "bpix_form.fits", "FORM01")
    assert jane.upload(reference.name, reference.read_bytes()).status_code == 200
    key = jane.get("/jpoll/open_channel").json()
    posted = jane.form("/batch_submit_references/", pmap_mode="pmap_edit",
                       pmap_name="hst_9000.pmap", instrument="acs", change_level="MODERATE",
                       creator="ACS Team", description="new bad pixels", auto_rename="True",
                       compare_old_reference="True", modes_affected="WFC",
                       calpipe_version="9.9")
    assert posted.status_code == 200 and not error_div(posted), posted.text
    assert jane.listing() == {}  # taken by the submission
    messages = _pull(jane, key)
    done = [m for m in messages if m["type"] == "done"][0]
    assert done["data"]["status"] == 0, messages
    ready_url = done["data"]["result"]
    sid = ready_url.rsplit("/", 1)[1]
    assert key.startswith(sid + ".")
    with SQLiteEventStore(settings.db_path) as store:
        started = store.read_stream(ev.submission_stream(sid))[0].event
    assert started.user == "jane" and started.change_level == "MODERATE"
    assert started.derive_from == "edit" and started.files == (reference.name,)
    assert started.redcat["creator_name"] == "ACS Team"  # the client's --creator
    assert started.redcat["modes_affected"] == "WFC"
    # what --autoconfirm does: GET the ready page (for the cookie), POST the decision
    page = jane.get("/" + "/".join(ready_url.split("/")[-2:]))
    assert page.status_code == 200 and page.cookies.get("csrftoken")
    confirmed = jane.post("/submit_confirm_pipeline/", data={
        "results_id": sid, "button": "confirm", "csrfmiddlewaretoken": page.cookies["csrftoken"]})
    assert confirmed.status_code == 200 and not error_div(confirmed), confirmed.text
    soup = BeautifulSoup(confirmed.text, "html.parser")  # as crds.submit parses it
    official = soup.find(id=reference.name).a.text
    new_context = soup.find(id="hst_9000.pmap").a.string
    assert official.endswith(".fits") and official != reference.name
    assert new_context == done["data"]["new_context"]
    from crds_events.contexts.pointers import context_pointers

    with SQLiteEventStore(settings.db_path) as store:
        assert context_pointers(store, "hst")["edit"] == new_context
    again = jane.post("/submit_confirm_pipeline/", data={
        "results_id": sid, "button": "confirm", "csrfmiddlewaretoken": jane.csrf})
    assert again.status_code == 409 and "confirmed" in error_div(again)


def test_a_refused_form_keeps_the_files_and_ends_the_monitor(session, server, tmp_path):
    from fixtures.crdsweb import new_bpixtab

    jane = session("jane", instrument="acs")
    reference = new_bpixtab(tmp_path / "bpix_refused.fits", "REFUSED1")
    assert jane.upload(reference.name, reference.read_bytes()).status_code == 200
    key = jane.get("/jpoll/open_channel").json()
    refused = jane.form("/batch_submit_references/", pmap_mode="pmap_edit",
                        instrument="acs", description="", change_level="HUGE")
    assert refused.status_code == 400
    text = error_div(refused)
    assert "description" in text and "change_level" in text
    assert str(server[0].root) not in refused.text
    assert jane.listing() == {reference.name: reference.stat().st_size}
    done = [m for m in _pull(jane, key, 10) if m["type"] == "done"][0]
    assert done["data"]["status"] == 1 and "description" in done["data"]["result"]
    bad_mode = jane.form("/submit/reference/", pmap_mode="pmap_bogus", instrument="acs",
                         description="x")
    assert bad_mode.status_code == 400 and "pmap_mode" in error_div(bad_mode)
    bad_button = jane.post("/submit_confirm_pipeline/", data={
        "results_id": "../x", "button": "confirm", "csrfmiddlewaretoken": jane.csrf})
    assert bad_button.status_code == 400 and "results_id" in error_div(bad_button)
    missing = jane.post("/submit_confirm_pipeline/", data={
        "results_id": "20240101T000000-0badc0de", "button": "confirm",
        "csrfmiddlewaretoken": jane.csrf})
    assert missing.status_code == 404
    # the files are still there for the next try
    assert jane.listing() == {reference.name: reference.stat().st_size}


def test_certify_only_reports_and_submits_nothing(session, server, tmp_path):
    from fixtures.crdsweb import new_bpixtab

    settings = server[0]
    with SQLiteEventStore(settings.db_path) as store:
        before = store.head()
    jane = session()
    good = new_bpixtab(tmp_path / "bpix_certify.fits", "CERT01")
    assert jane.upload(good.name, good.read_bytes()).status_code == 200
    assert jane.upload("broken.fits", b"this is not FITS at all").status_code == 200
    report = jane.form("/certify/", pmap_mode="pmap_edit", pmap_name="hst_9000.pmap",
                       compare_old_reference="True")
    assert report.status_code == 200
    soup = BeautifulSoup(report.text, "html.parser")
    rows = {tr.find_all("td")[0].get_text(): tr.find_all("td")[1].get_text()
            for tr in soup.find(id="certify").find_all("tr")[1:]}
    assert rows[good.name] in ("OK", "WARNINGS") and rows["broken.fits"] == "ERRORS", rows
    assert "1 file(s) with errors" in error_div(report)  # the client counts it an error
    assert any("broken.fits" in d.get_text() for d in soup.find_all("div", class_="error_message"))
    assert set(jane.listing()) == {good.name, "broken.fits"}  # left for the submission
    with SQLiteEventStore(settings.db_path) as store:
        after = store.head()
    assert after == before  # certify-only records nothing
