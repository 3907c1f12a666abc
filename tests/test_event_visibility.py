"""Which event fields are secret or personal: the declarations on every registered event
class, and `crds_events.events.visibility.redact` applying them."""

from __future__ import annotations

import dataclasses
import re

import pytest

from crds_events import events as ev
from crds_events.events.visibility import HIDDEN, personal_fields, redact, secret_fields

# Field names that say "secret": every such field must be declared secret.
SECRET_NAME = re.compile(r"password|secret|(^|_)hash$|(^|_)token$|(^|_)key$|private")
# Field names that say "an address, a person or a message": declared personal (or secret).
PERSONAL_NAME = re.compile(r"(^|_)e_?mails?($|_addr)|^to$|^cc$|^bcc$|body$|full_name|recipient|"
                           r"phone")


@pytest.mark.parametrize("name", sorted(ev.event_types()))
def test_declared_names_are_real_fields(name):
    cls = ev.event_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.secret_fields) <= fields, cls.secret_fields
    assert set(cls.personal_fields) <= fields, cls.personal_fields
    assert not set(cls.secret_fields) & set(cls.personal_fields)


@pytest.mark.parametrize("name", sorted(ev.event_types()))
def test_fields_named_like_secrets_or_addresses_are_declared(name):
    # A safety net for new event types: a field called *_hash, *_token, password... that is
    # not declared secret would be published by every page.
    cls = ev.event_class(name)
    for field in dataclasses.fields(cls):
        if SECRET_NAME.search(field.name):
            assert field.name in cls.secret_fields, f"{name}.{field.name}: declare it secret"
        if PERSONAL_NAME.search(field.name):
            assert field.name in (*cls.personal_fields, *cls.secret_fields), \
                f"{name}.{field.name}: declare it personal"


def test_the_known_secrets_and_personal_fields():
    assert secret_fields("UserAdded") == {"password_hash"}
    assert secret_fields("UserPasswordChanged") == {"password_hash"}
    assert secret_fields("UserTokenIssued") == {"token_hash"}
    assert {"email", "full_name"} <= personal_fields("UserAdded")
    assert {"to", "cc", "body", "subject", "message_id"} <= personal_fields("EmailQueued")
    assert {"description", "other_emails", "redcat", "deliverer"} <= \
        personal_fields("SubmissionStarted")
    assert secret_fields("NoSuchEvent") == frozenset()


def test_register_refuses_a_declaration_naming_no_field():
    with pytest.raises(ValueError, match="secret_fields names no field: pasword_hash"):
        @ev.register()
        class _Misspelt(ev.Event):
            secret_fields = ("pasword_hash",)
            password_hash: str = ""

    with pytest.raises(ValueError, match="both secret and personal"):
        @ev.register()
        class _Both(ev.Event):
            secret_fields = ("email",)
            personal_fields = ("email",)
            email: str = ""
    assert "_Misspelt" not in ev.event_types() and "_Both" not in ev.event_types()


def test_redact_removes_secrets_for_everyone_and_withholds_personal_data():
    added = ev.UserAdded(username="ann", email="ann@example.org", full_name="Ann N",
                         groups=("nircam",), role="operator", password_hash="scrypt$1$2")
    data = added.to_data()
    public = redact("UserAdded", data, personal=False)
    assert public == {"username": "ann", "email": HIDDEN, "full_name": HIDDEN,
                      "groups": ("nircam",), "role": "operator"}
    full = redact("UserAdded", data, personal=True)
    assert "password_hash" not in full and full["email"] == "ann@example.org"
    assert data["password_hash"] == "scrypt$1$2"  # the stored payload is left alone


def test_redact_keeps_json_types_and_hides_unknown_keys():
    queued = ev.EmailQueued(email_id="e1", kind="READY", to=("a@example.org",), subject="s",
                            message_id="<1@host>", body_digest="d", cc=(), body="hello")
    shown = redact("EmailQueued", {**queued.to_data(), "legacy": "x@example.org"},
                   personal=False)
    assert shown["to"] == [] and shown["cc"] == () and shown["body"] == HIDDEN
    assert shown["legacy"] == HIDDEN and shown["kind"] == "READY"
    assert redact("NoSuchEvent", {"a": 1}, personal=True) == {}
