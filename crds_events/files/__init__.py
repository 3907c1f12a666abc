"""Reference files: FITS/ASDF/JSON/YAML headers, checksums, reference types, unique names
and differences. Every failure to read one is a `ReferenceFileError`.
"""

from crds_events.files.checksums import (
    add_checksum,
    has_checksum,
    remove_checksum,
    verify_checksum,
)
from crds_events.files.dataset_keys import (
    cross_strap,
    normalize_pattern,
    reference_to_dataset,
)
from crds_events.files.dates import parse_date, split_useafter
from crds_events.files.diff import ReferenceDiff, diff_references
from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import detect_format
from crds_events.files.headers import read_header
from crds_events.files.reftypes import ReferenceType, reference_type
from crds_events.files.uniqname import generate_unique_name, rename_reference

__all__ = [
    "ReferenceDiff", "ReferenceFileError", "ReferenceType", "add_checksum", "cross_strap",
    "detect_format", "diff_references", "generate_unique_name", "has_checksum",
    "normalize_pattern", "parse_date", "read_header", "reference_to_dataset", "reference_type",
    "remove_checksum", "rename_reference", "split_useafter", "verify_checksum",
]
