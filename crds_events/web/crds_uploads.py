"""The upload area half of the ``crds submit`` web protocol: upload, list and delete files.

* ``GET /upload/chunked/`` lists the area and hands out the ``csrftoken`` cookie;
  ``POST /upload/chunked/`` (multipart: a ``files`` part and ``csrfmiddlewaretoken``)
  stores one file, whole, or one chunk of it when a ``Content-Range: bytes S-E/T`` header
  comes along (the client sends files over 2 MB in 2 MB chunks). Answers
  ``{"files": [{"name", "size", "complete", "deleteUrl", "deleteType"}]}``.
* ``GET /upload/list/``: ``{"files": [...]}`` of the complete files (what
  ``--keep-existing-files`` compares sizes with and ``--wipe-existing-files`` deletes).
* ``/upload/delete/<name>`` (the ``deleteUrl``): the client GETs it. A GET or DELETE must
  carry the session's ``csrftoken`` cookie (SameSite=Strict, so a link from another site
  deletes nothing), a POST the Django field too.

The area and its rules (safe names, size limit, partial chunks never visible as files, two
uploads of one name at once never mixed) are `crds_events.submissions.uploadarea`'s. Only a
logged-in user who may submit gets past the door (403 otherwise); errors are JSON
``{"error": ...}`` naming the field, never a server path.
"""

from __future__ import annotations

import errno
import logging
import secrets
from typing import Any

from flask import Blueprint, Response, jsonify, request, session

from crds_events.submissions import uploadarea
from crds_events.web import get_state
from crds_events.web.crds_login import (
    HEADER,
    CrdsFail,
    check_csrf,
    cookie_matches,
    install_errors,
    require_user,
)

__all__ = ["bp", "file_info"]

bp = Blueprint("crds_uploads", __name__, url_prefix="/upload")
install_errors(bp)

UPLOAD_SESSION_KEY = "crds_upload_session"  # names this session's partial files

log = logging.getLogger(__name__)


def file_info(name: str, size: int, complete: bool = True) -> dict[str, Any]:
    """One file as the client (jQuery-File-Upload's shape) reads it."""
    return {"name": name, "size": size, "complete": complete,
            "deleteUrl": f"/upload/delete/{name}", "deleteType": "DELETE"}


def _listing(user: str) -> Response:
    files = uploadarea.list_files(get_state().settings, user)
    return jsonify(files=[file_info(f.name, f.size) for f in files])


def _upload_session() -> str:
    token = session.get(UPLOAD_SESSION_KEY)
    if not token:
        token = session[UPLOAD_SESSION_KEY] = secrets.token_hex(16)
    return token


def _disk_error(exc: OSError, user: str) -> CrdsFail:
    log.exception("upload by %s could not be stored", user)
    status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 503
    return CrdsFail(status, f"cannot store the upload now ({exc.strerror or 'I/O error'}); "
                            f"try again later")


@bp.route("/chunked/", methods=["GET", "POST"])
def chunked() -> Response:
    user = require_user()  # before the body is parsed: anonymous uploads cost nothing
    if request.method == "GET":
        return _listing(user.name)
    check_csrf()
    parts = request.files.getlist("files") or request.files.getlist("file")
    if len(parts) != 1:
        raise CrdsFail(400, f"files: expected one uploaded file per request, got {len(parts)}")
    part = parts[0]
    name = part.filename or ""
    settings = get_state().settings
    content_range = request.headers.get("Content-Range")
    try:
        if content_range:
            stored, complete = uploadarea.save_chunk(settings, user.name, _upload_session(),
                                                     name, part.stream, content_range)
        else:
            stored, complete = uploadarea.save_whole(settings, user.name, name,
                                                     part.stream), True
    except uploadarea.UploadAreaError as exc:
        raise CrdsFail(exc.status, str(exc)) from None
    except OSError as exc:
        raise _disk_error(exc, user.name) from None
    return jsonify(files=[file_info(stored.name, stored.size, complete)])


@bp.route("/list/")
def listing() -> Response:
    return _listing(require_user().name)


@bp.route("/delete/<name>", methods=["GET", "POST", "DELETE"])
@bp.route("/delete/<name>/", methods=["GET", "POST", "DELETE"])
def delete(name: str) -> Response:
    user = require_user()
    if request.method == "POST":
        check_csrf()
    elif not (cookie_matches() and (request.method == "GET" or request.headers.get(HEADER))):
        raise CrdsFail(403, "CSRF verification failed: deleting needs this session's "
                            "csrftoken cookie (and for DELETE the X-CSRFToken header)")
    if request.method == "DELETE":
        check_csrf()
    try:
        deleted = uploadarea.delete_file(get_state().settings, user.name, name)
    except uploadarea.UploadAreaError as exc:
        raise CrdsFail(exc.status, str(exc)) from None
    if not deleted:
        raise CrdsFail(404, f"files: {name!r} is not in your upload area")
    return jsonify(files=[{name: True}])
