"""Every CRDS .tpn file in the corpus parses, with the same constraints the crds library reads."""

from __future__ import annotations

import pytest

from crds_events.certify.expressions import ConstraintExpressionError, compile_expression, evaluate
from crds_events.certify.tpn import TpnError, load_tpn, tpn_constraints

pytestmark = pytest.mark.corpus


def _all_tpns(corpus):
    return sorted((corpus / "site-config").glob("*/tpns/**/*.tpn"))


def test_every_corpus_tpn_parses_like_crds(corpus):
    from crds.core import generic_tpn

    paths = _all_tpns(corpus)
    assert len(paths) > 600
    agreed = 0
    for path in paths:
        ours = load_tpn(path)
        try:
            theirs = generic_tpn.load_tpn(str(path))
        except Exception:
            continue  # link files (one line naming another .tpn) crds reads via the real file
        assert [(c.name) for c in ours] == [t.name for t in theirs], path.name
        for mine, info in zip(ours, theirs, strict=True):
            if info.presence.startswith("("):
                assert mine.condition == info.presence
            if info.datatype == "X" and info.values and info.values[0].startswith("("):
                assert mine.expression == info.values[0]
        agreed += 1
    assert agreed > 600


def test_link_and_include_and_replace(corpus):
    tpns = corpus / "site-config" / "jwst" / "tpns"
    assert [c.name for c in load_tpn(tpns / "miri_all_ld.tpn")] == [c.name for c in load_tpn(tpns / "miri_all.tpn")]
    ipc = load_tpn(tpns / "all_ipc.tpn")
    assert any(c.special == "KERNELUNITY" and c.condition == "(array_exists(SCI_ARRAY))" for c in ipc)
    dark = load_tpn(tpns / "miri_dark.tpn")
    # includes/miri_sci_array_refpix.tpn is parameterised by `replace XDIM_MAX 1032`.
    assert any(c.expression and "1032" in c.expression for c in dark)
    assert not any(c.expression and "XDIM_MAX" in c.expression for c in dark)


def test_hst_values_ranges_and_specials(corpus):
    bias = {c.name: c for c in load_tpn(corpus / "site-config" / "hst" / "tpns" / "acs_bia.tpn")}
    assert bias["DETECTOR"].values == ("WFC", "HRC")
    assert bias["CCDGAIN"].datatype == "float"
    assert bias["USEAFTER"].special == "SYBDATE"
    assert bias["PEDIGREE"].special == "PEDIGREE"
    assert "WFC1-POL0UV" in bias["APERTURE"].values  # continued lines joined


def test_tpn_selection_levels(corpus):
    tpns = corpus / "site-config" / "jwst" / "tpns"
    names = {c.source.split(":")[0] for c in tpn_constraints(tpns, "jwst", "miri", "dark")}
    assert {"all_all.tpn", "miri_dark.tpn"} <= names
    hst = tpn_constraints(corpus / "site-config" / "hst" / "tpns", "hst", "wfpc2", "atodfile")
    assert hst, "wfpc2 atodfile uses wp2_a2d.tpn"


def test_bad_tpn_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tpn"
    bad.write_text("# comment\nDETECTOR H C R A B C extra\n")
    with pytest.raises(TpnError, match="bad.tpn:2"):
        load_tpn(bad)
    evil = tmp_path / "evil.tpn"
    evil.write_text("X X X R (__import__('os').system('true'))\n")
    with pytest.raises(TpnError, match="evil.tpn:1"):
        load_tpn(evil)


@pytest.mark.parametrize("source", ["__import__('os')", "(1).__class__", "open('x')", "2**99999999",
                                    "[x for x in y]", "lambda: 0", "'a'.join", "a.b"])
def test_unsafe_expressions_refused(source):
    with pytest.raises(ConstraintExpressionError):
        compile_expression(source)


def test_sequence_repetition_refused():
    with pytest.raises(ConstraintExpressionError):
        evaluate("'a' * N", {"N": 10**12})
