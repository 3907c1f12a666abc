"""Reference-file differences on the web: ``crds diff`` of FITS, ASDF, JSON and YAML.

* ``/diff/<old>/<new>`` (`crds_events.web.pages.contexts.diff`) hands two references to
  `reference_diff_page`: the two stored files compared by `crds_events.files.diff` (FITS:
  astropy's FITSDiff; ASDF/JSON/YAML: tree by tree), shown as a table (where, what, old
  value, new value) with the full report below; ``.json`` twin. A name that is not a plain
  file name, or not in the file store, is a 404 naming it - never a server path.
* ``/diff`` (`compare_form`): a form to pick two files, mappings or references; a half-filled
  form comes back with the input kept and the error beside the field.
* ``/submissions/<id>/diff/<old>/<new>``: a READY submission's new reference (still in its
  work directory, not yet stored) against the stored one it replaces - for those who may
  see the submission.

The result page links each new reference to its diff against the one it replaces with
`reference_diffs` (a template global: ``reference_diffs(result, submission_id)``), built on
`replaced_references` (the replace actions of the submission's logical diffs) and
`reference_diff_url`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, request, url_for

from crds_events.contexts.contents import is_mapping
from crds_events.files.diff import DIFFERENT, ERROR, SAME, diff_references
from crds_events.store.filestore import FileStoreError, check_name
from crds_events.web import get_state
from crds_events.web.pages import common
from crds_events.web.pages.auth import register_error_pages, role_required

__all__ = ["bp", "register", "compare_form", "reference_diff_page", "reference_diff_url",
           "reference_diffs", "replaced_references", "difference_rows"]

bp = Blueprint("refdiff", __name__)

_STATUS_WORDS = {SAME: "identical", DIFFERENT: "different", ERROR: "cannot compare"}
_REPLACED = re.compile(r"replaced '([^']+)' with '([^']+)'")
# "HDU 1: keyword FILTER: 'F200W' -> 'F150W'", "HDU 0: data differ (3 element(s))"
_FITS_LINE = re.compile(r"^(HDU \d+): (.*)$")
# "meta.instrument.detector: 'NRCA1' -> 'NRCB1'", "x.y: removed (was 1)", "x: added 2"
_TREE_LINE = re.compile(r"^(\S+): (.*)$")


# --- the result page's links ----------------------------------------------------------------


def replaced_references(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(old, new)`` reference pairs a submission's logical diffs replace (its result
    artifact's ``diffs``), in order, each once."""
    pairs: list[tuple[str, str]] = []
    for diff in result.get("diffs") or ():
        text = diff.get("text", "") if isinstance(diff, Mapping) else str(diff)
        if isinstance(diff, Mapping) and diff.get("tuple"):
            text = str(diff["tuple"][-1])
        for old, new in _REPLACED.findall(text):
            if not is_mapping(old) and not is_mapping(new) and (old, new) not in pairs:
                pairs.append((old, new))
    return pairs


def reference_diff_url(old: str, new: str, submission_id: str = "") -> str:
    """The page comparing reference ``old`` with ``new``: ``/diff/old/new`` once ``new`` is
    stored; before that (a READY submission's file) the submission's own diff page."""
    if submission_id and not _stored(new):
        return url_for("refdiff.submission_diff", submission_id=submission_id, old=old,
                       new=new)
    return url_for("contexts.diff", old=old, new=new)


def reference_diffs(result: Mapping[str, Any], submission_id: str = "") -> list[dict[str, str]]:
    """``{"old", "new", "url"}`` per reference a submission replaces: what the result page
    links each new reference with (also a template global)."""
    return [{"old": old, "new": new, "url": reference_diff_url(old, new, submission_id)}
            for old, new in replaced_references(result)]


def _stored(name: str) -> bool:
    try:
        return common.file_store().path_for(name).is_file()
    except FileStoreError:
        return False


# --- the table ---------------------------------------------------------------------------


def difference_rows(lines: Iterable[str]) -> list[dict[str, str]]:
    """``files.diff`` difference lines as table rows: where, what changed, old, new."""
    rows = []
    for line in lines:
        where, rest = "", line
        match = _FITS_LINE.match(line) or _TREE_LINE.match(line)
        if match:
            where, rest = match.group(1), match.group(2)
        what, old, new = rest, "", ""
        if " -> " in rest:
            left, new = rest.split(" -> ", 1)
            if ": " in left and where.startswith("HDU "):  # keyword KEY: old
                what, old = left.split(": ", 1)
            elif where.startswith("HDU "):  # EXTNAME 'A', type X, HDU count
                what, old = (left.split(" ", 1) + [""])[:2]
            else:
                what, old = "changed", left
        elif rest.startswith("removed (was "):
            what, old = "removed", rest[len("removed (was "):-1]
        elif rest.startswith("added "):
            what, new = "added", rest[len("added "):]
        rows.append({"where": where, "what": what, "old": old, "new": new})
    return rows


