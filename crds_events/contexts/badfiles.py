"""Mark files bad (and OK again): rejected files, and the mappings blacklisted with them.

An admin marks files bad with a reason (`mark_bad`). As CRDS's server (``check_bad_file``)
does, a file the operational (``latest``) context contains - a reference or a mapping - is
refused, with CRDS's explanation: create a new context which does not contain it, make that
context operational, then mark it bad. (Otherwise its transitive blacklist would taint the
operational pmap, and every ``crds.getreferences`` for its instrument would fail with
``CrdsBadRulesError``.) The check is repeated under the write lock, so a set-context racing
the marking cannot make a context operational while one of its files becomes bad.

Each marked file is *rejected*; every
mapping that uses it, directly or through other mappings, is *blacklisted*: an rmap naming a
rejected reference, the imaps naming that rmap, the pmaps naming those imaps - found in the
file store's mappings (`crds_events.contexts.contents.users_of`). One `FileMarkedBad` per marked
file on ``file:<name>`` carries the blacklisted mappings; the ``files`` projection folds
both (`rejected`, `blacklisted`), and `bad_files` lists them, as CRDS's
``get_server_info()["bad_files_list"]`` does.

`mark_ok` clears a rejected file; a mapping stays blacklisted while any other rejected file
still reaches it, so ``FileMarkedOk.unblacklisted`` lists only the mappings that are clean
now. A mapping that is only blacklisted cannot be marked OK by itself: the message names the
rejected files it uses.

Mappings written after a file was marked bad and still naming it are not blacklisted by
these events; `crds_events.contexts.pointers.set_context` walks the whole hierarchy and refuses such
a context for ``latest`` anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import Settings
from crds_events.contexts.contents import (
    ContentsError,
    ContextContents,
    context_contents,
    file_rows,
    users_of,
)
from crds_events.contexts.pointers import ContextError, get_context, validate_reason
from crds_events.errors import CrdsEventsError
from crds_events.rules.naming import NamingError, parse_mapping_name
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.interface import EventReader, EventStore

__all__ = [
    "BadFilesError",
    "BadFilesPermissionError",
    "MarkResult",
    "mark_bad",
    "mark_ok",
    "bad_files",
    "bad_file_rows",
]

_KNOWN_STATES = ("confirmed", "delivered", "archived")


class BadFilesError(CrdsEventsError, ValueError):
    """A mark-bad / mark-ok refused (the message names the file or field and why)."""


class BadFilesPermissionError(BadFilesError, PermissionError):
    pass


@dataclasses.dataclass(frozen=True)
class MarkResult:
    marked: tuple[str, ...]  # files an event was recorded for
    unchanged: tuple[str, ...]  # already in the asked state: nothing recorded
    blacklisted: tuple[str, ...] = ()  # mark_bad: mappings blacklisted with them
    unblacklisted: tuple[str, ...] = ()  # mark_ok: mappings clean again
    positions: tuple[int, ...] = ()


def _admin(store: EventReader, user: Any, verb: str) -> users.User:
    who = user if isinstance(user, users.User) else None
    if who is None:
        if not user:
            raise BadFilesPermissionError("user: who is acting? (--user)")
        who = users.get_user(store, str(user))
        if who is None:
            raise BadFilesPermissionError(f"user {user!r}: no such user")
    if not users.can(who, "mark_bad"):
        raise BadFilesPermissionError(
            f"user {who.name!r} ({'disabled' if who.disabled else who.role}) may not {verb} "
            "files: admins only"
        )
    return who


def _names(files: Iterable[str]) -> list[str]:
    if isinstance(files, str):
        files = [files]
    names = []
    for name in files:
        try:
            names.append(check_name(name))
        except FileStoreError as exc:
            raise BadFilesError(str(exc)) from None
    if not names:
        raise BadFilesError("files: name at least one file")
    return list(dict.fromkeys(names))


def _check_known(rows: dict, names: list[str]) -> None:
    for name in names:
        row = rows.get(name)
        if row is None:
            raise BadFilesError(f"{name}: unknown file - this server has never cataloged it")
        if row["state"] not in _KNOWN_STATES:
            raise BadFilesError(f"{name}: state {row['state'] or 'unknown'}; only confirmed, "
                                "delivered or archived files can be marked")


def _candidates(files: FileStore, rows: dict, names: Iterable[str]) -> list[str] | None:
    """The stored mappings that can use ``names``: by CRDS naming, an instrument's files
    are used only by that instrument's rmaps and imaps (``<obs>_<instrument>[_.]...``) and by
    pmaps. None (every mapping) when an instrument is unknown. Saves parsing the other
    instruments' rules, the bulk of a big cache."""
    observatory = files.observatory
    instruments = set()
    for name in names:
        row = rows.get(name) or {}
        instrument = str(row.get("instrument") or "").lower()
        if not instrument and name.endswith((".imap", ".rmap")):
            try:
                instrument = parse_mapping_name(name).instrument or ""
            except NamingError:
                instrument = ""
        if not instrument and not name.endswith(".pmap"):
            return None
        if instrument:
            instruments.add(instrument)
    # hst_acs.imap, hst_acs_0002.imap, hst_acs_biasfile_0001.rmap
    prefixes = tuple(f"{observatory}_{instrument}{sep}" for instrument in instruments
                     for sep in "_.")
    return [m for m in files.names("mapping") if m.endswith(".pmap") or m.startswith(prefixes)]


