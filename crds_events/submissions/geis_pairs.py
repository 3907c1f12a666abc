"""GEIS references in a submission: a header ``x.rNh`` and its data file ``x.rNd`` are one
reference (the names and checks are `crds_events.files.geis`'s).

Processing (`crds_events.submissions.processing`) calls these at four points:

1. `split_pairs` (preparing): the data files leave the list of uploads that are certified,
   classified and inserted into rules; each stays a file of the submission (its own
   outcome: checksummed, named, cataloged, delivered). A data file whose header was not
   submitted is an error naming it.
2. `check_pairs` (after certify, which reads the header): a header without its data file
   is an error naming both; the data file must pass `check_pair` (regular, not empty, as
   long as the header says); the data file takes the header's instrument, type and
   useafter.
3. `rename_hst` (official names): a GEIS header is renamed with its data file
   (`rename_pair`), other HST references by uniqname.
4. `name_data_files` (official names): each data file gets its header's official base name.

Submission kinds that upload nothing new (add existing, delete) are left as they were.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from crds_events.files.checksums import sha1_file
from crds_events.files.errors import ReferenceFileError
from crds_events.files.geis import (
    check_pair,
    geis_data_name,
    geis_header_name,
    is_geis_data,
    is_geis_header,
    rename_pair,
)
from crds_events.files.uniqname import generate_unique_name, rename_reference
from crds_events.submissions.official_names import NameBook
from crds_events.submissions.results import FileOutcome, SubmissionKind

__all__ = ["Companions", "check_pairs", "name_data_files", "rename_hst", "split_pairs"]

#: header original name (or, for a data file without its header, its own name) ->
#: (the data file's upload, its outcome)
Companions = dict[str, tuple[Path, FileOutcome]]

_UPLOADING = (SubmissionKind.BATCH, SubmissionKind.REFERENCES, SubmissionKind.MAPPINGS)


def split_pairs(uploads: list[tuple[Path, FileOutcome]], kind: SubmissionKind) -> Companions:
    """Take the GEIS data files out of ``uploads`` (in place); the companions."""
    if kind not in _UPLOADING:
        return {}
    names = {outcome.original_name for _, outcome in uploads}
    companions: Companions = {}
    kept = []
    for path, outcome in uploads:
        name = outcome.original_name
        if not is_geis_data(name):
            kept.append((path, outcome))
            continue
        header = geis_header_name(name)
        if header in names:
            companions[header] = (path, outcome)
        else:
            companions[name] = (path, outcome)
            outcome.error(f"GEIS data file {name} was submitted without its header {header}: "
                          f"a GEIS reference is its header and its data file, submit both")
    uploads[:] = kept
    return companions


def check_pairs(uploads: list[tuple[Path, FileOutcome]], companions: Companions) -> None:
    """After certify: every GEIS header has its data file, and the pair is sound."""
    for path, outcome in uploads:
        name = outcome.original_name
        if not is_geis_header(name):
            continue
        if name not in companions:
            outcome.error(f"GEIS header {name} was submitted without its data file "
                          f"{geis_data_name(name)}: a GEIS reference is its header and its "
                          f"data file, submit both")
            continue
        data_path, data = companions[name]
        data.instrument, data.filekind = outcome.instrument, outcome.filekind
        data.useafter = outcome.useafter
        try:
            check_pair(path, data_path)
        except ReferenceFileError as exc:
            # the header's own faults are certify's; the data file's are reported on it
            if os.path.basename(exc.path) != name:
                data.error(exc.reason)


def rename_hst(path: Path, when: datetime.datetime, output_dir: Path) -> Path:
    """The HST reference at ``path`` written under its uniqname for ``when`` (a GEIS header
    with its data file beside it); the new path."""
    if is_geis_header(path.name):
        new_name = os.path.basename(generate_unique_name(path, when))
        header, _ = rename_pair(path, path.with_name(geis_data_name(path.name)), new_name,
                                output_dir, now=when)
        return header
    return Path(rename_reference(path, now=when, output_dir=output_dir).new_path)


def name_data_files(uploads: list[tuple[Path, FileOutcome]], companions: Companions,
                    names: NameBook, output_dir: Path, outputs: dict[str, str]
                    ) -> Iterator[str]:
    """Give each data file its named header's base name (copying it into ``output_dir``
    unless the rename wrote it); set its outcome and ``outputs``; yield progress lines."""
    for _, header in uploads:
        if header.original_name not in companions or not header.official_name:
            continue
        data_path, data = companions[header.original_name]
        official = geis_data_name(header.official_name)
        target = output_dir / official
        if official in names:
            data.error(f"cannot assign an official name: {official} (the data file of "
                       f"{header.official_name}) is already taken")
            continue
        try:
            if not target.exists():  # written beside the header by rename_hst
                shutil.copyfile(data_path, target)
        except OSError as exc:
            data.error(f"cannot assign an official name: {exc.strerror or exc}")
            continue
        names.take(official)
        data.official_name, data.path = official, str(target)
        data.sha1, data.size = sha1_file(target)
        outputs[official] = str(target)
        yield f"{data.original_name} -> {official} (the data file of {header.official_name})"
