"""The import rules of docs/architecture.md, checked over crds_events/ with the stdlib `ast`.

A *package* is the first name under ``crds_events/``: ``contexts`` for
``crds_events/contexts/pointers.py``, ``config`` for ``crds_events/config.py``. Every import
counts, wherever it is written: module level, inside a function, under ``if TYPE_CHECKING:``,
``import crds_events.x.y``, ``from crds_events import x``, relative imports, and dotted names
handed to ``importlib.import_module`` as strings. The last self-tests feed the detector small
synthetic trees, so that it is shown to be able to fail.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import crds_events

PACKAGE = Path(crds_events.__file__).resolve().parent

# The layers, lowest first: a package may import the packages listed before it, never those
# after it. "__init__" is crds_events/__init__.py (``__version__`` only) and "__main__" is
# ``python -m crds_events``; the others are the packages of docs/architecture.md.
LAYERS = (
    "__init__",
    "errors",
    "config",
    "events",
    # pure: the CRDS rules language, reference files, checks, refactor/newcontext/diff
    "rules",
    "files",
    "certify",
    "refactoring",
    # the log
    "store",
    # domain
    "accounts",
    "contexts",
    "delivery",
    "submissions",
    "reprocessing",
    "mail",
    # edges
    "handlers",
    "watch",
    "web",
    "client",
    # composition
    "server",
    "demo",
    "cli",
    "__main__",
)

# The packages whose imports the layer order is enforced on: the foundations and the pure
# core, which must not know anything built on them.
CHECKED_LAYERS = (
    "__init__", "errors", "config", "events", "rules", "files", "certify", "refactoring", "store",
)

# Pairs the layer order alone would allow but the design does not: the log knows nothing of
# certification or refactoring (and those, coming before it, cannot import the store).
ALSO_FORBIDDEN = {"store": frozenset({"certify", "refactoring"})}

# The web serves what the log holds; it never reaches into the reactions or the observers.
WEB_MAY_NOT_IMPORT = frozenset({"watch", "handlers"})

MAX_LINES = 600

_IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})
_ENDS = ("__init__", "__main__")  # in LAYERS for completeness, left out of messages


@dataclass(frozen=True)
class Import:
    """One dependency of module `path` (line `line`) on module `target`."""

    path: str  # crds_events/store/folds.py
    line: int
    source: str  # the importing module's package: store
    target: str  # the dotted module imported: crds_events.accounts.users
    package: str  # the imported module's package: accounts

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _dotted(root: Path, path: Path) -> tuple[str, bool]:
    """The dotted module name of `path` under package `root`, and whether it is a package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _package(root_name: str, dotted: str) -> str | None:
    """The package (first component under the root) of a dotted name; None if not ours."""
    parts = dotted.split(".")
    if parts[0] != root_name:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _source_package(root: Path, path: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0].removesuffix(".py")


def _resolve_from(node: ast.ImportFrom, dotted: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = dotted.split(".") if is_package else dotted.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def collect_imports(root: Path = PACKAGE) -> list[Import]:
    """Every import of a module of ours by a module under `root` (the package directory)."""
    root_name = root.name
    paths = sorted(root.rglob("*.py"))
    known = {_dotted(root, p)[0] for p in paths}
    found: list[Import] = []
    for path in paths:
        dotted, is_package = _dotted(root, path)
        rel = path.relative_to(root.parent).as_posix()
        source = _source_package(root, path)
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: list[tuple[int, str]] = []
        calls_importlib = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = _resolve_from(node, dotted, is_package)
                for alias in node.names:
                    # `from crds_events import store` imports the module crds_events.store;
                    # `from crds_events.store import SQLiteEventStore` imports crds_events.store
                    child = f"{module}.{alias.name}"
                    targets.append((node.lineno, child if child in known else module))
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                calls_importlib = calls_importlib or name in _IMPORT_FUNCTIONS
        if calls_importlib:
            # A module that imports by name: each of our dotted module names written in it as
            # a string is a dependency (store/folds.py once loaded domain folds this way).
            pattern = re.compile(rf"{re.escape(root_name)}(\.\w+)+")
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and pattern.fullmatch(node.value)
                    and node.value in known
                ):
                    targets.append((node.lineno, node.value))
        for line, target in targets:
            package = _package(root_name, target)
            if package is not None and package != source:
                found.append(Import(rel, line, source, target, package))
    return sorted(set(found), key=lambda i: (i.path, i.line, i.target))


