"""YAML read with limits: aliases, nesting, expanded size and input size (alias bombs).

A few hundred bytes of YAML can stand for billions of nodes: each `*alias` repeats an
anchored node, so ten aliases of ten aliases of ... (a "billion laughs") load as a small
graph of shared objects that every walk - flattening a header, a repr in an error message,
ASDF's schema validation - expands to its full size. `safe_load_limited` composes the
document with a `yaml.SafeLoader` subclass that counts aliases and nesting as it reads,
then weighs the composed graph (each alias counting the full size of what it repeats) and
refuses it before anything is constructed or walked. `check_asdf_tree` does the same for
the YAML tree of an ASDF file, before `asdf` parses it.

Every refusal is a `YamlLimitError` (a `yaml.YAMLError`, so existing handlers catch it) with
a one-line reason.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from crds_events.errors import CrdsEventsError

__all__ = [
    "ASDF_TREE_LIMIT",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "YamlLimitError",
    "check_asdf_tree",
    "safe_load_limited",
]

#: Aliases a reference file's YAML may use (real ones use none or a handful).
MAX_ALIASES = 100
#: Nesting of mappings and sequences.
MAX_DEPTH = 64
#: Nodes after expanding every alias: a big parameter file has tens of thousands.
MAX_EXPANDED_NODES = 1_000_000
#: Bytes of an ASDF file's YAML tree read for the check (arrays live in binary blocks).
ASDF_TREE_LIMIT = 64 * 1024 * 1024


class YamlLimitError(CrdsEventsError, yaml.YAMLError):
    """YAML refused for its aliases, nesting or size (the message says which)."""


def _limited_loader(max_aliases: int, max_depth: int) -> type[yaml.SafeLoader]:
    class LimitedLoader(yaml.SafeLoader):
        """A SafeLoader that stops at the alias and depth bounds while composing."""

        _aliases = 0
        _depth = 0

        def compose_node(self, parent: Node | None, index: Any) -> Node:
            if self.check_event(AliasEvent):
                self._aliases += 1
                if self._aliases > max_aliases:
                    mark = self.peek_event().start_mark
                    raise YamlLimitError(
                        "YAML aliases are not allowed here" if max_aliases == 0 else
                        f"more than {max_aliases} YAML aliases (line {mark.line + 1})")
                return super().compose_node(parent, index)
            self._depth += 1
            try:
                if self._depth > max_depth:
                    mark = self.peek_event().start_mark
                    raise YamlLimitError(f"YAML nested more than {max_depth} levels deep "
                                         f"(line {mark.line + 1})")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return LimitedLoader


def _expanded_size(root: Node, limit: int) -> int:
    """Nodes of `root` with every alias expanded; YamlLimitError past `limit` or for a
    recursive alias (a node that contains itself expands without end)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: deep documents must not hit Python's recursion limit.
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            if isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                children = list(node.value)
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > limit:
                raise YamlLimitError(f"YAML expands to more than {limit} nodes (aliases)")
            sizes[key] = total
            in_progress.discard(key)
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise YamlLimitError("recursive YAML alias (a node that contains itself)")
        if not isinstance(node, (MappingNode, SequenceNode)):
            sizes[key] = 1
            continue
        in_progress.add(key)
        stack.append((node, True))
        children = [part for pair in node.value for part in pair] \
            if isinstance(node, MappingNode) else node.value
        stack.extend((child, False) for child in reversed(children) if id(child) not in sizes)
    return sizes[id(root)]


def compose_limited(text: str | bytes, *, max_aliases: int = MAX_ALIASES,
                    max_depth: int = MAX_DEPTH,
                    max_nodes: int = MAX_EXPANDED_NODES) -> Node | None:
    """The composed (not constructed) node graph of one YAML document, within the limits."""
    loader = _limited_loader(max_aliases, max_depth)(text)
    try:
        root = loader.get_single_node()
    except RecursionError:
        raise YamlLimitError("YAML nested too deeply") from None
    finally:
        loader.dispose()
    if root is not None:
        _expanded_size(root, max_nodes)
    return root


def safe_load_limited(text: str | bytes, *, max_aliases: int = MAX_ALIASES,
                      max_depth: int = MAX_DEPTH,
                      max_nodes: int = MAX_EXPANDED_NODES) -> Any:
    """`yaml.safe_load` of one document within the limits (YamlLimitError beyond them;
    other malformed YAML raises yaml.YAMLError as safe_load does)."""
    loader = _limited_loader(max_aliases, max_depth)(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, max_nodes)
        return loader.construct_document(root)
    except RecursionError:
        raise YamlLimitError("YAML nested too deeply") from None
    finally:
        loader.dispose()


def _asdf_yaml(head: bytes) -> bytes:
    """The YAML tree of an ASDF file: from its start to the document end marker (`...`)
    or the first binary block, whichever comes first."""
    end = len(head)
    block = head.find(b"\xd3BLK")
    if block != -1:
        end = block
    marker = head.find(b"\n...", 0, end)
    if marker != -1:
        end = marker + 1
    # The `#ASDF` comment lines and `%` directives are valid YAML prelude.
    return head[:end]


def check_asdf_tree(path: str | os.PathLike, *, max_aliases: int = MAX_ALIASES,
                    max_depth: int = MAX_DEPTH, max_nodes: int = MAX_EXPANDED_NODES) -> None:
    """Refuse (YamlLimitError) an ASDF file whose YAML tree breaks the limits, before
    `asdf.open` builds and validates it. Malformed YAML is left for asdf to report."""
    with open(path, "rb") as handle:
        head = handle.read(ASDF_TREE_LIMIT + 1)
    tree = _asdf_yaml(head)
    if len(tree) > ASDF_TREE_LIMIT:
        raise YamlLimitError(f"ASDF tree larger than {ASDF_TREE_LIMIT} bytes")
    try:
        compose_limited(tree, max_aliases=max_aliases, max_depth=max_depth,
                        max_nodes=max_nodes)
    except YamlLimitError:
        raise
    except yaml.YAMLError:
        return  # not our concern here: asdf.open reports what is wrong with it
