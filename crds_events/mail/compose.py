"""What e-mail an event causes: recipients, subject and body, from the event and the facts.

Pure: `compose` reads the event and the composer's `Facts` (what earlier events told:
submitters, certify summaries, users' addresses, affected-dataset counts; `learn` updates
them) and returns a `Composed` e-mail or None. Bodies are short (summaries, certify error
lines, a link to the web page); the whole result lives on the web page. Message-IDs are
deterministic (`message_id_for`: the event's position and the kind), so a resent e-mail
can be recognised as the same one.

Sending is the outbox's job (`crds_events.mail.outbox`); turning events into `EmailQueued`
inside the runner's transaction is the composer handler's
(`crds_events.handlers.email.EmailComposer`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.store.artifacts import ArtifactError, ArtifactStore
from crds_events.store.interface import RecordedEvent
from crds_events.submissions import checklist

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONTEXT_KINDS",
    "FACT_EVENT_TYPES",
    "MAILED_EVENT_TYPES",
    "ComposeOptions",
    "Composed",
    "Facts",
    "compose",
    "learn",
    "message_domain",
    "message_id_for",
    "recipient_warnings",
    "slug",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
MAX_BODY_CHARS = 20_000  # a summary and a link; whole reports live on the web page
MAX_SUMMARY_LINES = 12  # certify summary lines quoted per file

@dataclasses.dataclass(frozen=True)
class Composed:
    """One e-mail about to be queued (what `compose` returns)."""

    kind: str
    subject: str
    body: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    about: str = ""


_SUBMISSION_KINDS: dict[type[ev.Event], str] = {
    ev.SubmissionStarted: "STARTED",
    ev.SubmissionReady: "READY",
    ev.SubmissionRejected: "BAD FILES",
    ev.SubmissionFailed: "FAIL",
    ev.SubmissionConfirmed: "CONFIRMED",
    ev.SubmissionForced: "FORCED",
    ev.SubmissionCancelled: "CANCELLED",
}
_OTHER_KINDS: dict[type[ev.Event], str] = {
    ev.ContextSet: "SET CONTEXT",
    ev.DeliveryFailed: "DELIVERY FAILED",
    ev.DeliveryDirectoryUnavailable: "DELIVERY DIRECTORY UNAVAILABLE",
    ev.DeliveryDirectoryRestored: "DELIVERY DIRECTORY RESTORED",
    ev.ReprocessingReleased: "AFFECTED DATASETS",
    ev.ReprocessingOverdue: "REPROCESSING OVERDUE",
}
# Events that only feed the facts table.
FACT_EVENTS = (ev.FileCertified, ev.UserAdded, ev.UserDisabled, ev.DeliveryCreated,
                ev.AffectedDatasetsComputed)
MAILED_EVENT_TYPES = frozenset(cls.type for cls in (*_SUBMISSION_KINDS, *_OTHER_KINDS))
FACT_EVENT_TYPES = frozenset(cls.type for cls in FACT_EVENTS)
DEFAULT_CONTEXT_KINDS = frozenset({"latest", "operational", "versions", "build"})


def slug(kind: str) -> str:
    """``bad-files`` for ``BAD FILES``: the kind as it appears in ids and Message-IDs."""
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


def _unique(addresses: Iterable[str], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    seen = {a.lower() for a in exclude}
    result = []
    for address in addresses:
        address = address.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return tuple(result)


class Facts:
    """The composer's memory: key -> a plain dict, for facts learned from earlier events (who
    started a submission and their e-mail, certify summaries per file, users' addresses,
    affected-dataset counts). `get` and `put` are the storage; this base keeps them in a
    dict (tests, dry runs); the server's composer keeps them in a table of the log database,
    written in the runner's transaction."""

    def __init__(self) -> None:
        self._values: dict[str, dict] = {}

    def get(self, key: str) -> dict:
        return dict(self._values.get(key, {}))

    def put(self, key: str, value: dict) -> None:
        self._values[key] = dict(value)

    def email_of(self, name: str | None) -> str:
        """The address for a username or an address ('' when unknown or disabled)."""
        if not name:
            return ""
        if "@" in name:
            return name
        user = self.get(f"user:{name}")
        return "" if user.get("disabled") else user.get("email", "")


