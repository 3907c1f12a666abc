"""`crds-events list` over a mappings directory or a context."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crds_events.cli import cli

pytestmark = pytest.mark.corpus


def _run(*args):
    return CliRunner().invoke(cli, ["list", *map(str, args)])


def test_mappings_and_contexts_of_a_directory(corpus):
    directory = corpus / "contexts" / "hst" / "mappings"
    result = _run("--mappings", "--mappings-dir", directory)
    assert result.exit_code == 0
    assert result.output.split() == sorted(p.name for p in directory.glob("*map"))
    contexts = _run("--contexts", "--mappings-dir", directory)
    assert contexts.output.split() == ["hst_0001.pmap", "hst_0002.pmap"]


def test_what_a_context_names(corpus):
    directory = corpus / "contexts" / "hst" / "mappings"
    mappings = _run("--mappings", "--mappings-dir", directory, "--context", "hst_0001.pmap")
    assert mappings.exit_code == 0
    names = mappings.output.split()
    # README: hst_0001.pmap is 116 mappings naming 14,576 reference files
    assert len(names) == 116 and "hst_0002.pmap" not in names and "hst_acs_0002.imap" not in names
    references = _run("--references", "--mappings-dir", directory, "--context", "hst_0001.pmap")
    assert len(references.output.split()) == 14576


def test_references_directory_and_status(corpus):
    base = corpus / "contexts" / "hst"
    result = _run("--references", "--mappings-dir", base / "mappings",
                  "--references-dir", base / "references")
    assert result.output.split() == sorted(p.name for p in (base / "references").iterdir())
    status = _run("--status", "--mappings-dir", base / "mappings",
                  "--references-dir", base / "references")
    assert status.exit_code == 0
    assert "latest context (highest serial) : hst_0002.pmap" in status.output
    assert "mappings                        : 119" in status.output


def test_errors(tmp_path, corpus):
    assert _run("--mappings", "--mappings-dir", tmp_path / "absent").exit_code == 1
    none = _run("--mappings-dir", tmp_path)
    assert none.exit_code == 2 and "--mappings" in none.output
    bad = _run("--mappings", "--mappings-dir", tmp_path, "--context", "hst_0009.pmap")
    assert bad.exit_code == 1 and "hst_0009.pmap" in bad.output
