"""The ReDCaT checklist of a submission as typed items: yes/no, a choice, or text.

CRDS's batch submission form asks the deliverer a fixed list of questions (the ReDCaT
checklist). They are stored as the manifest fields they always were (``redcat:`` in
``submission.yaml``, `crds_events.submissions.manifest`); this module says what each one is:
its question, its type and, for a choice, the allowed answers. `normalize` turns what a
manifest or a form gives into the stored value (``True``/``False`` for yes/no, the
canonical spelling of a choice, stripped text), or says why it cannot; `entries` is what the
result page, the JSON twin and the e-mails show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["Item", "ITEMS", "NAMES", "YES", "NO", "normalize", "entries", "answer_text",
           "from_form", "form_description"]

YES = ("yes", "y", "true", "on", "1")
NO = ("no", "n", "false", "off", "0")


@dataclasses.dataclass(frozen=True)
class Item:
    """One checklist question: ``kind`` is ``yesno``, ``choice`` or ``text``."""

    name: str
    question: str
    kind: str = "text"
    choices: tuple[str, ...] = ()


_NA = ("yes", "no", "N/A")

ITEMS: tuple[Item, ...] = (
    Item("calpipe_version", "Calibration pipeline version used to make and test the files"),
    Item("modes_affected", "Modes (and instrument configurations) affected"),
    Item("correctness_testing", "How the files were tested for correctness"),
    Item("additional_considerations", "Additional considerations"),
    Item("creator_name", "Name of the files' creator"),
    Item("file_type", "Type of the files (e.g. dark, flat, bias)"),
    Item("history_updated", "HISTORY updated with the files' history?", "yesno"),
    Item("pedigree_updated", "PEDIGREE keyword updated?", "yesno"),
    Item("keywords_checked", "Selection keywords checked?", "yesno"),
    Item("descrip_updated", "DESCRIP keyword updated?", "yesno"),
    Item("useafter_updated", "USEAFTER date updated?", "yesno"),
    Item("useafter_matches", "USEAFTER matches the files it replaces?", "choice", _NA),
    Item("compliance_verified", "Compliance with the file format verified?", "choice", _NA),
    Item("ingest_files", "Should the files be ingested into the archive?", "yesno"),
    Item("etc_delivery", "Should the files be delivered to the ETC?", "yesno"),
    Item("jwst_etc", "Are these JWST ETC files?", "yesno"),
)
NAMES: tuple[str, ...] = tuple(item.name for item in ITEMS)
_BY_NAME = {item.name: item for item in ITEMS}


def normalize(name: str, value: Any) -> tuple[Any, str]:
    """``(stored value, '')`` for an acceptable answer to item ``name``, else
    ``(None, reason)``. Empty answers are None (not answered)."""
    item = _BY_NAME.get(name)
    if item is None:
        return None, f"unknown ReDCaT checklist field (known: {', '.join(NAMES)})"
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, ""
    if item.kind == "yesno":
        if isinstance(value, bool):
            return value, ""
        text = str(value).strip().lower()
        if text in YES:
            return True, ""
        if text in NO:
            return False, ""
        return None, f"{str(value)[:40]!r}: answer yes or no"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"expected text, got {type(value).__name__}"
    text = str(value).strip()
    if item.kind == "choice":
        for choice in item.choices:
            if text.lower() == choice.lower():
                return choice, ""
        return None, f"{text[:40]!r}: one of {', '.join(item.choices)}"
    return text, ""


def answer_text(value: Any) -> str:
    """An answer as a person reads it: yes/no for booleans, '' for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def entries(redcat: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The answered items of ``redcat`` in the form's order: name, question, kind, value
    (as stored) and text (as read); answers to fields no longer asked come last."""
    redcat = dict(redcat or {})
    shown = []
    for item in ITEMS:
        if item.name in redcat and answer_text(redcat[item.name]) != "":
            value = redcat.pop(item.name)
            shown.append({"name": item.name, "question": item.question, "kind": item.kind,
                          "value": value, "text": answer_text(value)})
    for name, value in redcat.items():
        if answer_text(value) != "":
            shown.append({"name": name, "question": name.replace("_", " "), "kind": "text",
                          "value": value, "text": answer_text(value)})
    return shown


def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The checklist answers a web form gives (raw text; `normalize` judges them later,
    in the manifest parser, so a bad one is named like any other manifest field)."""
    return {name: form[name].strip() for name in NAMES if (form.get(name) or "").strip()}


_FIELD_TYPES = {"yesno": "BooleanField", "choice": "TypedChoiceField", "text": "CharField"}


def form_description() -> list[dict[str, Any]]:
    """The checklist as CRDS's ``submission_form/redcat_description.yml`` describes its form
    (what ``crds.submit.rc_submit.Submission`` reads): one entry per item with its key,
    Django field type, label, whether it is required and, for a choice, the choices."""
    described = []
    for item in ITEMS:
        entry: dict[str, Any] = {"key": item.name, "type": _FIELD_TYPES[item.kind],
                                 "label": item.question, "required": False}
        if item.kind == "choice":
            entry["choices"] = list(item.choices)
        if item.kind == "yesno":
            entry["initial"] = False
        described.append(entry)
    return described
