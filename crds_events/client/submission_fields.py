"""What ``crds-events submit`` gathers before it submits: ``@file`` lists and ReDCaT parameters.

- ``@files``: as in ``crds submit --files @list``, a word starting with ``@`` names a file
  holding more words (file names, whitespace-separated, any number per line); lines whose
  first non-blank character is ``#`` are comments; ``@`` words inside are read in turn.
  Relative names are relative to the current directory, as crds reads them.
- ``--redcat-parameters FILE.yaml``: the YAML file ``crds rc_submit`` takes (a mapping of
  the ReDCaT form fields). Its keys are manifest fields (deliverer, instrument,
  description, change_level, other_emails, derive_from, ...) or ReDCaT checklist fields
  (`crds_events.submissions.checklist`); crds's form spellings ``other_email`` and
  ``creator`` are accepted. Every problem names the field and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from crds_events.errors import CrdsEventsError
from crds_events.files.safeyaml import YamlLimitError, safe_load_limited
from crds_events.submissions import checklist
from crds_events.submissions.manifest import CHANGE_LEVELS, KINDS

__all__ = ["SubmissionFieldsError", "expand_file_lists", "load_redcat_parameters"]

MAX_LIST_DEPTH = 10  # @lists naming @lists: a loop is an error, not a hang
MAX_PARAMETERS_BYTES = 1 << 20

# Manifest fields a parameters file may set, with the type each must have.
_TEXT_FIELDS = ("deliverer", "instrument", "description", "derive_from")
# crds's ReDCaT form names -> ours
_ALIASES = {"other_email": "other_emails", "creator": "creator_name"}


class SubmissionFieldsError(CrdsEventsError, ValueError):
    """A file list or parameters file that cannot be used; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def expand_file_lists(words: Iterable[str | os.PathLike]) -> list[Path]:
    """`words` with every ``@list`` replaced by the names it holds (recursively)."""
    return [Path(word) for word in _expand([os.fspath(w) for w in words], ())]


def _expand(words: list[str], reading: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for word in words:
        if not word.startswith("@"):
            found.append(word)
            continue
        list_path = word[1:]
        if not list_path:
            raise SubmissionFieldsError("@", "an '@' must be followed by a file list's name")
        real = os.path.realpath(list_path)
        if real in reading or len(reading) >= MAX_LIST_DEPTH:
            raise SubmissionFieldsError(word, "file lists name each other in a loop")
        try:
            with open(list_path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SubmissionFieldsError(word, f"cannot read the file list: {reason}") from None
        inner = [item for line in lines if not line.strip().startswith("#")
                 for item in line.split()]
        found += _expand(inner, (*reading, real))
    return found


def load_redcat_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest fields of the ReDCaT parameters file at `path` (checklist answers
    normalised: yes/no as booleans, choices in their canonical spelling)."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            raw = handle.read(MAX_PARAMETERS_BYTES + 1)
    except OSError as exc:
        raise SubmissionFieldsError("--redcat-parameters", f"cannot read {where}: "
                                    f"{exc.strerror}") from None
    if len(raw) > MAX_PARAMETERS_BYTES:
        raise SubmissionFieldsError("--redcat-parameters", "file larger than 1 MiB")
    try:
        data = safe_load_limited(raw, max_aliases=0, max_depth=8, max_nodes=10_000)
    except (YamlLimitError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SubmissionFieldsError("--redcat-parameters", f"not valid YAML{at}: "
                                    f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, Mapping):
        raise SubmissionFieldsError("--redcat-parameters",
                                    "expected a mapping of field: value")
    return redcat_fields(data)


def redcat_fields(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Check and normalise a mapping of ReDCaT parameters into manifest fields."""
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _ALIASES.get(str(key), str(key))
        if name in checklist.NAMES:
            answer, reason = checklist.normalize(name, value)
            if reason:
                raise SubmissionFieldsError(str(key), reason)
            if answer is not None:
                fields[name] = answer
        elif name in _TEXT_FIELDS:
            if not isinstance(value, str) or not value.strip():
                raise SubmissionFieldsError(str(key), "expected non-empty text")
            fields[name] = value.strip()
        elif name == "change_level":
            level = str(value).strip().upper()
            if level not in CHANGE_LEVELS:
                raise SubmissionFieldsError(str(key), f"{str(value)[:40]!r}: one of "
                                                      f"{', '.join(CHANGE_LEVELS)}")
            fields[name] = level
        elif name == "kind":
            if str(value).strip().lower() not in KINDS:
                raise SubmissionFieldsError(str(key), f"one of {', '.join(KINDS)}")
            fields[name] = str(value).strip().lower()
        elif name == "auto_rename":
            if not isinstance(value, bool):
                raise SubmissionFieldsError(str(key), "expected true or false")
            fields[name] = value
        elif name == "other_emails":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise SubmissionFieldsError(str(key), "expected addresses (a list, or "
                                                      "comma-separated text)")
            fields[name] = [item.strip() for item in items if item.strip()]
        else:
            known = sorted({*_TEXT_FIELDS, "change_level", "kind", "auto_rename",
                            "other_emails", *checklist.NAMES})
            raise SubmissionFieldsError(str(key), "unknown field (known: "
                                                  f"{', '.join(known)})")
    return fields
