"""The safe evaluator of rmap header expressions: CRDS's results, and refusal of anything
outside the whitelist (it never evaluates code)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crds_events.rules.expressions import (
    EvaluationError,
    ExpressionError,
    compile_expression,
    expression_env,
)

HEADER = {
    "DETECTOR": "WFC",
    "OBSTYPE": "SPECTROSCOPIC",
    "FW1OFFST": "-1.0",
    "SAMP_SEQ": "SPARS16",
    "META.EXPOSURE.TYPE": "MIR_IMAGE",
}

# Real expressions from the corpus rmaps, and what Python (CRDS's eval) makes of them.
CASES = [
    '(DETECTOR != "SBC")',
    '(DETECTOR == "HRC" and OBSTYPE == "CORONAGRAPHIC")',
    '((DETECTOR == "WFC") and (OBSTYPE != "INTERNAL"))',
    '(FW1OFFST == "-1.0" or FW1OFFST == "1.0")',
    '(SAMP_SEQ not in ["SPARS4","SPARS16","SPARS32","SPARS128"])',
    '(META.EXPOSURE.TYPE not in ("MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE"))',
    "True",
    "False",
    "not (DETECTOR == 'WFC')",
    "'A' if DETECTOR == 'WFC' else 'B'",
    "-1 < 0 <= 0",
    "(1, 2) == (1, 2)",
    "None",
]


def _python_reference(source: str, header: dict) -> object:
    """What CRDS computes: Python's own evaluation over the underscored header (trusted
    test-only literals from CASES above, never mapping text)."""
    env = expression_env(header)
    code = source.replace("META.EXPOSURE.TYPE", "META_EXPOSURE_TYPE")
    return eval(code, {"__builtins__": {}}, env)  # noqa: S307 - fixed test literals only


@pytest.mark.parametrize("source", CASES)
def test_expression_results_equal_python(source):
    expression = compile_expression(source, ["META.EXPOSURE.TYPE", "DETECTOR"])
    assert expression.evaluate(expression_env(HEADER)) == _python_reference(source, HEADER)


def test_dotted_names_become_underscores():
    expression = compile_expression('(META.EXPOSURE.TYPE == "X")', ["META.EXPOSURE.TYPE"])
    assert expression.names == {"META_EXPOSURE_TYPE"}
    assert expression.evaluate({"META_EXPOSURE_TYPE": "X"}) is True


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "DETECTOR.lower()",
        "DETECTOR[0]",
        "lambda: 1",
        "[x for x in DETECTOR]",
        "{x for x in 'ab'}",
        "(x := 1)",
        "1 + 1",
        "DETECTOR is None",
        "f'{DETECTOR}'",
        "{'a': 1}",
        "{1, 2}",
        "b'bytes'",
        "yield 1",
        "import os",
        "x = 1",
        "",
        "(1," * 100 + ")" * 100,
        "not " * 100 + "True",
    ],
)
def test_non_whitelisted_constructs_are_refused(source):
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_unknown_name_fails_at_evaluation():
    expression = compile_expression('(FOO == "X")')
    with pytest.raises(EvaluationError):
        expression.evaluate({"DETECTOR": "WFC"})


def test_incomparable_types_fail_at_evaluation():
    expression = compile_expression("(DETECTOR < 3)")
    with pytest.raises(EvaluationError):
        expression.evaluate({"DETECTOR": "WFC"})


@given(st.text(max_size=60))
@settings(max_examples=400)
def test_no_text_escapes_the_whitelist(source):
    """Any text either compiles to whitelisted nodes or is refused; evaluation never runs
    anything but comparisons and boolean logic over the header."""
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    with contextlib.suppress(EvaluationError):
        expression.evaluate({name: "X" for name in expression.names})