def learn(facts: Facts, record: RecordedEvent) -> None:
    """Update the facts with what ``record`` tells for later e-mails (idempotent)."""
    event = record.event
    if isinstance(event, ev.UserAdded):
        facts.put(f"user:{event.username}", {"email": event.email, "disabled": False})
        # Operators (and admins) are mailed about the delivery directory and failures.
        operators = facts.get("operators")
        if event.role in ("operator", "admin"):
            operators[event.username] = event.email
        else:
            operators.pop(event.username, None)
        facts.put("operators", operators)
    elif isinstance(event, ev.UserDisabled):
        user = facts.get(f"user:{event.username}")
        facts.put(f"user:{event.username}", {**user, "disabled": True})
        operators = facts.get("operators")
        if operators.pop(event.username, None) is not None:
            facts.put("operators", operators)
    elif isinstance(event, ev.SubmissionStarted):
        facts.put(f"submission:{event.submission_id}", {
            "observatory": event.observatory, "instrument": event.instrument,
            "deliverer": event.deliverer, "description": event.description,
            "change_level": event.change_level, "uploaded": list(event.files),
            # the ingest directory's owner; older events only had the actor
            "submitter": event.user or record.actor or "",
            "other_emails": list(event.other_emails), "kind": event.kind,
            "certified": {},
            # the ReDCaT checklist as answered: READY and CONFIRMED e-mails quote it
            "checklist": [[e["question"], e["text"]] for e in checklist.entries(event.redcat)],
        })
    elif isinstance(event, ev.FileCertified):
        key = f"submission:{event.submission_id}"
        submission = facts.get(key)
        certified = dict(submission.get("certified", {}))
        certified[event.name] = {"original": event.original_name, "status": event.status,
                                 "summary": event.summary}
        facts.put(key, {**submission, "certified": certified})
    elif isinstance(event, ev.DeliveryCreated):
        facts.put(f"delivery:{event.delivery}", {
            "submission_id": event.submission_id, "files": list(event.files),
            "catalog": event.catalog, "observatory": event.observatory,
        })
    elif isinstance(event, ev.AffectedDatasetsComputed):
        facts.put(f"affected:{event.observatory}:{event.new_context}", {
            "old_context": event.old_context, "count": event.count, "digest": event.digest,
            "by_instrument": dict(event.by_instrument),
            # reprocessing's additions: the id list (text artifact) and the error summary
            "ids_digest": event.ids_digest, "errors": dict(event.errors),
            "candidates": event.candidates,
        })


def _indent(text: str, prefix: str = "      ", limit: int = MAX_SUMMARY_LINES) -> list[str]:
    lines = [line.rstrip() for line in str(text).splitlines() if line.strip()]
    shown = [prefix + line for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"{prefix}... ({len(lines) - limit} more lines on the result page)")
    return shown


def _certify_lines(certified: dict, only: Iterable[str] | None = None) -> list[str]:
    names = list(only) if only is not None else sorted(certified)
    lines = []
    for name in names:
        info = certified.get(name)
        if info is None:
            lines.append(f"  {name}")
            continue
        original = info.get("original") or ""
        label = f"{name} ({original})" if original and original != name else name
        lines.append(f"  {label}: {str(info.get('status', '')).upper()}")
        lines.extend(_indent(info.get("summary", "")))
    return lines


def _checklist_lines(info: dict) -> list[str]:
    """The ReDCaT checklist answers of a submission (none: no lines)."""
    answers = info.get("checklist") or []
    if not answers:
        return []
    return ["", "ReDCaT checklist:", *(f"  {question}: {answer}" for question, answer in answers)]


def _file_list(title: str, names: Sequence[str]) -> list[str]:
    if not names:
        return []
    return ["", f"{title}:", *(f"  {name}" for name in names)]


