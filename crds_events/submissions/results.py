"""What a submission asks for and what processing found: request, per-file outcome, result.

Plain data, JSON-safe through `to_dict` (the submission handler stores the result as a
content-addressed artifact and rebuilds it with `ProcessingResult.from_dict`).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crds_events.rules.substitutions import Substitutions
from crds_events.submissions.contained import CertifyLimits

__all__ = [
    "BAD_FILES", "FAILED", "READY", "FileOutcome", "ProcessingRequest", "ProcessingResult",
    "SubmissionKind",
]

READY, BAD_FILES, FAILED = "READY", "BAD FILES", "FAILED"


class SubmissionKind(enum.StrEnum):
    """What a submission asks for."""

    BATCH = "batch"                 # references, inserted into new rules
    REFERENCES = "references"       # references only: certified and named, no new rules
    MAPPINGS = "mappings"           # hand-edited rmaps -> new imaps and pmap
    DELETE = "delete"               # delete named references from the rules
    ADD_EXISTING = "add_existing"   # put references already in the store into the rules

    @classmethod
    def parse(cls, value: str | SubmissionKind) -> SubmissionKind:
        """A kind from its value or a CRDS-style phrase ("batch references", "delete
        references", "references only", "add existing references", ...)."""
        if isinstance(value, SubmissionKind):
            return value
        text = " ".join(str(value).lower().replace("_", " ").replace("-", " ").split())
        aliases = {
            "batch": cls.BATCH, "batch references": cls.BATCH, "batch submit": cls.BATCH,
            "references": cls.REFERENCES, "references only": cls.REFERENCES,
            "submit references": cls.REFERENCES,
            "mappings": cls.MAPPINGS, "rules": cls.MAPPINGS, "submit mappings": cls.MAPPINGS,
            "delete": cls.DELETE, "delete references": cls.DELETE,
            "add existing": cls.ADD_EXISTING, "add existing references": cls.ADD_EXISTING,
            "add references": cls.ADD_EXISTING,
        }
        try:
            return aliases[text]
        except KeyError:
            raise ValueError(f"unknown submission kind {value!r}: expected one of "
                             f"{', '.join(k.value for k in cls)}") from None


@dataclass(frozen=True)
class ProcessingRequest:
    """Everything processing needs; the caller resolves names, contexts and directories.

    `files`: the uploaded files (already in the user's ingest directory), or for
    ADD_EXISTING the paths of the existing references; `delete_references`: the reference
    names a DELETE submission removes. `derive_from`: the pmap name, found with its
    mappings in `mappings_dir`. `known_sha1s`: sha1 -> name of every file already known;
    `known_names`: every name already taken (cataloged or given to a pending submission).
    `collisions(rmap_name)`: ids of other submissions derived from that rmap since.
    `clock`: the time for HST unique names (default: now, UT).
    """

    observatory: str
    instrument: str
    kind: SubmissionKind | str
    files: tuple[str | os.PathLike, ...]
    derive_from: str
    mappings_dir: str | os.PathLike
    work_dir: str | os.PathLike
    known_sha1s: Mapping[str, str] = field(default_factory=dict)
    known_names: frozenset[str] | Iterable[str] = frozenset()
    auto_rename: bool = True
    change_level: str = "SEVERE"
    description: str = ""
    substitutions: str | os.PathLike | Substitutions | None = None
    tpn_dir: str | os.PathLike | None = None
    delete_references: tuple[str, ...] = ()
    collisions: Callable[[str], list[str]] | None = None
    clock: Callable[[], Any] | None = None
    # Time and memory for certifying one uploaded file (in a child process; default
    # `crds_events.submissions.contained.CertifyLimits()`).
    certify_limits: CertifyLimits | None = None
    # Set when the server stops: a running certify child is killed (CertifyInterrupted).
    cancel: threading.Event | None = None


@dataclass
class FileOutcome:
    """One submitted file: its names, checksums, type and certify result."""

    original_name: str
    official_name: str = ""
    sha1: str = ""            # of the official file (what the store will hold)
    size: int = 0
    original_sha1: str = ""   # of the upload
    kind: str = "reference"   # "reference" | "mapping" | "deleted" (a DELETE's names)
    instrument: str = ""
    filekind: str = ""
    useafter: str = ""
    status: str = "OK"        # certify status, ERRORS also for duplicates / no rules
    certify: dict = field(default_factory=dict)
    duplicate_of: str = ""
    rmap: str = ""            # the derive-from context's rmap for this file's type
    errors: list[str] = field(default_factory=list)
    path: str = ""            # the official copy in the work directory ("" if none)

    @property
    def event_status(self) -> str:
        """The FileCertified status: "ok", "warning" or "error"."""
        return {"OK": "ok", "WARNINGS": "warning"}.get(self.status, "error")

    def error(self, text: str) -> None:
        self.errors.append(text)
        self.status = "ERRORS"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ProcessingResult:
    """What processing found and made (JSON-safe through `to_dict`)."""

    status: str = READY
    kind: str = ""
    derived_from: str = ""
    files: list[FileOutcome] = field(default_factory=list)
    generated_mappings: dict[str, str] = field(default_factory=dict)  # name -> text
    replaced: dict[str, str] = field(default_factory=dict)  # old mapping -> new mapping
    new_context: str | None = None
    rules_certify: dict[str, dict] = field(default_factory=dict)  # generated name -> result
    collisions: dict[str, list[str]] = field(default_factory=dict)  # old rmap -> submissions
    diffs: list[dict] = field(default_factory=list)  # {"text", "action", "tuple"}
    text_diffs: dict[str, str] = field(default_factory=dict)  # new mapping -> diff text
    outputs: dict[str, str] = field(default_factory=dict)  # name -> path in the work dir
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    traceback: str = ""

    @property
    def ok(self) -> bool:
        return self.status == READY

    @property
    def bad_files(self) -> list[str]:
        return [f.original_name for f in self.files if f.status == "ERRORS"]

    @property
    def duplicates(self) -> list[str]:
        return [f.original_name for f in self.files if f.duplicate_of]

    @property
    def official_names(self) -> list[str]:
        return [f.official_name for f in self.files if f.official_name]

    @property
    def summary(self) -> str:
        """One line for an event or an e-mail subject."""
        if self.status == READY:
            made = f", new context {self.new_context}" if self.new_context else ""
            if self.kind == SubmissionKind.DELETE.value:
                return f"{len(self.files)} reference(s) deleted from the rules{made}"
            return f"{len(self.files)} file(s) certified{made}"
        if self.status == BAD_FILES:
            return f"{len(self.bad_files)} bad file(s): " + "; ".join(self.errors[:3])
        return self.errors[0] if self.errors else "processing failed"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["files"] = [f.to_dict() for f in self.files]
        data["bad_files"] = self.bad_files
        data["duplicates"] = self.duplicates
        data["summary"] = self.summary
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessingResult:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        file_fields = {f.name for f in dataclasses.fields(FileOutcome)}
        values["files"] = [FileOutcome(**{k: v for k, v in item.items() if k in file_fields})
                           for item in data.get("files", ())]
        return cls(**values)
