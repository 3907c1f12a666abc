"""Submission processing on a small JWST context built here, with references made here.

The expected rules are checked two independent ways: by reading the generated rmap's
selector, and by computing best references with the new context (copied beside the old
mappings as the store would hold them after confirm).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.io import fits

from crds_events.rules.bestrefs import load_context
from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import mapping_checksum, stored_checksum
from crds_events.rules.document import load_mapping
from crds_events.rules.parse import parse_mapping
from crds_events.submissions.processing import (
    BAD_FILES,
    FAILED,
    READY,
    ProcessingRequest,
    ProcessingResult,
    SubmissionKind,
    process_submission,
)

DATE = "('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')"

MAPPINGS = {
    "jwst_0001.pmap": """
        header = {
            'mapping' : 'PIPELINE', 'name' : 'jwst_0001.pmap', 'observatory' : 'JWST',
            'parkey' : ('META.INSTRUMENT.NAME',), 'derived_from' : 'made by the test',
            'sha1sum' : '',
        }
        selector = {'NIRCAM' : 'jwst_nircam_0001.imap'}
    """,
    "jwst_nircam_0001.imap": """
        header = {
            'mapping' : 'INSTRUMENT', 'name' : 'jwst_nircam_0001.imap', 'observatory' : 'JWST',
            'instrument' : 'NIRCAM', 'parkey' : ('REFTYPE',), 'derived_from' : 'made by the test',
            'sha1sum' : '',
        }
        selector = {'dark' : 'jwst_nircam_dark_0001.rmap',
                    'distortion' : 'jwst_nircam_distortion_0001.rmap'}
    """,
    "jwst_nircam_dark_0001.rmap": f"""
        header = {{
            'mapping' : 'REFERENCE', 'name' : 'jwst_nircam_dark_0001.rmap',
            'observatory' : 'JWST', 'instrument' : 'NIRCAM', 'filekind' : 'DARK',
            'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.SUBARRAY.NAME'), {DATE}),
            'derived_from' : 'made by the test', 'sha1sum' : '',
        }}
        selector = Match({{
            ('NRCA1', 'FULL') : UseAfter({{'2022-01-01 00:00:00' : 'jwst_nircam_dark_0001.fits'}}),
            ('NRCA2', 'FULL') : UseAfter({{'2022-01-01 00:00:00' : 'jwst_nircam_dark_0002.fits'}}),
        }})
    """,
    "jwst_nircam_distortion_0001.rmap": f"""
        header = {{
            'mapping' : 'REFERENCE', 'name' : 'jwst_nircam_distortion_0001.rmap',
            'observatory' : 'JWST', 'instrument' : 'NIRCAM', 'filekind' : 'DISTORTION',
            'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.INSTRUMENT.FILTER'), {DATE}),
            'derived_from' : 'made by the test', 'sha1sum' : '',
        }}
        selector = Match({{
            ('NRCA1', 'F200W') : UseAfter({{
                '2022-01-01 00:00:00' : 'jwst_nircam_distortion_0001.asdf'}}),
        }})
    """,
}
# References the context names, plus a later dark cataloged elsewhere (serials go past it).
KNOWN_REFERENCES = ["jwst_nircam_dark_0001.fits", "jwst_nircam_dark_0002.fits",
                    "jwst_nircam_distortion_0001.asdf", "jwst_nircam_dark_0007.fits"]


def write_context(directory: Path) -> Path:
    """The test context in canonical form with correct sha1sums; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in MAPPINGS.items():
        parsed = parse_mapping(textwrap.dedent(text), name)
        (directory / name).write_text(rewrite_text(parsed), encoding="utf-8")
        load_mapping(directory / name)  # the sha1sum verifies
    return directory


def make_dark(path: Path, detector="NRCA1", useafter="2023-01-01T00:00:00", shape=(2, 4, 4),
              **extra) -> Path:
    primary = fits.PrimaryHDU()
    cards = {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "REFTYPE": "DARK", "DETECTOR": detector,
             "SUBARRAY": "FULL", "USEAFTER": useafter, "PEDIGREE": "GROUND", "AUTHOR": "test",
             "DESCRIP": f"dark for {detector}", **extra}
    for key, value in cards.items():
        if value is not None:
            primary.header[key] = value
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    fits.HDUList([primary, fits.ImageHDU(data, name="SCI")]).writeto(path)
    return path