def _operational(settings: Settings, store: EventReader, files: FileStore,
                 names: list[str]) -> ContextContents | None:
    """What the operational context contains (None while no latest context is set)."""
    pmap = get_context(store, "latest", settings.observatory)
    if pmap is None:
        return None
    try:
        return context_contents(files, pmap)
    except ContentsError:
        # the file store's path is in the ContentsError: not for a web form
        raise BadFilesError(
            f"operational context {pmap}: a mapping it names is missing from the file store "
            f"or unreadable, so it cannot be checked that it does not contain "
            f"{', '.join(names)}; nothing marked"
        ) from None


def _check_not_operational(names: list[str], operational: ContextContents | None) -> None:
    """CRDS's ``check_bad_file``, with its words: refuse a file of the operational context."""
    if operational is None:
        return
    contained = set(operational.names)
    refused = [
        f"File '{name}' is in the current operational context '{operational.pmap}'.  Create a "
        f"new context which does not contain it and make that context operational.  Then "
        f"mark '{name}' as 'bad'."
        for name in names if name in contained
    ]
    if refused:
        raise BadFilesError(" ".join(refused))


def _reason(reason: object, required: bool) -> str:
    if not required and (reason is None or (isinstance(reason, str) and not reason.strip())):
        return ""
    try:
        return validate_reason(reason)
    except ContextError as exc:
        raise BadFilesError(str(exc)) from None


def mark_bad(settings: Settings, store: EventStore, files: Iterable[str], reason: str,
             user: Any) -> MarkResult:
    """Reject ``files`` and blacklist every mapping that uses them (admins only).

    Files already rejected are left as they are. Every name must be a cataloged file that
    the operational context does not contain, or nothing is recorded.
    """
    who = _admin(store, user, "mark")
    reason = _reason(reason, required=True)
    names = _names(files)
    rows = file_rows(store)
    _check_known(rows, names)  # before reading the file store
    files_store = FileStore.from_settings(settings)
    operational = _operational(settings, store, files_store, names)
    _check_not_operational(names, operational)
    users = users_of(files_store, names, _candidates(files_store, rows, names))
    marked, unchanged, positions, blacklisted = [], [], [], set()
    with store.transaction() as tx:
        rows = file_rows(tx)
        _check_known(rows, names)
        # again under the write lock: latest may have moved since (mapping reads are
        # cached, so reading a new context here is rare and short)
        latest = get_context(tx, "latest", settings.observatory)
        if latest != (operational.pmap if operational else None):
            operational = _operational(settings, tx, files_store, names)
        _check_not_operational(names, operational)
        for name in names:
            if rows[name]["rejected"]:
                unchanged.append(name)
                continue
            # only cataloged mappings have a row to blacklist
            using = tuple(sorted(m for m in users[name] if m in rows))
            appended = tx.record(ev.FileMarkedBad(name=name, by=who.name, reason=reason,
                                                  blacklisted=using),
                                 meta={"actor": who.name})
            marked.append(name)
            positions.append(appended.position)
            blacklisted.update(using)
    return MarkResult(tuple(marked), tuple(unchanged), tuple(sorted(blacklisted)),
                      positions=tuple(positions))


def mark_ok(settings: Settings, store: EventStore, files: Iterable[str], user: Any,
            reason: str = "") -> MarkResult:
    """Clear the rejection of ``files`` (admins only); mappings no rejected file reaches
    any more are un-blacklisted. Files not marked bad are left as they are."""
    who = _admin(store, user, "mark")
    reason = _reason(reason, required=False)
    names = _names(files)
    rows = file_rows(store)
    _check_known(rows, names)
    rejected = {name for name, row in rows.items() if row["rejected"]}
    files_store = FileStore.from_settings(settings)
    wanted = rejected | set(names)
    users = users_of(files_store, wanted, _candidates(files_store, rows, wanted))
    marked, unchanged, positions, cleared = [], [], [], set()
    with store.transaction() as tx:
        rows = file_rows(tx)
        _check_known(rows, names)
        rejected = {name for name, row in rows.items() if row["rejected"]}
        if rejected - wanted:  # marked bad by someone else meanwhile: who uses those?
            users.update(users_of(files_store, rejected - wanted,
                                  _candidates(files_store, rows, rejected - wanted)))
        for name in names:
            if rows[name]["rejected"]:
                continue
            if rows[name]["blacklisted"]:
                causes = sorted(r for r in rejected if name in users.get(r, ()))
                raise BadFilesError(
                    f"{name}: blacklisted because it uses "
                    f"{', '.join(causes) or 'a rejected file'}; mark that OK instead"
                )
            unchanged.append(name)
        still_bad = rejected - set(names)
        reached = set().union(*(users.get(r, set()) for r in still_bad)) | still_bad
        for name in names:
            if name in unchanged:
                continue
            clean = tuple(sorted(m for m in users.get(name, ())
                                 if m in rows and rows[m]["blacklisted"] and m not in reached))
            appended = tx.record(ev.FileMarkedOk(name=name, by=who.name, reason=reason,
                                                 unblacklisted=clean),
                                 meta={"actor": who.name})
            marked.append(name)
            positions.append(appended.position)
            cleared.update(clean)
    return MarkResult(tuple(marked), tuple(unchanged), unblacklisted=tuple(sorted(cleared)),
                      positions=tuple(positions))


def bad_file_rows(store: EventStore) -> list[dict]:
    """The catalog rows of every rejected or blacklisted file, by name."""
    return [row for name, row in sorted(file_rows(store).items())
            if row["rejected"] or row["blacklisted"]]


def bad_files(store: EventStore) -> list[str]:
    """Names of every rejected or blacklisted file, sorted (``bad_files_list``)."""
    return [row["name"] for row in bad_file_rows(store)]
