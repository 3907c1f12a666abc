"""What the result page of a submission shows, shaped for reviewing (no Flask here).

`review_view` takes `crds_events.submissions.review.show`'s dict and returns what the
template lays out, evidence first:

* ``files``: one row per submitted file with its certify messages, each said once (a
  problem reported by certify, by processing and by the duplicate check reads once);
* ``errors`` / ``warnings``: the submission-wide ones not already on a file's row;
* ``diffs``: each logical difference as a table row: the mapping pairs (old -> new), the
  selector it is under, and the change in words, file names picked out for links;
* ``replacements``: new reference -> the reference it replaces (for a diff link);
* ``reason``: why it was refused or failed, unless a row above already says it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["review_view", "diff_row", "split_names", "unique", "DELIVERY_STEPS"]

# A delivery's steps as the result page shows them after confirm (the archive's poller
# renames the .cat to .cat_proc while it archives, then deletes it).
DELIVERY_STEPS = (
    ("requested", "Delivery requested"),
    ("created", ".cat written to the delivery directory"),
    ("archiving", "archive took it (.cat_proc)"),
    ("archived", "archived: the files can be downloaded"),
)

_NAME = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9_.+-]*\.(?:pmap|imap|rmap|fits|asdf|json|yaml|"
                   r"r\d[hd]|c\d[hd]|txt|dat)\b")
_MAPPING = re.compile(r"\.(?:pmap|imap|rmap)$")
_QUOTED = re.compile(r"'([^'\s]+)'")
_REPLACED = re.compile(r"replaced '?([^\s']+)'? with '?([^\s']+)'?")


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats (first kept), blank ones dropped."""
    seen: set[str] = set()
    kept = []
    for item in items:
        text = str(item).strip()
        if text and text not in seen:
            seen.add(text)
            kept.append(text)
    return kept


def split_names(text: str) -> list[dict[str, str]]:
    """``text`` cut into parts: ``{"text": ...}`` and ``{"name": ...}`` for each file name
    (the template links the names)."""
    parts: list[dict[str, str]] = []
    last = 0
    for match in _NAME.finditer(text):
        if match.start() > last:
            parts.append({"text": text[last:match.start()]})
        parts.append({"name": match.group(0)})
        last = match.end()
    if last < len(text):
        parts.append({"text": text[last:]})
    return parts


def _strings(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def diff_row(diff: Mapping[str, Any]) -> dict[str, Any]:
    """One logical difference as table cells: ``mappings`` (old, new) pairs, ``selector``
    (the match values and dates leading to the change), ``action`` and ``change`` parts."""
    parts = diff.get("tuple")
    mappings: list[tuple[str, str]] = []
    selector: list[str] = []
    message = str(diff.get("text", ""))
    if isinstance(parts, list) and parts:
        *path, last = parts
        message = str(last) if isinstance(last, str) else message
        for part in path:
            values = _strings(part)
            if len(values) == 2 and all(_MAPPING.search(v) for v in values):
                mappings.append((values[0], values[1]))
            else:
                selector.append(", ".join(values))
    message = _QUOTED.sub(r"\1", message)  # names unquoted, as `crds diff` prints them
    return {"mappings": mappings, "selector": selector, "action": diff.get("action", ""),
            "change": split_names(message), "text": message}


def _file_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = []
    for m in (row.get("certify") or {}).get("messages", []):
        if m.get("level") == "info":
            continue
        keyword = f" {m['keyword']}" if m.get("keyword") else ""
        messages.append({"level": m.get("level", "error"),
                         "text": f"{m.get('level', 'error')}{keyword}: {m.get('reason', '')}"})
    for error in row.get("errors", ()):
        messages.append({"level": "error", "text": str(error)})
    if row.get("duplicate_of"):
        messages.append({"level": "error", "text": f"identical to {row['duplicate_of']}"})
    seen: set[str] = set()
    kept = []
    for m in messages:
        # "error KEY: x" from certify and "x" from processing are one problem
        key = m["text"].split(": ", 1)[-1].strip()
        if key and key not in seen and m["text"] not in seen:
            seen.update({key, m["text"]})
            kept.append(m)
    return kept


def review_view(shown: Mapping[str, Any]) -> dict[str, Any]:
    """The result page's parts from ``review.show``'s dict (see the module docstring)."""
    result = shown.get("result") or {}
    files = []
    said: set[str] = set()
    for row in result.get("files", []):
        messages = _file_messages(row)
        for m in messages:
            said.update({m["text"], m["text"].split(": ", 1)[-1].strip()})
        files.append({**row, "messages": messages})
    diffs = [diff_row(d) for d in result.get("diffs", [])]
    replacements = {}
    for d in diffs:
        found = _REPLACED.search(d["text"])
        if found and not _MAPPING.search(found.group(2)):
            replacements[found.group(2)] = found.group(1)
    errors = [e for e in unique(result.get("errors", [])) if e not in said]
    said.update(errors)
    warnings = unique(result.get("warnings", []))
    # the rules' certify messages: each said once (a rule change warned about in the
    # warnings is not repeated for the pmap, the imap and the rmap that carry it)
    rules_messages: dict[str, list[dict[str, str]]] = {}
    for name in result.get("generated_mappings") or []:
        kept = []
        for m in ((result.get("rules_certify") or {}).get(name) or {}).get("messages", []):
            text = str(m.get("reason", "")).strip()
            if m.get("level") == "info" or not text:
                continue
            if any(text in earlier for earlier in [*warnings, *said]):
                continue
            said.add(text)
            kept.append({"level": m.get("level", "error"), "text": f"{m.get('level')}: {text}"})
        rules_messages[name] = kept
    reason = str(shown.get("reason") or "").strip()
    reason_shown = "" if reason in said else reason  # said once, on the file's row
    return {"files": files, "errors": errors, "warnings": warnings, "diffs": diffs,
            "replacements": replacements, "reason": reason_shown,
            "rules_messages": rules_messages,
            "generated": list(result.get("generated_mappings") or [])}
