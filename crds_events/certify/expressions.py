"""Evaluate constraint expressions safely: parsed with ``ast``, walked by a whitelist, no eval.

The language is the small Python subset .tpn files use:
``(META_SUBARRAY_NAME)in(['GENERIC','N/A'])``, ``(ndim(SCI_ARRAY,3))``,
``(1<=META_SUBARRAY_XSTART+SCI_ARRAY.SHAPE[-1]-1<=1032)``,
``((len(VALUE)>0)and(VALUE==VALUE.lower()))``.

Allowed: literals, tuples/lists, names (looked up in the header namespace, then the helper
functions), ``and``/``or``/``not``, comparisons (incl. chained, ``in``, ``is``), arithmetic,
subscripts and slices, upper-case attributes of arrays (``SCI_ARRAY.SHAPE``), a few string
methods, and calls of the whitelisted helpers below. Anything else is rejected when the
expression is compiled, with the reason. Evaluation cannot run arbitrary code, and big
arithmetic (``**``) is refused, so a hostile expression cannot hang the checker.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from crds_events.errors import CrdsEventsError
from crds_events.rules.expressions import COMPARISONS, UNARY, Walker

UNDEFINED = "UNDEFINED"


class ConstraintExpressionError(CrdsEventsError, ValueError):
    """An expression is not in the allowed language, or failed while being evaluated."""


# ------------------------------------------------------------------ helpers (.tpn functions)


def _array_exists(info: Any) -> bool:
    return info != UNDEFINED and info is not None


def _is_image(info: Any) -> bool:
    return _array_exists(info) and getattr(info, "KIND", None) == "IMAGE"


def _is_table(info: Any) -> bool:
    return _array_exists(info) and getattr(info, "KIND", None) == "TABLE"


def _ndim(info: Any, dims: int) -> bool:
    return len(info.SHAPE) == dims


_IMAGE_TYPES = {"COMPLEX": "complex", "INT": "int", "INTEGER": "int", "FLOAT": "float", "BOOLEAN": "bool"}


def _has_type(info: Any, typestr: Any) -> bool:
    if not _array_exists(info):
        return False
    for name in [typestr] if isinstance(typestr, str) else typestr:
        if _IMAGE_TYPES.get(name, name) in str(info.DATA_TYPE):
            return True
    return False


def _table_types(typestr: str) -> list[str]:
    ints, floats, complexes = [">i", "<i", "uint", "int"], [">f", "<f", "float"], [">c", "<c", "complex"]
    strings = ["|S"]

    def arrays(types: list[str]) -> list[str]:
        return ["('" + item for item in types]

    return {
        "COMPLEX": complexes, "COMPLEX_ARRAY": arrays(complexes),
        "INT": ints, "INTEGER": ints, "INT_ARRAY": arrays(ints), "INTEGER_ARRAY": arrays(ints),
        "FLOAT": floats, "FLOAT_ARRAY": arrays(floats),
        "STR": strings, "STRING": strings, "STR_ARRAY": arrays(strings), "STRING_ARRAY": arrays(strings),
    }.get(typestr, [typestr])


def _has_column_type(info: Any, column: str, typestr: str) -> bool:
    if not _array_exists(info):
        return False
    types = info.DATA_TYPE
    if not isinstance(types, Mapping) or column.upper() not in types:
        raise ConstraintExpressionError(f"data type not defined for column {column!r}")
    return any(str(types[column.upper()]).startswith(t) or t in str(types[column.upper()])
               for t in _table_types(typestr))


def _has_columns(info: Any, names: Any) -> bool:
    if not _array_exists(info):
        return False
    return all(name.upper() in (info.COLUMN_NAMES or ()) for name in names)


def _is_full_frame(subarray: Any) -> bool:
    return subarray in ("FULL", "GENERIC", "N/A", "ANY", "*")


def _is_subarray(subarray: Any) -> bool:
    return subarray != UNDEFINED and not _is_full_frame(subarray)


_IMAGING_MODES = frozenset(["NRC_IMAGE", "NRC_TACQ", "NRC_TACONF", "NRC_CORON", "NRC_TSIMAGE", "NRC_FOCUS", "NRC_DARK", "NRC_FLAT", "NRC_LED", "MIR_IMAGE", "MIR_TACQ", "MIR_LYOT", "MIR_4QPM", "MIR_DARK", "MIR_FLATIMAGE", "MIR_CORONCAL", "NRS_CONFIRM", "NRS_DARK", "NRS_FOCUS", "NRS_IMAGE", "NRS_MIMF", "NRS_TACONFIRM", "NRS_TACQ", "NRS_TASLIT", "NRS_VERIFY", "NIS_IMAGE", "NIS_TACQ", "NIS_TACONFIRM", "NIS_AMI", "NIS_FOCUS", "NIS_DARK", "NIS_LAMP", "FGS_IMAGE", "FGS_FOCUS", "FGS_SKYFLAT", "FGS_INTFLAT", "FGS_DARK", "FGS_ID-STACK"])


def _flag(letter: str) -> Callable[..., Any]:
    """Presence wrappers: ``optional(cond)`` is "O" when cond holds, else False, etc."""

    def wrapper(flag: Any = True) -> Any:
        return letter if flag else False

    return wrapper


HELPERS: dict[str, Callable[..., Any]] = {
    "array_exists": _array_exists,
    "is_image": _is_image,
    "is_table": _is_table,
    "ndim": _ndim,
    "has_type": _has_type,
    "has_column_type": _has_column_type,
    "has_columns": _has_columns,
    "is_full_frame": _is_full_frame,
    "is_subarray": _is_subarray,
    "is_imaging_mode": lambda exp_type: exp_type in _IMAGING_MODES,
    "is_irs2": lambda readpatt: "IRS2" in str(readpatt),
    "is_defined": lambda value: value not in (UNDEFINED, None),
    "optional": _flag("O"),
    "required": _flag("R"),
    "warning": _flag("W"),
    "subarray": _flag("S"),
    "full_frame": _flag("F"),
    "all_subarray": _flag("A"),
    "warn_only": lambda flag: True if flag else "W",
    "len": len,
    "all": all,
    "any": any,
    "abs": abs,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
}

_STRING_METHODS = frozenset({"lower", "upper", "strip", "startswith", "endswith"})
#: numpy reductions .tpn files call as ``np.all(...)`` on array data.
_NUMPY_FUNCS = frozenset({"all", "any", "min", "max", "sum", "isnan", "isfinite", "abs", "nanmin",
                          "nanmax", "count_nonzero"})

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def identifiers(source: str) -> list[str]:
    """Upper-case names an expression reads from the header (helpers and strings excluded)."""
    tree = compile_expression(source)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in HELPERS and node.id != "np" and node.id.isupper() \
                and node.id not in ("True", "False", "None") and node.id not in names:
            names.append(node.id)
    return names


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> ast.Expression:
    """Parse and whitelist-check `source`; raises ConstraintExpressionError with the reason."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConstraintExpressionError(f"syntax error in expression {source!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        _check_node(node, source)
    return tree


def _check_node(node: ast.AST, source: str) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.BinOp, ast.Compare,
               ast.Constant, ast.Name, ast.Load, ast.Tuple, ast.List, ast.Subscript, ast.Slice,
               ast.Attribute, ast.Call, ast.IfExp, *_BINARY, *COMPARISONS, *UNARY)
    if not isinstance(node, allowed):
        raise ConstraintExpressionError(f"{type(node).__name__} is not allowed in expression {source!r}")
    if isinstance(node, ast.Attribute) and _is_numpy(node):
        if node.attr not in _NUMPY_FUNCS:
            raise ConstraintExpressionError(f"np.{node.attr} is not allowed in expression {source!r}")
    elif isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or not (node.attr.isupper() or node.attr in _STRING_METHODS)):
            raise ConstraintExpressionError(f"attribute {node.attr!r} is not allowed in expression {source!r}")
    if isinstance(node, ast.Call):
        if node.keywords:
            raise ConstraintExpressionError(f"keyword arguments are not allowed in expression {source!r}")
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in HELPERS:
                raise ConstraintExpressionError(f"function {func.id!r} is not allowed in expression {source!r}")
        elif not (isinstance(func, ast.Attribute) and (func.attr in _STRING_METHODS or _is_numpy(func))):
            raise ConstraintExpressionError(f"this call is not allowed in expression {source!r}")