def _finish(lines: list[str], link: str) -> str:
    body = "\n".join(lines).rstrip() + "\n"
    if len(body) > MAX_BODY_CHARS:
        cut = body[:MAX_BODY_CHARS].rsplit("\n", 1)[0]
        body = f"{cut}\n... (truncated; the whole result is at {link})\n"
    return body


@dataclasses.dataclass(frozen=True)
class ComposeOptions:
    """What composition needs besides the event: recipients lists, the web address, which
    context pointers are announced."""

    observatory: str = "hst"
    base_url: str = DEFAULT_BASE_URL
    redcat: tuple[str, ...] = ()
    devs: tuple[str, ...] = ()
    dpas: tuple[str, ...] = ()
    context_kinds: frozenset[str] = DEFAULT_CONTEXT_KINDS
    root: str = ""  # the server root: affected-dataset ids are read from its artifacts

    @classmethod
    def from_settings(cls, settings: Settings, *, base_url: str | None = None,
                      context_kinds: Iterable[str] | None = None) -> ComposeOptions:
        return cls(
            observatory=settings.observatory,
            base_url=(base_url or DEFAULT_BASE_URL).rstrip("/"),
            redcat=settings.recipients_redcat, devs=settings.recipients_devs,
            dpas=settings.recipients_dpas,
            context_kinds=frozenset(context_kinds) if context_kinds is not None
            else DEFAULT_CONTEXT_KINDS,
            root=str(settings.root),
        )


def _compose_submission(record: RecordedEvent, facts: Facts, opts: ComposeOptions) -> Composed:
    event = record.event
    kind = _SUBMISSION_KINDS[type(event)]
    sid = event.submission_id
    info = facts.get(f"submission:{sid}")
    obs = (info.get("observatory") or opts.observatory).upper()
    instrument = info.get("instrument", "").upper()
    description = info.get("description", "")
    link = f"{opts.base_url}/submissions/{sid}"

    people = [facts.email_of(info.get("submitter")), facts.email_of(info.get("deliverer")),
              *info.get("other_emails", ())]
    if isinstance(event, ev.SubmissionConfirmed | ev.SubmissionForced | ev.SubmissionCancelled):
        people.append(facts.email_of(event.by))
    if isinstance(event, ev.SubmissionForced):
        people.append(facts.email_of(event.lock_owner))
    people.append(facts.email_of(record.actor))  # e.g. the user whose manifest was refused
    to = _unique([*people, *opts.redcat])
    cc = _unique(opts.devs, exclude=to)

    first_line = description.strip().splitlines()[0] if description.strip() else ""
    subject = f"CRDS {obs} {instrument + ' ' if instrument else ''}submission {sid}: {kind}"
    if first_line:
        subject += f" - {first_line[:80]}"

    lines = [f"Submission {sid}: {kind}", ""]
    for label, value in (("Observatory", info.get("observatory") or opts.observatory),
                         ("Instrument", info.get("instrument", "")),
                         ("Deliverer", info.get("deliverer", "")),
                         ("Submitted by", info.get("submitter", "")),
                         ("Kind", info.get("kind", "")),
                         ("Change level", info.get("change_level", ""))):
        if value:
            lines.append(f"{label}: {value}")
    if description:
        lines += ["Description:", *(f"  {line}" for line in description.splitlines())]
    certified = info.get("certified", {})

    if isinstance(event, ev.SubmissionStarted):
        lines += _file_list("Files", event.files)
        lines += ["", "Processing has started; you will get READY, BAD FILES or FAIL next."]
    elif isinstance(event, ev.SubmissionReady):
        if event.rebased_onto:  # a confirm found the edit context moved on
            lines += ["", f">> Rebased onto {event.rebased_onto}: the edit context changed "
                          f"since the last result; the rules were made again on it. Nothing "
                          f"was confirmed: review this result and confirm again."]
        lines += ["", f"New context: {event.new_context}"]
        if info.get("kind") == "delete":  # its files are the references taken out
            lines += _file_list("References deleted from the rules", info.get("uploaded", ()))
        generated = set(event.generated)
        lines += _file_list("Generated rules", event.generated)
        submitted = [name for name in event.files if name not in generated]
        if submitted:
            lines += ["", "Certified files:", *_certify_lines(certified, submitted)]
        lines += _checklist_lines(info)
        lines += ["", "Review the results, then confirm or cancel:"]
    elif isinstance(event, ev.SubmissionRejected):
        lines += ["", f"Reason: {event.reason}"]
        if event.bad_files:
            lines += ["", "Files with certify errors:", *_certify_lines(certified, event.bad_files)]
        lines += _file_list("Duplicates of files already known", event.duplicates)
        others = [n for n in event.files if n not in set(event.bad_files) | set(event.duplicates)]
        if others:
            lines += ["", "Other files:", *_certify_lines(certified, others)]
        lines += ["", "Nothing from this submission will be delivered."]
    elif isinstance(event, ev.SubmissionFailed):
        lines += ["", "Processing failed with an error:", *_indent(event.error, "  ", 40)]
        lines += _file_list("Files", event.files)
        lines += ["", "Nothing from this submission will be delivered."]
    elif isinstance(event, ev.SubmissionConfirmed | ev.SubmissionForced):
        verb = "Confirmed" if isinstance(event, ev.SubmissionConfirmed) else "Forced"
        lines += ["", f"{verb} by: {event.by}"]
        if isinstance(event, ev.SubmissionForced) and event.lock_owner:
            lines.append(f"Lock owner: {event.lock_owner}")
        lines.append(f"New edit context: {event.new_context}")
        lines += _file_list("Files", event.files)
        lines += _checklist_lines(info)
        lines += ["", "The files will be delivered to the archive."]
    elif isinstance(event, ev.SubmissionCancelled):
        lines += ["", f"Cancelled by: {event.by}"]
        if event.reason:
            lines.append(f"Reason: {event.reason}")
        lines += _file_list("Files", event.files)
    lines += ["", f"Result page: {link}"]
    return Composed(kind, subject, _finish(lines, link), to, cc, ev.submission_stream(sid))


