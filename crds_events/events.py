"""Event types: one frozen dataclass per fact, registered by a stable name.

Every state change in crds-events is one of these facts, appended to the log by
`crds_events.store`. An event class declares:

* its stable ``type`` name (the class name; never reused for a different meaning),
* its ``schema_version`` (bumped when the payload shape changes),
* its ``stream`` (a property computed from its fields: ``submission:<id>``, ...).

Payloads are small JSON objects (`encode` / `decode`). When a payload shape changes, the
class gets the new shape, its ``schema_version`` goes up, and an *upcaster* registered with
`upcaster(type, from_version)` turns an old payload into the next version's. Old rows are
upgraded on read and never rewritten: the log stays exactly as it was recorded.

Large results (certify reports, diffs, lists of dataset ids) never go in an event: they are
content-addressed artifacts and the event carries their digest and a summary.

Field types are restricted to JSON-friendly values: str, int, float, bool, None,
``tuple[str, ...]`` (stored as a JSON list, read back as a tuple) and ``dict`` (small maps
of plain values, such as the ReDCaT fields of a submission manifest).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

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
    # stream naming helpers
    "submission_stream",
    "delivery_stream",
    "context_stream",
    "file_stream",
    "lock_stream",
    "email_stream",
    "datasets_stream",
    "reprocessing_stream",
    "user_stream",
]


class UnknownEventError(LookupError):
    """An event type name that no class is registered for."""


class EventSchemaError(ValueError):
    """A payload that cannot be turned into its event class (names the type and field)."""


# --- stream names ----------------------------------------------------------------------------
# One helper per aggregate so that every writer spells a stream the same way.


def submission_stream(submission_id: str) -> str:
    return f"submission:{submission_id}"


def delivery_stream(delivery: str) -> str:
    return f"delivery:{delivery}"


def context_stream(observatory: str) -> str:
    return f"context:{observatory}"


def file_stream(name: str) -> str:
    return f"file:{name}"


def lock_stream(instrument: str) -> str:
    return f"lock:{instrument}"


def email_stream(email_id: str) -> str:
    return f"email:{email_id}"


def datasets_stream(observatory: str) -> str:
    return f"datasets:{observatory}"


def reprocessing_stream(observatory: str) -> str:
    return f"reprocessing:{observatory}"


def user_stream(username: str) -> str:
    return f"user:{username}"


# --- registry ----------------------------------------------------------------------------------


class Event:
    """Base of all event classes (each subclass is a frozen dataclass made by `register`)."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1
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


# --- submissions ---------------------------------------------------------------------------


@register()
class SubmissionStarted(Event):
    """Files landed in an ingest directory with a manifest; processing will begin."""

    submission_id: str
    observatory: str
    deliverer: str
    instrument: str
    description: str
    files: tuple[str, ...]  # original (uploaded) names
    change_level: str = "SEVERE"
    other_emails: tuple[str, ...] = ()
    redcat: dict = dataclasses.field(default_factory=dict)  # ReDCaT manifest fields
    # Optional fields added by the submission flow (older payloads decode with these
    # defaults): who submitted (the ingest directory's owner), how to process it, and the
    # manifest it came from.
    user: str = ""
    kind: str = "batch"  # batch | references | mappings | delete | add_existing
    derive_from: str = "edit"  # edit | latest | an explicit pmap name
    auto_rename: bool = True
    manifest_sha1: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionProgress(Event):
    """A progress message for the submitter (step name, free text, optional fraction)."""

    submission_id: str
    message: str
    step: str = ""
    fraction: float | None = None

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class FileCertified(Event):
    """One submitted file was certified (and given its official name)."""

    submission_id: str
    name: str  # official name
    original_name: str
    sha1: str
    size: int
    kind: str  # "reference" | "mapping"
    instrument: str
    filekind: str
    useafter: str = ""
    status: str = "ok"  # "ok" | "warning" | "error"
    summary: str = ""
    report_digest: str = ""  # content-addressed certify report

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionReady(Event):
    """Processing succeeded: new rules generated, awaiting confirm / force / cancel."""

    submission_id: str
    files: tuple[str, ...]  # official names of submitted and generated files
    new_context: str
    generated: tuple[str, ...] = ()  # generated mappings (subset of files)
    result_digest: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionRejected(Event):
    """Certification found bad or duplicate files; nothing will be delivered."""

    submission_id: str
    reason: str
    files: tuple[str, ...] = ()  # every official name certified in the submission
    bad_files: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    result_digest: str = ""  # artifact: the processing result (optional, added later)

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionFailed(Event):
    """Processing crashed or could not complete (an error, not a bad file)."""

    submission_id: str
    error: str
    files: tuple[str, ...] = ()
    result_digest: str = ""  # artifact: what is known of the run (optional, added later)

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionConfirmed(Event):
    """The lock holder confirmed: the new pmap becomes the edit context."""

    submission_id: str
    by: str
    files: tuple[str, ...]
    new_context: str

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionForced(Event):
    """Another team member confirmed after the submitter's lock was gone."""

    submission_id: str
    by: str
    files: tuple[str, ...]
    new_context: str
    lock_owner: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


