"""CRDS's context specifiers: which mapping ``hst-acs-edit`` or ``jwst-miri-2024-01-01T00:00:00``
names on this server.

The ``crds`` client and CRDS's server accept, wherever a context is expected, a mapping
name or a *specifier* (``crds.core.config.CONTEXT_RE``)::

    [<observatory>[-<instrument>[-<filekind>]]-]<tag or date>

with ``<tag>`` one of ``latest``, ``operational``, ``edit``, ``versions``, ``build`` and
``<date>`` ``YYYY-MM-DD[THH:MM:SS[.f]]`` (this server also takes a blank for the ``T``,
and a trailing ``Z``). The pmap comes from the pointer (tag) or the history of ``latest``
(date); an instrument names that pmap's imap, an instrument and a type that imap's rmap.

A date before the first recorded ``latest`` (history here starts when the server was set
up, or a CRDS cache imported, whereas the rules existed before) answers with the earliest
known context instead of failing, and `Resolved.warning` says so.

`parse_spec` is pure; `resolve_spec` reads the pointers and history (`pointers`) and the
pmap and imap named (the file store's mappings directory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crds_events.contexts import pointers
from crds_events.errors import CrdsEventsError
from crds_events.rules.conditioning import is_na_value, is_omit_value
from crds_events.rules.context import ContextLoadError, MappingStore
from crds_events.rules.parse import MappingError
from crds_events.store.interface import EventReader

__all__ = ["ContextSpecError", "ContextSpec", "Resolved", "TAGS", "parse_spec", "resolve_spec",
           "context_at_date"]

TAGS = ("latest", "operational", "edit", "versions", "build")
_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?"
_SPEC = re.compile(
    r"^(?:(?P<observatory>[a-z][a-z]{1,8})"
    r"(?:-(?P<instrument>[a-z][a-z0-9]{1,16})"
    r"(?:-(?P<filekind>[a-z][a-z0-9\-]{1,32}?))?)?-)?"
    r"(?:(?P<tag>" + "|".join(TAGS) + r")|(?P<date>" + _DATE + r"))$",
    re.IGNORECASE,  # the text is lower-cased first; the date's T and Z then are too
)


class ContextSpecError(CrdsEventsError, ValueError):
    """A specifier that does not parse or names nothing on this server (says which part)."""


@dataclass(frozen=True)
class ContextSpec:
    """A parsed specifier: the pointer (``tag``) or ``date``, and how far down to go."""

    text: str
    observatory: str | None
    instrument: str | None
    filekind: str | None
    tag: str | None
    date: str | None


@dataclass(frozen=True)
class Resolved:
    """The mapping a specifier names, and a note when it is not exactly what was asked."""

    name: str
    pmap: str
    warning: str | None = None


def parse_spec(text: str) -> ContextSpec | None:
    """The specifier ``text`` (any case), or None when it is not one (e.g. a file name)."""
    match = _SPEC.match(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        return None
    parts = match.groupdict()
    tag = parts["tag"]
    return ContextSpec(text=text, observatory=parts["observatory"],
                       instrument=parts["instrument"], filekind=parts["filekind"],
                       tag="latest" if tag == "operational" else tag,
                       date=parts["date"].upper() if parts["date"] else None)


def context_at_date(store: EventReader, date: str | datetime, observatory: str
                    ) -> tuple[str, str | None]:
    """(the pmap that was ``latest`` at ``date``, a warning or None).

    Before the first recorded ``latest``: the earliest one, with a warning saying so.
    `ContextSpecError` when ``latest`` was never set.
    """
    moment = pointers.parse_date(date)
    try:
        return pointers.context_by_date(store, moment, "latest", observatory), None
    except pointers.ContextError:
        pass
    history = pointers.context_history(store, kind="latest", observatory=observatory)
    if not history:
        raise ContextSpecError(f"date {moment.strftime('%Y-%m-%dT%H:%M:%S')}: no latest context has "
                        f"been set on this server") from None
    first = history[0]
    since = first["recorded_at"].replace("T", " ")[:19]
    return first["context"], (
        f"date {moment.strftime('%Y-%m-%dT%H:%M:%S')} is before the first recorded latest "
        f"context ({first['context']}, set {since}); answering with the earliest known "
        f"context {first['context']}")


def _child(store: MappingStore, parent: str, key: str, what: str, spec: ContextSpec) -> str:
    try:
        document = store.document(parent)
    except (ContextLoadError, MappingError, OSError) as exc:
        raise ContextSpecError(f"context {spec.text!r}: {parent} cannot be read: {exc}") from None
    selections = {str(k).lower(): v for k, v in document.selector.entries}
    value = selections.get(key)
    if value is None:
        raise ContextSpecError(f"context {spec.text!r}: {what} {key!r} is not in {parent}")
    if not isinstance(value, str) or is_na_value(value) or is_omit_value(value):
        raise ContextSpecError(f"context {spec.text!r}: {what} {key!r} is {value!r} in {parent}, "
                        f"not a mapping")
    return Path(value).name


def resolve_spec(spec: ContextSpec, observatory: str, pointer: Callable[[str], str], store: EventReader,
                 mappings_dir: str | Path) -> Resolved:
    """The mapping ``spec`` names. ``pointer(kind)`` answers the pmap a pointer names now
    (the caller's rule for pointers never set); the history comes from ``store``."""
    if spec.observatory is not None and spec.observatory != observatory:
        raise ContextSpecError(f"context {spec.text!r}: observatory {spec.observatory!r} is not "
                        f"this server's ({observatory!r})")
    warning = None
    if spec.tag is not None:
        pmap = pointer(spec.tag)
    else:
        try:
            pmap, warning = context_at_date(store, spec.date, observatory)
        except pointers.ContextError as exc:
            raise ContextSpecError(f"context {spec.text!r}: {exc}") from None
    name = pmap
    if spec.instrument is not None:
        mappings = MappingStore(mappings_dir)
        name = _child(mappings, pmap, spec.instrument, "instrument", spec)
        if spec.filekind is not None:
            name = _child(mappings, name, spec.filekind, "reference type", spec)
    return Resolved(name=name, pmap=pmap, warning=warning)
