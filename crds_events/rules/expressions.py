"""Safe evaluation of rmap header expressions (`rmap_relevance`, `rmap_omit`,
`parkey_relevance`), without `eval`.

CRDS evaluates these as Python expressions over the conditioned header, after replacing
data-model paths (`META.EXPOSURE.TYPE`) by names with underscores (`META_EXPOSURE_TYPE`).
Here the text is parsed with `ast` and only a whitelist of node types is accepted: string,
number, boolean and None constants, names, tuples and lists of those, `and`/`or`/`not`,
unary minus, comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`) and `a if c else
b`. Anything else (calls, attributes, subscripts, lambdas, comprehensions, arithmetic, ...)
is refused when the expression is compiled. Evaluation looks names up in the header only.
`MemoisedExpression` remembers results per tuple of the values of the names read.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crds_events.errors import CrdsEventsError

MAX_EXPRESSION_LENGTH = 10_000
MAX_DEPTH = 50


class ExpressionError(CrdsEventsError, ValueError):
    """An expression that is not allowed or cannot be parsed."""


class EvaluationError(CrdsEventsError, ValueError):
    """An expression that failed at evaluation time (unknown name, incomparable types)."""


#: Every comparison either language may use (the rmap checker accepts `_COMPARISONS` only;
#: the .tpn language, `crds_events.certify.expressions`, also ``is``/``is not``).
COMPARISONS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda left, right: left in right,
    ast.NotIn: lambda left, right: left not in right,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_COMPARISONS = frozenset(COMPARISONS) - {ast.Is, ast.IsNot}

#: Unary operators the shared walker evaluates (rmaps accept ``not`` and ``-`` only).
UNARY: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def dotted_to_underscore(text: str, names: Iterable[str]) -> str:
    """Replace each dotted name of `names` in `text` by its underscore form (as CRDS does)."""
    for name in names:
        replacement = name.replace(".", "_")
        if replacement != name:
            text = text.replace(name, replacement)
    return text


class Expression:
    """A checked expression; `evaluate(env)` computes it over a name -> value mapping."""

    def __init__(self, source: str):
        self.source = source
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise ExpressionError(f"expression too long ({len(source)} characters)")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise ExpressionError(f"invalid expression {source!r}: {exc}") from exc
        self._body = tree.body
        self.names: frozenset[str] = frozenset(self._check(self._body, 0))

    def _check(self, node: ast.AST, depth: int) -> set[str]:
        """Refuse non-whitelisted nodes; return the names used."""
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply: {self.source!r}")
        where = f"{self.source!r}"
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (str, int, float, bool, type(None))):
                raise ExpressionError(f"constant {node.value!r} not allowed in {where}")
            return set()
        if isinstance(node, ast.Name):
            return {node.id}
        if isinstance(node, (ast.Tuple, ast.List)):
            return self._check_all(node.elts, depth)
        if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
            return self._check_all(node.values, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            return self._check(node.operand, depth + 1)
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARISONS:
                    raise ExpressionError(
                        f"comparison {type(op).__name__} not allowed in {where}"
                    )
            return self._check_all([node.left, *node.comparators], depth)
        if isinstance(node, ast.IfExp):
            return self._check_all([node.test, node.body, node.orelse], depth)
        line = getattr(node, "lineno", None)
        at = f" at line {line}" if line is not None else ""
        raise ExpressionError(f"{type(node).__name__} not allowed{at} in expression {where}")

    def _check_all(self, nodes: Iterable[ast.AST], depth: int) -> set[str]:
        names: set[str] = set()
        for child in nodes:
            names |= self._check(child, depth + 1)
        return names

    def evaluate(self, env: Mapping[str, object]) -> object:
        try:
            return _WALKER.evaluate(self._body, env)
        except EvaluationError:
            raise
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"evaluating {self.source!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


class Walker:
    """Evaluates an already whitelist-checked expression tree: the walker both expression
    languages share (the checks, which differ on purpose, are each front-end's own).

    Handles constants, names (``lookup(env, name)``), tuples, lists, ``and``/``or``, unary
    operators, comparisons (chained) and ``a if c else b``; any other node goes to
    ``extra(walker, node, env)`` (the .tpn language's arithmetic, subscripts, calls, ...).
    ``raw_single_comparison``: a lone comparison returns the operator's own result (an
    element-wise array for ``0 <= ARRAY``), not True/False.
    """

    def __init__(self, lookup: Callable[[Any, str], Any],
                 extra: Callable[[Walker, ast.AST, Any], Any] | None = None,
                 *, raw_single_comparison: bool = False):
        self.lookup = lookup
        self.extra = extra
        self.raw_single_comparison = raw_single_comparison

    def evaluate(self, node: ast.AST, env: Any) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(env, node.id)
        if isinstance(node, ast.Tuple):
            return tuple(self.evaluate(elt, env) for elt in node.elts)
        if isinstance(node, ast.List):
            return [self.evaluate(elt, env) for elt in node.elts]
        if isinstance(node, ast.BoolOp):
            result: Any = None
            if isinstance(node.op, ast.And):
                for value in node.values:
                    result = self.evaluate(value, env)
                    if not result:
                        return result
                return result
            for value in node.values:
                result = self.evaluate(value, env)
                if result:
                    return result
            return result
        if isinstance(node, ast.UnaryOp):
            return UNARY[type(node.op)](self.evaluate(node.operand, env))
        if isinstance(node, ast.Compare):
            left = self.evaluate(node.left, env)
            if self.raw_single_comparison and len(node.ops) == 1:
                right = self.evaluate(node.comparators[0], env)
                return COMPARISONS[type(node.ops[0])](left, right)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.evaluate(comparator, env)
                if not COMPARISONS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            branch = node.body if self.evaluate(node.test, env) else node.orelse
            return self.evaluate(branch, env)
        if self.extra is not None:
            return self.extra(self, node, env)
        raise EvaluationError(f"{type(node).__name__} cannot be evaluated")  # checked before


def _lookup(env: Mapping[str, object], name: str) -> object:
    try:
        return env[name]
    except KeyError:
        raise EvaluationError(f"name {name!r} is not defined") from None


_WALKER = Walker(_lookup)


def compile_expression(source: str, parkeys: Iterable[str] = ()) -> Expression:
    """Check `source` (after dotted `parkeys` -> underscores) and return an `Expression`."""
    return Expression(dotted_to_underscore(source, parkeys))


def expression_env(header: Mapping[str, object]) -> dict[str, object]:
    """The names an expression sees: the header plus underscore forms of dotted keys."""
    env = dict(header)
    for key, value in header.items():
        if "." in key:
            env[key.replace(".", "_")] = value
    return env


_ABSENT = object()


class MemoisedExpression:
    """An expression memoised per tuple of the values of the names it reads."""

    def __init__(self, expression: Expression):
        self.expression = expression
        self.names = tuple(sorted(expression.names))
        self._absent = (_ABSENT,) * len(self.names)  # defaults for map(env.get, ...)
        self._memo: dict[tuple, tuple[bool, object]] = {}
        self._constant: tuple[bool, object] | None = None
        if not self.names:  # e.g. ALWAYS -> True: evaluate once
            try:
                self._constant = (True, expression.evaluate({}))
            except EvaluationError as exc:
                self._constant = (False, str(exc))

    def fixed_truth(self, on_error: bool) -> bool | None:
        """The truth of a constant expression (`on_error` if it fails); None if it varies."""
        if self._constant is None:
            return None
        ok, value = self._constant
        return bool(value) if ok else on_error

    def evaluate(self, env: Mapping[str, object]) -> object:
        ok, value = self._outcome(env)
        if not ok:
            raise EvaluationError(value)
        return value

    def truth(self, env: Mapping[str, object], on_error: bool) -> bool:
        """The expression's truth over `env`, or `on_error` if it cannot be evaluated."""
        ok, value = self._outcome(env)
        return bool(value) if ok else on_error

    def _outcome(self, env: Mapping[str, object]) -> tuple[bool, object]:
        """(True, value) or (False, the evaluation error's text), memoised."""
        if self._constant is not None:
            return self._constant
        key = tuple(map(env.get, self.names, self._absent))
        found = self._memo.get(key)
        if found is None:
            try:
                found = (True, self.expression.evaluate(env))
            except EvaluationError as exc:
                found = (False, str(exc))
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[key] = found
        return found
