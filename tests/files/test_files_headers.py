"""Reading reference headers (FITS, GEIS, ASDF, JSON, YAML) and mapping them to dataset keys."""

from __future__ import annotations

import json
import warnings

import asdf
import numpy as np
import pytest
import yaml
from astropy.io import fits

from crds_events.files import ReferenceFileError, read_header, reference_to_dataset
from crds_events.files.dates import parse_date


def _crds_header(path):
    """The crds library's own flat header, as the oracle."""
    from crds.io import factory

    handle = factory.file_factory(str(path), observatory="hst")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return handle._reduce_header(handle.get_raw_header(()), ())


def test_fits_header_union_first_wins_and_history_joined(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["INSTRUME"] = "ACS"
    primary.header["HISTORY"] = "first"
    primary.header["HISTORY"] = "second"
    ext = fits.ImageHDU(np.zeros((2, 3), dtype=np.float32), name="SCI")
    ext.header["INSTRUME"] = "WFC3"
    ext.header["CCDGAIN"] = 2.0
    path = tmp_path / "ref.fits"
    fits.HDUList([primary, ext]).writeto(path)
    header = read_header(path)
    assert header["INSTRUME"] == "ACS"
    assert header["CCDGAIN"] == "2.0"
    assert header["HISTORY"] == "first\nsecond"
    assert header["FILE_FORMAT"] == "FITS"


def test_needed_keys_define_missing_as_undefined(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"meta": {"instrument": {"detector": "NRCA1"}}}))
    header = read_header(path, needed_keys=["META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"])
    assert header == {"META.INSTRUMENT.DETECTOR": "NRCA1", "META.EXPOSURE.TYPE": "UNDEFINED",
                      "FILE_FORMAT": "JSON"}


def test_asdf_yaml_trees_flatten_to_meta_paths(tmp_path):
    tree = {"meta": {"instrument": {"name": "NIRCAM", "detector": "NRCB1"}, "useafter": "2020-01-01T00:00:00"},
            "data": np.arange(4)}
    asdf_path = tmp_path / "ref.asdf"
    asdf.AsdfFile(tree).write_to(asdf_path)
    yaml_path = tmp_path / "ref.yaml"
    yaml_path.write_text(yaml.safe_dump({"meta": {"instrument": {"name": "NIRCAM", "detector": "NRCB1"}}}))
    for path in (asdf_path, yaml_path):
        header = read_header(path)
        assert header["META.INSTRUMENT.DETECTOR"] == "NRCB1"
        assert header["META.INSTRUMENT.NAME"] == "NIRCAM"
    assert read_header(asdf_path)["DATA"].startswith("SUPRESSED_NONSTD_TYPE")


@pytest.mark.corpus
def test_corpus_headers_equal_crds_library(corpus):
    """Every corpus reference the crds library can read gives the same flat header."""
    data = corpus / "crds-test-data"
    paths = sorted(data.glob("hst/*.fits")) + sorted(data.glob("hst/*.r?h")) \
        + sorted(data.glob("jwst/*.json")) + sorted(data.glob("jwst/*.yaml")) \
        + sorted(data.glob("jwst/*.fits")) + sorted(data.glob("*/opaque_*.tmp"))
    compared = 0
    for path in paths:
        try:
            expected = _crds_header(path)
        except Exception:
            with pytest.raises(ReferenceFileError):
                read_header(path)
            continue
        ours = read_header(path)
        ours.pop("FILE_FORMAT")
        assert ours == expected, path.name
        compared += 1
    assert compared > 50


@pytest.mark.corpus
def test_hst_useafter_becomes_date_and_time_obs_like_crds(corpus):
    from crds.core import rmap

    refs = corpus / "contexts" / "hst" / "references"
    maps = corpus / "contexts" / "hst" / "mappings"
    for rmap_name, ref in [("hst_cos_deadtab.rmap", "s7g1700gl_dead.fits"),
                           ("hst_acs_idctab.rmap", "v8q14451j_idc.fits"),
                           ("hst_acs_biasfile_0001.rmap", "hst_acs_biasfile_0002.fits")]:
        mapping = rmap.load_mapping(str(maps / rmap_name), ignore_checksum=True)
        from crds import data_file

        theirs = mapping.locate.reference_keys_to_dataset_keys(mapping, data_file.get_header(str(refs / ref)))
        ours = reference_to_dataset(read_header(refs / ref), "hst")
        for key in ("DATE-OBS", "TIME-OBS", "DATE_OBS", "TIME_OBS"):
            assert ours[key] == theirs[key], (ref, key)


@pytest.mark.corpus
def test_jwst_pattern_keywords_match_refactor_oracle(corpus):
    """P_DETECT/P_BAND of the oracle's inserted IPC reference give the case crds wrote."""
    cases = json.loads((corpus / "oracle" / "refactor" / "cases.json").read_text())["cases"]
    case = next(c for c in cases if "ipc_0003.add" in c["command"])
    header = read_header(corpus / "crds-test-data" / "jwst" / "jwst_miri_ipc_0003.add.fits")
    dataset = reference_to_dataset(header, "jwst")
    # crds writes an or-pattern's items sorted; the set of items is what must agree.
    detectors = "|".join(sorted(dataset["META.INSTRUMENT.DETECTOR"].split("|")))
    bands = "|".join(sorted(dataset["META.INSTRUMENT.BAND"].split("|")))
    expected = (corpus / "oracle" / case["expected_output"]).read_text()
    assert f"('{detectors}', '{bands}')" in expected
    assert dataset["META.INSTRUMENT.DETECTOR"] == "MIRIFUSHORT|MIRIFULONG"
    assert dataset["META.OBSERVATION.DATE"] == "2014-01-01"
    assert dataset["META.OBSERVATION.TIME"] == "00:00:00"


def test_jwst_fits_and_meta_names_cross_strapped_and_caller_translation():
    header = {"DETECTOR": "NRCA1", "META.EXPOSURE.TYPE": "NRC_IMAGE", "MYKEY": "X",
              "USEAFTER": "2021-05-01T12:30:00"}
    dataset = reference_to_dataset(header, "jwst", reference_to_dataset={"MYKEY": "META.INSTRUMENT.PUPIL"})
    assert dataset["META.INSTRUMENT.DETECTOR"] == "NRCA1"
    assert dataset["EXP_TYPE"] == "NRC_IMAGE"
    assert dataset["META.INSTRUMENT.PUPIL"] == "X"
    assert dataset["SUBARRAY"] == "UNDEFINED"
    assert (dataset["DATE-OBS"], dataset["TIME-OBS"]) == ("2021-05-01", "12:30:00")


def test_bad_useafter_names_file_and_keyword():
    with pytest.raises(ReferenceFileError) as err:
        reference_to_dataset({"USEAFTER": "sometime soon"}, "hst", filename="x_bia.fits")
    assert err.value.keyword == "USEAFTER" and "x_bia.fits" in str(err.value)


@pytest.mark.parametrize("text", ["Oct 01 1996 00:00:00", "Jan 1 1991", "2014-01-01T00:00:00",
                                  "12/21/1999 05:42:35", "21/12/99 05:42:00 PM", "19970114:053714",
                                  "03-Jan-2013", "July 27, 1999 00:00:00", "2008-10-15T08:44:44.619",
                                  "Dec 01 1993 00:00:00 UT", "Mar 21 2001 12:00:00 am"])
def test_dates_parse_as_crds_does(text):
    from crds.core import timestamp

    assert parse_date(text) == timestamp.parse_date(text)
