"""Best references: for a dataset's parameters (typed, or an uploaded FITS header), and an
explorer whose menus offer the values the rules themselves match on."""

from __future__ import annotations

import os
import tempfile

from flask import Blueprint, abort, render_template, request
from werkzeug.exceptions import HTTPException

from crds_events.web.pages import common
from crds_events.web.pages.contexts import mapping_tables

bp = Blueprint("bestrefs", __name__)

_RESERVED = {"context", "header", "instrument_menu"}
_MAX_LINES = 2000


def _context_name() -> str:
    name = request.values.get("context", "").strip()
    if not name:
        latest = common.pointers().get("latest")
        if latest is None:
            abort(400, "parameter 'context': no operational context yet; name a .pmap")
        name = latest["context"]
    if not name.endswith(".pmap"):
        abort(400, f"parameter 'context': {name!r} is not a .pmap")
    return name


def parse_header_text(text: str) -> dict[str, str]:
    """``KEY = VALUE`` (or ``KEY: VALUE``) lines -> dict; 400 naming the bad line."""
    header = {}
    for number, line in enumerate(text.splitlines()[:_MAX_LINES], 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sep in ("=", ":"):
            if sep in line:
                key, value = line.split(sep, 1)
                break
        else:
            abort(400, f"parameter 'header' line {number}: {line[:80]!r} is not KEY = VALUE")
        key, value = key.strip().upper(), value.split("/", 1)[0].strip().strip("'\"").strip()
        if not key:
            abort(400, f"parameter 'header' line {number}: no keyword")
        header[key] = value
    return header


def _uploaded_header() -> dict:
    upload = request.files.get("fits")
    if upload is None or not upload.filename:
        return {}
    from crds_events.files.headers import read_header

    suffix = os.path.splitext(upload.filename)[1] or ".fits"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        upload.save(handle)
        handle.flush()
        try:
            header = read_header(handle.name, original_name=os.path.basename(upload.filename))
        except Exception as exc:  # noqa: BLE001 - any unreadable upload is the user's 400
            abort(400, f"upload {upload.filename!r}: cannot read its header: {exc}")
    return {str(k).upper(): str(v) for k, v in header.items()}


def _compute(context_name: str, header: dict) -> dict:
    from crds_events.rules.bestrefs import DatasetError

    context = common.load_rules(context_name)
    try:
        found = context.best_references(header)
    except DatasetError as exc:
        abort(400, f"dataset: {exc.not_found}")
    except (KeyError, ValueError) as exc:
        abort(400, f"dataset: {exc}")
    return dict(sorted(found.items()))


def _error_field(message: str) -> str:
    """The form field a 400's message is about (shown beside it)."""
    if message.startswith("upload"):
        return "fits"
    if "'context'" in message:
        return "context"
    return "header"


@bp.route("/bestrefs", methods=["GET", "POST"])
@bp.route("/bestrefs.json", methods=["GET", "POST"], endpoint="dataset_json")
def dataset():
    try:
        return _dataset()
    except HTTPException as exc:
        if common.wants_json() or exc.code != 400:
            raise
        # the page again with what was typed, the error beside its field (not a bare 400)
        message = str(exc.description)
        return render_template(
            "bestrefs.html", context=request.values.get("context", "").strip(),
            header={}, bestrefs=None, header_text=request.values.get("header", ""),
            pointers=common.pointers(), title="Best references",
            errors={_error_field(message): message}), 400


def _dataset():
    header_text = request.values.get("header", "")
    header = parse_header_text(header_text)
    header.update({k.upper(): v for k, v in request.values.items()
                   if k not in _RESERVED and v.strip() and k.upper() == k})
    if request.method == "POST":
        header.update(_uploaded_header())
    context = request.values.get("context", "").strip()
    results = None
    if header:
        context = _context_name()
        results = _compute(context, header)
    data = {"context": context, "header": header, "bestrefs": results}
    if results is not None:  # the JSON twin names rejected references too
        from crds_events.web.pages.badness import bad_json

        data["bad"] = bad_json([context, *results.values()])
    return common.respond("bestrefs.html", data, header_text=header_text,
                          pointers=common.pointers(), title="Best references")


def valid_values(context_name: str, instrument: str) -> dict[str, list[str]]:
    """Per parameter of ``instrument``'s rmaps: the values their Match selectors list."""
    def build():
        context = common.load_rules(context_name)
        try:
            imap = context.pipeline.imap(instrument)
        except KeyError:
            abort(400, f"parameter 'instrument': {instrument!r} is not in {context_name}")
        values: dict[str, set[str]] = {}
        for filekind in imap.filekinds:
            rmap_name = imap.selections.get(filekind)
            if not isinstance(rmap_name, str) or not rmap_name.endswith(".rmap"):
                continue
            try:
                table = mapping_tables(os.path.basename(rmap_name))
            except Exception:  # noqa: BLE001 - an unreadable rmap offers no values
                continue
            for row in table["rows"]:
                for column, cell in zip(table["columns"], row["cells"], strict=False):
                    if column and column != "useafter":
                        values.setdefault(column, set()).add(cell)
        return {k: sorted(v) for k, v in sorted(values.items())}
    return common.cached("valid_values", (context_name, instrument), build, limit=32)


@bp.route("/bestrefs/explore")
@bp.route("/bestrefs/explore.json", endpoint="explore_json")
def explore():
    context = _context_name() if common.pointers().get("latest") or request.args.get(
        "context") else ""
    instrument = request.args.get("instrument", "").strip().lower()
    instruments = common.load_rules(context).pipeline.instruments if context else []
    menus = valid_values(context, instrument) if context and instrument else {}
    data = {"context": context, "instruments": instruments, "instrument": instrument,
            "parameters": menus}
    return common.respond("explore.html", data, title="Explore best references")
