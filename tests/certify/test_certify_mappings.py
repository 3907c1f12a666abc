"""Certify of rules files against the corpus, with independently computed truth.

- Duplicates: found by walking Python's own `ast` of each file (not our parser).
- Bad match values: the `crds` library's own selector value validation, run over the
  conditioned Match keys crds loads, with crds's `tpn_valid_values` - against ours, both
  reading the same .tpn directory (the one packaged with crds).
- Broken files: the oracle's recorded crds load errors (`oracle/mappings_sha1.json`).
- Overlaps: crds's `match_superset` / `different_match_weight` over every pair of keys.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from crds_events.certify import certify_files
from crds_events.certify.mappings import check_mapping
from crds_events.certify.match_values import equal_weight_overlaps
from crds_events.certify.tpn import ld_valid_values
from crds_events.rules.conditioning import condition_match_key

pytestmark = pytest.mark.corpus

CRDS_TPNS = Path(__import__("crds").__file__).parent / "hst" / "tpns"


@pytest.fixture(scope="module")
def oracle(corpus):
    with open(corpus / "oracle" / "mappings_sha1.json", encoding="utf-8") as handle:
        return json.load(handle)


def _ast_duplicates(path: Path) -> list[object]:
    """Keys written twice in any dict literal of the file (Python's ast, not our parser)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            keys = [ast.literal_eval(k) for k in node.keys if k is not None]
            found += [k for i, k in enumerate(keys) if k in keys[:i]]
    return found


def _crds_value_errors(path: Path) -> list[str]:
    """crds's own verdict on the Match values of an rmap (value checks only)."""
    from crds.core import rmap, selectors
    from crds.core.exceptions import ValidationError

    mapping = rmap.fetch_mapping(str(path), ignore_checksum=True)
    valid = mapping.tpn_valid_values
    errors = []
    stack = [mapping.selector]
    while stack:
        selector = stack.pop()
        if isinstance(selector, selectors.MatchSelector):
            for key in selector.keys():  # noqa: SIM118 - a crds Selector, not a dict
                for name, field in zip(selector._parameters, key, strict=True):
                    if name not in valid:
                        continue
                    for value in selectors.glob_list(str(field)):
                        try:
                            selector._validate_value(name, value, valid[name], runtime=False)
                        except ValidationError as exc:
                            errors.append(str(exc))
        stack += [c for c in selector.choices() if isinstance(c, selectors.Selector)]
    return errors


@pytest.fixture(scope="module")
def crds_cache(corpus, tmp_path_factory):
    """A read-only-mode crds cache holding the hst context, for crds's own checks."""
    root = tmp_path_factory.mktemp("crds_cache")
    (root / "mappings").mkdir()
    shutil.copytree(corpus / "contexts" / "hst" / "mappings", root / "mappings" / "hst")
    old = {k: os.environ.get(k) for k in ("CRDS_PATH", "CRDS_MODE", "CRDS_SERVER_URL")}
    os.environ.update(CRDS_PATH=str(root), CRDS_MODE="local")
    os.environ.pop("CRDS_SERVER_URL", None)
    yield root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_context_mappings_fail_exactly_where_crds_or_ast_finds_a_problem(corpus, crds_cache):
    mappings = sorted((crds_cache / "mappings" / "hst").glob("*map"))
    assert len(mappings) == 119
    for path in mappings:
        result = check_mapping(path, tpn_dir=CRDS_TPNS)
        duplicates = _ast_duplicates(path)
        value_errors = _crds_value_errors(path) if path.suffix == ".rmap" else []
        assert bool(result.errors) == bool(duplicates or value_errors), (path.name, result.errors)
        text = " ".join(m.reason for m in result.errors)
        for key in duplicates:
            assert "duplicate entry at" in text and repr(key) in text, (path.name, key)
        assert len([m for m in result.errors if "is not in" in m.reason]) == len(value_errors)
        for message in result.errors:
            assert message.file == str(path)


def test_valid_context_mappings_pass_with_builtin_specs(corpus):
    directory = corpus / "contexts" / "hst" / "mappings"
    failing = set()
    for path in sorted(directory.glob("*map")):
        result = check_mapping(path)
        if result.errors:
            failing.add(path.name)
    # Independent truth: repeated keys (ast) and the CCDGAIN 5.0 case the refactor oracle
    # inserted into hst_acs_biasfile_0002.rmap, a value no ACS bias may have.
    expected = {p.name for p in directory.glob("*map") if _ast_duplicates(p)}
    expected |= {p.name for p in directory.glob("*.rmap") if "5.0, '*'" in p.read_text()}
    assert failing == expected


def test_jwst_context_passes(corpus):
    directory = corpus / "contexts" / "jwst" / "mappings"
    tpns = corpus / "site-config" / "jwst" / "tpns"
    for path in sorted(directory.glob("*map")):
        result = check_mapping(path, tpn_dir=tpns)
        assert not result.errors, (path.name, result.errors)


def test_broken_mappings_from_the_oracle_fail_naming_file_and_reason(corpus, oracle):
    broken = {rel: entry for rel, entry in oracle.items() if not entry["loads"]}
    assert len(broken) == 11
    for rel, entry in broken.items():
        path = corpus / "crds-test-data" / rel
        result = check_mapping(path)
        assert result.status == "ERRORS", rel
        exception, _, message = entry["load_error"].partition(": ")
        reasons = [str(m) for m in result.errors]
        assert all(os.path.basename(rel) in reason for reason in reasons)
        if exception == "ChecksumError":
            assert any(m.keyword == "sha1sum" and message in m.reason for m in result.errors), rel
        elif exception == "MissingHeaderKeyError":
            assert any(message in m.reason for m in result.errors), rel
        elif exception == "SyntaxError":
            assert any("invalid syntax" in m.reason for m in result.errors), rel
        else:  # crds: "Can't load file ... : 'parkey'"
            missing = message.rsplit(":", 1)[-1].strip().strip("'")
            assert any(missing in m.reason and "missing" in m.reason for m in result.errors), rel


@pytest.mark.parametrize("name", ["hst/hst_cos_dup.rmap", "hst/hst_cos_tdstab_duplicate.rmap",
                                  "roman/roman_wfi_flat_0004_duplicate.rmap"])
def test_duplicate_entries_are_errors_naming_the_key(corpus, name):
    path = corpus / "crds-test-data" / name
    duplicates = _ast_duplicates(path)
    assert duplicates
    result = check_mapping(path)
    for key in duplicates:
        assert any(m.keyword == "selector" and repr(key) in m.reason and "duplicate" in m.reason
                   for m in result.errors), (name, key)


@pytest.mark.parametrize("name, value", [
    ("hst/hst_acs_darkfile_invalid1.rmap", "DDDD"),
    ("hst/hst_acs_darkfile_invalid1.rmap", "2002-03- 00:34:31"),
    ("hst/hst_acs_darkfile_invalid2.rmap", "FOOBAR"),
    ("jwst/jwst_niriss_flat_na_omit.rmap", "BOGUS1"),
    ("roman/roman_wfi_flat_0004_badtpn.rmap", "WFI21"),
])
def test_bad_values_are_errors_naming_the_value(corpus, name, value):
    observatory = name.split("/")[0]
    result = check_mapping(corpus / "crds-test-data" / name,
                           tpn_dir=corpus / "site-config" / observatory / "tpns")
    assert value in (corpus / "crds-test-data" / name).read_text()
    assert any(repr(value) in m.reason for m in result.errors), result.errors


def test_bad_expression_is_an_error(corpus):
    result = check_mapping(corpus / "crds-test-data" / "hst" / "hst_acs_darkfile_badexpr.rmap")
    assert result.status == "ERRORS"
    assert any("parkey_relevance" in m.reason and "x=" in m.reason for m in result.errors)


@pytest.mark.parametrize("name", ["hst/hst_acs_darkfile_ewsc.rmap", "roman/roman_wfi_flat_ewsc.rmap"])
def test_equal_weight_special_cases_are_errors_without_merging(corpus, name):
    result = check_mapping(corpus / "crds-test-data" / name)
    assert any("equal weight special case" in m.reason for m in result.errors)


def test_hst_overlaps_are_info_or_warnings_with_verbose(corpus):
    path = corpus / "contexts" / "hst" / "mappings" / "hst_acs_pfltfile.rmap"
    quiet, loud = check_mapping(path), check_mapping(path, verbose=True)
    overlaps = [m for m in quiet.messages if "equal weight" in m.reason]
    assert overlaps and all(m.level == "info" for m in overlaps)
    assert quiet.status == "OK"
    assert [m.level for m in loud.messages if "equal weight" in m.reason] == ["warning"] * len(overlaps)


@pytest.mark.parametrize("name", ["hst_acs_pfltfile.rmap", "hst_wfc3_pfltfile.rmap",
                                  "hst_stis_pfltfile.rmap", "hst_acs_flshfile.rmap"])
def test_overlaps_equal_crds_pairwise_check(corpus, name, crds_cache):
    from crds.core import rmap, selectors, utils

    path = crds_cache / "mappings" / "hst" / name
    selector = rmap.fetch_mapping(str(path), ignore_checksum=True).selector
    keys = selector.keys()
    expected = set()
    for key in keys:
        key = tuple(utils.condition_value(k) for k in key)
        for other in keys:
            if key != other and selectors.match_superset(other, key) \
                    and not selectors.different_match_weight(key, other):
                expected.add((key, other))
    ours = [condition_match_key(k) for k in keys]
    assert {(ours[a], ours[b]) for a, b in equal_weight_overlaps(ours)} == expected


def test_ld_valid_values_equal_crds(corpus, crds_cache):
    from crds.core import rmap

    for path in sorted((crds_cache / "mappings" / "hst").glob("*.rmap"))[::7]:
        mapping = rmap.fetch_mapping(str(path), ignore_checksum=True)
        expected = {k: list(v) for k, v in mapping.tpn_valid_values.items()}
        assert ld_valid_values(CRDS_TPNS, mapping.instrument, mapping.filekind,
                               mapping.get_required_parkeys()) == expected, path.name


def test_children_missing_and_inconsistent(corpus, tmp_path):
    source = corpus / "contexts" / "hst" / "mappings"
    shutil.copyfile(source / "hst_0001.pmap", tmp_path / "hst_0001.pmap")
    result = check_mapping(tmp_path / "hst_0001.pmap")
    missing = [m for m in result.errors if "not found" in m.reason]
    assert len(missing) == 6  # six imaps, none copied
    # found through the context's directory
    assert not check_mapping(tmp_path / "hst_0001.pmap", context=source / "hst_0001.pmap").errors
    # an imap filed under the wrong instrument
    text = (source / "hst_0001.pmap").read_text().replace("'COS' : 'hst_cos.imap'",
                                                          "'COS' : 'hst_stis.imap'")
    (tmp_path / "hst_0001.pmap").write_text(text)
    result = check_mapping(tmp_path / "hst_0001.pmap", mappings_dir=source)
    assert any(m.keyword == "instrument" and "hst_stis.imap" in m.reason for m in result.errors)


def test_comparison_context_reports_crds_rule_changes(corpus):
    directory = corpus / "contexts" / "hst" / "mappings"
    result = check_mapping(directory / "hst_0002.pmap", comparison_context=directory / "hst_0001.pmap")
    changes = [m for m in result.messages if m.keyword == "comparison" and m.level == "warning"]
    # The same differences crds diff reports for hst_0001 -> hst_0002, one warning each.
    stdout = (corpus / "oracle" / "diff" / "pmaps_context.stdout.txt").read_text()
    rule_lines = [line for line in stdout.splitlines() if "Match rule" in line]
    assert len(changes) == len(rule_lines) > 0
    assert all(m.reason.startswith("Rule change at") for m in changes)
    same = check_mapping(directory / "hst_acs.imap", comparison_context=directory / "hst_0001.pmap")
    assert any("did not change" in m.reason for m in same.messages)


def test_garbage_and_missing_files_are_errors(tmp_path):
    (tmp_path / "x.rmap").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "y.rmap").write_text("header = {'a': 1}\nselector = __import__('os')\n")
    results = certify_files([tmp_path / "x.rmap", tmp_path / "y.rmap", tmp_path / "z.rmap"])
    assert [r.status for r in results] == ["ERRORS"] * 3
    assert "UTF-8" in results[0].errors[0].reason
    assert "line 2" in results[1].errors[0].reason
    assert "cannot read" in results[2].errors[0].reason


def test_certify_files_dispatches_and_uses_the_context_rmap(corpus):
    context = corpus / "contexts" / "hst" / "mappings" / "hst_0001.pmap"
    reference = corpus / "contexts" / "hst" / "references" / "s7g1700gl_dead.fits"
    mapping, ref = certify_files([context, reference], context=context,
                                 tpn_dir=corpus / "site-config" / "hst" / "tpns")
    assert mapping.ok and ref.ok
    assert any("hst_cos_deadtab.rmap" in m.reason for m in ref.messages)