def make_distortion(path: Path, detector="NRCA1", filter_="F200W",
                    useafter="2023-06-01T00:00:00") -> Path:
    tree = {"meta": {"telescope": "JWST", "reftype": "DISTORTION", "useafter": useafter,
                     "pedigree": "GROUND", "author": "test", "description": "a distortion",
                     "instrument": {"name": "NIRCAM", "detector": detector, "filter": filter_}},
            "coefficients": np.ones((3, 3))}
    asdf.AsdfFile(tree).write_to(path)
    return path


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture
def site(tmp_path):
    """A store's mappings directory, an ingest directory and a work directory."""
    mappings = write_context(tmp_path / "store" / "mappings" / "jwst")
    ingest = tmp_path / "ingest" / "alice"
    ingest.mkdir(parents=True)
    return {"mappings": mappings, "ingest": ingest, "work": tmp_path / "work",
            "known": set(MAPPINGS) | set(KNOWN_REFERENCES)}


def request(site, files, kind=SubmissionKind.BATCH, **options) -> ProcessingRequest:
    values = dict(observatory="jwst", instrument="NIRCAM", kind=kind,
                  files=tuple(files), derive_from="jwst_0001.pmap",
                  mappings_dir=site["mappings"], work_dir=site["work"],
                  known_names=frozenset(site["known"]), description="test delivery")
    values.update(options)
    return ProcessingRequest(**values)


def selector_of(text: str) -> dict:
    """{match key: {date: file}} of a Match/UseAfter rmap text."""
    selector = parse_mapping(text, "x.rmap").selector
    return {key: dict(value.as_dict()) for key, value in selector.as_dict().items()}


def confirmed_store(site, result: ProcessingResult, tmp_path: Path) -> Path:
    """The mappings directory as it would be after confirm: old plus generated mappings."""
    store = tmp_path / "after"
    shutil.copytree(site["mappings"], store)
    for name, text in result.generated_mappings.items():
        (store / name).write_text(text, encoding="utf-8")
    return store


# ----------------------------------------------------------------------------- batch


