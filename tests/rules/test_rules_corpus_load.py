"""Every corpus mapping loads or fails as crds 14 did; checksums and canonical text match.

The oracle (`oracle/mappings_sha1.json`) was recorded by running the real crds library.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from crds_events.rules.canonical import canonical_checksum, format_mapping, rewrite_text
from crds_events.rules.checksum import mapping_checksum, read_mapping_text
from crds_events.rules.document import load_mapping
from crds_events.rules.parse import (
    ChecksumError,
    MappingError,
    UnsafeNameError,
    crds_test_data_names,
    parse_mapping,
)

pytestmark = pytest.mark.corpus


@pytest.fixture(autouse=True)
def _test_data_child_names(crds_test_data_names):
    """The crds repository's HST test mappings name children `test/data/hst/<name>` and crds
    loads them: the comparison with the oracle runs in the parser's compatibility mode (the
    server, certify and the store never do; see test_strict_names_refuse_only_... below)."""


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def oracle(corpus):
    with open(corpus / "oracle" / "mappings_sha1.json", encoding="utf-8") as handle:
        return json.load(handle)


def _load_outcome(path, name, ignore_checksum):
    try:
        load_mapping(path, ignore_checksum=ignore_checksum, name=name)
    except MappingError as exc:
        return False, exc
    return True, None


def test_oracle_covers_all_corpus_mappings(corpus, oracle):
    data = corpus / "crds-test-data"
    on_disk = {
        str(p.relative_to(data))
        for obs in ("hst", "jwst", "roman")
        for ext in ("pmap", "imap", "rmap")
        for p in (data / obs).glob(f"*.{ext}")
    }
    assert on_disk == set(oracle)
    assert len(oracle) == 165


def test_every_mapping_loads_or_fails_as_crds_did(corpus, oracle):
    data = corpus / "crds-test-data"
    mismatches = []
    for rel, rec in sorted(oracle.items()):
        for ignore, key in ((False, "loads"), (True, "loads_ignoring_checksum")):
            loaded, exc = _load_outcome(data / rel, rel, ignore)
            if loaded != rec[key]:
                mismatches.append((rel, key, rec[key], repr(exc)))
            elif not loaded and not ignore:
                expected_class, _, expected_message = rec["load_error"].partition(": ")
                if exc.crds_class != expected_class:
                    mismatches.append((rel, "class", expected_class, exc.crds_class))
                if isinstance(exc, ChecksumError) and str(exc) != expected_message:
                    mismatches.append((rel, "message", expected_message, str(exc)))
    assert mismatches == []


def test_load_error_classes_seen(corpus, oracle):
    """The corpus exercises each kind of failure the brief names (guards the test above)."""
    classes = {rec["load_error"].split(":")[0] for rec in oracle.values() if not rec["loads"]}
    assert {"ChecksumError", "SyntaxError", "MissingHeaderKeyError", "MappingError"} <= classes


def test_checksums_and_canonical_text_match_crds(corpus, oracle):
    data = corpus / "crds-test-data"
    checked = 0
    for rel, rec in sorted(oracle.items()):
        text = read_mapping_text(data / rel)
        assert _sha1(text) == rec["file_sha1"], rel
        assert mapping_checksum(text) == rec["computed_sha1"], rel
        if not rec["loads_ignoring_checksum"]:
            continue
        parsed = parse_mapping(text, rel)
        canonical = format_mapping(parsed)
        expected = (corpus / "oracle" / rec["canonical_text"]).read_text(encoding="utf-8")
        assert canonical == expected, rel
        assert _sha1(canonical) == rec["canonical_text_sha1"], rel
        assert (canonical == text) == rec["canonical_equals_file"], rel
        assert canonical_checksum(parsed) == rec["canonical_checksum"], rel
        assert _sha1(rewrite_text(parsed)) == rec["rewritten_text_sha1"], rel
        checked += 1
    assert checked == 162


def test_stored_sha1_is_what_the_header_says(corpus, oracle):
    data = corpus / "crds-test-data"
    for rel, rec in oracle.items():
        if rec["loads_ignoring_checksum"]:
            doc = load_mapping(data / rel, ignore_checksum=True)
            assert doc.parsed.header.get("sha1sum") == rec["stored_sha1"], rel
            assert doc.checksum_ok == rec["loads"], rel


@pytest.mark.parametrize("obs", ["hst", "jwst"])
def test_context_mappings_all_load_with_their_checksums(corpus, obs):
    paths = sorted((corpus / "contexts" / obs / "mappings").glob("*.?map"))
    assert paths
    for path in paths:
        doc = load_mapping(path)
        assert doc.name == path.name
        assert doc.kind == {".pmap": "pipeline", ".imap": "instrument", ".rmap": "reference"}[
            path.suffix
        ]


def test_parsing_the_whole_corpus_is_fast(corpus, oracle):
    texts = [read_mapping_text(corpus / "crds-test-data" / rel) for rel in oracle]
    started = time.perf_counter()
    for text in texts:
        parse_mapping(text)
    elapsed = time.perf_counter() - started
    # About 0.4 s on the development machine (ast.parse is most of it); generous bound for
    # a loaded shared machine.
    assert elapsed < 4, f"parsing 165 mappings took {elapsed:.2f} s"


def test_fast_and_ast_parsers_agree_on_every_corpus_mapping(corpus):
    from crds_events.rules.fastparse import fast_parse

    paths = sorted((corpus / "crds-test-data").glob("*/*.?map"))
    paths += sorted((corpus / "contexts").glob("*/mappings/*.?map"))
    for path in paths:
        text = read_mapping_text(path)
        fast = fast_parse(text, path.name)
        assert fast is not None, path  # CRDS-written text always takes the fast path
        slow = parse_mapping(text, path.name, fast=False)
        assert fast == slow and fast.header_duplicates == slow.header_duplicates, path
        for a, b in zip(fast.selector.walk(), slow.selector.walk(), strict=True):
            assert (a.lines, a.lineno) == (b.lines, b.lineno), path


def test_strict_names_refuse_only_the_test_data_paths(corpus, oracle):
    """Outside the compatibility mode exactly the mappings that name a `test/data/...` path
    are refused (as a parse error naming that path); every other mapping is unaffected."""
    data = corpus / "crds-test-data"
    refused = set()
    with crds_test_data_names(allowed=False):  # leave the module's compatibility mode
        for rel, rec in sorted(oracle.items()):
            text = read_mapping_text(data / rel)
            try:
                parse_mapping(text, rel)
            except UnsafeNameError as exc:
                assert "test/data/" in str(exc) and "names a path" in str(exc), rel
                refused.add(rel)
            except MappingError:
                assert not rec["loads_ignoring_checksum"], rel
    naming_paths = {rel for rel in oracle
                    if "'test/data/" in read_mapping_text(data / rel)}
    assert refused == naming_paths and len(refused) == 10
