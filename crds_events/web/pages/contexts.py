"""Contexts: the history of the pointers, every context, one context's rules, diffs."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from crds_events.contexts import pointers as ctx
from crds_events.contexts.contents import is_mapping
from crds_events.events import ContextSet
from crds_events.rules.document import load_mapping
from crds_events.rules.parse import Call
from crds_events.web.pages import common, rules_outline

bp = Blueprint("contexts", __name__)


@bp.route("/history")
@bp.route("/history.json", endpoint="history_json")
def history():
    kind = request.args.get("kind", "").strip() or None
    if kind is not None and kind not in ctx.KINDS:
        abort(400, f"parameter 'kind': {kind!r} must be one of {', '.join(ctx.KINDS)}")
    limit = common.int_arg("limit", 100, minimum=1, maximum=1000)
    before = common.int_arg("before", None, minimum=1)
    # Newest first, keyset-paged by position: the rows `contexts.context_history` gives,
    # for one page of ContextSet events (10,000 contexts must not cost 10,000 decodes).
    fields = {"kind": kind} if kind is not None else None
    records = common.log().newest(limit + 1, before=before, type=ContextSet.type,
                                  fields=fields)
    more = len(records) > limit
    page = [_history_row(r) for r in records[:limit]]
    data = {"history": page, "kind": kind or "", "limit": limit,
            "next_before": page[-1]["position"] if more else None}
    return common.respond("history.html", data, kinds=ctx.KINDS, title="Context history")


def _history_row(record) -> dict:
    event = record.event
    return {
        "position": record.position, "observatory": event.observatory, "kind": event.kind,
        "context": event.context, "previous": event.previous,
        "description": event.description, "calver": event.calver,
        "actor": record.actor or "", "recorded_at": record.recorded_at,
        "direction": ctx.direction(event.previous, event.context),
    }


@bp.route("/contexts")
@bp.route("/contexts.json", endpoint="all_contexts_json")
def all_contexts():
    limit = common.int_arg("limit", 100, minimum=1, maximum=1000)
    before = request.args.get("before", "").strip()
    params: list = []
    where = "kind = 'mapping' AND name LIKE '%.pmap'"
    if before:
        where += " AND name < ?"
        params.append(before)
    found = common.rows(
        f"SELECT name, state, available, rejected, blacklisted, created_at, submission_id "
        f"FROM files WHERE {where} ORDER BY name DESC LIMIT ?", [*params, limit + 1])
    more = len(found) > limit
    found = found[:limit]
    pointed = {}
    for kind, row in common.pointers().items():
        pointed.setdefault(row["context"], []).append(kind)
    for row in found:
        row["pointers"] = pointed.get(row["name"], [])
        for flag in ("available", "rejected", "blacklisted"):
            row[flag] = bool(row[flag])
    data = {"contexts": found, "next_before": found[-1]["name"] if more else None}
    return common.respond("contexts.html", data, title="All contexts")


# --- one mapping's rules -------------------------------------------------------------------


def _flatten(call: Call, prefix: tuple = ()) -> list[tuple[tuple, object]]:
    """Rows (keys from the outer selector inwards, leaf value) of a nested selector."""
    out = []
    for key, value in call.entries:
        if isinstance(value, Call):
            out.extend(_flatten(value, (*prefix, (call.name, key))))
        else:
            out.append(((*prefix, (call.name, key)), value))
    return out


def _leaf_names(value: object) -> list[str]:
    if isinstance(value, (tuple, list)):
        return [str(v) for v in value]
    return [str(value)]


def mapping_tables(name: str) -> dict:
    """The mapping as a table: header, column names and rows (cached per name)."""
    def build() -> dict:
        document = load_mapping(common.mapping_path(name), ignore_checksum=True)
        parkey = document.header.get("parkey", ())
        flat = _flatten(document.selector)
        rows = []
        for keys, value in flat:
            cells = []
            for _selector, key in keys:
                if isinstance(key, tuple):
                    cells.extend(str(k) for k in key)
                else:
                    cells.append(str(key))
            rows.append({"cells": cells, "files": _leaf_names(value)})
        columns = []
        for level in parkey:
            if isinstance(level, (tuple, list)):
                columns.extend(str(k) for k in level)
            else:
                columns.append(str(level))
        width = max((len(r["cells"]) for r in rows), default=0)
        if document.kind == "reference" and len(columns) != width:
            # e.g. Match on the first parkey group, UseAfter on the date: name the date column
            columns = columns[:width - 1] + ["useafter"] if width else columns
        columns = (columns + [""] * width)[:width]
        header = {str(k): v for k, v in document.header.items()}
        return {"name": document.name, "kind": document.kind, "header": header,
                "columns": columns, "rows": rows, "text": document.text}
    return common.cached("mapping_tables", name, build, limit=64)


@bp.route("/contexts/<name>")
def display(name: str):
    json_twin = name.endswith(".json")
    if json_twin:
        name = name[:-5]
    tables = mapping_tables(name)
    data = {k: v for k, v in tables.items() if k != "text"}
    if json_twin:
        return data
    if tables["kind"] == "reference":  # an rmap: its rules in full
        return common.respond("context.html", data, tables=tables, outline=None,
                              catalog=_catalog_of([tables]), title=name, q="")
    # a pmap or imap: an outline of collapsed instruments and types; an rmap's rules are
    # loaded when its section is opened (`rules_fragment`), never all at once
    q = request.args.get("q", "").strip()[:100]
    shown = rules_outline.outline(tables, mapping_tables, q)
    return common.respond("context.html", data, tables=tables, outline=shown,
                          catalog={}, title=name, q=q)


def _catalog_of(tables: list[dict]) -> dict[str, dict]:
    """The catalog rows (state, cataloged, bad) of the references the tables name."""
    named = sorted({f for t in tables for r in t.get("rows", ()) for f in r["files"]
                    if not f.endswith((".pmap", ".imap", ".rmap"))})
    catalog = {}
    for start in range(0, len(named), 500):
        chunk = named[start:start + 500]
        for row in common.rows(f"SELECT name, state, created_at, rejected, blacklisted FROM files "
                               f"WHERE name IN ({','.join('?' * len(chunk))})", chunk):
            catalog[row["name"]] = row
    return catalog


@bp.route("/contexts/<name>/rules")
def rules_fragment(name: str):
    """One mapping's rules as an HTML table fragment: what an outline section loads when
    it is opened (no page around it)."""
    tables = mapping_tables(name)
    return render_template("_mapping_table.html", t=tables, catalog=_catalog_of([tables]))


@bp.route("/diff")
def diff_form():
    from crds_events.web.pages.refdiff import compare_form

    return compare_form()  # the form; its errors keep the input


@bp.route("/diff/<old>/<new>")
def diff(old: str, new: str):
    from crds_events.refactoring.diff import format_diff, text_difference
    from crds_events.rules.diff import mapping_diffs
    from crds_events.rules.parse import MappingError

    json_twin = new.endswith(".json")
    if json_twin:
        new = new[:-5]
    if not (is_mapping(old) and is_mapping(new)):  # references: crds diff of FITS, ASDF...
        from crds_events.web.pages.refdiff import reference_diff_page

        return reference_diff_page(old, new, json_twin)
    old_path, new_path = common.mapping_path(old), common.mapping_path(new)
    if old_path.suffix != new_path.suffix:
        abort(400, f"{old} and {new} are not the same kind of mapping (.pmap, .imap, .rmap)")

    def build():
        try:
            diffs = mapping_diffs(old_path, new_path)
        except MappingError as exc:
            abort(400, f"cannot compare {old} and {new}: {exc}")
        prefix = str(old_path.parent) + "/"
        logical = [{"text": format_diff(d).replace(prefix, ""), "action": _action(d)}
                   for d in diffs]
        text = text_difference(old_path, new_path).replace(prefix, "")
        return logical, text
    logical, text = common.cached("diff", (old, new), build, limit=32)
    data = {"old": old, "new": new, "logical": logical, "text": text}
    if json_twin:
        return data
    return common.respond("diff.html", data, title=f"{old} → {new}")


def _action(diff) -> str:
    from crds_events.rules.diff import diff_action
    try:
        return diff_action(diff)
    except Exception:  # noqa: BLE001 - the action is only a label
        return ""
