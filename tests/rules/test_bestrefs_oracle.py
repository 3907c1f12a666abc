"""Best references equal the crds oracle on every line of the corpus's bestrefs files.

Filenames, lists of filenames, `NOT FOUND n/a` and omitted types must be identical; other
`NOT FOUND` values must be `NOT FOUND` too (the reason text may differ); whole-dataset
failures must fail too; for JWST lines carrying a calibration software version only the
types the oracle lists are compared (crds narrowed them with tables built into crds).
"""

from __future__ import annotations

import json

import pytest

from crds_events.rules.bestrefs import DatasetError, load_context

CASES = [
    ("bestrefs_hst_0001.jsonl", "hst/mappings/hst_0001.pmap"),
    ("bestrefs_hst_0002.jsonl", "hst/mappings/hst_0002.pmap"),
    ("bestrefs_jwst.jsonl", "jwst/mappings/jwst_0001.pmap"),
]


def _is_other_not_found(value: object) -> bool:
    return isinstance(value, str) and value.startswith("NOT FOUND") and value != "NOT FOUND n/a"


def disagreements(record: dict, got: dict) -> list[str]:
    """How `got` differs from the oracle's `expected` for one line ([] when it agrees)."""
    expected = record["expected"]
    if "error" in expected or "error" in got:
        return [] if ("error" in expected) == ("error" in got) else [f"{expected} vs {got}"]
    narrowed = "calibration software version" in record.get("note", "")
    types = set(expected) if narrowed else set(expected) | set(got)
    problems = []
    for filekind in sorted(types):
        want, have = expected.get(filekind), got.get(filekind)
        same = _is_other_not_found(have) if _is_other_not_found(want) else want == have
        if not same:
            problems.append(f"{filekind}: expected {want!r}, got {have!r}")
    return problems


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("oracle_name,context_path", CASES)
def test_best_references_equal_the_oracle(corpus, oracle_name, context_path):
    context = load_context(corpus / "contexts" / context_path)
    failures, total = [], 0
    with open(corpus / "oracle" / oracle_name, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            total += 1
            try:
                got = context.best_references(record["header"])
            except DatasetError as exc:
                got = {"error": exc.not_found}
            problems = disagreements(record, got)
            if problems:
                failures.append(f"{record['id']}: {'; '.join(problems)}")
    agreement = 100.0 * (total - len(failures)) / total
    print(f"{oracle_name}: {total - len(failures)}/{total} lines agree ({agreement:.2f}%)")
    assert total > 0
    assert not failures, f"{agreement:.2f}% agreement; first failures:\n" + "\n".join(failures[:20])


@pytest.mark.corpus
def test_whole_dataset_failures_are_named(corpus):
    context = load_context(corpus / "contexts" / "hst/mappings/hst_0001.pmap")
    with pytest.raises(DatasetError, match="Missing 'INSTRUME' keyword"):
        context.best_references({"DATE-OBS": "2010-01-01"})
    with pytest.raises(DatasetError, match="Unknown instrument 'foc'"):
        context.best_references({"INSTRUME": "FOC"})


@pytest.mark.corpus
def test_types_limit_the_answer(corpus):
    context = load_context(corpus / "contexts" / "hst/mappings/hst_0001.pmap")
    with open(corpus / "oracle" / "bestrefs_hst_0001.jsonl", encoding="utf-8") as lines:
        record = json.loads(next(lines))
    full = context.best_references(record["header"])
    some = sorted(full)[:2]
    assert context.best_references(record["header"], types=some) == {k: full[k] for k in some}
