"""Read CRDS ``.tpn`` constraint files into Constraint objects.

A .tpn line is ``NAME KEYTYPE DATATYPE PRESENCE [VALUES|EXPRESSION]`` (fields split on blanks;
a blank inside double quotes is kept). The constructs found in CRDS sites' files:

- ``#`` comments, blank lines, and lines continued with a trailing ``\\``;
- ``include <file>``: the lines of another .tpn (relative to the including file);
- ``replace <regex> <text>``: substitute in every later line, includes too (used to
  parameterise shared includes, e.g. ``replace XDIM_MAX 1032``);
- a file whose only line names another .tpn (a link: ``miri_all.tpn``);
- KEYTYPE ``H`` header, ``C`` table column, ``G`` group, ``A`` array format, ``D`` array data,
  ``X`` expression; DATATYPE ``C`` character, ``S`` case-sensitive character, ``I``, ``R``,
  ``D`` numbers, ``L`` logical, ``X`` expression; PRESENCE ``R``/``P`` required, ``O``
  optional, ``W`` warn, ``E`` excluded, ``F``/``S``/``A`` full-frame/subarray/any-subarray,
  or a parenthesised condition expression;
- VALUES: a comma list, a numeric ``min:max`` range, ``&NAME`` special checks (``&SYBDATE``,
  ``&PEDIGREE``, ``&KERNELUNITY``, ...), or a parenthesised expression.

Expressions are only parsed here (checked against the safe-expression whitelist); the
checker evaluates them. Errors name the file and line.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable

from crds_events.certify.constraints import Constraint
from crds_events.certify.expressions import ConstraintExpressionError, compile_expression
from crds_events.errors import CrdsEventsError
from crds_events.files.reftypes import hst_types
from crds_events.rules.conditioning import condition_value

_KEYTYPES = {"H": "header", "C": "column", "G": "group", "A": "array_format", "D": "array_data",
             "X": "expression"}
_DATATYPES = {"C": "string", "S": "string_case", "I": "int", "R": "float", "D": "double",
              "L": "boolean", "X": "expression"}
_PRESENCES = {"R": "required", "P": "required", "O": "optional", "W": "warn", "E": "excluded",
              "F": "if_full_frame", "S": "if_subarray", "A": "any_subarray"}
_SPACE = "\x00"


class TpnError(CrdsEventsError, ValueError):
    """A .tpn file cannot be read; the message names the file and line."""


def is_expression(text: str) -> bool:
    return text.startswith("(") and text.endswith(")")


def load_tpn(path: str | os.PathLike) -> list[Constraint]:
    """All constraints of the .tpn file at `path`, includes and replacements applied."""
    path = os.fspath(path)
    return [_parse_line(text, where) for text, where in _tpn_lines(os.path.abspath(path), ())]


def _tpn_lines(path: str, replacements: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return list(_lines(path, replacements))


def _lines(path: str, replacements: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The cached lines of `path`, read again when the file changed: a long-running server
    sees a site's edited .tpn files without a restart."""
    try:
        status = os.stat(path)
        stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
    except OSError:
        stamp = None  # _cached_lines reports it
    return _cached_lines(path, replacements, stamp)


@functools.lru_cache(maxsize=2048)
def _cached_lines(path: str, replacements: tuple[tuple[str, str], ...],
                  _stamp: tuple[int, int] | None) -> tuple[tuple[str, str], ...]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            raw = handle.read().splitlines()
    except OSError as exc:
        raise TpnError(f"{path}: cannot read: {exc.strerror or exc}") from None
    base = os.path.basename(path)
    meaningful = [line.strip() for line in raw if line.strip() and not line.strip().startswith("#")]
    if len(meaningful) == 1 and re.fullmatch(r"[\w.\-/]+\.tpn", meaningful[0]):
        # A link file (a symlink flattened to text): read the file it names instead.
        return tuple(_lines(os.path.join(os.path.dirname(path), meaningful[0]), replacements))
    lines: list[tuple[str, str]] = []
    continued = False
    for number, line in enumerate(raw, start=1):
        line = line.strip()
        where = f"{base}:{number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("include") and len(line.split()) == 2 and line.split()[0] == "include":
            target = os.path.join(os.path.dirname(path), line.split()[1])
            lines += _lines(target, replacements)
            continue
        if line.split()[0] == "replace":
            words = line.split()
            if len(words) != 3:
                raise TpnError(f"{where}: replace needs 'replace <pattern> <text>', got {line!r}")
            pair = (words[1], words[2])
            for old, new in replacements:
                if old == pair[0] and new != pair[1]:
                    raise TpnError(f"{where}: replace {pair} conflicts with earlier replace {(old, new)}")
            if pair not in replacements:
                replacements = replacements + (pair,)
            continue
        for old, new in replacements:
            try:
                line = re.sub(old, new, line)
            except re.error as exc:
                raise TpnError(f"{where}: bad replace pattern {old!r}: {exc}") from None
        if continued:
            text, first_where = lines[-1]
            lines[-1] = (text[:-1].strip() + line, first_where)
        else:
            lines.append((line, where))
        continued = line.endswith("\\")
    return tuple(lines)