def test_good_batch_submission_is_ready_with_new_rules(site, tmp_path):
    same_case = make_dark(site["ingest"] / "my_dark_a1.fits", "NRCA1", "2023-01-01T00:00:00")
    new_case = make_dark(site["ingest"] / "my_dark_b1.fits", "NRCB1", "2022-06-01T00:00:00")
    distortion = make_distortion(site["ingest"] / "distortion.asdf")
    uploads = [same_case, new_case, distortion]
    before = {p.name: sha1(p) for p in uploads}
    lines: list[str] = []
    result = process_submission(request(site, uploads), lines.append)

    assert result.status == READY, (result.errors, result.traceback)
    assert lines and all(line.startswith(">> ") for line in lines)
    assert lines == result.messages[:len(lines)] or set(lines) <= set(result.messages)
    # Official names: past the highest known serial of each type, in upload order.
    official = {f.original_name: f.official_name for f in result.files}
    assert official == {"my_dark_a1.fits": "jwst_nircam_dark_0008.fits",
                        "my_dark_b1.fits": "jwst_nircam_dark_0009.fits",
                        "distortion.asdf": "jwst_nircam_distortion_0002.asdf"}
    for outcome in result.files:
        copy = Path(result.outputs[outcome.official_name])
        assert copy.parent == site["work"] / "references"
        assert sha1(copy) == outcome.sha1 == before[outcome.original_name]
        assert outcome.size == copy.stat().st_size
        assert outcome.certify["status"] in ("OK", "WARNINGS")
        assert outcome.instrument == "nircam"
    # The uploads are untouched.
    assert {p.name: sha1(p) for p in uploads} == before

    # New rmaps, imap and pmap under the next names, each named and checksummed.
    assert result.new_context == "jwst_0002.pmap"
    assert result.replaced == {"jwst_0001.pmap": "jwst_0002.pmap",
                               "jwst_nircam_0001.imap": "jwst_nircam_0002.imap",
                               "jwst_nircam_dark_0001.rmap": "jwst_nircam_dark_0002.rmap",
                               "jwst_nircam_distortion_0001.rmap":
                                   "jwst_nircam_distortion_0002.rmap"}
    assert set(result.generated_mappings) == set(result.replaced.values())
    for name, text in result.generated_mappings.items():
        header = parse_mapping(text, name).header
        assert header["name"] == name
        assert stored_checksum(header) == mapping_checksum(text)
        assert Path(result.outputs[name]).read_text() == text
    dark = selector_of(result.generated_mappings["jwst_nircam_dark_0002.rmap"])
    assert dark[("NRCA1", "FULL")] == {"2022-01-01 00:00:00": "jwst_nircam_dark_0001.fits",
                                       "2023-01-01 00:00:00": "jwst_nircam_dark_0008.fits"}
    assert dark[("NRCB1", "FULL")] == {"2022-06-01 00:00:00": "jwst_nircam_dark_0009.fits"}
    assert dark[("NRCA2", "FULL")] == {"2022-01-01 00:00:00": "jwst_nircam_dark_0002.fits"}
    assert parse_mapping(result.generated_mappings["jwst_nircam_dark_0002.rmap"],
                         "x").header["derived_from"] == "jwst_nircam_dark_0001.rmap"

    # Best references with the confirmed context pick the new files.
    context = load_context(confirmed_store(site, result, tmp_path) / "jwst_0002.pmap")
    refs = context.best_references({"META.INSTRUMENT.NAME": "NIRCAM",
                                    "META.INSTRUMENT.DETECTOR": "NRCB1",
                                    "META.SUBARRAY.NAME": "FULL",
                                    "META.INSTRUMENT.FILTER": "F200W",
                                    "META.OBSERVATION.DATE": "2023-07-01",
                                    "META.OBSERVATION.TIME": "00:00:00"})
    assert refs["dark"] == "jwst_nircam_dark_0009.fits"

    # Differences name the inserts, the new mappings and carry text diffs.
    added = [d["text"] for d in result.diffs if d["action"].startswith("add")]
    assert any("jwst_nircam_dark_0009.fits" in text and "NRCB1" in text for text in added)
    assert any("jwst_nircam_dark_0008.fits" in text for text in added)
    assert any("jwst_nircam_distortion_0002.asdf" in text for text in added)
    assert "jwst_nircam_dark_0009.fits" in result.text_diffs["jwst_nircam_dark_0002.rmap"]
    assert "jwst_nircam_0002.imap" in result.text_diffs["jwst_0002.pmap"]

    # The result survives JSON and comes back the same.
    data = json.loads(json.dumps(result.to_dict()))
    assert ProcessingResult.from_dict(data).to_dict() == data
    assert data["status"] == READY and data["bad_files"] == []


def test_serials_skip_names_given_to_pending_submissions(site):
    site["known"] |= {"jwst_0002.pmap", "jwst_nircam_0002.imap", "jwst_nircam_0003.imap",
                      "jwst_nircam_dark_0002.rmap", "jwst_nircam_dark_0011.fits"}
    dark = make_dark(site["ingest"] / "dark.fits", "NRCA2", "2024-01-01T00:00:00")
    result = process_submission(request(site, [dark]))
    assert result.status == READY, result.errors
    assert result.files[0].official_name == "jwst_nircam_dark_0012.fits"
    assert result.new_context == "jwst_0003.pmap"
    assert result.replaced["jwst_nircam_0001.imap"] == "jwst_nircam_0004.imap"
    assert result.replaced["jwst_nircam_dark_0001.rmap"] == "jwst_nircam_dark_0003.rmap"
    # The generated imap names the generated rmap, the pmap the generated imap.
    imap = parse_mapping(result.generated_mappings["jwst_nircam_0004.imap"], "x").selector
    assert dict(imap.as_dict())["dark"] == "jwst_nircam_dark_0003.rmap"