def _compose_context(record: RecordedEvent, facts: Facts, opts: ComposeOptions) -> Composed | None:
    event = record.event
    if event.kind not in opts.context_kinds:
        return None
    link = f"{opts.base_url}/contexts/{event.context}"
    to = _unique([*opts.redcat, facts.email_of(record.actor)])
    cc = _unique(opts.devs, exclude=to)
    subject = f"CRDS {event.observatory.upper()} Set Context: {event.kind} = {event.context}"
    lines = [f"The {event.observatory} '{event.kind}' context is now {event.context}.", ""]
    lines.append(f"Previous: {event.previous or '(none)'}")
    if event.calver:  # a build context is per calibration software version
        lines.append(f"Calibration software version: {event.calver}")
    if record.actor:
        lines.append(f"Set by: {record.actor}")
    if event.description:
        lines += ["Description:", *(f"  {line}" for line in event.description.splitlines())]
    lines += ["", f"Context page: {link}"]
    return Composed("SET CONTEXT", subject, _finish(lines, link), to, cc,
                    ev.context_stream(event.observatory))


def _operators(facts: Facts, opts: ComposeOptions) -> tuple[str, ...]:
    """Operator and admin users' addresses, then the configured ``devs``."""
    return _unique([*sorted(facts.get("operators").values()), *opts.devs])


def _compose_delivery_directory(record: RecordedEvent, facts: Facts,
                                opts: ComposeOptions) -> Composed:
    event = record.event
    link = f"{opts.base_url}/operate/deliveries"
    obs = event.observatory.upper()
    if isinstance(event, ev.DeliveryDirectoryUnavailable):
        kind = "DELIVERY DIRECTORY UNAVAILABLE"
        subject = f"CRDS {obs} delivery directory UNAVAILABLE: nothing is being archived"
        lines = [f"The delivery directory {event.directory} is not the one this server "
                 f"delivers to:", f"  {event.reason}", "",
                 "Until it is back (mounted again, with its marker file), no delivery is "
                 "published, and none is taken for archived because its manifest is "
                 "absent. Reconciliation resumes by itself when the directory returns."]
    else:
        kind = "DELIVERY DIRECTORY RESTORED"
        subject = f"CRDS {obs} delivery directory restored"
        lines = [f"The delivery directory {event.directory} holds this server's marker "
                 f"again; deliveries are published and reconciled again."]
    lines += ["", f"Deliveries page: {link}"]
    return Composed(kind, subject, _finish(lines, link), _operators(facts, opts), (),
                    ev.delivery_directory_stream(event.observatory))