def _split_fields(line: str) -> list[str]:
    """Split on blanks, except blanks inside double quotes; strip the quotes."""
    protected = re.sub(r'"[^"]*"', lambda m: m.group(0).replace(" ", _SPACE).replace("\t", _SPACE), line)
    fields = [field.replace(_SPACE, " ") for field in protected.split()]
    return [_unquote(field) for field in fields]


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _parse_line(line: str, where: str) -> Constraint:
    fields = _split_fields(line)
    if len(fields) not in (4, 5):
        raise TpnError(f"{where}: expected 'NAME KEYTYPE DATATYPE PRESENCE [VALUES]', got {line!r}")
    name, keytype, datatype, presence = fields[:4]
    raw_values = fields[4] if len(fields) == 5 else ""
    try:
        ktype = _KEYTYPES[keytype[0].upper()]
        dtype = _DATATYPES[datatype[0].upper()]
    except (KeyError, IndexError):
        raise TpnError(f"{where}: bad KEYTYPE {keytype!r} or DATATYPE {datatype!r}") from None
    condition = None
    if is_expression(presence):
        condition, presence_name = _checked(presence, where), "required"
    elif presence[:1].upper() in _PRESENCES:
        presence_name = _PRESENCES[presence[0].upper()]
    else:
        raise TpnError(f"{where}: bad PRESENCE {presence!r}")
    values: tuple[str, ...] = ()
    expression = special = None
    value_range = None
    if raw_values.startswith("&"):
        special = raw_values[1:].upper()
    elif dtype == "expression" or is_expression(raw_values):
        if raw_values:
            expression = _checked(raw_values, where)
    elif raw_values:
        items = [_unquote(item) for item in raw_values.split(",")]
        if dtype != "string_case":
            items = [item.upper() for item in items]
        values = tuple(items)
        if dtype in ("int", "float", "double") and len(values) == 1 and ":" in values[0]:
            low, high = values[0].split(":", 1)
            try:
                value_range = (float(low), float(high))
            except ValueError:
                raise TpnError(f"{where}: bad numeric range {values[0]!r}") from None
            values = ()
    try:
        return Constraint(name=name, keytype=ktype, datatype=dtype, presence=presence_name,
                          condition=condition, values=values, value_range=value_range,
                          expression=expression, special=special, source=where)
    except ValueError as exc:
        raise TpnError(f"{where}: {exc}") from None


def _checked(expression: str, where: str) -> str:
    try:
        compile_expression(expression)
    except ConstraintExpressionError as exc:
        raise TpnError(f"{where}: {exc}") from None
    return expression


# ------------------------------------------------------------------ which files apply


def tpn_names(observatory: str, instrument: str, filekind: str, suffix: str | None = None,
              *, rmap: bool = False) -> list[str]:
    """The .tpn file names that constrain (`instrument`, `filekind`) references.

    HST: ``<instrument>_<suffix>.tpn`` (``_ld.tpn`` with `rmap` for rmap values). JWST and
    Roman add the generic levels, most specific first: ``<instr>_<kind>``, ``<instr>_all``,
    ``all_<kind>`` (and ``all_<prefix>`` for ``pars-*`` kinds), ``all_all``.
    """
    ending = "_ld.tpn" if rmap else ".tpn"
    instrument, filekind = instrument.lower(), filekind.lower()
    if observatory.lower() == "hst":
        known = hst_types().get(instrument, {}).get(filekind)
        if known:  # HST names its files by its own abbreviations (wp2_a2d.tpn for WFPC2)
            return [known["ld_tpn" if rmap else "tpn"]]
        return [f"{instrument}_{suffix or filekind}{ending}"]
    subkinds = [filekind[:i] for i, char in enumerate(filekind) if char == "-"] + [filekind]
    names = [f"{instrument}_{filekind}{ending}", f"{instrument}_all{ending}"]
    names += [f"all_{kind}{ending}" for kind in reversed(subkinds)]
    names.append(f"all_all{ending}")
    return names


