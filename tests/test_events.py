"""Event classes: registry, JSON round trips, streams, schema versions and upcasters."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from crds_events import events as ev
from crds_events.store import RawEvent, SQLiteEventStore

LIFECYCLE = [
    "SubmissionStarted", "SubmissionProgress", "FileCertified", "SubmissionReady",
    "SubmissionRejected", "SubmissionFailed", "SubmissionConfirmed", "SubmissionForced",
    "SubmissionCancelled", "FileCataloged", "DeliveryCreated", "DeliveryArchiving",
    "DeliveryFailed", "DeliveryArchived", "FileReleased", "ContextSet", "RemoteContextPushed",
    "DatasetsImported", "AffectedDatasetsComputed", "ReprocessingHeld", "ReprocessingReleased",
    "EmailQueued", "EmailSent", "EmailFailed", "LockAcquired", "LockRenewed", "LockReleased",
    "LockExpired", "FileMarkedBad", "FileMarkedOk", "UserAdded", "UserDisabled",
]


def sample(cls: type[ev.Event], salt: str = "x") -> ev.Event:
    """An instance with a distinct value in every field, derived from its type hints."""
    hints = typing.get_type_hints(cls)
    values = {}
    for i, field in enumerate(dataclasses.fields(cls)):
        hint = hints[field.name]
        args = typing.get_args(hint)
        if hint is str or (str in args):
            values[field.name] = f"{field.name}-{salt}"
        elif hint is int:
            values[field.name] = 10 + i
        elif hint is bool:
            values[field.name] = i % 2 == 0
        elif hint is float or float in args:
            values[field.name] = 0.5 + i
        elif typing.get_origin(hint) is tuple:
            values[field.name] = (f"{field.name}-a", f"{field.name}-b")
        elif hint is dict:
            values[field.name] = {"k": salt, "n": i}
        else:
            raise AssertionError(f"{cls.type}.{field.name}: untested field type {hint}")
    return cls(**values)


def test_every_lifecycle_fact_is_registered():
    assert set(LIFECYCLE) <= set(ev.event_types())
    for name, cls in ev.event_types().items():
        assert cls.type == name and dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen


@pytest.mark.parametrize("name", sorted(ev.event_types()))
def test_round_trip_through_json(name):
    event = sample(ev.event_class(name))
    type_name, version, payload = ev.encode(event)
    stored = json.loads(json.dumps(payload))  # what the log holds
    assert ev.decode(type_name, version, stored) == event
    assert event.stream.split(":", 1)[0] in {
        "submission", "delivery", "context", "file", "lock", "email", "datasets",
        "reprocessing", "user", "pipeline", "delivery-directory"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.__setattr__(dataclasses.fields(event)[0].name, "changed")


def test_stream_helpers():
    assert ev.SubmissionReady("42", ("a",), "hst_0003.pmap").stream == "submission:42"
    assert ev.DeliveryArchived("hst_0007").stream == ev.delivery_stream("hst_0007")
    assert ev.ContextSet("jwst", "latest", "jwst_0100.pmap").stream == "context:jwst"
    assert ev.FileMarkedBad("x.fits", "op", "bad").stream == "file:x.fits"
    assert ev.LockAcquired("acs", "jdoe", "2026-01-01T00:00:00Z").stream == "lock:acs"
    assert ev.EmailSent("e1", "<m@x>").stream == "email:e1"


def test_unknown_type_and_future_schema_are_clear_errors():
    with pytest.raises(ev.UnknownEventError, match="NoSuchThing"):
        ev.decode("NoSuchThing", 1, {})
    with pytest.raises(ev.EventSchemaError, match="newer than this code"):
        ev.decode("ContextSet", 99, {})
    with pytest.raises(ev.EventSchemaError, match="SubmissionProgress v1 payload"):
        ev.decode("SubmissionProgress", 1, {"message": "missing submission_id"})


def test_upcaster_upgrades_v1_context_set_on_read_and_never_rewrites(tmp_path):
    assert ev.ContextSet.schema_version == 2
    v1 = {"observatory": "hst", "context": "hst_0101.pmap", "pointer": "latest"}
    store = SQLiteEventStore(tmp_path / "e.db")
    try:
        store.append("context:hst", RawEvent("ContextSet", v1, schema_version=1))
        store.record(ev.ContextSet("hst", "edit", "hst_0102.pmap", previous="hst_0101.pmap"))
        old, new = store.read_stream("context:hst")
        assert old.event == ev.ContextSet("hst", "latest", "hst_0101.pmap", previous=None)
        assert new.event.previous == "hst_0101.pmap" and new.schema_version == 2
        # the stored row is untouched: still schema v1 with its v1 payload
        row = store.db.conn.execute(
            "SELECT schema_version, data FROM events WHERE position = 1").fetchone()
        assert row[0] == 1 and json.loads(row[1]) == v1
    finally:
        store.close()
    assert ev.upcast("ContextSet", 1, v1) == {
        "observatory": "hst", "context": "hst_0101.pmap", "kind": "latest", "previous": None}
    assert v1 == {"observatory": "hst", "context": "hst_0101.pmap", "pointer": "latest"}


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        @ev.register()
        class ContextSet(ev.Event):  # noqa: F811 - the point of the test
            x: str
    with pytest.raises(ValueError, match="already registered"):
        ev.upcaster("ContextSet", 1)(lambda data: data)