def test_collisions_are_warnings(site):
    dark = make_dark(site["ingest"] / "dark.fits", "NRCA2", "2024-01-01T00:00:00")
    seen = []

    def collisions(rmap):
        seen.append(rmap)
        return ["sub-0042"] if rmap == "jwst_nircam_dark_0001.rmap" else []

    result = process_submission(request(site, [dark], collisions=collisions))
    assert result.status == READY
    # every replaced mapping is asked about (as CRDS checks collisions), the rmap first
    assert seen == ["jwst_nircam_dark_0001.rmap", "jwst_nircam_0001.imap", "jwst_0001.pmap"]
    assert result.collisions == {"jwst_nircam_dark_0001.rmap": ["sub-0042"]}
    assert any("sub-0042" in w and "jwst_nircam_dark_0002.rmap" in w for w in result.warnings)


def test_references_only_makes_no_rules(site):
    dark = make_dark(site["ingest"] / "dark.fits", "NRCA1", "2024-01-01T00:00:00")
    result = process_submission(request(site, [dark], kind="references only"))
    assert result.status == READY, result.errors
    assert result.new_context is None and result.generated_mappings == {}
    assert list(result.outputs) == ["jwst_nircam_dark_0008.fits"]


# ----------------------------------------------------------------------------- rejected


def test_bad_file_gives_bad_files_with_the_certify_error(site):
    good = make_dark(site["ingest"] / "good.fits", "NRCA1")
    flat = make_dark(site["ingest"] / "flat_not_cube.fits", "NRCA2", shape=(4, 4))
    no_author = make_dark(site["ingest"] / "no_author.fits", "NRCB1", AUTHOR=None)
    result = process_submission(request(site, [good, flat, no_author]))
    assert result.status == BAD_FILES
    assert result.bad_files == ["flat_not_cube.fits", "no_author.fits"]
    by_name = {f.original_name: f for f in result.files}
    assert by_name["good.fits"].status in ("OK", "WARNINGS")
    assert any("SCI" in e for e in by_name["flat_not_cube.fits"].errors)
    assert any("AUTHOR" in e and "missing" in e for e in by_name["no_author.fits"].errors)
    assert any(e.startswith("no_author.fits: ") for e in result.errors)
    # Nothing named, nothing generated.
    assert result.outputs == {} and result.new_context is None
    assert not (site["work"] / "references").exists()
    json.dumps(result.to_dict())


def test_duplicate_sha1_is_rejected_naming_the_earlier_file(site):
    dark = make_dark(site["ingest"] / "dark.fits", "NRCA1")
    copy = site["ingest"] / "dark_again.fits"
    shutil.copyfile(dark, copy)
    known = {sha1(dark): "jwst_nircam_dark_0005.fits"}
    result = process_submission(request(site, [dark], known_sha1s=known))
    assert result.status == BAD_FILES
    assert result.duplicates == ["dark.fits"]
    assert result.files[0].duplicate_of == "jwst_nircam_dark_0005.fits"
    assert "jwst_nircam_dark_0005.fits" in result.errors[0]
    # Two identical uploads: the second duplicates the first.
    result = process_submission(request(site, [dark, copy]))
    assert result.status == BAD_FILES
    assert result.duplicates == ["dark_again.fits"]
    assert result.files[1].duplicate_of == "dark.fits"


def test_reference_of_another_instrument_or_untyped_rules(site):
    miri = make_dark(site["ingest"] / "miri.fits", INSTRUME="MIRI")
    result = process_submission(request(site, [miri]))
    assert result.status == BAD_FILES
    assert any("MIRI" in e and "NIRCAM" in e for e in result.files[0].errors)


def test_ambiguous_inserts_fail_with_the_refactor_error(site):
    first = make_dark(site["ingest"] / "a.fits", "NRCB1", "2023-01-01T00:00:00")
    second = make_dark(site["ingest"] / "b.fits", "NRCB1", "2023-01-01T00:00:00",
                       DESCRIP="another")
    result = process_submission(request(site, [first, second]))
    assert result.status == FAILED
    assert "identically match" in result.errors[0]
    assert result.new_context is None


