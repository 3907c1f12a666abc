"""The two JWST FITS keyword <-> datamodel path tables (reference headers in `files`, dataset
headers in `rules`) list different keywords on purpose, but where both name a FITS keyword
they must send it to the same path, or a reference and a dataset would disagree on it."""

from crds_events.files.dataset_keys import JWST_META_TO_FITS
from crds_events.rules.jwst_keywords import FITS_TO_DATAMODEL


def test_keywords_both_tables_know_map_to_the_same_datamodel_path():
    from_files = {fits: path for path, names in JWST_META_TO_FITS.items() for fits in names}
    shared = from_files.keys() & FITS_TO_DATAMODEL.keys()
    assert len(shared) >= 25  # the matching keywords: detector, filter, exposure type, ...
    disagree = {k: (from_files[k], FITS_TO_DATAMODEL[k]) for k in shared
                if from_files[k] != FITS_TO_DATAMODEL[k]}
    assert not disagree
