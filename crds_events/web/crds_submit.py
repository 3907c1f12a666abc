"""The submission half of the ``crds submit`` web protocol: jpoll channels, the submission
forms, certify-only and the pipeline's confirm/cancel.

* ``GET /jpoll/open_channel``: reserves a submission id for this session's next
  submission and answers its unguessable jpoll key (a JSON string, `crds_events.web.jpoll`);
  ``python -m crds.submit.monitor --key KEY`` reads the progress with it.
* ``/batch_submit_references/``, ``/submission_form/redcat_submit/`` (``crds rc_submit``),
  ``/submit/reference/``, ``/submit/mapping/``: GET gives the form and the ``csrftoken``
  cookie; POST turns every complete file of the user's upload area
  (`crds_events.submissions.uploadarea`) plus the form's fields into a drop, through the
  same drop box as the drop directory and ``crds-events submit``
  (`crds_events.submissions.dropbox.drop_uploads`): the ingest watcher starts it and the
  submission worker processes it. The form's fields: ``description``, ``change_level``,
  ``instrument`` (else the one selected at login), ``pmap_mode`` (``pmap_edit``,
  ``pmap_latest``/``pmap_operational`` or ``pmap_text`` with ``pmap_text``/``pmap_name``:
  the derive-from context), ``auto_rename``, ``creator`` (the ReDCaT creator name),
  ``deliverer``, ``other_email(s)`` and any ReDCaT checklist field (stored on the
  submission as the manifest's ``redcat``). Other fields CRDS's forms have
  (``compare_old_reference``, ...) are accepted and ignored. A refused form (a field's
  problem, an empty upload area) answers 400 naming the field in ``div#error_message``,
  leaves the files in the area, and - when a channel was opened for it - records the
  refusal as the reserved submission's ``SubmissionRejected``, so a monitor waiting on the
  key ends instead of waiting forever.
* ``/certify/``: certify-only. POST certifies the area's files (each in a contained child,
  `crds_events.submissions.contained`) against the derive-from context and answers the
  report; no submission, nothing recorded, files left in place. Errors are also in
  ``div.error_message`` (the client counts them).
* ``POST /submit_confirm_pipeline/`` (``results_id``, ``button`` confirm|cancel): the
  ``--autoconfirm`` path, through `crds_events.submissions.review` as the logged-in user.
  The answer lists the renamed files (an element per uploaded name, whose link is the
  official name) and the new context (an element whose id is the derive-from context), what
  ``crds submit`` parses into its file map.

Every POST needs the Django CSRF pair (`crds_events.web.crds_login.check_csrf`) and a user
who may submit; anonymous callers get 403, never a submission.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, redirect, request, session, url_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.certify.result import FileResult
from crds_events.contexts.pointers import context_pointers
from crds_events.events.limits import truncate_text
from crds_events.store.filestore import FileStore, is_safe_name
from crds_events.submissions import checklist, review, uploadarea
from crds_events.submissions.contained import CertifyLimits, certify_contained
from crds_events.submissions.dropbox import drop_key, drop_uploads, is_drop_id
from crds_events.submissions.manifest import REDCAT_FIELDS, ManifestError
from crds_events.web import get_state, jpoll
from crds_events.web.crds_login import (
    INSTRUMENT_KEY,
    CrdsFail,
    check_csrf,
    crds_page,
    install_errors,
    require_user,
)

__all__ = ["bp", "manifest_fields", "derive_from"]

bp = Blueprint("crds_submit", __name__)
install_errors(bp)

CHANNEL_KEY = "crds_channel"  # the session's reserved submission id (open_channel)
_FORMS = {
    "/batch_submit_references/": "batch",
    "/submission_form/redcat_submit/": "batch",
    "/submit/reference/": "references",
    "/submit/mapping/": "mappings",
}
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f", "")

log = logging.getLogger(__name__)


# --- jpoll -----------------------------------------------------------------------------------


@bp.route("/jpoll/open_channel")
@bp.route("/jpoll/open_channel/")
def open_channel() -> Response:
    require_user()
    submission_id, key = jpoll.new_channel()
    session[CHANNEL_KEY] = submission_id
    return jsonify(key)


# --- the form's fields -> manifest fields ------------------------------------------------------


def _flag(form: Mapping[str, str], name: str, default: bool) -> bool:
    value = form.get(name)
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CrdsFail(400, f"{name}: expected true or false, got {str(value)[:40]!r}")


def derive_from(form: Mapping[str, str]) -> str:
    """The manifest's ``derive_from`` for CRDS's ``pmap_mode`` / ``pmap_name`` choice:
    ``edit`` and ``latest`` follow the pointer when the submission is processed (as CRDS's
    do for concurrent deliveries); ``pmap_text`` names a context."""
    mode = form.get("pmap_mode", "").strip().lower()
    named = (form.get("pmap_text") or form.get("pmap_name") or "").strip()
    if mode in ("", "pmap_edit"):
        return "edit" if mode or not named else named
    if mode in ("pmap_latest", "pmap_operational"):
        return "latest"
    if mode == "pmap_text":
        if not named:
            raise CrdsFail(400, "pmap_text: name the context to derive from (pmap_mode "
                                "pmap_text)")
        return named
    raise CrdsFail(400, f"pmap_mode: {mode[:40]!r} is not one of pmap_edit, pmap_latest, "
                        f"pmap_operational, pmap_text")


def manifest_fields(form: Mapping[str, str], user: users.User, kind: str,
                    selected_instrument: str = "") -> dict[str, Any]:
    """The manifest fields a ``crds submit`` form post asks for (checked by the manifest
    parser itself, which names every problem's field)."""
    instrument = form.get("instrument", "").strip()
    if instrument.lower() in ("", "none"):
        instrument = selected_instrument
    if not instrument:
        raise CrdsFail(400, "instrument: one instrument per submission (the files span "
                            "several or none was selected at login)")
    fields: dict[str, Any] = {
        "deliverer": form.get("deliverer", "").strip() or user.full_name or user.name,
        "instrument": instrument,
        "description": form.get("description", "").strip(),
        "derive_from": derive_from(form),
        "kind": kind,
        "auto_rename": _flag(form, "auto_rename", True),
    }
    level = form.get("change_level", "").strip()
    if level:
        fields["change_level"] = level
    emails = (form.get("other_emails") or form.get("other_email") or "").strip()
    if emails:
        fields["other_emails"] = emails
    redcat = {name: form[name].strip() for name in REDCAT_FIELDS
              if str(form.get(name) or "").strip()}
    creator = (form.get("creator") or "").strip()
    if creator and "creator_name" in REDCAT_FIELDS:
        redcat.setdefault("creator_name", creator)
    if redcat:
        fields["redcat"] = redcat
    return fields


# --- the submission forms ----------------------------------------------------------------------


class _Claimed:
    """A claimed area file handed to the drop box (linked: same file system, no copy)."""

    def __init__(self, path: Path):
        self.path = path
        self.filename = path.name

    def save(self, dst: Path) -> None:
        try:
            os.link(self.path, dst)
        except OSError:
            shutil.copyfile(self.path, dst)


def _reserved(user: str) -> str | None:
    """The session's reserved submission id, once (None when none or already used)."""
    submission_id = session.pop(CHANNEL_KEY, None)
    if not isinstance(submission_id, str) or not is_drop_id(submission_id):
        return None
    state = get_state()
    if state.store.stream_version(ev.submission_stream(submission_id)) != 0 \
            or state.store.find_key(drop_key(submission_id)) is not None \
            or (Path(state.settings.ingest) / user / submission_id).exists():
        return None  # used before (a replayed cookie): never a second drop under one id
    return submission_id


def _refuse(user: str, reserved: str | None, status: int, message: str) -> CrdsFail:
    """The refusal; recorded on the reserved submission so a waiting monitor ends."""
    if reserved:
        with contextlib.suppress(Exception):  # the answer matters more than the record
            get_state().store.record(
                ev.SubmissionRejected(submission_id=reserved, reason=truncate_text(message)),
                meta={"actor": user}, idempotency_key=drop_key(reserved))
    return CrdsFail(status, message)


def _submit(kind: str) -> Any:
    user = require_user()
    settings = get_state().settings
    if request.method == "GET":
        return crds_page(f"Submit ({kind})", form="submission", kind=kind,
                         area=uploadarea.list_files(settings, user.name))
    check_csrf()
    reserved = _reserved(user.name)
    try:
        fields = manifest_fields(request.form, user, kind, session.get(INSTRUMENT_KEY, ""))
    except CrdsFail as exc:
        raise _refuse(user.name, reserved, exc.status, str(exc)) from None
    claim, names = uploadarea.claim(settings, user.name)
    if not names:
        uploadarea.discard(claim)
        raise _refuse(user.name, reserved, 400, "files: your upload area is empty: upload "
                                                "the files first (/upload/chunked/)")
    try:
        submission_id = drop_uploads(settings, user.name, [_Claimed(claim / n) for n in names],
                                     fields, staging_prefix=".crds-submit-",
                                     submission_id=reserved)
    except ManifestError as exc:  # the problems only: the exception's path is the server's
        uploadarea.release(settings, user.name, claim)
        raise _refuse(user.name, reserved, 400, "; ".join(
            f"{field}: {reason}" for field, reason in exc.problems)) from None
    except ValueError as exc:
        uploadarea.release(settings, user.name, claim)
        raise _refuse(user.name, reserved, 400, f"cannot submit: {exc}") from None
    except OSError as exc:
        uploadarea.release(settings, user.name, claim)
        log.exception("crds submit by %s could not be stored", user.name)
        status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 503
        raise CrdsFail(status, f"cannot store the submission now "
                               f"({exc.strerror or 'I/O error'}); try again later") from None
    except BaseException:
        uploadarea.release(settings, user.name, claim)
        raise
    uploadarea.discard(claim)  # the files are in the drop now
    return crds_page("Submission started", submission_id=submission_id, files=names,
                     jpoll_key=jpoll.channel_key(submission_id))


def _form_view(path: str, kind: str):
    def view() -> Any:
        return _submit(kind)

    view.__name__ = "form_" + path.strip("/").replace("/", "_")
    return view


for _path, _kind in _FORMS.items():
    bp.add_url_rule(_path, view_func=_form_view(_path, _kind), methods=["GET", "POST"])


# --- certify only ----------------------------------------------------------------------------


def _context_path(form: Mapping[str, str]) -> Path | None:
    """The derive-from context's file for certify (None: not known here)."""
    wanted = derive_from(form)
    state = get_state()
    name = context_pointers(state.store, state.settings.observatory).get(wanted) \
        if wanted in ("edit", "latest") else wanted
    if not name or not is_safe_name(name):
        return None
    path = FileStore.from_settings(state.settings).directory_for("mapping") / name
    return path if path.is_file() else None


def _certified(name: str, result: FileResult) -> dict[str, Any]:
    shown = [m for m in result.messages if m.level != "info"]
    return {"name": name, "status": result.status,
            "messages": [{"level": m.level, "text": (f"{m.keyword}: " if m.keyword else "")
                          + m.reason} for m in shown],
            "summary": "; ".join(m.reason for m in result.errors)[:2000]}


@bp.route("/submission_form/redcat_description.yml")
def redcat_description() -> Response:
    """The ReDCaT form's description, for ``crds.submit.rc_submit.Submission``."""
    text = yaml.safe_dump(checklist.form_description(), sort_keys=False)
    return Response(text, mimetype="application/x-yaml")


@bp.route("/certify/", methods=["GET", "POST"])
def certify() -> Any:
    user = require_user()
    settings = get_state().settings
    files = uploadarea.list_files(settings, user.name)
    if request.method == "GET":
        return crds_page("Certify files", form="submission", kind="certify-only", area=files)
    check_csrf()
    if not files:
        raise CrdsFail(400, "files: your upload area is empty: upload the files first")
    context = _context_path(request.form)
    limits = CertifyLimits.from_settings(settings)
    tpn_dir = getattr(settings, "tpn_dir", None)
    area = uploadarea.area_dir(settings, user.name)
    options: dict[str, Any] = {"tpn_dir": tpn_dir} if tpn_dir else {}
    if context is not None:
        options.update(context=context, comparison_context=context)
    report = [_certified(f.name, certify_contained(area / f.name, limits, name=f.name,
                                                   **options)) for f in files]
    bad = sum(1 for r in report if r["status"] == "ERRORS")
    return crds_page("Certify results", certified=report,
                     status=200, error="" if not bad else f"{bad} file(s) with errors")


# --- confirm / cancel (--autoconfirm) --------------------------------------------------------


@bp.route("/submit_confirm_pipeline/", methods=["POST"])
def confirm_pipeline() -> Any:
    user = require_user()
    check_csrf()
    submission_id = request.form.get("results_id", "").strip()
    if not submission_id or len(submission_id) > 100 or not is_safe_name(submission_id):
        raise CrdsFail(400, f"results_id: {submission_id[:60]!r} is not a submission id")
    button = request.form.get("button", "").strip().lower()
    if button not in ("confirm", "cancel"):
        raise CrdsFail(400, f"button: {button[:40]!r} is not confirm or cancel")
    state = get_state()
    try:
        if button == "confirm":
            decision = review.confirm(state.settings, state.store, submission_id, user.name)
        else:
            decision = review.cancel(state.settings, state.store, submission_id, user.name,
                                     request.form.get("reason", "").strip()[:500])
        shown = review.show(state.settings, state.store, submission_id)
    except review.ReviewError as exc:
        status = 404 if "no such submission" in str(exc) else 409
        raise CrdsFail(status, str(exc)) from None
    result = shown.get("result") or {}
    renamed = [(f.get("original_name", ""), f.get("official_name", ""))
               for f in result.get("files", []) if f.get("official_name")]
    return crds_page("Submission confirmed" if button == "confirm" else "Submission cancelled",
                     decision={"submission_id": submission_id,
                               "state": "confirmed" if button == "confirm" else "cancelled",
                               "by": user.name, "renamed": renamed if button == "confirm"
                               else [], "derived_from": result.get("derived_from", ""),
                               "new_context": getattr(decision, "new_context", "") or ""})


@bp.route("/submit_confirm_pipeline/", methods=["GET"], endpoint="confirm_pipeline_form")
def confirm_pipeline_form() -> Any:
    require_user()
    return redirect(url_for("crds_submit.form_batch_submit_references"))
