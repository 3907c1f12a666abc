"""One constraint on a reference file, whichever format (our YAML specs or .tpn) it came from.

A Constraint names what it checks (a header keyword, a table column, an array, or a free
expression over the header), the value type, when it is required, and the allowed values
(a list, a ``min:max`` range, a special format such as a PEDIGREE or a date) or an
expression that must hold.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYTYPES = ("header", "column", "group", "array_format", "array_data", "expression")
DATATYPES = ("string", "string_case", "int", "float", "double", "boolean", "date", "expression")
PRESENCES = ("required", "optional", "warn", "excluded", "if_full_frame", "if_subarray",
             "any_subarray")
#: Special value checks (``&NAME`` in .tpn files).
SPECIALS = ("SYBDATE", "JWSTDATE", "ANYDATE", "SLASHDATE", "PEDIGREE", "JWSTPEDIGREE",
            "KERNELUNITY", "ISOMORPHICFITSVER", "ISOMORPHICFITSVER1", "ISOMORPHICFITSVER2",
            "ISOMORPHICFITSVER4", "SYNPHOT_LOOKUP", "SYNPHOT_GRAPH", "SYNPHOT_THERMAL",
            "SYNPHOT_THROUGHPUT", "FILEEXISTS")


@dataclass(frozen=True)
class Constraint:
    """A single check; see the module doc. ``source`` says where it was defined."""

    name: str
    keytype: str = "header"
    datatype: str = "string"
    presence: str = "required"
    condition: str | None = None  # expression: the constraint applies only when it holds
    values: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    expression: str | None = None
    special: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.keytype not in KEYTYPES:
            raise ValueError(f"{self.source}: bad keytype {self.keytype!r} for {self.name}")
        if self.datatype not in DATATYPES:
            raise ValueError(f"{self.source}: bad datatype {self.datatype!r} for {self.name}")
        if self.presence not in PRESENCES:
            raise ValueError(f"{self.source}: bad presence {self.presence!r} for {self.name}")
        if self.special is not None and self.special not in SPECIALS:
            raise ValueError(f"{self.source}: unknown special check &{self.special} for {self.name}")

    @property
    def is_array(self) -> bool:
        return self.keytype in ("array_format", "array_data")

    def describe(self) -> str:
        """One line for ``certify --verbose``: what is checked and where it came from."""
        parts = [f"{self.name} [{self.keytype}, {self.datatype}, {self.presence}"]
        if self.condition:
            parts.append(f" when {self.condition}")
        parts.append("]")
        if self.expression:
            parts.append(f" must satisfy {self.expression}")
        elif self.special:
            parts.append(f" must be a valid {self.special}")
        elif self.value_range:
            parts.append(f" in range {self.value_range[0]:g}..{self.value_range[1]:g}")
        elif self.values:
            shown = ", ".join(self.values[:8]) + (", ..." if len(self.values) > 8 else "")
            parts.append(f" one of {shown}")
        if self.source:
            parts.append(f"  ({self.source})")
        return "".join(parts)
