"""Make a new context from an old pmap and new rmaps (`crds newcontext`).

For each new rmap, the imap of its instrument is copied under the next name of its series
with the rmap in place of its predecessor (or added, for a new type); the pmap is copied
under its next name with the new imaps in place. An argument `<instrument>_<type>_n/a` sets
that type to `N/A` instead. Every new mapping gets `name` = its new name and
`derived_from` = the mapping it was copied from, is written in CRDS's canonical layout with
a fresh sha1sum, and is never written over an existing file.

Children of the old pmap are found by name in its directory (or `mappings_dir`); new names
take one past the highest serial of the series found in that directory and the output one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import read_mapping_text
from crds_events.rules.naming import NamingError, next_mapping_name, parse_mapping_name
from crds_events.rules.parse import Call, MappingError, ParsedMapping, parse_mapping

__all__ = ["NewContextError", "NewContextResult", "new_context", "update_map"]


class NewContextError(MappingError):
    """The new context cannot be made (unknown instrument, an existing output, ...)."""


@dataclass
class NewContextResult:
    """Old name -> new name of every mapping written, their paths and texts, and a log."""

    names: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def new_pmap(self) -> str:
        return next(new for new in self.names.values() if new.endswith(".pmap"))


def _load(path: Path) -> ParsedMapping:
    if not path.is_file():
        raise NewContextError(f"mapping {str(path)!r} not found")
    return parse_mapping(read_mapping_text(path), str(path))


def _is_na_update(update: str) -> bool:
    return update.endswith(("_n/a", "_N/A"))


def _rmap_properties(update: str, search: Iterable[Path]) -> tuple[str, str]:
    """(instrument, filekind) of a new rmap: from its header if found, else its name."""
    for directory in search:
        candidate = directory / os.path.basename(update)
        if candidate.is_file():
            header = _load(candidate).header
            if "instrument" in header and "filekind" in header:
                return str(header["instrument"]).lower(), str(header["filekind"]).lower()
    path = Path(update)
    if path.is_file():
        header = _load(path).header
        return str(header.get("instrument", "")).lower(), str(header.get("filekind", "")).lower()
    try:
        parsed = parse_mapping_name(os.path.basename(update))
    except NamingError as exc:
        raise NewContextError(f"{update!r}: not an rmap name and not found: {exc}") from None
    if parsed.extension != ".rmap" or not parsed.instrument or not parsed.filekind:
        raise NewContextError(f"{update!r} is not an rmap name")
    return parsed.instrument, parsed.filekind


def update_map(pmap: ParsedMapping, updates: Iterable[str], search: Iterable[Path]
               ) -> dict[str, list[str]]:
    """{ imap name (as the pmap names it) : [updates for it] } (crds get_update_map)."""
    instruments = {str(k).lower(): v for k, v in pmap.selector.as_dict().items()}
    result: dict[str, list[str]] = {}
    search = list(search)
    for update in sorted(updates):
        if _is_na_update(update):
            parts = update.split("_")
            if len(parts) != 3:
                raise NewContextError(f"{update!r}: expected <instrument>_<type>_n/a")
            instrument = parts[0].lower()
        else:
            instrument, _ = _rmap_properties(update, search)
        if instrument == "wfii":
            instrument = "wfpc2"
        if instrument not in instruments:
            raise NewContextError(f"unknown instrument {instrument!r} for context "
                                  f"{os.path.basename(pmap.filename)!r} (from {update!r})")
        imap = str(instruments[instrument])
        if update in result.setdefault(imap, []):
            raise NewContextError(f"duplicate update for {update!r}")
        result[imap].append(update)
    return result


def _context_key(kind: str, observatory: str, key: str, selector: Mapping) -> str:
    """The selector key for `key`: an existing one of any case, else the site's convention."""
    for existing in selector:
        if str(existing).lower() == key.lower():
            return str(existing)
    if kind == "pmap" or observatory == "jwst":
        return key.upper()
    return key.lower()


def _set_items(parsed: ParsedMapping, kind: str, items: list[tuple[str, str]], old_name: str,
               new_name: str, messages: list[str]) -> ParsedMapping:
    selector = dict(parsed.selector.as_dict())
    observatory = str(parsed.header.get("observatory", "")).lower()
    for key, value in items:
        key = _context_key(kind, observatory, key, selector)
        replaced = selector.get(key)
        selector[key] = value
        if replaced is not None:
            messages.append(f"Replaced {replaced!r} with {value!r} for {key!r} in {old_name!r} "
                            f"producing {new_name!r}")
        else:
            messages.append(f"Added {value!r} for {key!r} in {old_name!r} producing {new_name!r}")
    header = dict(parsed.header)
    header["derived_from"] = old_name
    header["name"] = new_name
    messages.append(f"Adjusting name {new_name!r} derived_from {old_name!r}")
    return ParsedMapping(filename=new_name, header=header,
                         selector=Call("dict", tuple(selector.items())), comment=parsed.comment)


def new_context(old_pmap: str | os.PathLike, updates: Iterable[str | os.PathLike], *,
                output_dir: str | os.PathLike | None = None,
                mappings_dir: str | os.PathLike | None = None) -> NewContextResult:
    """Write new imaps and a new pmap that use `updates` (rmap paths or names, or
    `<instrument>_<type>_n/a`); return what was written.

    Nothing is written if any step fails (NewContextError / MappingError).
    """
    old_pmap = Path(old_pmap)
    mappings = Path(mappings_dir) if mappings_dir is not None else old_pmap.parent
    output = Path(output_dir) if output_dir is not None else old_pmap.parent
    updates = [str(u) for u in updates]
    search = [mappings, output]
    pmap = _load(old_pmap)
    if str(pmap.header.get("mapping", "")).upper() != "PIPELINE":
        raise NewContextError(f"{str(old_pmap)!r} is not a pipeline context (.pmap)")
    plan = update_map(pmap, updates, search)

    existing = {p.name for d in {mappings, output} if d.is_dir() for p in d.iterdir()}
    taken: set[str] = set()

    def new_name(old: str) -> str:
        name = next_mapping_name(os.path.basename(old), existing | taken)
        taken.add(name)
        return name

    result = NewContextResult()
    new_docs: dict[str, ParsedMapping] = {}
    imap_items: list[tuple[str, str]] = []
    for imap_name in sorted(plan):
        imap = _load(mappings / os.path.basename(imap_name))
        new_imap = new_name(imap_name)
        items = []
        for update in sorted(plan[imap_name]):
            if _is_na_update(update):
                _, filekind, special = update.split("_")
                items.append((filekind, special.upper()))
            else:
                _, filekind = _rmap_properties(update, search)
                items.append((filekind, os.path.basename(update)))
        new_docs[new_imap] = _set_items(imap, "imap", items, os.path.basename(imap_name),
                                        new_imap, result.messages)
        result.names[os.path.basename(imap_name)] = new_imap
        instrument = str(imap.header.get("instrument", "")).lower()
        imap_items.append((instrument, new_imap))
    new_pmap = new_name(old_pmap.name)
    new_docs[new_pmap] = _set_items(pmap, "pmap", imap_items, old_pmap.name, new_pmap,
                                    result.messages)
    result.names[old_pmap.name] = new_pmap

    texts = {name: rewrite_text(doc) for name, doc in new_docs.items()}
    output.mkdir(parents=True, exist_ok=True)
    for name in texts:
        if (output / name).exists():
            raise NewContextError(f"new mapping {str(output / name)!r} already exists")
    for name, text in texts.items():
        path = output / name
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
        result.paths[name] = path
        result.texts[name] = text
    return result
