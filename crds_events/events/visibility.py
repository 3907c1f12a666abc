"""What of a recorded event a viewer may see: secret fields never, personal fields only when
allowed, everything else always.

Each event class declares its ``secret_fields`` (password and token hashes, keys: they never
leave the server, in any response or printout, to anyone) and its ``personal_fields`` (e-mail
addresses, names, message bodies, submission content: shown only to viewers whose role may
see personal data). `redact` applies those declarations to a stored payload; every page,
JSON twin, stream, as-of view and CLI printout goes through it (the web's viewer rules are
in `crds_events.web.visibility`).

A payload key that is not a field of the current class (a payload stored by an older schema
version) is treated as personal: its meaning is not known here, so it is not made public.
An event type this code does not know shows nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crds_events.events.registry import UnknownEventError, event_class

__all__ = ["HIDDEN", "redact", "secret_fields", "personal_fields"]

HIDDEN = "(hidden)"  # what a withheld personal text becomes


def secret_fields(type_name: str) -> frozenset[str]:
    """The fields of ``type_name`` that never leave the server (empty for unknown types)."""
    try:
        return frozenset(event_class(type_name).secret_fields)
    except UnknownEventError:
        return frozenset()


def personal_fields(type_name: str) -> frozenset[str]:
    """The fields of ``type_name`` shown only to viewers allowed personal data."""
    try:
        return frozenset(event_class(type_name).personal_fields)
    except UnknownEventError:
        return frozenset()


def _withheld(value: Any) -> Any:
    # Keep the JSON type (a list stays a list) so pages and clients reading the payload keep
    # working; an empty value hides nothing and stays as it was.
    if value in ("", None) or value == [] or value == () or value == {}:
        return value
    if isinstance(value, str):
        return HIDDEN
    if isinstance(value, list | tuple):
        return []
    if isinstance(value, dict):
        return {}
    return None


def redact(type_name: str, data: Mapping[str, Any], *, personal: bool) -> dict[str, Any]:
    """The payload ``data`` of a ``type_name`` event as a viewer may see it: secret fields
    removed (the key too: not even its name is shown), personal fields (and keys the class
    does not know) withheld unless ``personal``."""
    try:
        cls = event_class(type_name)
    except UnknownEventError:
        return {}
    secret = cls.secret_fields
    known = cls._field_names
    private = cls.personal_fields
    shown: dict[str, Any] = {}
    for key, value in data.items():
        if key in secret:
            continue
        if not personal and (key in private or key not in known):
            value = _withheld(value)
        shown[key] = value
    return shown
