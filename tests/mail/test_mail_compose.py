"""E-mail composition: each mailed event kind -> subject, recipients and body lines.

Events are appended to a real SQLite log and turned into `EmailQueued` by the real
`HandlerRunner` running the `EmailComposer`.
"""

from __future__ import annotations

import hashlib

import pytest

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.mail.compose import message_id_for
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.folds import EMAILS
from crds_events.store.handler import set_checkpoint
from crds_events.store.projections import TableProjection, read_table
from crds_events.store.root import init_root

REDCAT = ("redcat@example.org", "team@example.org")
DEVS = ("devs@example.org",)
DPAS = ("dpas@example.org",)
BASE = "http://crds.example.org:9000"


@pytest.fixture
def settings(tmp_path):
    settings = load_settings(tmp_path / "root", {
        "observatory": "jwst", "recipients_redcat": REDCAT, "recipients_devs": DEVS,
        "recipients_dpas": DPAS, "smtp_from": "crds@mail.example.org",
    }, environ={})
    init_root(settings)
    return settings


@pytest.fixture
def log(settings):
    store = SQLiteEventStore(settings.db_path)
    yield store
    store.close()


@pytest.fixture
def runner(settings, log):
    # Set up before any event is appended: the composer mails only what follows its setup.
    runner = HandlerRunner(log, [EmailComposer(settings, base_url=BASE), TableProjection(EMAILS)])
    runner.setup()
    return runner


def queued(log: SQLiteEventStore, after: int = 0) -> list:
    return [r for r in log.read_all(after, types=["EmailQueued"])]


def mail_for(log, runner, event, actor="alice"):
    """Append ``event`` as ``actor``, run the handlers, return (position, the one EmailQueued)."""
    before = log.head()
    position = log.record(event, meta={"actor": actor}).position
    runner.run_until_idle()
    mails = queued(log, before)
    assert len(mails) == 1, [m.data for m in mails]
    record = mails[0]
    assert record.meta["causation_id"] == position
    return position, record.event


def started(sid="sub-1", **changes):
    fields = dict(
        submission_id=sid, observatory="jwst", deliverer="Alice Smith", instrument="nircam",
        description="New darks for NIRCam\nsecond line", files=("a_dark.fits", "b_dark.fits"),
        change_level="MODERATE", other_emails=("pi@example.edu",),
    )
    fields.update(changes)
    return ev.SubmissionStarted(**fields)


def add_users(log):
    log.record(ev.UserAdded("alice", "alice@example.org"))
    log.record(ev.UserAdded("bob", "bob@example.org"))
    log.record(ev.UserAdded("carol", "carol@example.org"))


def certify(log, sid, name, original, status, summary):
    log.record(ev.FileCertified(
        submission_id=sid, name=name, original_name=original, sha1="0" * 40, size=10,
        kind="reference", instrument="nircam", filekind="dark", status=status,
        summary=summary,
    ))


def test_started(log, runner, settings):
    add_users(log)
    position, mail = mail_for(log, runner, started())
    assert mail.kind == "STARTED"
    assert mail.subject == "CRDS JWST NIRCAM submission sub-1: STARTED - New darks for NIRCam"
    # submitter (the actor, resolved through UserAdded), the manifest's other e-mails, redcat
    assert mail.to == ("alice@example.org", "pi@example.edu", *REDCAT)
    assert mail.cc == DEVS
    assert mail.about == "submission:sub-1"
    assert mail.message_id == f"<crds-events.{position}.started@jwst.mail.example.org>"
    assert mail.message_id == message_id_for(position, "STARTED", "jwst.mail.example.org")
    assert mail.email_id == f"{position}-started"
    assert mail.body_digest == hashlib.sha256(mail.body.encode()).hexdigest()
    lines = mail.body.splitlines()
    for expected in ("Submission sub-1: STARTED", "Instrument: nircam",
                     "Deliverer: Alice Smith", "Change level: MODERATE", "  a_dark.fits",
                     "  b_dark.fits", "  second line", f"Result page: {BASE}/submissions/sub-1"):
        assert expected in lines


def test_ready_lists_certify_results_and_new_rules(log, runner):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    certify(log, "sub-1", "jwst_nircam_dark_0007.fits", "a_dark.fits", "ok", "")
    certify(log, "sub-1", "jwst_nircam_dark_0008.fits", "b_dark.fits", "warning",
            "WARNING: keyword READPATT has an unusual value\nWARNING: second remark")
    runner.run_until_idle()
    generated = ("jwst_nircam_dark_0003.rmap", "jwst_nircam_0042.imap", "jwst_0101.pmap")
    _, mail = mail_for(log, runner, ev.SubmissionReady(
        submission_id="sub-1",
        files=("jwst_nircam_dark_0007.fits", "jwst_nircam_dark_0008.fits", *generated),
        new_context="jwst_0101.pmap", generated=generated,
    ), actor="crds-events")
    assert mail.kind == "READY"
    assert mail.subject.endswith("submission sub-1: READY - New darks for NIRCam")
    # the submitter is remembered from SubmissionStarted although this event's actor differs
    assert mail.to == ("alice@example.org", "pi@example.edu", *REDCAT)
    lines = mail.body.splitlines()
    assert "New context: jwst_0101.pmap" in lines
    for name in generated:
        assert f"  {name}" in lines
    assert "  jwst_nircam_dark_0007.fits (a_dark.fits): OK" in lines
    assert "  jwst_nircam_dark_0008.fits (b_dark.fits): WARNING" in lines
    assert "      WARNING: keyword READPATT has an unusual value" in lines
    assert "      WARNING: second remark" in lines