def tpn_constraints(tpn_dir: str | os.PathLike, observatory: str, instrument: str,
                    filekind: str, suffix: str | None = None, *, rmap: bool = False) -> list[Constraint]:
    """Constraints of every .tpn in `tpn_dir` that applies; missing files are skipped
    (as in CRDS, not every level exists)."""
    found: list[Constraint] = []
    for name in tpn_names(observatory, instrument, filekind, suffix, rmap=rmap):
        path = os.path.join(os.fspath(tpn_dir), name)
        if os.path.exists(path):
            found += load_tpn(path)
    return _unique(found)


def _unique(constraints: Iterable[Constraint]) -> list[Constraint]:
    seen: set[tuple] = set()
    result = []
    for item in constraints:
        key = (item.name, item.keytype, item.datatype, item.presence, item.condition,
               item.values, item.value_range, item.expression, item.special)
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


# ------------------------------------------------------------------ rmap match values

_JWST_INSTRUMENTS = frozenset({"miri", "nircam", "niriss", "nirspec", "fgs", "system"})
_ROMAN_INSTRUMENTS = frozenset({"wfi"})


def _guess_observatory(tpn_dir: str, instrument: str) -> str:
    """The observatory of a .tpn directory: from its path (``.../jwst/tpns``), else from
    the instrument name."""
    parts = {part.lower() for part in os.path.normpath(os.path.abspath(tpn_dir)).split(os.sep)}
    for observatory in ("hst", "jwst", "roman"):
        if observatory in parts:
            return observatory
    if instrument.lower() in _JWST_INSTRUMENTS:
        return "jwst"
    if instrument.lower() in _ROMAN_INSTRUMENTS:
        return "roman"
    return "hst"


def ld_valid_values(tpn_dir: str | os.PathLike, instrument: str, filekind: str,
                    parkeys: Iterable[str], *, observatory: str | None = None) -> dict[str, list[str]]:
    """The values a site's ``*_ld.tpn`` files allow for an rmap's match parameters.

    What CRDS's ``ReferenceMapping.tpn_valid_values`` gives: for each parameter among
    `parkeys` constrained by a simple (not expression, not conditional) ld constraint, its
    values conditioned as match values are (``1`` -> ``1.0``, ``ANY`` -> ``*``); a numeric
    range ``a:b`` is expanded to the integers ``a..b`` as CRDS expands it. Parameters without
    a constraint are left out (unchecked); an empty list means "any value". Missing .tpn
    files are skipped; a malformed one raises TpnError naming the file and line.
    """
    tpn_dir = os.fspath(tpn_dir)
    observatory = (observatory or _guess_observatory(tpn_dir, instrument)).lower()
    wanted = {str(key).upper() for key in parkeys}
    constraints = tpn_constraints(tpn_dir, observatory, instrument, filekind, rmap=True)
    return _ld_values(tuple(constraints), frozenset(wanted))


@functools.lru_cache(maxsize=512)
def _ld_values(constraints: tuple[Constraint, ...], wanted: frozenset[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in constraints:
        name = item.name.upper()
        if name not in wanted or item.condition or item.expression or item.datatype == "expression" \
                or item.keytype == "expression" or item.special:
            continue
        values: list[object] = list(item.values)
        low_high = item.value_range
        if low_high is None and len(values) == 1 and ":" in str(values[0]):
            try:
                low_high = tuple(float(x) for x in str(values[0]).split(":"))  # type: ignore[assignment]
            except ValueError:
                low_high = None
        if low_high is not None and len(low_high) == 2:
            values = list(range(int(low_high[0]), int(low_high[1]) + 1))
        found[name] = [condition_value(value) for value in values]
    return found
