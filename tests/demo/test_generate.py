"""The context generator: loads, certifies clean, answers best references, is deterministic.

Best references are checked against an oracle written here from the generator's own list of
cases (Match values, OR-alternatives, N/A, the GENERIC -> N/A substitution, relevance and
UseAfter dates), not from the rules engine: a wrong match, a lost alternative or a wrong
date shows up as a disagreement.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events.certify import certify_files
from crds_events.cli import cli
from crds_events.demo.generate import GeneratorConfig, generate
from crds_events.rules.bestrefs import load_context
from crds_events.rules.document import load_mapping

SMALL = GeneratorConfig(instruments=3, types=8, datasets=3000, seed=7)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate(SMALL, tmp_path_factory.mktemp("generated"))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_context_loads_with_verified_checksums(small):
    names = sorted(p.name for p in small.mappings_dir.iterdir())
    assert names == small.mappings
    assert len([n for n in names if n.endswith(".rmap")]) == 3 * 8
    for name in names:
        load_mapping(small.mappings_dir / name)  # raises on a bad sha1sum
    context = load_context(small.mappings_dir / small.pmap, load_all=True)
    assert context is not None
    texts = "".join((small.mappings_dir / n).read_text() for n in names if n.endswith(".rmap"))
    # the shapes real CRDS rules have
    for shape in ("|", "'N/A'", "'substitutions'", "'rmap_relevance'", "UseAfter({"):
        assert shape in texts, shape


@pytest.mark.slow
def test_everything_certifies_clean_against_the_context(small):
    paths = sorted(small.mappings_dir.iterdir()) + sorted(small.references_dir.iterdir())
    assert len(paths) == len(small.mappings) + len(small.cases)
    assert {p.suffix for p in small.references_dir.iterdir()} == {".fits", ".asdf"}
    results = certify_files(paths, context=small.mappings_dir / small.pmap)
    problems = [str(m) for r in results for m in r.messages if m.level in ("error", "warning")]
    assert problems == []


def _oracle(small):
    """(instrument, filekind) -> (parameters, {row: [(date, file)]}, irrelevant exp type)."""
    rules: dict = {}
    for case in small.cases:
        entry = rules.setdefault((case.instrument, case.filekind),
                                 [case.parameters, {}, None])
        entry[1].setdefault(case.values, []).append((case.useafter, case.reference))
    for (instrument, filekind), entry in rules.items():
        text = (small.mappings_dir / f"jwst_{instrument.lower()}_{filekind}_0001.rmap").read_text()
        found = re.search(r"META\.EXPOSURE\.TYPE != \"([^\"]+)\"", text)
        entry[2] = found.group(1) if found else None
    return rules


def _expected(rules, header, instrument, filekind):
    parameters, rows, irrelevant = rules[(instrument, filekind)]
    if irrelevant and header.get("META.EXPOSURE.TYPE") == irrelevant:
        return "NOT FOUND n/a"
    matches = []
    for row, dated in rows.items():
        exact = 0
        for parameter, value in zip(parameters, row, strict=True):
            if value in ("N/A", "GENERIC") if parameter == "META.SUBARRAY.NAME" else value == "N/A":
                continue
            if header[parameter] not in value.split("|"):
                break
            exact += 1
        else:
            matches.append((exact, dated))
    if not matches:
        return None  # NOT FOUND (of whatever wording)
    best = max(exact for exact, _ in matches)
    winners = [dated for exact, dated in matches if exact == best]
    assert len(winners) == 1, "the generator made an ambiguous rmap"
    when = f"{header['META.OBSERVATION.DATE']} {header['META.OBSERVATION.TIME'][:8]}"
    usable = [(date, name) for date, name in winners[0] if date <= when]
    return max(usable)[1] if usable else None


def test_best_references_agree_with_an_independent_oracle(small):
    context = load_context(small.mappings_dir / small.pmap)
    rules = _oracle(small)
    datasets = [json.loads(line) for line in small.datasets_path.read_text().splitlines()]
    assert len(datasets) == SMALL.datasets
    assert len({d["id"] for d in datasets}) == len(datasets)
    resolved = 0
    for record in datasets:
        header = record["header"]
        instrument = header["META.INSTRUMENT.NAME"]
        answers = context.best_references(header)
        complete = True
        for filekind in {kind for inst, kind in rules if inst == instrument}:
            expected = _expected(rules, header, instrument, filekind)
            got = answers[filekind]
            if expected is None:
                assert got.startswith("NOT FOUND") and got != "NOT FOUND n/a", (record, filekind)
                complete = False
            else:
                assert got == expected, (record["id"], filekind)
        resolved += complete
    # a large majority resolve every type (the generator plants ~2% unknown detectors)
    assert resolved / len(datasets) > 0.95


def test_deterministic_for_a_seed(tmp_path):
    config = GeneratorConfig(instruments=2, types=5, datasets=200, seed=3)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    generate(GeneratorConfig(instruments=2, types=5, datasets=200, seed=4), tmp_path / "c")
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "c")


def test_scales_past_jwst_with_synthetic_names(tmp_path):
    result = generate(GeneratorConfig(instruments=7, types=32, datasets=100,
                                      references="none"), tmp_path)
    context = load_context(result.mappings_dir / result.pmap, load_all=True)
    assert context is not None
    assert "jwst_instr07_0001.imap" in result.mappings
    assert "jwst_nircam_type032_0001.rmap" in result.mappings
    assert not any(result.references_dir.iterdir())


def test_cli_generate_and_bad_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--out", str(tmp_path / "g"), "--instruments", "1",
                                 "--types", "3", "--datasets", "50"])
    assert result.exit_code == 0, result.output
    assert "jwst_0001.pmap" in result.output
    lines = (tmp_path / "g" / "datasets.jsonl").read_text().splitlines()
    assert len(lines) == 50
    result = runner.invoke(cli, ["generate", "--out", str(tmp_path / "h"), "--types", "0"])
    assert result.exit_code != 0
    assert "--types" in result.output