def test_missing_context_fails_cleanly(site):
    dark = make_dark(site["ingest"] / "dark.fits")
    result = process_submission(request(site, [dark], derive_from="jwst_0099.pmap"))
    assert result.status == FAILED
    assert "jwst_0099.pmap" in result.errors[0]


def test_malformed_request_raises(site):
    with pytest.raises(ValueError, match="unknown submission kind"):
        process_submission(request(site, [Path("x.fits")], kind="bogus"))
    with pytest.raises(ValueError, match="needs files"):
        process_submission(request(site, []))


# ----------------------------------------------------------------------------- other kinds


def test_hand_edited_rmap_gives_new_imap_and_pmap(site, tmp_path):
    old = (site["mappings"] / "jwst_nircam_dark_0001.rmap").read_text()
    edited = old.replace(
        "('NRCA2', 'FULL') : UseAfter({",
        "('NRCA2', 'FULL') : UseAfter({\n        '2021-01-01 00:00:00' : "
        "'jwst_nircam_dark_0007.fits',")
    assert edited != old
    upload = site["ingest"] / "jwst_nircam_dark_0001.rmap"
    upload.write_text(rewrite_text(parse_mapping(edited, upload.name)))
    result = process_submission(request(site, [upload], kind=SubmissionKind.MAPPINGS))
    assert result.status == READY, (result.errors, result.traceback)
    assert result.files[0].official_name == "jwst_nircam_dark_0002.rmap"
    assert result.new_context == "jwst_0002.pmap"
    assert set(result.generated_mappings) == {"jwst_nircam_0002.imap", "jwst_0002.pmap"}
    submitted = Path(result.outputs["jwst_nircam_dark_0002.rmap"]).read_text()
    header = parse_mapping(submitted, "x").header
    assert header["name"] == "jwst_nircam_dark_0002.rmap"
    assert header["derived_from"] == "jwst_nircam_dark_0001.rmap"
    assert any("jwst_nircam_dark_0007.fits" in d["text"] and d["action"].startswith("add")
               for d in result.diffs)
    store = confirmed_store(site, result, tmp_path)
    shutil.copyfile(result.outputs["jwst_nircam_dark_0002.rmap"],
                    store / "jwst_nircam_dark_0002.rmap")
    context = load_context(store / "jwst_0002.pmap")
    refs = context.best_references({"META.INSTRUMENT.NAME": "NIRCAM",
                                    "META.INSTRUMENT.DETECTOR": "NRCA2",
                                    "META.SUBARRAY.NAME": "FULL",
                                    "META.OBSERVATION.DATE": "2021-06-01",
                                    "META.OBSERVATION.TIME": "00:00:00"})
    assert refs["dark"] == "jwst_nircam_dark_0007.fits"


def test_hand_edited_rmap_with_bad_checksum_is_a_bad_file(site):
    upload = site["ingest"] / "jwst_nircam_dark_0001.rmap"
    upload.write_text((site["mappings"] / "jwst_nircam_dark_0001.rmap").read_text()
                      .replace("NRCA2", "NRCB2"))
    result = process_submission(request(site, [upload], kind="mappings"))
    assert result.status == BAD_FILES
    assert any("sha1sum" in e for e in result.files[0].errors)


def test_delete_references(site):
    result = process_submission(request(site, [], kind="delete references",
                                        delete_references=("jwst_nircam_dark_0002.fits",)))
    assert result.status == READY, (result.errors, result.traceback)
    dark = selector_of(result.generated_mappings["jwst_nircam_dark_0002.rmap"])
    assert ("NRCA2", "FULL") not in dark and ("NRCA1", "FULL") in dark
    assert result.new_context == "jwst_0002.pmap"
    assert any(d["action"].startswith("delete") and "jwst_nircam_dark_0002.fits" in d["text"]
               for d in result.diffs)
    missing = process_submission(request(site, [], kind="delete",
                                         delete_references=("jwst_nircam_dark_0099.fits",)))
    assert missing.status == BAD_FILES
    assert "jwst_nircam_dark_0099.fits" in missing.errors[0]