def _is_numpy(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id == "np"


def evaluate(source: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate expression `source` with names from `namespace` (then the helpers).

    Raises ConstraintExpressionError for a disallowed expression, an unknown name, or a failure.
    """
    tree = compile_expression(source)
    try:
        return _WALKER.evaluate(tree.body, namespace)
    except ConstraintExpressionError:
        raise
    except Exception as exc:
        raise ConstraintExpressionError(f"{type(exc).__name__}: {exc}") from None


_CONSTANT_NAMES = {"True": True, "False": False, "None": None}


def _lookup(ns: Mapping[str, Any], name: str) -> Any:
    """A name: the header's, else a helper's, else a constant spelled as a name."""
    if name in ns:
        return ns[name]
    if name in HELPERS:
        return HELPERS[name]
    if name in _CONSTANT_NAMES:
        return _CONSTANT_NAMES[name]
    raise ConstraintExpressionError(f"name {name!r} is not defined")


def _eval_tpn_only(walker: Walker, node: ast.AST, ns: Mapping[str, Any]) -> Any:
    """The nodes only the .tpn language has (the shared walker does the rest)."""
    if isinstance(node, ast.BinOp):
        left, right = walker.evaluate(node.left, ns), walker.evaluate(node.right, ns)
        if isinstance(node.op, ast.Mult) and isinstance(left, str | list | tuple) or \
                isinstance(right, str | list | tuple) and isinstance(node.op, ast.Mult):
            raise ConstraintExpressionError("repeating a sequence is not allowed")  # 'a'*10**9 would hang
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Subscript):
        return walker.evaluate(node.value, ns)[walker.evaluate(node.slice, ns)]
    if isinstance(node, ast.Slice):
        return slice(*(None if part is None else walker.evaluate(part, ns)
                       for part in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.Attribute) and _is_numpy(node):
        import numpy

        return getattr(numpy, node.attr)
    if isinstance(node, ast.Attribute):
        target = walker.evaluate(node.value, ns)
        if node.attr in _STRING_METHODS:
            if not isinstance(target, str):
                raise ConstraintExpressionError(f".{node.attr}() needs a string, got {type(target).__name__}")
            return getattr(target, node.attr)
        if target == UNDEFINED or not hasattr(target, node.attr):
            raise ConstraintExpressionError(f"{type(target).__name__} has no attribute {node.attr!r}")
        return getattr(target, node.attr)
    if isinstance(node, ast.Call):
        func = walker.evaluate(node.func, ns)
        return func(*(walker.evaluate(arg, ns) for arg in node.args))
    raise ConstraintExpressionError(f"{type(node).__name__} is not allowed")


# A lone comparison stays element-wise on arrays: np.all(0<=MASK_ARRAY.DATA).
_WALKER = Walker(_lookup, _eval_tpn_only, raw_single_comparison=True)


def header_namespace(header: Mapping[str, Any]) -> dict[str, Any]:
    """The names an expression sees for `header`: dotted keys also as underscored names
    (``META.SUBARRAY.NAME`` -> ``META_SUBARRAY_NAME``) and numeric strings as numbers, as
    CRDS's ``convert_to_eval_header`` does.
    """
    space: dict[str, Any] = {}
    for key, value in header.items():
        if isinstance(value, str):
            value = _number_or_text(value)
        space[key] = value
        clean = re.sub(r"([A-Za-z][A-Za-z0-9_]*)\.", r"\1_", key).replace("-", "_")
        space.setdefault(clean, value)
    return space


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value