@register()
class SubmissionCancelled(Event):
    submission_id: str
    by: str
    files: tuple[str, ...] = ()
    reason: str = ""

    @property
    def stream(self) -> str:
        return submission_stream(self.submission_id)


# --- delivery, archive, release ------------------------------------------------------------


@register()
class DeliveryCreated(Event):
    """Confirmed files were linked into the delivery directory with a ``.cat`` manifest."""

    delivery: str  # e.g. "hst_0042"
    observatory: str
    submission_id: str
    files: tuple[str, ...]
    catalog: str = ""  # path of the permanent catalog copy

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class FileCataloged(Event):
    """A file was entered in the catalog as part of a delivery."""

    name: str
    delivery: str
    observatory: str
    sha1: str
    size: int
    kind: str
    instrument: str
    filekind: str
    useafter: str = ""
    submission_id: str = ""

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryArchiving(Event):
    """The archive poller renamed ``.cat`` to ``.cat_proc``."""

    delivery: str

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryFailed(Event):
    """The archive poller renamed the manifest to ``.cat_err``."""

    delivery: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryRequested(Event):
    """A confirmed submission was given its delivery name (serial allocated at confirm);
    the delivery worker links the files and writes the ``.cat`` next (`DeliveryCreated`)."""

    delivery: str  # e.g. "jwst_0042"
    observatory: str
    submission_id: str
    files: tuple[str, ...]
    serial: int

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryProblemFound(Event):
    """Something about a delivery is wrong on disk (e.g. its ``.cat`` names files that do
    not exist); its state is unchanged. ``missing`` lists the absent files."""

    delivery: str
    problem: str
    missing: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryArchived(Event):
    """The archive poller deleted the manifest: every file in it is archived."""

    delivery: str

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class FileReleased(Event):
    """An archived file may now be served for download."""

    name: str
    delivery: str = ""

    @property
    def stream(self) -> str:
        return file_stream(self.name)


@register()
class FileMarkedBad(Event):
    """An operator rejected a file; mappings referring to it are blacklisted with it."""

    name: str
    by: str
    reason: str
    blacklisted: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return file_stream(self.name)


@register()
class FileMarkedOk(Event):
    name: str
    by: str
    reason: str = ""
    unblacklisted: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return file_stream(self.name)


# --- contexts, pipelines, reprocessing -------------------------------------------------------


@register(version=2)
class ContextSet(Event):
    """An operator set a context pointer (``latest`` = operational, ``edit``, ``versions``,
    ``build``).

    Schema v1 called the pointer ``pointer`` and did not record the previous value; v2 names
    it ``kind`` and carries ``previous`` (None where v1 did not know it).
    """

    observatory: str
    kind: str
    context: str
    previous: str | None = None
    description: str = ""
    # Optional (added by crds_events.contexts.pointers; older payloads decode with ""): the
    # calibration software version a ``build`` context is for (CRDS get_build_context).
    calver: str = ""

    @property
    def stream(self) -> str:
        return context_stream(self.observatory)


@upcaster("ContextSet", 1)
def _context_set_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["kind"] = data.pop("pointer")
    data.setdefault("previous", None)
    return data


@register()
class RemoteContextPushed(Event):
    """A pipeline reported the context it now holds (``push_remote_context``)."""

    observatory: str
    pipeline: str  # the pipeline key
    context: str

    @property
    def stream(self) -> str:
        return context_stream(self.observatory)