def _compose_delivery_failed(record: RecordedEvent, facts: Facts,
                             opts: ComposeOptions) -> Composed:
    event = record.event
    info = facts.get(f"delivery:{event.delivery}")
    obs = (info.get("observatory") or opts.observatory).upper()
    link = f"{opts.base_url}/deliveries/{event.delivery}"
    subject = f"CRDS {obs} delivery {event.delivery}: FAILED"
    lines = [f"The archive could not ingest delivery {event.delivery} (.cat_err).", ""]
    if event.reason:
        lines.append(f"Reason: {event.reason}")
    if info.get("submission_id"):
        lines.append(f"Submission: {info['submission_id']} "
                     f"({opts.base_url}/submissions/{info['submission_id']})")
    if info.get("catalog"):
        lines.append(f"Catalog: {info['catalog']}")
    lines += _file_list("Files", info.get("files", ()))
    lines += ["", "An operator can deliver the files again under a new name (Redeliver on "
                  f"the delivery page, or crds-events delivery redeliver {event.delivery}).",
              "", f"Delivery page: {link}"]
    return Composed("DELIVERY FAILED", subject, _finish(lines, link),
                    _unique([*opts.redcat, *_operators(facts, opts)]), (),
                    ev.delivery_stream(event.delivery))


def _compose_reprocessing(record: RecordedEvent, facts: Facts, opts: ComposeOptions) -> Composed:
    event = record.event
    info = facts.get(f"affected:{event.observatory}:{event.new_context}")
    old = info.get("old_context", "")
    link = f"{opts.base_url}/reprocessing/{event.new_context}"
    subject = (f"CRDS {event.observatory.upper()} affected datasets: "
               f"{old or '?'} -> {event.new_context}")
    lines = [f"The pipeline '{event.pipeline}' now runs {event.pushed_context or event.new_context}"
             f"; datasets affected by the change to {event.new_context} can be reprocessed.", ""]
    if old:
        lines.append(f"Old context: {old}")
    lines.append(f"New context: {event.new_context}")
    if info:
        lines.append(f"Affected datasets: {info.get('count', 0)}")
        for instrument, count in sorted(info.get("by_instrument", {}).items()):
            lines.append(f"  {instrument}: {count}")
        if info.get("digest"):
            lines.append(f"Dataset id list: artifact {info['digest']}")
        lines += _affected_id_lines(info, opts)
    lines += ["", "The ids are also served by the JSON-RPC method get_affected_datasets"
                  f"({event.observatory!r}, {old!r}, {event.new_context!r}).",
              f"Reprocessing page: {link}"]
    to = _unique(opts.dpas)
    return Composed("AFFECTED DATASETS", subject, _finish(lines, link), to,
                    _unique(opts.devs, exclude=to), ev.reprocessing_stream(event.observatory))


MAX_IDS_IN_MAIL = 500  # affected ids quoted in the DPAS e-mail; the rest by RPC / CLI


def _affected_id_lines(info: dict, opts: ComposeOptions) -> list[str]:
    """The error summary and the affected ids (the first MAX_IDS_IN_MAIL) for DPAS."""
    lines: list[str] = []
    errors = info.get("errors") or {}
    if errors:
        lines += ["", "Lookup errors under the new context (datasets):"]
        lines += [f"  {count:>8}  {message}" for message, count in list(errors.items())[:10]]
    digest = info.get("ids_digest")
    if not digest or not opts.root:
        return lines
    try:
        ids = ArtifactStore.for_root(opts.root).get_text(digest).split()
    except ArtifactError as exc:  # the list is still served by RPC; say why it is missing
        return [*lines, "", f"(dataset id list unavailable here: {exc})"]
    shown = ids[:MAX_IDS_IN_MAIL]
    lines += ["", f"Affected dataset ids ({len(ids)}):", *(f"  {i}" for i in shown)]
    if len(ids) > len(shown):
        lines.append(f"  ... and {len(ids) - len(shown)} more (crds-events repro ids, or RPC)")
    return lines


