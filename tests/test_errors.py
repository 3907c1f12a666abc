"""crds_events.errors: every error class defined under crds_events/ derives from
CrdsEventsError, and each error name is defined once (checked over the source with `ast`)."""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from pathlib import Path

import crds_events
from crds_events.errors import CrdsEventsError

PACKAGE = Path(crds_events.__file__).resolve().parent

# Bases from outside the package that make a class an error.
_FOREIGN_ERRORS = frozenset({"click.ClickException", "ClickException"})


def _builtin_error(name: str) -> bool:
    obj = getattr(builtins, name, None)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _classes(root: Path) -> dict[str, list[tuple[str, int, list[str]]]]:
    """Class name -> [(file, line, base names)] for every class under `root`."""
    found: dict[str, list[tuple[str, int, list[str]]]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                found[node.name].append((str(path.relative_to(root)), node.lineno, bases))
    return found


def _error_classes(classes: dict) -> dict[str, list[tuple[str, int, list[str]]]]:
    """The classes that are exceptions (warnings left out: they are categories, not errors)."""
    def is_error(name: str, seen: frozenset = frozenset()) -> bool:
        if name in seen:
            return False
        for _file, _line, bases in classes.get(name, ()):
            for base in bases:
                short = base.rsplit(".", 1)[-1]
                if _builtin_error(short) and issubclass(getattr(builtins, short), Warning):
                    return False
                if base == "BaseException":
                    # a stop signal (like KeyboardInterrupt) that `except Exception` must
                    # not catch: control flow, not an error of the domain
                    return False
                if base in _FOREIGN_ERRORS or _builtin_error(short):
                    return True
                if short in classes and is_error(short, seen | {name}):
                    return True
        return False

    return {name: defs for name, defs in classes.items() if is_error(name)}


def _reaches_root(name: str, classes: dict, seen: frozenset = frozenset()) -> bool:
    if name == CrdsEventsError.__name__:
        return True
    if name in seen or name not in classes:
        return False
    return any(_reaches_root(base.rsplit(".", 1)[-1], classes, seen | {name})
               for _file, _line, bases in classes[name] for base in bases)


def test_every_error_derives_from_crds_events_error():
    classes = _classes(PACKAGE)
    errors = _error_classes(classes)
    assert "ReferenceFileError" in errors and "LockHeldError" in errors  # the detector sees them
    outside = [f"{file}:{line}: {name}({', '.join(bases)})"
               for name, defs in errors.items() if name != CrdsEventsError.__name__
               for file, line, bases in defs if not _reaches_root(name, classes)]
    assert not outside, "errors not derived from CrdsEventsError:\n" + "\n".join(outside)


def test_each_error_name_is_defined_once():
    repeated = {name: [f"{file}:{line}" for file, line, _ in defs]
                for name, defs in _error_classes(_classes(PACKAGE)).items() if len(defs) > 1}
    assert not repeated, f"error names defined more than once: {repeated}"


def test_detects_an_error_outside_the_root_and_a_repeated_name(tmp_path):
    (tmp_path / "errors.py").write_text("class CrdsEventsError(Exception):\n    pass\n")
    (tmp_path / "a.py").write_text("class BadError(KeyError):\n    pass\n"
                                   "class BadWarning(UserWarning):\n    pass\n")
    for name in ("b.py", "c.py"):
        (tmp_path / name).write_text("from errors import CrdsEventsError\n"
                                     "class TwiceError(CrdsEventsError):\n    pass\n")
    classes = _classes(tmp_path)
    errors = _error_classes(classes)
    assert "BadWarning" not in errors
    assert not _reaches_root("BadError", classes)
    assert _reaches_root("TwiceError", classes)
    assert len(errors["TwiceError"]) == 2