def _reference_path(name: str) -> Path:
    try:
        check_name(name)
        path = common.file_store().path_for(name, "reference")
    except FileStoreError as exc:
        abort(404, str(exc))
    if not path.is_file():
        abort(404, f"reference {name}: not in the file store")
    return path


def _compare(old: str, old_path: Path, new: str, new_path: Path) -> dict[str, Any]:
    result = diff_references(old_path, new_path)
    text = result.text
    for path in (old_path, new_path):  # reports name files: never show a server path
        text = text.replace(str(path), path.name).replace(str(path.parent) + "/", "")
    return {"old": old, "new": new, "status": result.status,
            "status_word": _STATUS_WORDS.get(result.status, str(result.status)),
            "same": result.same, "differences": difference_rows(result.differences),
            "text": text}


def reference_diff_page(old: str, new: str, json_twin: bool = False) -> Any:
    """The page (or JSON) of two stored references' differences."""
    if is_mapping(old) != is_mapping(new):
        abort(400, f"{old} and {new}: compare a mapping with a mapping and a reference "
                   f"with a reference")
    old_path, new_path = _reference_path(old), _reference_path(new)
    data = common.cached("refdiff", (old, new),
                         lambda: _compare(old, old_path, new, new_path), limit=32)
    if json_twin:
        return data
    return render_template("refdiff.html", **data, submission_id="")


@bp.route("/submissions/<submission_id>/diff/<old>/<new>")
@role_required("view_personal")  # a submission's content is personal (the issue-14 policy)
def submission_diff(submission_id: str, old: str, new: str) -> Any:
    from crds_events.submissions import review

    if len(submission_id) > 100:
        abort(404, "not a submission id")
    try:
        shown = review.show(get_state().settings, common.log(), submission_id)
    except review.ReviewError as exc:
        abort(404, str(exc))
    try:
        check_name(new)
    except FileStoreError as exc:
        abort(404, str(exc))
    ours = [f for f in (shown.get("result") or {}).get("files", ())
            if f.get("official_name") == new and f.get("kind") == "reference"]
    if not ours:
        abort(404, f"reference {new}: not a file of submission {submission_id}")
    work = Path(ours[0].get("path") or "")
    if not ours[0].get("path") or not work.is_file():
        if _stored(new):  # confirmed since: the stored copy is the same file
            return redirect(url_for("contexts.diff", old=old, new=new))
        abort(404, f"reference {new}: the submission's copy is gone (cancelled or "
                   f"cleaned up)")
    old_path = _reference_path(old)
    data = _compare(old, old_path, new, work)
    return render_template("refdiff.html", **data, submission_id=submission_id)


# --- the form -----------------------------------------------------------------------------


def compare_form() -> Any:
    """``/diff``: pick two files. Empty: the form; both named: their diff page; otherwise
    the form again, 400, with the input kept and the error beside the field."""
    values = {"old": request.args.get("old", "").strip(),
              "new": request.args.get("new", "").strip()}
    if not request.args:
        return render_template("diff_form.html", values=values, errors={})
    errors: dict[str, str] = {}
    for field, label in (("old", "old"), ("new", "new")):
        value = values[field]
        if not value:
            errors[field] = f"parameter {label!r}: name a file to compare"
            continue
        try:
            check_name(value)
        except FileStoreError as exc:
            errors[field] = f"parameter {label!r}: {exc}"
    if not errors and is_mapping(values["old"]) != is_mapping(values["new"]):
        errors["new"] = ("parameter 'new': compare a mapping with a mapping and a reference "
                         "with a reference")
    if errors:
        # the first line says what both missing parameters are (the form's own words)
        message = "parameters 'old' and 'new': name two files to compare"
        return render_template("diff_form.html", values=values, errors=errors,
                               message=message), 400
    return redirect(url_for("contexts.diff", old=values["old"], new=values["new"]))


def register(app: Flask) -> None:
    """The submission diff page, and `reference_diffs` as a template global (the result
    page's links)."""
    app.register_blueprint(bp)
    app.add_template_global(reference_diffs, "reference_diffs")


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
