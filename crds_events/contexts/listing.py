"""What ``crds-events list`` shows: mappings, references, contexts and a status summary.

The answers come from a *catalog*: anything with ``mappings()``, ``references()``,
``contexts()`` and ``status()``. ``DirectoryCatalog`` reads a mappings directory (and an
optional references directory), or the files one context names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from crds_events import __version__
from crds_events.errors import CrdsEventsError
from crds_events.rules.context import ContextLoadError, MappingStore, PipelineContext
from crds_events.rules.parse import MappingError
from crds_events.rules.selectors import RulesError

_MAPPING_EXTENSIONS = (".pmap", ".imap", ".rmap")


class CatalogError(CrdsEventsError, ValueError):
    """A catalog that cannot be read (missing directory, bad context); names the path."""


class Catalog(Protocol):
    def mappings(self) -> list[str]: ...
    def references(self) -> list[str]: ...
    def contexts(self) -> list[str]: ...
    def status(self) -> dict[str, object]: ...


def _serial(name: str) -> int:
    found = re.search(r"_(\d+)\.pmap$", name)
    return int(found.group(1)) if found else -1


@dataclass
class DirectoryCatalog:
    """Files in a mappings directory (and references directory); with `context`, only the
    mappings and references that context names."""

    mappings_dir: Path
    references_dir: Path | None = None
    context: str | None = None
    _pipeline: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.mappings_dir = Path(self.mappings_dir)
        if not self.mappings_dir.is_dir():
            raise CatalogError(f"{self.mappings_dir}: not a directory")
        if self.references_dir is not None:
            self.references_dir = Path(self.references_dir)
            if not self.references_dir.is_dir():
                raise CatalogError(f"{self.references_dir}: not a directory")

    def _context(self):
        if self._pipeline is None:
            name = os.path.basename(str(self.context))
            try:
                store = MappingStore(self.mappings_dir)
                self._pipeline = PipelineContext(store.document(name), store)
            except (ContextLoadError, MappingError, OSError) as exc:
                raise CatalogError(f"{name}: cannot load context: {exc}") from None
        return self._pipeline

    def _loaded(self, method: str) -> list[str]:
        try:
            return list(getattr(self._context(), method)())
        except (ContextLoadError, MappingError, RulesError) as exc:
            raise CatalogError(f"{self.context}: {exc}") from None

    def mappings(self) -> list[str]:
        if self.context is not None:
            return self._loaded("mapping_names")
        return sorted(p.name for p in self.mappings_dir.iterdir()
                      if p.is_file() and p.name.endswith(_MAPPING_EXTENSIONS))

    def references(self) -> list[str]:
        if self.context is not None:
            return self._loaded("reference_names")
        if self.references_dir is None:
            return []
        return sorted(p.name for p in self.references_dir.iterdir() if p.is_file())

    def contexts(self) -> list[str]:
        names = [p.name for p in self.mappings_dir.iterdir() if p.name.endswith(".pmap")]
        return sorted(names, key=lambda name: (_serial(name), name))

    def status(self) -> dict[str, object]:
        contexts = self.contexts()
        return {
            "crds-events version": __version__,
            "mappings directory": str(self.mappings_dir),
            "references directory": str(self.references_dir) if self.references_dir else "(none)",
            "mappings": len(self.mappings()) if self.context is None else
            len(self._loaded("mapping_names")),
            "references": len(self.references()),
            "contexts": len(contexts),
            "latest context (highest serial)": contexts[-1] if contexts else "(none)",
            "context listed": os.path.basename(self.context) if self.context else "(all files)",
        }


def format_status(status: dict[str, object]) -> Iterable[str]:
    """``key: value`` lines, keys padded to one column."""
    width = max((len(key) for key in status), default=0)
    for key, value in status.items():
        yield f"{key.ljust(width)} : {value}"