def layer_violations(imports: list[Import]) -> list[str]:
    """Imports by a checked package of a package that is not before it in LAYERS."""
    problems = []
    for imp in imports:
        if imp.source not in CHECKED_LAYERS:
            continue
        allowed = set(LAYERS[: LAYERS.index(imp.source)]) - ALSO_FORBIDDEN.get(imp.source, set())
        if imp.package not in allowed:
            may = ", ".join(p for p in LAYERS if p in allowed and p not in _ENDS) or "nothing"
            problems.append(
                f"{imp.where()}: {imp.source} imports {imp.package} ({imp.target}); "
                f"{imp.source} may import only: {may}"
            )
    return problems


def web_violations(imports: list[Import]) -> list[str]:
    return [
        f"{imp.where()}: web imports {imp.package} ({imp.target}); "
        f"web never imports {' or '.join(sorted(WEB_MAY_NOT_IMPORT))}"
        for imp in imports
        if imp.source == "web" and imp.package in WEB_MAY_NOT_IMPORT
    ]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycle_violations(imports: list[Import]) -> list[str]:
    """Each group of packages that import each other, with every edge inside the group."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        edges[imp.source, imp.package].append(imp)
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        upward, other = [], []
        for (source, target), found in sorted(edges.items()):
            if source in component and target in component:
                more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
                line = f"      {source} -> {target}: {found[0].where()} imports {found[0].target}"
                (upward if _against_layers(source, target) else other).append(line + more)
        lines = [f"cycle between {', '.join(component)}:"]
        if upward:
            lines += ["    against the layer order (the imports to remove):", *upward]
        if other:
            lines += ["    the other imports in the cycle:", *other]
        problems.append("\n".join(lines))
    return problems


def _against_layers(source: str, target: str) -> bool:
    """Whether `source` importing `target` points down LAYERS (both must be listed)."""
    if source not in LAYERS or target not in LAYERS:
        return False
    return LAYERS.index(target) > LAYERS.index(source)


def long_modules(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        count = len(path.read_text().splitlines())
        if count > MAX_LINES:
            rel = path.relative_to(root.parent).as_posix()
            problems.append(f"{rel}: {count} lines (at most {MAX_LINES})")
    return problems


def unlisted_packages(root: Path = PACKAGE) -> list[str]:
    return sorted(
        {
            f"{path.relative_to(root.parent).as_posix()}: package {package!r} is not in LAYERS"
            for path in root.rglob("*.py")
            if (package := _source_package(root, path)) not in LAYERS
        }
    )


def _check(rule: str, problems: list[str]) -> None:
    """Fail with the rule and every violation, one a line (no traceback: the list is the news)."""
    if problems:
        pytest.fail(f"{len(problems)} violation(s) of: {rule}\n" + "\n".join(problems), False)


# --- the rules, on the real tree --------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return collect_imports(PACKAGE)


def test_foundations_and_pure_core_import_only_lower_layers(imports):
    _check(
        "errors/config/events, rules/files/certify/refactoring and store import only the "
        "packages before them in LAYERS (store: not certify or refactoring either)",
        layer_violations(imports),
    )


def test_web_never_imports_watch_or_handlers(imports):
    _check("web/ never imports watch/ or handlers/", web_violations(imports))


def test_no_import_cycles_between_packages(imports):
    _check("no import cycle between packages", cycle_violations(imports))


def test_no_module_over_600_lines():
    _check(f"no module over {MAX_LINES} lines", long_modules(PACKAGE))


def test_every_package_has_a_layer():
    _check("every package under crds_events/ is in LAYERS", unlisted_packages(PACKAGE))


# --- the detector can fail ---------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "crds_events" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "crds_events"


def test_detects_an_upward_import_of_every_spelling(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "",
            "store/__init__.py": "from . import projections\nfrom crds_events import config\n",
            "store/projections.py": (
                "from typing import TYPE_CHECKING\n"
                "from ..handlers.runner import Handler\n"  # line 2: relative
                "if TYPE_CHECKING:\n"
                "    from crds_events.web import app\n"  # line 4: type-checking only
                "def f():\n"
                "    import crds_events.contexts.pointers\n"  # line 6: function-local
                "    from crds_events import accounts\n"  # line 7: package as a name
            ),
            "store/folds.py": (
                "import importlib\n"
                "MODULES = ('crds_events.mail.outbox',)\n"  # line 2: imported by name
                "def load():\n"
                "    for m in MODULES:\n"
                "        importlib.import_module(m)\n"
            ),
            "store/artifacts.py": "from crds_events.certify import report\n",
            "handlers/__init__.py": "",
            "handlers/runner.py": "",
            "web/__init__.py": "",
            "contexts/__init__.py": "",
            "contexts/pointers.py": "",
            "accounts/__init__.py": "",
            "mail/__init__.py": "",
            "mail/outbox.py": "",
            "certify/__init__.py": "",
            "certify/report.py": "from crds_events.files import headers\n",
            "files/__init__.py": "",
            "files/headers.py": "from crds_events.rules import parse\n",
            "rules/__init__.py": "",
            "rules/parse.py": "from crds_events.files import headers\n",
        },
    )
    problems = layer_violations(collect_imports(root))
    where = sorted(p.split(": ")[0] for p in problems)
    assert where == [
        "crds_events/rules/parse.py:1",  # rules may not import files
        "crds_events/store/artifacts.py:1",  # store may not import certify
        "crds_events/store/folds.py:2",
        "crds_events/store/projections.py:2",
        "crds_events/store/projections.py:4",
        "crds_events/store/projections.py:6",
        "crds_events/store/projections.py:7",
    ], "\n".join(problems)
    assert any("store imports handlers (crds_events.handlers.runner)" in p for p in problems)


def test_detects_web_importing_watch(tmp_path):
    root = _tree(
        tmp_path,
        {
            "web/__init__.py": "",
            "web/upload.py": "\n\nfrom crds_events.watch.ingest import drop_submission\n",
            "watch/__init__.py": "",
            "watch/ingest.py": "",
        },
    )
    assert web_violations(collect_imports(root)) == [
        "crds_events/web/upload.py:3: web imports watch (crds_events.watch.ingest); "
        "web never imports handlers or watch"
    ]


def test_detects_a_cycle_and_names_an_edge_each_way(tmp_path):
    root = _tree(
        tmp_path,
        {
            "server/__init__.py": "from crds_events.handlers import delivery\n",
            "handlers/__init__.py": "",
            "handlers/delivery.py": "def f():\n    from ..server import core\n",
            "server/core.py": "",
            "mail/__init__.py": "from crds_events import server\n",  # reaches the cycle only
        },
    )
    problems = cycle_violations(collect_imports(root))
    assert problems == [
        "cycle between handlers, server:\n"
        "    against the layer order (the imports to remove):\n"
        "      handlers -> server: crds_events/handlers/delivery.py:2 imports "
        "crds_events.server.core\n"
        "    the other imports in the cycle:\n"
        "      server -> handlers: crds_events/server/__init__.py:1 imports "
        "crds_events.handlers.delivery"
    ]


def test_detects_a_cycle_through_three_packages(tmp_path):
    root = _tree(
        tmp_path,
        {
            "a/__init__.py": "import crds_events.b\n",
            "b/__init__.py": "import crds_events.c\n",
            "c/__init__.py": "from .. import a\n",
        },
    )
    (problem,) = cycle_violations(collect_imports(root))
    assert problem.splitlines()[0] == "cycle between a, b, c:"
    assert "c -> a: crds_events/c/__init__.py:1 imports crds_events.a" in problem


def test_detects_a_module_over_600_lines(tmp_path):
    root = _tree(tmp_path, {"ok.py": "x = 1\n" * 600, "rules/long.py": "x = 1\n" * 601})
    assert long_modules(root) == ["crds_events/rules/long.py: 601 lines (at most 600)"]


def test_detects_a_package_without_a_layer(tmp_path):
    root = _tree(tmp_path, {"__init__.py": "", "timeline.py": "", "store/__init__.py": ""})
    assert unlisted_packages(root) == [
        "crds_events/timeline.py: package 'timeline' is not in LAYERS"
    ]
