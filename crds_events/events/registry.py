"""The event registry: the `Event` base, `register` and `upcaster`, and the codec.

`register` makes a class a frozen dataclass and records it under its stable name (the class
name); `encode` and `decode` turn instances into ``(type, schema_version, payload)`` and
back, running the registered upcasters over payloads stored by an older schema version.
Decoding is the hot path of every replay, so `decode` fills instances directly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from crds_events.errors import CrdsEventsError

__all__ = [
    "Event",
    "UnknownEventError",
    "EventSchemaError",
    "register",
    "upcaster",
    "event_class",
    "event_types",
    "encode",
    "decode",
    "upcast",
]


class UnknownEventError(CrdsEventsError, LookupError):
    """An event type name that no class is registered for."""


class EventSchemaError(CrdsEventsError, ValueError):
    """A payload that cannot be turned into its event class (names the type and field)."""


class Event:
    """Base of all event classes (each subclass is a frozen dataclass made by `register`)."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # Who may see which field (`crds_events.events.visibility`): secret fields (password and
    # token hashes, keys) never leave the server; personal fields (e-mail addresses, names,
    # message bodies, submission content) only reach viewers allowed to see personal data.
    # Every other field is public. `register` checks that each name is a real field.
    secret_fields: ClassVar[tuple[str, ...]] = ()
    personal_fields: ClassVar[tuple[str, ...]] = ()
    # field name -> converter applied on decode (lists back to tuples, ...); set by register()
    _decoders: ClassVar[dict[str, Callable[[Any], Any]]]
    _field_names: ClassVar[tuple[str, ...]]
    _defaults: ClassVar[dict[str, Any]]

    @property
    def stream(self) -> str:  # pragma: no cover - every registered class overrides it
        raise NotImplementedError

    def to_data(self) -> dict[str, Any]:
        """The JSON-ready payload (tuples become lists when serialised)."""
        return {name: getattr(self, name) for name in self._field_names}


E = TypeVar("E", bound=type[Event])


class _Factory:
    """Marks a default made fresh for each instance (``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]):
        self.make = make

    def __call__(self) -> Any:
        return self.make()

_REGISTRY: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _decoder_for(annotation: Any) -> Callable[[Any], Any] | None:
    """A converter for values of a field whose JSON form differs from its Python form."""
    origin = typing.get_origin(annotation)
    candidates = [annotation]
    if origin in (typing.Union, types.UnionType):  # e.g. tuple[str, ...] | None
        candidates = list(typing.get_args(annotation))
    if any(typing.get_origin(arg) is tuple for arg in candidates):
        return _list_to_tuple
    return None


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def register(*, version: int = 1) -> Callable[[E], E]:
    """Class decorator: make ``cls`` a frozen dataclass and register it under its name.

    ``version`` is the current schema version; an upcaster must exist for every older one.
    """

    def wrap(cls: E) -> E:
        name = cls.__name__
        if name in _REGISTRY:
            raise ValueError(f"event type {name!r} is already registered")
        cls = dataclasses.dataclass(frozen=True, slots=False)(cls)
        cls.type = name
        cls.schema_version = version
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        cls._field_names = tuple(f.name for f in fields)
        for kind in ("secret_fields", "personal_fields"):
            unknown = sorted(set(getattr(cls, kind)) - set(cls._field_names))
            if unknown:
                raise ValueError(f"event type {name}: {kind} names no field: "
                                 f"{', '.join(unknown)}")
        both = set(cls.secret_fields) & set(cls.personal_fields)
        if both:
            raise ValueError(f"event type {name}: {', '.join(sorted(both))} both secret "
                             f"and personal")
        decoders = {}
        for f in fields:
            decoder = _decoder_for(hints[f.name])
            if decoder is not None:
                decoders[f.name] = decoder
        cls._decoders = decoders
        defaults: dict[str, Any] = {}
        for f in fields:
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = _Factory(f.default_factory)
        cls._defaults = defaults
        _REGISTRY[name] = cls
        return cls

    return wrap


def upcaster(type_name: str, from_version: int):
    """Register ``fn(payload) -> payload`` that upgrades ``type_name`` v``from_version`` to
    v``from_version + 1``. Upcasters must be pure: they receive a copy and return a new dict."""

    def wrap(fn: Callable[[dict[str, Any]], dict[str, Any]]):
        key = (type_name, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"upcaster for {type_name} v{from_version} already registered")
        _UPCASTERS[key] = fn
        return fn

    return wrap


def event_class(type_name: str) -> type[Event]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise UnknownEventError(f"unknown event type {type_name!r}") from None


def event_types() -> dict[str, type[Event]]:
    """All registered event classes by name (a copy)."""
    return dict(_REGISTRY)


def encode(event: Event) -> tuple[str, int, dict[str, Any]]:
    """``(type, schema_version, payload)`` for an event instance."""
    return event.type, event.schema_version, event.to_data()


def upcast(type_name: str, schema_version: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Upgrade a stored payload to the current schema version of its class."""
    cls = event_class(type_name)
    if schema_version > cls.schema_version:
        raise EventSchemaError(
            f"{type_name}: stored schema v{schema_version} is newer than this code's "
            f"v{cls.schema_version}; upgrade crds-events"
        )
    payload = dict(data)
    for version in range(schema_version, cls.schema_version):
        try:
            step = _UPCASTERS[(type_name, version)]
        except KeyError:
            raise EventSchemaError(f"{type_name}: no upcaster from schema v{version}") from None
        payload = step(payload)
    return payload


def decode(type_name: str, schema_version: int, data: Mapping[str, Any]) -> Event:
    """The event instance for a stored ``(type, schema_version, payload)``.

    Replays decode millions of events, so this fills the frozen instance's ``__dict__``
    directly instead of going through the generated ``__init__`` (same result: every field
    set, defaults applied, unknown keys ignored, missing required fields an error).
    """
    cls = event_class(type_name)
    if schema_version != cls.schema_version:
        data = upcast(type_name, schema_version, data)
    decoders = cls._decoders
    if tuple(data) == cls._field_names:  # the usual case: written by this schema version
        values = dict(data)
        for name, decoder in decoders.items():
            values[name] = decoder(values[name])
        event = object.__new__(cls)
        event.__dict__.update(values)
        return event
    defaults = cls._defaults
    values = {}
    for name in cls._field_names:
        if name in data:
            value = data[name]
            decoder = decoders.get(name)
            values[name] = decoder(value) if decoder is not None else value
        elif name in defaults:
            default = defaults[name]
            values[name] = default() if isinstance(default, _Factory) else default
        else:
            raise EventSchemaError(
                f"{type_name} v{schema_version} payload: missing field {name!r}"
            )
    event = object.__new__(cls)
    event.__dict__.update(values)
    return event