@register()
class DatasetsImported(Event):
    """A catalog of archive dataset parameters was imported (stored as an artifact)."""

    observatory: str
    instrument: str
    count: int
    digest: str
    source: str = ""
    # Optional (crds_events.reprocessing.datasets): ``digest`` is the sha1 of the source file (the rows
    # live in the bulk ``datasets`` table, not in an artifact); datasets per instrument.
    by_instrument: dict = dataclasses.field(default_factory=dict)

    @property
    def stream(self) -> str:
        return datasets_stream(self.observatory)


@register()
class AffectedDatasetsComputed(Event):
    observatory: str
    old_context: str
    new_context: str
    count: int
    digest: str  # artifact holding the dataset ids
    by_instrument: dict = dataclasses.field(default_factory=dict)
    # Optional (crds_events.reprocessing.affected): counts per reference type, the datasets
    # considered, the unique errors (message -> count, the most frequent few), and a text
    # artifact with one affected id per line (what the DPAS e-mail quotes).
    by_type: dict = dataclasses.field(default_factory=dict)
    candidates: int = 0
    errors: dict = dataclasses.field(default_factory=dict)
    ids_digest: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingHeld(Event):
    """Affected datasets are not sent until the pipeline runs the new context."""

    observatory: str
    new_context: str
    pipeline: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingSkipped(Event):
    """A change of ``latest`` that triggers no reprocessing (a regression to an older or
    the same context, or no previous context), recorded so the log says why."""

    observatory: str
    old_context: str
    new_context: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingOverdue(Event):
    """Held reprocessing whose pipeline has not pushed the new context in time (devs are
    e-mailed)."""

    observatory: str
    new_context: str
    pipeline: str
    held_since: str = ""  # ISO 8601 UTC
    waited_seconds: float = 0.0

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingReleased(Event):
    observatory: str
    new_context: str
    pipeline: str
    pushed_context: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


# --- e-mail outbox -----------------------------------------------------------------------------


@register()
class EmailQueued(Event):
    """An e-mail was composed; the sender delivers it at least once (same Message-ID)."""

    email_id: str
    kind: str  # STARTED, READY, BAD FILES, FAIL, CONFIRMED, ...
    to: tuple[str, ...]
    subject: str
    message_id: str
    body_digest: str
    cc: tuple[str, ...] = ()
    about: str = ""  # the stream it is about, e.g. "submission:42"
    # The text body itself (a few KB at most: summaries and links, never whole reports), so
    # the sender needs nothing but the log; body_digest is its sha256.
    body: str = ""

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


@register()
class EmailSent(Event):
    email_id: str
    message_id: str
    attempt: int = 1
    refused: tuple[str, ...] = ()  # recipients the server refused while accepting others

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


@register()
class EmailFailed(Event):
    email_id: str
    attempt: int
    error: str
    will_retry: bool = True
    retry_at: str = ""  # ISO 8601 UTC: when the next attempt is due (will_retry only)

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


# --- instrument locks --------------------------------------------------------------------------


@register()
class LockAcquired(Event):
    instrument: str
    owner: str
    expires_at: str  # ISO 8601 UTC
    submission_id: str = ""
    acquired_at: str = ""  # ISO 8601 UTC, the lock's clock (older events: use recorded_at)

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockRenewed(Event):
    instrument: str
    owner: str
    expires_at: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockReleased(Event):
    instrument: str
    owner: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


@register()
class LockExpired(Event):
    instrument: str
    owner: str

    @property
    def stream(self) -> str:
        return lock_stream(self.instrument)


# --- users ---------------------------------------------------------------------------------------


@register()
class UserAdded(Event):
    username: str
    email: str
    full_name: str = ""
    groups: tuple[str, ...] = ()
    # Optional fields added by the accounts module (older payloads decode with these
    # defaults: a user recorded before roles existed is a submitter without a password).
    role: str = "submitter"  # submitter | operator | admin
    password_hash: str = ""  # self-describing scrypt hash (crds_events.accounts.users)

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserPasswordChanged(Event):
    username: str
    password_hash: str  # self-describing scrypt hash, never the password

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserTokenIssued(Event):
    """An API token was issued; only its SHA-256 is recorded (the token is shown once)."""

    username: str
    token_id: str  # the token's public prefix, to name it in listings
    token_hash: str  # sha256 hex of the whole token

    @property
    def stream(self) -> str:
        return user_stream(self.username)


@register()
class UserDisabled(Event):
    username: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return user_stream(self.username)
