"""Context pointers: set ``latest`` / ``edit`` / ``versions`` / ``build``, and read them back.

An operator (`crds_events.accounts.users.can(user, "set_context")`) points one of the observatory's
context pointers at a pmap with `set_context`. Every change is one `ContextSet` event on the
``context:<obs>`` stream, carrying the previous value, the operator's reason and, for a
``build`` context, the calibration software version it is for (``calver``, as CRDS's
``get_build_context`` looks it up).

What is checked, each failure a `ContextError` naming the pmap or field, nothing recorded:

* the kind, the reason (`validate_reason`) and the calver are well-formed;
* the pmap is a pmap of this observatory that the server has cataloged (confirmed or
  imported; a file that was only submitted is not known yet);
* for ``latest`` (what pipelines run): the pmap is archived, every mapping it names is
  cataloged and archived, and none of its files - pmap, imaps, rmaps, references - is marked
  bad (rejected, or blacklisted because it uses a rejected file). The hierarchy is read from
  the file store (`crds_events.contexts.contents`), so a new pmap that still names a bad file is
  refused even if it was written after the file was marked bad.

The checks of the catalog and the append run in one write transaction, so a file marked bad
meanwhile cannot slip in. Setting a pointer to the value it has records nothing.

A change of ``latest`` is *forward* when the new pmap's serial is higher than the old one's
(`is_forward`), a *regression* otherwise; both are recorded, and the reprocessing helper
reacts only to forward changes.

Reads fold the log with the same folds the projection tables use, so a command sees its own
writes at once. `get_pointers` is the one answer to "what are the pointers now, or as of
event N" (`context_pointers` is its kind -> pmap view); `context_history`,
`context_by_date` and `build_context` read the history.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import Settings
from crds_events.contexts.contents import ContentsError, context_contents, file_rows
from crds_events.errors import CrdsEventsError
from crds_events.rules.naming import NamingError, mapping_serial, parse_mapping_name
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.folds import CONTEXT_POINTERS, replay
from crds_events.store.interface import EventReader, EventStore, RecordedEvent

__all__ = [
    "KINDS",
    "FORBIDDEN_REASON_CHARACTERS",
    "ContextError",
    "ContextPermissionError",
    "ContextChange",
    "validate_reason",
    "validate_calver",
    "is_forward",
    "direction",
    "set_context",
    "get_context",
    "get_pointers",
    "context_pointers",
    "context_history",
    "context_by_date",
    "build_context",
    "parse_date",
    "check_pmap_name",
]

KINDS = ("latest", "edit", "versions", "build")
MAX_REASON = 4000
# Shown on web pages and in e-mails: markup characters would be HTML there.
FORBIDDEN_REASON_CHARACTERS = "<>&"
_ALLOWED_CONTROLS = "\n\t"
# Unicode categories refused: control, format (bidi overrides, zero-width), surrogate,
# private use, unassigned, line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_CALVER = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


class ContextError(CrdsEventsError, ValueError):
    """A context change refused (the message names the pmap or field and why)."""


class ContextPermissionError(ContextError, PermissionError):
    """The user may not set contexts."""


@dataclasses.dataclass(frozen=True)
class ContextChange:
    """What `set_context` did."""

    observatory: str
    kind: str
    context: str
    previous: str | None
    changed: bool  # False: the pointer already had this value; nothing recorded
    direction: str  # forward | regression | initial | same
    position: int | None = None  # of the ContextSet event (None when nothing recorded)
    calver: str = ""

    @property
    def forward(self) -> bool:
        return self.direction == "forward"


# --- validation ----------------------------------------------------------------------------


def validate_reason(reason: object, field: str = "reason") -> str:
    """The reason, stripped; `ContextError` naming the field and the offending character.

    Required, at most 4000 characters, printable text: newlines and tabs are fine;
    control characters (terminal escapes, carriage returns that forge log lines or e-mail
    headers) and invisible Unicode formatting (bidirectional overrides, zero-width
    characters: they make text read differently from what it is) are refused, and so are
    ``<``, ``>`` and ``&``, because the reason is shown on web pages and in e-mails where
    they would be HTML markup.
    """
    if not isinstance(reason, str):
        raise ContextError(f"{field}: must be text")
    text = reason.strip()
    if not text:
        raise ContextError(f"{field}: required - say why (it goes in the context history and "
                           "the e-mail)")
    if len(text) > MAX_REASON:
        raise ContextError(f"{field}: {len(text)} characters; at most {MAX_REASON}")
    for index, char in enumerate(text, 1):
        if char in _ALLOWED_CONTROLS:
            continue
        if char in FORBIDDEN_REASON_CHARACTERS:
            raise ContextError(
                f"{field}: character {char!r} at position {index} is not allowed: "
                f"{' '.join(FORBIDDEN_REASON_CHARACTERS)} are HTML markup, and the reason is "
                "shown on web pages and in e-mails"
            )
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            name = unicodedata.name(char, "control character")
            raise ContextError(
                f"{field}: character U+{ord(char):04X} ({name}) at position {index} is not "
                "allowed: control and invisible formatting characters can forge log lines "
                "and e-mail headers or disguise text (only newlines and tabs are accepted)"
            )
    return text


def validate_calver(calver: object) -> str:
    if not isinstance(calver, str) or not _CALVER.fullmatch(calver):
        raise ContextError(
            f"calver {calver!r}: a calibration software version such as 1.14.0 (letters, "
            "digits and . + _ -, at most 64)"
        )
    return calver


def _serial(name: str) -> int:
    try:
        return mapping_serial(name)
    except NamingError:
        return -1


def is_forward(old: str | None, new: str) -> bool:
    """Is ``old`` -> ``new`` a forward change (the new pmap's serial is higher)?

    False without an old context: there is nothing to compare against.
    """
    return old is not None and _serial(new) > _serial(old)


def direction(old: str | None, new: str) -> str:
    """``initial`` (no old context), ``same``, ``forward`` or ``regression`` (by serial)."""
    if old is None:
        return "initial"
    if old == new:
        return "same"
    return "forward" if is_forward(old, new) else "regression"


# --- set_context ----------------------------------------------------------------------------


def _user(store: EventReader, user: Any) -> users.User:
    if isinstance(user, users.User):
        return user
    if not user:
        raise ContextPermissionError("user: who is setting the context? (--user)")
    found = users.get_user(store, str(user))
    if found is None:
        raise ContextPermissionError(f"user {user!r}: no such user")
    return found


def check_pmap_name(settings: Settings, pmap: object) -> str:
    try:
        name = check_name(pmap)
    except FileStoreError as exc:
        raise ContextError(f"context: {exc}") from None
    if not name.endswith(".pmap"):
        raise ContextError(f"context {name!r}: must name a pipeline mapping (.pmap)")
    try:
        parsed = parse_mapping_name(name)
    except NamingError as exc:
        raise ContextError(f"context {name!r}: {exc}") from None
    if parsed.observatory != settings.observatory:
        raise ContextError(f"context {name}: a {parsed.observatory} context, but this server "
                           f"manages {settings.observatory}")
    return name


_KNOWN_STATES = ("delivered", "archived")


def _check_known(rows: Mapping[str, dict], pmap: str) -> dict:
    row = rows.get(pmap)
    if row is None:
        raise ContextError(f"context {pmap}: unknown - this server has never cataloged it")
    if row["state"] not in _KNOWN_STATES:
        raise ContextError(f"context {pmap}: state {row['state'] or 'unknown'}; only confirmed "
                           "(cataloged) contexts can be set")
    return row


def _bad_reason(row: dict) -> str:
    if row["rejected"]:
        return f"rejected ({row['reject_reason']})" if row["reject_reason"] else "rejected"
    return "blacklisted (uses a rejected file)"


def _check_latest(rows: Mapping[str, dict], contents) -> None:
    """``latest``: everything archived, nothing bad (one message listing every problem)."""
    problems = []
    for name in contents.names:
        row = rows.get(name)
        via = " -> ".join(contents.path_to(name))
        if row is not None and (row["rejected"] or row["blacklisted"]):
            problems.append(f"{name} is {_bad_reason(row)} (used as {via})")
        elif row is None:
            if name.endswith((".pmap", ".imap", ".rmap")):
                problems.append(f"{name} is not cataloged (used as {via})")
            # references the server never cataloged (absent from an imported cache) are
            # not served by it; they cannot be bad here
        elif row["state"] != "archived":
            problems.append(f"{name} is not archived yet (state {row['state']}, used as {via})")
    if problems:
        shown = problems[:20]
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ContextError(f"context {contents.pmap} cannot be latest: " + "; ".join(shown)
                           + more)


def _current(store: EventReader, observatory: str, kind: str, calver: str) -> str | None:
    if kind == "build" and calver:
        history = context_history(store, kind="build", observatory=observatory)
        same = [row for row in history if row["calver"] == calver]
        return same[-1]["context"] if same else None
    return context_pointers(store, observatory).get(kind)


def set_context(settings: Settings, store: EventStore, kind: str, pmap: str, reason: str,
                user: Any,
                calver: str | None = None) -> ContextChange:
    """Point the ``kind`` context at ``pmap`` (see the module docstring for the checks).

    ``user``: a user name or `crds_events.accounts.users.User`; must be an operator or admin.
    """
    if kind not in KINDS:
        raise ContextError(f"kind {kind!r}: must be one of {', '.join(KINDS)}")
    who = _user(store, user)
    if not users.can(who, "set_context"):
        raise ContextPermissionError(
            f"user {who.name!r} ({'disabled' if who.disabled else who.role}) may not set "
            "contexts: operators and admins only"
        )
    description = validate_reason(reason)
    calver = calver or ""
    if calver:
        if kind != "build":
            raise ContextError(f"calver {calver!r}: only a build context is set per "
                               "calibration software version")
        validate_calver(calver)
    pmap = check_pmap_name(settings, pmap)
    observatory = settings.observatory
    files = FileStore.from_settings(settings)

    contents = None
    if kind == "latest":
        # cheap catalog checks first: an unknown pmap is not looked for in the file store
        rows = file_rows(store)
        row = _check_known(rows, pmap)
        if row["state"] != "archived":
            raise ContextError(f"context {pmap}: not archived yet (state {row['state']}, "
                               f"delivery {row['delivery'] or '-'}); latest must be archived")
        try:
            contents = context_contents(files, pmap)
        except ContentsError as exc:
            raise ContextError(f"context {pmap}: {exc}") from None

    with store.transaction() as tx:
        rows = file_rows(tx)  # again, under the write lock: what the append is decided on
        _check_known(rows, pmap)
        if contents is not None:
            _check_latest(rows, contents)
        previous = _current(tx, observatory, kind, calver)
        if previous == pmap:
            return ContextChange(observatory, kind, pmap, previous, False, "same",
                                 calver=calver)
        appended = tx.record(
            ev.ContextSet(observatory=observatory, kind=kind, context=pmap,
                          previous=previous, description=description, calver=calver),
            meta={"actor": who.name},
        )
    return ContextChange(observatory, kind, pmap, previous, True, direction(previous, pmap),
                         appended.position, calver)


# --- reads ---------------------------------------------------------------------------------


def _context_records(store: EventReader, observatory: str | None) -> list[RecordedEvent]:
    streams = [ev.context_stream(observatory)] if observatory else None
    return store.read_all(streams=streams, types=[ev.ContextSet.type])


def get_pointers(store: EventReader, observatory: str | None = None, *,
                 as_of: int | None = None) -> dict[str, dict]:
    """kind -> the pointer's row (by kind) now, or right after event ``as_of``: the
    `CONTEXT_POINTERS` projection row (context, previous, description, actor, set_at,
    position) plus the ``calver`` of the `ContextSet` that made it.

    The one read of the context pointers: the CLI, the web pages, RPC, set-context and the
    submission pipeline all ask here. It folds only each pointer's last two events, found
    through the pointer index (`EventReader.pointer_events`), so it costs the same at any
    position and any length of the log. ``observatory``: None reads every observatory's
    (a server has one).
    """
    records = [r for r in store.pointer_events(as_of)
               if observatory is None or r.event.observatory == observatory]
    calver = {(r.event.observatory, r.event.kind): r.event.calver for r in records}
    rows = replay(CONTEXT_POINTERS, records)
    return {key[1]: {**row, "calver": calver[key]}
            for key, row in sorted(rows.items(), key=lambda item: item[0][1])}


def context_pointers(store: EventReader, observatory: str | None = None, *,
                     as_of: int | None = None) -> dict[str, str]:
    """kind -> the pmap the pointer names (now, or right after event ``as_of``)."""
    return {kind: row["context"]
            for kind, row in get_pointers(store, observatory, as_of=as_of).items()}


def get_context(store: EventReader, kind: str = "latest",
                observatory: str | None = None) -> str | None:
    """The pmap the ``kind`` pointer names now (None if never set)."""
    if kind == "operational":  # CRDS's older name for latest
        kind = "latest"
    if kind not in KINDS:
        raise ContextError(f"kind {kind!r}: must be one of {', '.join(KINDS)}")
    row = get_pointers(store, observatory).get(kind)
    return row["context"] if row else None


def context_history(store: EventReader, kind: str | None = None,
                    observatory: str | None = None) -> list[dict]:
    """Every context change, oldest first: position, kind, context, previous, description,
    calver, actor, recorded_at, and direction (forward / regression / initial by serial)."""
    history = []
    for record in _context_records(store, observatory):
        event = record.event
        if kind is not None and event.kind != kind:
            continue
        history.append({
            "position": record.position, "observatory": event.observatory,
            "kind": event.kind, "context": event.context, "previous": event.previous,
            "description": event.description, "calver": event.calver,
            "actor": record.actor or "", "recorded_at": record.recorded_at,
            "direction": direction(event.previous, event.context),
        })
    return history


_DATE_PREFIX = re.compile(r"^(?:[a-z]+-)?(\d{4}-\d{2}-\d{2}(?:[ T].*)?)$")


def parse_date(date: str | datetime) -> datetime:
    """A UTC datetime from ``2024-05-01``, ``2024-05-01T12:00:00``, ``2024-05-01 12:00``,
    with optional fraction and offset (``Z``), or CRDS's ``hst-2024-05-01T12:00:00``."""
    if isinstance(date, datetime):
        moment = date
    else:
        text = str(date).strip()
        match = _DATE_PREFIX.match(text)
        if not match:
            raise ContextError(f"date {date!r}: expected YYYY-MM-DD[THH:MM:SS] (UTC)")
        try:
            moment = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            raise ContextError(f"date {date!r}: expected YYYY-MM-DD[THH:MM:SS] (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _recorded(record_time: str) -> datetime:
    return datetime.fromisoformat(record_time.replace("Z", "+00:00")).astimezone(UTC)


def context_by_date(store: EventReader, date: str | datetime, kind: str = "latest",
                    observatory: str | None = None) -> str:
    """The pmap that was ``kind`` at ``date`` (what CRDS's get_context_by_date answers).

    `ContextError` when the pointer was not set yet at that time.
    """
    moment = parse_date(date)
    found = None
    for row in context_history(store, kind=kind, observatory=observatory):
        if _recorded(row["recorded_at"]) > moment:
            break
        found = row["context"]
    if found is None:
        raise ContextError(f"date {moment.isoformat()}: no {kind} context was set by then")
    return found


def _version_key(calver: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.+_-]", calver))


def build_context(store: EventReader, calver: str, observatory: str | None = None) -> str | None:
    """The build context for calibration software version ``calver``, as CRDS resolves it:
    the one set for exactly that version, else for the closest earlier patch of the same
    major.minor, else ``latest``."""
    builds: dict[str, str] = {}
    for row in context_history(store, kind="build", observatory=observatory):
        if row["calver"]:
            builds[row["calver"]] = row["context"]
    if calver in builds:
        return builds[calver]
    wanted = _version_key(calver)
    earlier = [v for v in builds
               if _version_key(v)[:2] == wanted[:2] and _safe_le(_version_key(v), wanted)]
    if earlier:
        return builds[max(earlier, key=_version_key)]
    return get_context(store, "latest", observatory)


def _safe_le(a: tuple, b: tuple) -> bool:
    try:
        return a <= b
    except TypeError:  # a number against a word: not comparable, not a match
        return False
