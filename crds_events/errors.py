"""CrdsEventsError, the one root of every error crds-events raises.

``except CrdsEventsError`` catches anything this package reports as a failure and nothing
else (a bug, a `KeyboardInterrupt`, a third-party library's own error pass through).

How the errors are grouped, in the manner of crds's ``core/exceptions.py``:

* Each error is defined next to the code that raises it, named for what went wrong
  (``ManifestError``, ``LockHeldError``, ``ConcurrencyError``), and each name is defined once
  in the whole package.
* An area with several errors has one group base that callers catch when they do not care
  which: ``MappingError`` (a rules file that cannot be read or built on), ``SelectionError``
  (a best-references lookup that failed), ``DatasetError``, ``StoreError``, ``LockError``,
  ``UserError``, ``RpcClientError`` ... A group derives from `CrdsEventsError`.
* Where an error also derives from a builtin (``ValueError`` for bad input, ``LookupError``
  for an unknown name, ``PermissionError``, ``RuntimeError`` for a refused operation), it
  keeps that base as well, so ``except ValueError`` around a call keeps working:
  ``class LockError(CrdsEventsError, RuntimeError)``.
* Warnings (``DuplicateKeyWarning``) are categories for `warnings`, not errors; they derive
  from `Warning` only.

This module imports nothing from crds-events, so every layer may import it.
"""

from __future__ import annotations

__all__ = ["CrdsEventsError"]


class CrdsEventsError(Exception):
    """Base of every error defined in crds-events."""