def test_bad_files_carries_certify_errors(log, runner):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    error = "ERROR: READPATT='BOGUS' not in ('NIS', 'RAPID')\nERROR: missing keyword USEAFTER"
    certify(log, "sub-1", "jwst_nircam_dark_0007.fits", "a_dark.fits", "error", error)
    runner.run_until_idle()
    _, mail = mail_for(log, runner, ev.SubmissionRejected(
        submission_id="sub-1", reason="1 file failed certification",
        files=("jwst_nircam_dark_0007.fits",), bad_files=("jwst_nircam_dark_0007.fits",),
        duplicates=("b_dark.fits",),
    ))
    assert mail.kind == "BAD FILES"
    assert ": BAD FILES - " in mail.subject
    lines = mail.body.splitlines()
    assert "Reason: 1 file failed certification" in lines
    assert "  jwst_nircam_dark_0007.fits (a_dark.fits): ERROR" in lines
    for error_line in error.splitlines():
        assert "      " + error_line in lines
    index = lines.index("Duplicates of files already known:")
    assert lines[index + 1] == "  b_dark.fits"


def test_rejected_manifest_without_start_mails_the_user(log, runner):
    add_users(log)
    _, mail = mail_for(log, runner, ev.SubmissionRejected(
        submission_id="sub-9", reason="submission.yaml: field 'instrument': unknown 'foo'",
    ), actor="bob")
    assert mail.to == ("bob@example.org", *REDCAT)
    assert "Reason: submission.yaml: field 'instrument': unknown 'foo'" in mail.body


def test_fail(log, runner):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    runner.run_until_idle()
    _, mail = mail_for(log, runner, ev.SubmissionFailed(
        submission_id="sub-1", error="Traceback ...\nOSError: disk full",
    ))
    assert mail.kind == "FAIL"
    assert mail.subject.endswith(": FAIL - New darks for NIRCam")
    assert "  OSError: disk full" in mail.body.splitlines()


@pytest.mark.parametrize("kind, event, extra", [
    ("CONFIRMED", ev.SubmissionConfirmed("sub-1", "alice", ("x.fits",), "jwst_0101.pmap"),
     ()),
    ("FORCED", ev.SubmissionForced("sub-1", "bob", ("x.fits",), "jwst_0101.pmap",
                                   lock_owner="carol"), ("bob@example.org", "carol@example.org")),
    ("CANCELLED", ev.SubmissionCancelled("sub-1", "bob", ("x.fits",), reason="wrong files"),
     ("bob@example.org",)),
])
def test_decisions(log, runner, kind, event, extra):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    runner.run_until_idle()
    _, mail = mail_for(log, runner, event, actor=event.by)
    assert mail.kind == kind
    assert mail.subject.endswith(f": {kind} - New darks for NIRCam")
    assert mail.to == ("alice@example.org", "pi@example.edu", *extra, *REDCAT)
    lines = mail.body.splitlines()
    assert "  x.fits" in lines
    if kind == "CANCELLED":
        assert "Cancelled by: bob" in lines and "Reason: wrong files" in lines
    else:
        assert "New edit context: jwst_0101.pmap" in lines
    if kind == "FORCED":
        assert "Lock owner: carol" in lines


def test_set_context_mailed_for_operational_pointer_only(log, runner):
    add_users(log)
    before = log.head()
    log.record(ev.ContextSet("jwst", "edit", "jwst_0101.pmap"), meta={"actor": "carol"})
    runner.run_until_idle()
    assert queued(log, before) == []  # edit moves on every confirm: the CONFIRMED mail says so
    _, mail = mail_for(log, runner, ev.ContextSet(
        "jwst", "latest", "jwst_0101.pmap", previous="jwst_0100.pmap",
        description="Monthly darks"), actor="carol")
    assert mail.kind == "SET CONTEXT"
    assert mail.subject == "CRDS JWST Set Context: latest = jwst_0101.pmap"
    assert mail.to == (*REDCAT, "carol@example.org")
    assert mail.cc == DEVS
    lines = mail.body.splitlines()
    assert "Previous: jwst_0100.pmap" in lines
    assert "  Monthly darks" in lines
    assert f"Context page: {BASE}/contexts/jwst_0101.pmap" in lines


