"""files"""

from .checksums import add_checksum, has_checksum, remove_checksum, verify_checksum
from .dataset_keys import cross_strap, normalize_pattern, reference_to_dataset
from .dates import parse_date, split_useafter
from .diff import ReferenceDiff, diff_references
from .errors import ReferenceFileError
from .formats import detect_format
from .headers import read_header
from .reftypes import ReferenceType, reference_type
from .uniqname import generate_unique_name, rename_reference

__all__ = [
    "ReferenceDiff", "ReferenceFileError", "ReferenceType", "add_checksum", "cross_strap",
    "detect_format", "diff_references", "generate_unique_name", "has_checksum",
    "normalize_pattern", "parse_date", "read_header", "reference_to_dataset", "reference_type",
    "remove_checksum", "rename_reference", "split_useafter", "verify_checksum",
]
