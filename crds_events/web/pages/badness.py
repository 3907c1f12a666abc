"""Bad and blacklisted files, as every page that shows a context or a file warns about them.

An admin marks a file bad (`crds_events.contexts.badfiles`): the file is *rejected* and
every mapping that uses it is *blacklisted*. Wherever a page shows a context or a file
(home pointers, a context's rules, best references, a file page, the submit form's
derive-from, a submission's result) it includes ``templates/_bad_banner.html`` with the
names it shows, and the partial calls `bad_files` (a template global) to know which of
them are bad and why:

    {% set banner_names = [p.context] %}{% include "_bad_banner.html" %}
    {% set banner_names = [ref] %}{% set banner_inline = true %}{% include "_bad_banner.html" %}

The bad files are few (an operator marks a handful a year), so the whole set is read once
per request (the ``files`` projection, plus the `FileMarkedBad` events that say which
rejected files blacklist a mapping) and every look-up after that is a dict access.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, g

from crds_events import events as ev
from crds_events.web.pages import common

__all__ = ["BadFile", "bad_files", "bad_file", "all_bad_files", "bad_json", "bad_pointers",
           "register"]

BadFile = dict[str, Any]  # name, state (rejected | blacklisted), reason, because (names)

_G_KEY = "crds_events_bad_files"


def _build() -> dict[str, BadFile]:
    found = common.rows("SELECT name, rejected, blacklisted, reject_reason FROM files "
                        "WHERE rejected = 1 OR blacklisted = 1")
    if not found:
        return {}
    rejected = {r["name"]: r["reject_reason"] or "" for r in found if r["rejected"]}
    # which rejected files blacklist each mapping: the marks still in force
    because: dict[str, set[str]] = {}
    for record in common.log().read_all(types=[ev.FileMarkedBad.type]):
        event = record.event
        if event.name not in rejected:
            continue  # marked OK again since
        for name in event.blacklisted:
            because.setdefault(name, set()).add(event.name)
    bad: dict[str, BadFile] = {}
    for row in found:
        name = row["name"]
        if row["rejected"]:
            bad[name] = {"name": name, "state": "rejected", "reason": rejected[name],
                         "because": []}
        else:
            causes = sorted(because.get(name, ()))
            reasons = sorted({rejected[c] for c in causes if rejected.get(c)})
            bad[name] = {"name": name, "state": "blacklisted", "because": causes,
                         "reason": "; ".join(reasons)}
    return bad


def all_bad_files() -> dict[str, BadFile]:
    """Every rejected or blacklisted file now, by name (read once per request)."""
    if _G_KEY not in g:
        setattr(g, _G_KEY, _build())
    return getattr(g, _G_KEY)


def _names(names: str | Iterable[str] | None) -> list[str]:
    if not names:
        return []
    if isinstance(names, str):
        return [names]
    found: list[str] = []
    for name in names:
        if isinstance(name, str) and name:
            found.append(name)
        elif isinstance(name, list | tuple):  # a reference list of a best-refs answer
            found.extend(n for n in name if isinstance(n, str))
    return found


def bad_files(names: str | Iterable[str] | None) -> list[BadFile]:
    """The bad ones among ``names`` (a name or names), in the order given, each once."""
    bad = all_bad_files()
    if not bad:
        return []
    seen: set[str] = set()
    shown = []
    for name in _names(names):
        if name in bad and name not in seen:
            seen.add(name)
            shown.append(bad[name])
    return shown


def bad_file(name: str) -> BadFile | None:
    """``name``'s badness, or None when it is fine."""
    return all_bad_files().get(name) if name else None


def bad_json(names: str | Iterable[str] | None) -> dict[str, BadFile]:
    """name -> badness of the bad ones among ``names``, for the ``.json`` twins."""
    return {b["name"]: b for b in bad_files(names)}


def bad_pointers(kinds: Iterable[str] = ("edit", "latest")) -> list[dict[str, Any]]:
    """The context pointers among ``kinds`` whose context is bad or blacklisted now, each
    ``{"kind", "context", **badness}`` (the submit form's derive-from warning)."""
    found = []
    for kind in kinds:
        context = (common.pointers().get(kind) or {}).get("context") or ""
        bad = bad_file(context)
        if bad is not None:
            found.append({"kind": kind, "context": context, **bad})
    return found


def register(app: Flask) -> None:
    """Make `bad_files` and `bad_pointers` template globals (the banner partials call
    them); no routes."""
    app.add_template_global(bad_files, "bad_files")
    app.add_template_global(bad_pointers, "bad_pointers")