def test_delivery_failed_goes_to_redcat_operators_and_devs(log, runner):
    log.record(ev.UserAdded("olga", "olga@example.org", role="operator"))
    log.record(ev.UserAdded("adam", "adam@example.org", role="admin"))
    log.record(ev.UserAdded("sam", "sam@example.org"))  # a submitter: not an operator
    log.record(ev.UserAdded("gone", "gone@example.org", role="operator"))
    log.record(ev.UserDisabled("gone"))
    log.record(ev.DeliveryCreated("jwst_0007", "jwst", "sub-1", ("a.fits", "b.rmap"),
                                  catalog="/cat/jwst_0007.cat"))
    runner.run_until_idle()
    _, mail = mail_for(log, runner, ev.DeliveryFailed("jwst_0007", reason="checksum mismatch"),
                       actor="archive")
    assert mail.kind == "DELIVERY FAILED"
    # issue 13: redcat and the operators, not only devs (empty by default)
    assert mail.to == (*REDCAT, "adam@example.org", "olga@example.org", *DEVS)
    assert mail.cc == ()
    assert "crds-events delivery redeliver jwst_0007)." in mail.body
    assert mail.subject == "CRDS JWST delivery jwst_0007: FAILED"
    lines = mail.body.splitlines()
    assert "Reason: checksum mismatch" in lines
    assert "  a.fits" in lines and "  b.rmap" in lines
    assert f"Submission: sub-1 ({BASE}/submissions/sub-1)" in lines


def test_reprocessing_released_goes_to_dpas(log, runner):
    log.record(ev.AffectedDatasetsComputed("jwst", "jwst_0100.pmap", "jwst_0101.pmap", 1234,
                                           "sha256:abc", by_instrument={"nircam": 1200,
                                                                        "miri": 34}))
    runner.run_until_idle()
    _, mail = mail_for(log, runner, ev.ReprocessingReleased(
        "jwst", "jwst_0101.pmap", "pipeline", pushed_context="jwst_0101.pmap"))
    assert mail.kind == "AFFECTED DATASETS"
    assert mail.to == DPAS and mail.cc == DEVS
    assert mail.subject == "CRDS JWST affected datasets: jwst_0100.pmap -> jwst_0101.pmap"
    lines = mail.body.splitlines()
    assert "Affected datasets: 1234" in lines
    assert "  miri: 34" in lines and "  nircam: 1200" in lines


def test_replay_never_queues_twice(log, runner, settings):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    log.record(ev.SubmissionFailed("sub-1", "boom"))
    runner.run_until_idle()
    first = queued(log)
    assert [m.event.kind for m in first] == ["STARTED", "FAIL"]
    # Forget the checkpoint (as after a crash before it was stored): replay from scratch.
    with log.transaction() as tx:
        set_checkpoint(tx, EmailComposer.name, 0)
    runner.run_until_idle()
    assert queued(log) == first
    emails = read_table(log, TableProjection(EMAILS))
    assert sorted(row["kind"] for row in emails.values()) == ["FAIL", "STARTED"]
    assert all(row["state"] == "queued" for row in emails.values())


def test_submitter_is_the_events_user_when_given(log, runner):
    add_users(log)
    # submitted through the drop directory of bob, recorded by the watcher
    _, mail = mail_for(log, runner, started(user="bob", kind="references", other_emails=()),
                       actor="crds-events")
    assert mail.to == ("bob@example.org", *REDCAT)
    assert "Submitted by: bob" in mail.body.splitlines()
    assert "Kind: references" in mail.body.splitlines()


def test_history_before_mail_was_enabled_is_not_mailed(log, settings):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    log.record(ev.ContextSet("jwst", "latest", "jwst_0100.pmap"))
    runner = HandlerRunner(log, [EmailComposer(settings, base_url=BASE)])
    runner.run_until_idle()
    assert queued(log) == []
    # ... but what history taught it (the submitter) is used for later mail
    _, mail = mail_for(log, runner, ev.SubmissionFailed("sub-1", "boom"), actor="crds-events")
    assert mail.to[0] == "alice@example.org"


def test_mail_history_option_mails_earlier_events(log, settings):
    log.record(started(), meta={"actor": "alice"})
    runner = HandlerRunner(log, [EmailComposer(settings, mail_history=True)])
    runner.run_until_idle()
    (mail,) = [m.event for m in queued(log)]
    assert mail.kind == "STARTED"
    assert "Result page: http://127.0.0.1:8000/submissions/sub-1" in mail.body  # default URL


def test_no_recipients_nothing_queued(tmp_path):
    settings = load_settings(tmp_path / "bare", {}, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [EmailComposer(settings)])
        runner.setup()
        log.record(ev.DeliveryFailed("hst_0001"))  # devs list empty
        log.record(started(observatory="hst", other_emails=()), meta={"actor": "nobody"})
        runner.run_until_idle()
        assert queued(log) == []


def test_long_summaries_are_truncated(log, runner):
    add_users(log)
    log.record(started(), meta={"actor": "alice"})
    summary = "\n".join(f"ERROR: problem {i}" for i in range(100))
    certify(log, "sub-1", "x.fits", "a_dark.fits", "error", summary)
    runner.run_until_idle()
    _, mail = mail_for(log, runner, ev.SubmissionRejected(
        "sub-1", "bad", files=("x.fits",), bad_files=("x.fits",)))
    lines = mail.body.splitlines()
    assert "      ERROR: problem 11" in lines
    assert "      ERROR: problem 12" not in lines
    assert "      ... (88 more lines on the result page)" in lines