def test_add_existing_references(site, tmp_path):
    existing = make_dark(tmp_path / "jwst_nircam_dark_0007.fits", "NRCB1", "2022-03-01T00:00:00")
    result = process_submission(request(site, [existing], kind="add existing references",
                                        known_sha1s={sha1(existing): existing.name}))
    assert result.status == READY, (result.errors, result.traceback)
    assert result.files[0].official_name == "jwst_nircam_dark_0007.fits"
    assert "jwst_nircam_dark_0007.fits" not in result.outputs  # already in the store
    dark = selector_of(result.generated_mappings["jwst_nircam_dark_0002.rmap"])
    assert dark[("NRCB1", "FULL")] == {"2022-03-01 00:00:00": "jwst_nircam_dark_0007.fits"}


# ----------------------------------------------------------------------------- HST


def test_hst_submission_on_the_corpus_context(corpus, tmp_path):
    import datetime

    from crds_events.files.uniqname import decode_timestamp

    mappings = corpus / "contexts" / "hst" / "mappings"
    original = corpus / "contexts" / "hst" / "references" / "s7g1700gl_dead.fits"
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    upload = ingest / "new_deadtab.fits"
    with fits.open(original) as hdus:
        hdus[0].header["USEAFTER"] = "Jan 01 2020 00:00:00"
        hdus.writeto(upload, checksum=True)
    before = sha1(upload)
    when = datetime.datetime(2026, 11, 28, 12, 0, 0)
    # The name `when` gives (2026 wraps to year code a, November b, 28th s, 12:00, 0 s),
    # already taken: the next two-second slot must be used.
    first_slot = "abs12000l_dead.fits"
    known = {p.name for p in mappings.iterdir()} | {original.name, first_slot}
    result = process_submission(ProcessingRequest(
        observatory="hst", instrument="cos", kind="batch", files=(upload,),
        derive_from="hst_0001.pmap", mappings_dir=mappings, work_dir=tmp_path / "work",
        known_names=frozenset(known), known_sha1s={sha1(original): original.name},
        clock=lambda: when))
    assert result.status == READY, (result.errors, result.traceback)
    name = result.files[0].official_name
    assert name != first_slot and name.endswith("l_dead.fits")  # l = COS
    assert decode_timestamp(name[:8], century_start=2026) == when + datetime.timedelta(seconds=2)
    renamed = Path(result.outputs[name])
    with fits.open(renamed) as hdus:
        assert hdus[0].header["FILENAME"] == name
    assert result.files[0].sha1 == sha1(renamed) != before == result.files[0].original_sha1
    assert sha1(upload) == before
    assert result.replaced["hst_cos_deadtab.rmap"] == "hst_cos_deadtab_0001.rmap"
    assert result.new_context == "hst_0003.pmap"  # hst_0002.pmap is in the directory
    dead = selector_of(result.generated_mappings["hst_cos_deadtab_0001.rmap"])
    assert dead[("FUV",)] == {"1996-10-01 00:00:00": "s7g1700gl_dead.fits",
                              "2020-01-01 00:00:00": name}
    # Nothing was written beside the corpus mappings.
    assert not (mappings / "hst_0003.pmap").exists()


def test_rerun_in_the_same_work_dir_gives_the_same_result(site):
    dark = make_dark(site["ingest"] / "dark.fits", "NRCB1", "2023-01-01T00:00:00")
    first = process_submission(request(site, [dark]))
    second = process_submission(request(site, [dark]))
    assert first.status == second.status == READY
    assert first.outputs == second.outputs
    assert first.generated_mappings == second.generated_mappings
    assert sorted(p.name for p in (site["work"] / "mappings").iterdir()) == \
        sorted(first.generated_mappings)


def test_a_failing_progress_callback_or_work_dir_never_raises(site, tmp_path):
    dark = make_dark(site["ingest"] / "dark.fits", "NRCB1", "2023-01-01T00:00:00")

    def broken(line):
        raise OSError("event store unavailable")

    result = process_submission(request(site, [dark]), broken)
    assert result.status == READY
    assert any("event store unavailable" in w for w in result.warnings)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    result = process_submission(request(site, [dark], work_dir=blocker / "work"))
    assert result.status == FAILED and "processing failed" in result.errors[0]
