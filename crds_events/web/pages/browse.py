"""``/browse/<file>``: one file's catalog fields, contents, story, users and constraints."""

from __future__ import annotations

import json

from flask import Blueprint, abort

from crds_events import events as ev
from crds_events.certify.specs import constraints_for
from crds_events.certify.tpn import TpnError, tpn_constraints
from crds_events.contexts.contents import is_mapping, users_of
from crds_events.files.headers import read_header
from crds_events.store.filestore import FileStoreError, check_name
from crds_events.web import visibility
from crds_events.web.pages import common
from crds_events.web.visibility import event_json

bp = Blueprint("browse", __name__)

_TEXT_LIMIT = 400_000  # characters of a mapping shown inline
_OTHERS_TYPES = (ev.ContextSet.type, ev.FileMarkedBad.type, ev.FileMarkedOk.type)


def _catalog_row(name: str) -> dict | None:
    found = common.rows("SELECT * FROM files WHERE name = ?", (name,))
    if not found:
        return None
    row = found[0]
    for key in ("available", "rejected", "blacklisted"):
        row[key] = bool(row.get(key))
    return row


def past_actions(name: str, row: dict | None) -> list:
    """The file's own events: its ``file:<name>`` stream, plus the events of its submission
    and delivery streams, context changes and bad-file marks whose payload names it.

    Each source is an indexed read of a few streams (or, for context and bad-file events,
    of one event type), never a scan of the whole log."""
    log = common.log()
    streams = [ev.file_stream(name)]
    if row:
        if row.get("submission_id"):
            streams.append(ev.submission_stream(row["submission_id"]))
        for delivery in (row.get("delivery") or "").split(","):
            if delivery and not delivery.startswith("pending:"):
                streams.append(ev.delivery_stream(delivery))
    quoted = json.dumps(name)
    found = {}
    for stream in streams:
        for record in log.read_stream(stream):
            if stream == streams[0] or quoted in json.dumps(record.data):
                found[record.position] = record
    # other events naming the file: context changes (mappings) and bad-file marks
    types = _OTHERS_TYPES if is_mapping(name) else _OTHERS_TYPES[1:]
    for record in log.mentioning(types, quoted):
        found.setdefault(record.position, record)
    return [found[p] for p in sorted(found, reverse=True)]


def _contents(name: str, row: dict | None) -> dict:
    files = common.file_store()
    try:
        path = files.path_for(name)
    except FileStoreError:
        return {"kind": "", "error": "not a CRDS file name"}
    if not path.is_file():
        return {"kind": "", "error": "not in the file store (not delivered here yet)"}
    if is_mapping(name):
        text = path.read_text(encoding="utf-8", errors="replace")
        return {"kind": "mapping", "text": text[:_TEXT_LIMIT],
                "truncated": len(text) > _TEXT_LIMIT}
    def build():
        try:
            header = read_header(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable header is shown, not fatal
            return {"kind": "reference", "error": f"header unreadable: {exc}"}
        return {"kind": "reference",
                "header": {str(k): (v if isinstance(v, (str, int, float, bool)) or v is None
                                    else str(v)) for k, v in header.items()}}
    return common.cached("header", (name, row.get("sha1") if row else ""), build, limit=128)


def _used_by(name: str) -> list[str]:
    files = common.file_store()
    return common.cached("used_by", (name, common.head()),
                         lambda: sorted(users_of(files, [name])[name]), limit=128)


def constraints_source() -> dict:
    """Where the server's certify takes reference constraints from: the site's .tpn
    directory (the ``tpn_dir`` setting; shown by its last two path parts, not the whole
    server path) or the built-in specs."""
    tpn_dir = common.get_state().settings.tpn_dir
    if tpn_dir is None:
        return {"kind": "builtin", "shown": "the built-in constraint specs"}
    return {"kind": "tpn", "shown": "the site's .tpn files (setting tpn_dir: …/"
            + "/".join(tpn_dir.parts[-2:]) + ")"}


def _constraints(row: dict | None) -> list[dict]:
    if not row or row.get("kind") != "reference" or not row.get("instrument"):
        return []
    settings = common.get_state().settings
    observatory = row.get("observatory") or settings.observatory
    filekind = row.get("filekind") or "all"
    if settings.tpn_dir is not None:
        try:
            found = tpn_constraints(settings.tpn_dir, observatory, row["instrument"], filekind)
        except TpnError:
            # A broken site file: the page still shows; certify reports it on submissions.
            return [{"name": "", "keytype": "", "datatype": "", "presence": "",
                     "condition": "", "values": [], "range": None, "expression": "",
                     "source": "a .tpn file for this type cannot be read"}]
    else:
        found = constraints_for(observatory, row["instrument"], filekind)
    return [{"name": c.name, "keytype": c.keytype, "datatype": c.datatype,
             "presence": c.presence, "condition": c.condition or "",
             "values": list(c.values), "range": list(c.value_range) if c.value_range else None,
             "expression": c.expression or "", "source": c.source} for c in found]


@bp.route("/browse/<name>")
def file(name: str):
    json_twin = False
    # a JSON twin unless a file of that very name is known
    if (name.endswith(".json") and _catalog_row(name) is None
            and _catalog_row(name[:-5]) is not None):
        json_twin, name = True, name[:-5]
    try:
        check_name(name)
    except FileStoreError as exc:
        abort(404, f"{name}: {exc}")
    row = _catalog_row(name)
    on_disk = common.file_store().path_for(name).is_file()
    if row is None and not on_disk:
        abort(404, f"file {name}: not in the catalog")
    # the story as the viewer may see it (secrets never, personal data if allowed)
    actions = [visibility.visible_record(r) for r in past_actions(name, row)]
    data = {"name": name, "catalog": row, "contents": _contents(name, row),
            "past_actions": [event_json(r) for r in actions],
            "used_by": _used_by(name), "constraints": _constraints(row),
            "constraints_from": constraints_source()}
    if json_twin:
        return data
    return common.respond("browse.html", data, actions=actions, title=name)
