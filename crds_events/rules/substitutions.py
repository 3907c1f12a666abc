"""A site's wildcard expansions for reference insertion (CRDS's `substitutions.dat`).

References say `CCDAMP = 'ANY'` or `APERTURE = 'ANY_FULL'`; before such a reference becomes
an rmap match case, the site's table expands the value into the explicit or-pattern the rules
should hold. The table is a Python literal (never executed, read with `ast.literal_eval`):

    { instrument : { KEYWORD : { "condition expression" : "expansion" } } }

Each condition is a safe expression (`crds_events.rules.expressions`) over the reference's
header (translated to dataset keywords, values not yet conditioned). Every condition is
evaluated against the header as it was before any expansion; a true one sets KEYWORD to its
expansion, a later true one wins. A condition that fails (an unknown keyword, values that
cannot be compared) does not apply, as in CRDS.

Where the table lives is site configuration: the config key `substitutions` or the
environment variable `CRDS_EVENTS_SUBSTITUTIONS` names the file (or a directory holding
`<observatory>/substitutions.dat` or `substitutions.dat`).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from crds_events.errors import CrdsEventsError
from crds_events.rules.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    compile_expression,
    expression_env,
)

__all__ = [
    "ENV_VAR",
    "SubstitutionsError",
    "Substitutions",
    "find_substitutions",
    "load_substitutions",
]

ENV_VAR = "CRDS_EVENTS_SUBSTITUTIONS"


class SubstitutionsError(CrdsEventsError, ValueError):
    """The substitutions table cannot be read or has the wrong shape."""


@dataclass(frozen=True)
class _Rule:
    keyword: str
    condition: Expression
    expansion: str


class Substitutions:
    """Compiled expansion rules per instrument (lower case)."""

    def __init__(self, table: Mapping[str, Mapping[str, Mapping[str, str]]], source: str = "<table>"):
        self.source = source
        self.rules: dict[str, list[_Rule]] = {}
        if not isinstance(table, Mapping):
            raise SubstitutionsError(f"{source}: the table must be a dict of instruments")
        for instrument, keywords in table.items():
            if not isinstance(keywords, Mapping):
                raise SubstitutionsError(f"{source}: {instrument!r} must map keywords to rules")
            rules = []
            for keyword, conditions in keywords.items():
                if not isinstance(conditions, Mapping):
                    raise SubstitutionsError(
                        f"{source}: {instrument!r} {keyword!r} must map conditions to expansions")
                for condition, expansion in conditions.items():
                    try:
                        compiled = compile_expression(str(condition))
                    except ExpressionError as exc:
                        raise SubstitutionsError(
                            f"{source}: {instrument!r} {keyword!r}: {exc}") from None
                    rules.append(_Rule(str(keyword).upper(), compiled, str(expansion)))
            self.rules[str(instrument).lower()] = rules

    def expand(self, instrument: str, header: Mapping[str, object],
               required_parkeys: Iterable[str] | None = None) -> dict[str, object]:
        """A copy of `header` with the applicable expansions of `instrument` made."""
        expanded = dict(header)
        required = set(header if required_parkeys is None else required_parkeys)
        env = expression_env(header)
        for rule in self.rules.get(instrument.lower(), ()):
            if rule.keyword not in required:
                continue
            try:
                applies = rule.condition.evaluate(env)
            except EvaluationError:
                continue
            if applies:
                expanded[rule.keyword] = rule.expansion
        return expanded

    def __repr__(self) -> str:
        return f"Substitutions({self.source!r})"


def load_substitutions(path: str | os.PathLike) -> Substitutions:
    """Read and compile a `substitutions.dat` file (a Python literal dict, never executed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SubstitutionsError(f"{path}: cannot read substitutions: {exc.strerror or exc}") from None
    try:
        table = ast.literal_eval(text.strip() or "{}")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise SubstitutionsError(f"{path}: not a Python literal dict: {exc}") from None
    return Substitutions(table, str(path))


def find_substitutions(observatory: str, config: Mapping[str, object] | None = None
                       ) -> Substitutions | None:
    """The site's table for `observatory` from config key `substitutions` or the env var.

    None when neither names one; a named file that is missing is an error.
    """
    named = (config or {}).get("substitutions") or os.environ.get(ENV_VAR)
    if not named:
        return None
    path = Path(str(named))
    if path.is_dir():
        for candidate in (path / observatory.lower() / "substitutions.dat",
                          path / "substitutions.dat"):
            if candidate.is_file():
                return load_substitutions(candidate)
        return None
    return load_substitutions(path)