def _compose_repro_overdue(record: RecordedEvent, facts: Facts,
                           opts: ComposeOptions) -> Composed:
    event = record.event
    hours = event.waited_seconds / 3600
    subject = (f"CRDS {event.observatory.upper()} reprocessing for {event.new_context} held "
               f"{hours:.1f} h: pipeline '{event.pipeline}' has not pushed it")
    link = f"{opts.base_url}/reprocessing/{event.new_context}"
    lines = [f"The affected datasets for {event.new_context} are held until pipeline "
             f"'{event.pipeline}' reports running it, and it has not after {hours:.1f} hours "
             f"(held since {event.held_since}).", "",
             "DPAS has not been sent the dataset ids. Check the pipeline's CRDS sync; the ids "
             "go out as soon as it pushes the new context.", "", f"Reprocessing page: {link}"]
    return Composed("REPROCESSING OVERDUE", subject, _finish(lines, link), _unique(opts.devs),
                    (), ev.reprocessing_stream(event.observatory))


def compose(record: RecordedEvent, facts: Facts, opts: ComposeOptions) -> Composed | None:
    """The e-mail for one event (None: this event is not mailed). Pure given the facts."""
    event_type = type(record.event)
    if event_type in _SUBMISSION_KINDS:
        composed = _compose_submission(record, facts, opts)
    elif event_type is ev.ContextSet:
        composed = _compose_context(record, facts, opts)
    elif event_type is ev.DeliveryFailed:
        composed = _compose_delivery_failed(record, facts, opts)
    elif event_type in (ev.DeliveryDirectoryUnavailable, ev.DeliveryDirectoryRestored):
        composed = _compose_delivery_directory(record, facts, opts)
    elif event_type is ev.ReprocessingReleased:
        composed = _compose_reprocessing(record, facts, opts)
    elif event_type is ev.ReprocessingOverdue:
        composed = _compose_repro_overdue(record, facts, opts)
    else:
        return None
    if composed is None:
        return None
    # A header cannot hold line breaks (user text such as a description may have them).
    return dataclasses.replace(composed, subject=" ".join(composed.subject.split()))


def message_id_for(position: int, kind: str, domain: str) -> str:
    """The deterministic Message-ID of the e-mail caused by the event at ``position``."""
    return f"<crds-events.{position}.{slug(kind)}@{domain}>"


def message_domain(settings: Settings) -> str:
    """``<observatory>.<domain of smtp_from>``: stable for a server, whatever the host."""
    domain = settings.smtp_from.rpartition("@")[2].strip(" >") or "localhost"
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain) or "localhost"
    return f"{settings.observatory}.{domain}"


def recipient_warnings(settings: Settings) -> list[str]:
    """What ``serve`` warns of at start and /health lists: a redcat or DPAS recipients list
    left empty. Not an error (a test server mails nobody), but the e-mails meant for them
    then reach only the people involved, or nobody: those are recorded as not sent."""
    warnings = []
    if not settings.recipients_redcat:
        warnings.append(
            "no redcat recipient configured ([recipients] redcat, or "
            "$CRDS_EVENTS_RECIPIENTS_REDCAT): submission, set-context and delivery e-mails go "
            "only to the people involved; one with nobody to go to is recorded as "
            "'not sent: no recipients'")
    if not settings.recipients_dpas:
        warnings.append(
            "no DPAS recipient configured ([recipients] dpas, or "
            "$CRDS_EVENTS_RECIPIENTS_DPAS): affected-datasets e-mails reach no DPAS address "
            "(devs only, if set) and are otherwise recorded as 'not sent: no recipients'")
    return warnings
