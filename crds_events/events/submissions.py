"""Submission events: a submission started, progressed, was certified, ready, rejected or
failed, and confirmed, forced or cancelled by its reviewer.
"""

from __future__ import annotations

import dataclasses

from crds_events.events.registry import Event, register
from crds_events.events.streams import submission_stream

__all__ = [
    "SubmissionStarted",
    "SubmissionProgress",
    "FileCertified",
    "SubmissionReady",
    "SubmissionRejected",
    "SubmissionFailed",
    "SubmissionConfirmed",
    "SubmissionForced",
    "SubmissionCancelled",
]


@register()
class SubmissionStarted(Event):
    """Files landed in an ingest directory with a manifest; processing will begin."""

    # the manifest is the submitter's: only viewers allowed personal data see it
    personal_fields = ("deliverer", "description", "files", "other_emails", "redcat")

    submission_id: str
    observatory: str
    deliverer: str
    instrument: str
    description: str
    files: tuple[str, ...]  # original (uploaded) names
    change_level: str = "SEVERE"
    other_emails: tuple[str, ...] = ()
    redcat: dict = dataclasses.field(default_factory=dict)  # ReDCaT manifest fields
    # Optional fields added by the submission flow (older payloads decode with these
    # defaults): who submitted (the ingest directory's owner), how to process it, and the
    # manifest it came from.
    user: str = ""
    kind: str = "batch"  # batch | references | mappings | delete | add_existing
    derive_from: str = "edit"  # edit | latest | an explicit pmap name
    auto_rename: bool = True
    manifest_sha1: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionProgress(Event):
    """A progress message for the submitter (step name, free text, optional fraction)."""

    personal_fields = ("message",)

    submission_id: str
    message: str
    step: str = ""
    fraction: float | None = None

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class FileCertified(Event):
    """One submitted file was certified (and given its official name)."""

    personal_fields = ("original_name", "summary")

    submission_id: str
    name: str  # official name
    original_name: str
    sha1: str
    size: int
    kind: str  # "reference" | "mapping"
    instrument: str
    filekind: str
    useafter: str = ""
    status: str = "ok"  # "ok" | "warning" | "error"
    summary: str = ""
    report_digest: str = ""  # content-addressed certify report
    # sha1 of the bytes uploaded, when the official file differs from them (HST names
    # rewrite FILENAME/ROOTNAME/HISTORY): duplicate detection refuses both digests.
    original_sha1: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionReady(Event):
    """Processing succeeded: new rules generated, awaiting confirm / force / cancel."""

    submission_id: str
    files: tuple[str, ...]  # official names of submitted and generated files
    new_context: str
    generated: tuple[str, ...] = ()  # generated mappings (subset of files)
    result_digest: str = ""
    # set when a confirm found the edit context moved on and the rules were made again on
    # it: the context this result is now built on (the submitter must review it again)
    rebased_onto: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionRejected(Event):
    """Certification found bad or duplicate files; nothing will be delivered."""

    personal_fields = ("reason",)

    submission_id: str
    reason: str
    files: tuple[str, ...] = ()  # every official name certified in the submission
    bad_files: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    result_digest: str = ""  # artifact: the processing result (optional, added later)

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionFailed(Event):
    """Processing crashed or could not complete (an error, not a bad file)."""

    personal_fields = ("error",)

    submission_id: str
    error: str
    files: tuple[str, ...] = ()
    result_digest: str = ""  # artifact: what is known of the run (optional, added later)

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionConfirmed(Event):
    """The lock holder confirmed: the new pmap becomes the edit context."""

    submission_id: str
    by: str
    files: tuple[str, ...]
    new_context: str

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionForced(Event):
    """Another team member confirmed after the submitter's lock was gone."""

    submission_id: str
    by: str
    files: tuple[str, ...]
    new_context: str
    lock_owner: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionCancelled(Event):
    personal_fields = ("reason",)

    submission_id: str
    by: str
    files: tuple[str, ...] = ()
    reason: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)
