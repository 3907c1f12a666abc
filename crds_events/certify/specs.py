"""Constraint specs in our own YAML format, and choosing the constraints for a reference.

A spec file (see ``specs/jwst.yaml``) looks like::

    observatory: jwst
    specs:
      - instrument: all            # a name, a list of names, or "all"
        filekind: dark             # likewise
        constraints:
          - keyword: META.USEAFTER # a header keyword (FITS name or META path)
            type: date             # string | string_case | int | float | double | boolean | date
            presence: required     # required | optional | warn | excluded
          - keyword: META.EXPOSURE.NGROUPS
            type: int
            range: [1, 65535]
          - keyword: META.INSTRUMENT.DETECTOR
            values: [NRCA1, NRCA2]
            when: "META_INSTRUMENT_NAME == 'NIRCAM'"   # applies only when this holds
          - keyword: META.PEDIGREE
            special: JWSTPEDIGREE  # a special format (the .tpn &NAME checks)
          - check: SUBARRAY_FITS   # a named free expression over the header
            expression: "META_SUBARRAY_XSIZE <= 2048"
          - array: SCI             # an array (FITS EXTNAME, or ASDF path)
            presence: required
            ndim: 3                # or [3, 4]
            dtype: float           # int | float | complex | bool, or a list
            shape: [null, 2048, 2048]   # null matches any length

Expressions use the safe language of ``certify.expressions`` (dotted keywords are written
with underscores). Constraints for a reference are gathered from every matching spec:
(instrument, filekind), (instrument, all), (all, filekind), (all, all).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import yaml

from crds_events.certify.constraints import DATATYPES, Constraint
from crds_events.certify.expressions import ConstraintExpressionError, compile_expression
from crds_events.certify.tpn import _unique
from crds_events.errors import CrdsEventsError

_PRESENCES = ("required", "optional", "warn", "excluded")


class SpecError(CrdsEventsError, ValueError):
    """A spec file is malformed; the message names the file and entry."""


def load_spec_text(text: str, source: str = "<spec>") -> dict[tuple[str, str, str], list[Constraint]]:
    """Parse spec YAML into {(observatory, instrument, filekind): [Constraint, ...]}."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, Mapping) or "observatory" not in document:
        raise SpecError(f"{source}: a spec file is a mapping with 'observatory' and 'specs'")
    observatory = str(document["observatory"]).lower()
    table: dict[tuple[str, str, str], list[Constraint]] = {}
    for index, spec in enumerate(document.get("specs") or []):
        where = f"{source}: specs[{index}]"
        if not isinstance(spec, Mapping):
            raise SpecError(f"{where}: must be a mapping")
        constraints = [_constraint(entry, f"{where}.constraints[{number}]")
                       for number, entry in enumerate(spec.get("constraints") or [])]
        constraints = [item for group in constraints for item in group]
        for instrument in _names(spec.get("instrument", "all")):
            for filekind in _names(spec.get("filekind", "all")):
                table.setdefault((observatory, instrument, filekind), []).extend(constraints)
    return table


def load_spec_file(path: str | os.PathLike) -> dict[tuple[str, str, str], list[Constraint]]:
    """load_spec_text() of the file at `path`."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        return load_spec_text(handle.read(), os.path.basename(path))


@functools.cache
def builtin_specs() -> dict[tuple[str, str, str], list[Constraint]]:
    """The starter specs shipped in ``crds_events/certify/specs/*.yaml``."""
    table: dict[tuple[str, str, str], list[Constraint]] = {}
    for item in sorted(resources.files(__package__).joinpath("specs").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            for key, constraints in load_spec_text(item.read_text(), f"specs/{item.name}").items():
                table.setdefault(key, []).extend(constraints)
    return table


def constraints_for(observatory: str, instrument: str, filekind: str,
                    specs: Mapping[tuple[str, str, str], list[Constraint]] | None = None) -> list[Constraint]:
    """Constraints for (`instrument`, `filekind`) references, most specific first."""
    table = builtin_specs() if specs is None else specs
    observatory, instrument, filekind = observatory.lower(), instrument.lower(), filekind.lower()
    found: list[Constraint] = []
    for key in ((instrument, filekind), (instrument, "all"), ("all", filekind), ("all", "all")):
        found += table.get((observatory, *key), [])
    return _unique(found)


def _names(value: Any) -> list[str]:
    return [str(item).lower() for item in (value if isinstance(value, list) else [value])]


def _constraint(entry: Any, where: str) -> list[Constraint]:
    if not isinstance(entry, Mapping):
        raise SpecError(f"{where}: must be a mapping")
    presence = str(entry.get("presence", "required")).lower()
    if presence not in _PRESENCES:
        raise SpecError(f"{where}: presence must be one of {', '.join(_PRESENCES)}, not {presence!r}")
    condition = _expression(entry.get("when"), where)
    try:
        if "array" in entry:
            return _array_constraints(entry, presence, condition, where)
        if "check" in entry:
            expression = _expression(entry.get("expression"), where)
            if not expression:
                raise SpecError(f"{where}: a check needs an expression")
            return [Constraint(str(entry["check"]), "expression", "expression", presence, condition,
                               expression=expression, source=where)]
        if "keyword" not in entry:
            raise SpecError(f"{where}: needs one of keyword, array, check")
        datatype = str(entry.get("type", "string")).lower()
        if datatype not in DATATYPES or datatype == "expression":
            raise SpecError(f"{where}: unknown type {datatype!r}")
        values = tuple(str(v) if datatype == "string_case" else str(v).upper()
                       for v in entry.get("values") or ())
        value_range = entry.get("range")
        if value_range is not None:
            if not (isinstance(value_range, list) and len(value_range) == 2):
                raise SpecError(f"{where}: range must be [min, max]")
            value_range = (float(value_range[0]), float(value_range[1]))
        special = entry.get("special")
        return [Constraint(str(entry["keyword"]).upper(), "header", datatype, presence, condition,
                           values, value_range, _expression(entry.get("expression"), where),
                           str(special).upper() if special else None, where)]
    except ValueError as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: {exc}") from None


def _expression(text: Any, where: str) -> str | None:
    if text is None:
        return None
    try:
        compile_expression(str(text))
    except ConstraintExpressionError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return str(text)


def _array_constraints(entry: Mapping, presence: str, condition: str | None, where: str) -> list[Constraint]:
    name = str(entry["array"]).upper()
    var = f"ARRAY_{name}" if name.isdigit() else f"{name}_ARRAY"
    checks: list[str] = [f"array_exists({var})"]
    ndim = entry.get("ndim")
    if ndim is not None:
        dims = ndim if isinstance(ndim, list) else [ndim]
        checks.append(f"len({var}.SHAPE) in {tuple(int(d) for d in dims)!r}")
    dtype = entry.get("dtype")
    if dtype is not None:
        types = [str(t).upper() for t in (dtype if isinstance(dtype, list) else [dtype])]
        checks.append(f"has_type({var}, {types!r})")
    shape = entry.get("shape")
    if shape is not None:
        if not isinstance(shape, list):
            raise SpecError(f"{where}: shape must be a list (null for any length)")
        checks.append(f"len({var}.SHAPE) == {len(shape)}")
        for axis, length in enumerate(shape):
            if length is not None:
                checks.append(f"{var}.SHAPE[{axis}] == {int(length)}")
    if entry.get("kind"):
        checks.append(f"{var}.KIND == {str(entry['kind']).upper()!r}")
    return [Constraint(name, "array_format", "expression", presence, condition,
                       expression=f"({check})", source=where) for check in _dedupe(checks)]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
