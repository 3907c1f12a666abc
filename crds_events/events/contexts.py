"""Context, pipeline and reprocessing events: context pointers set, contexts pushed back by
pipelines, dataset catalogs imported, and the affected-datasets results with their hold,
skip, overdue and release.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from crds_events.events.registry import Event, register, upcaster
from crds_events.events.streams import context_stream, datasets_stream, reprocessing_stream

__all__ = [
    "ContextSet",
    "RemoteContextPushed",
    "DatasetsImported",
    "AffectedDatasetsComputed",
    "ReprocessingHeld",
    "ReprocessingSkipped",
    "ReprocessingOverdue",
    "ReprocessingReleased",
]


@register(version=2)
class ContextSet(Event):
    """An operator set a context pointer (``latest`` = operational, ``edit``, ``versions``,
    ``build``).

    Schema v1 called the pointer ``pointer`` and did not record the previous value; v2 names
    it ``kind`` and carries ``previous`` (None where v1 did not know it).
    """

    observatory: str
    kind: str
    context: str
    previous: str | None = None
    description: str = ""
    # Optional (added by crds_events.contexts.pointers; older payloads decode with ""): the
    # calibration software version a ``build`` context is for (CRDS get_build_context).
    calver: str = ""

    @property
    def stream(self) -> str:
        return context_stream(self.observatory)


@upcaster("ContextSet", 1)
def _context_set_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["kind"] = data.pop("pointer")
    data.setdefault("previous", None)
    return data


@register()
class RemoteContextPushed(Event):
    """A pipeline reported the context it now holds (``push_remote_context``)."""

    observatory: str
    pipeline: str  # the pipeline key
    context: str

    @property
    def stream(self) -> str:
        return context_stream(self.observatory)


@register()
class DatasetsImported(Event):
    """A catalog of archive dataset parameters was imported (stored as an artifact)."""

    observatory: str
    instrument: str
    count: int
    digest: str
    source: str = ""
    # Optional (crds_events.reprocessing.datasets): ``digest`` is the sha1 of the source file (the rows
    # live in the bulk ``datasets`` table, not in an artifact); datasets per instrument.
    by_instrument: dict = dataclasses.field(default_factory=dict)

    @property
    def stream(self) -> str:
        return datasets_stream(self.observatory)


@register()
class AffectedDatasetsComputed(Event):
    observatory: str
    old_context: str
    new_context: str
    count: int
    digest: str  # artifact holding the dataset ids
    by_instrument: dict = dataclasses.field(default_factory=dict)
    # Optional (crds_events.reprocessing.affected): counts per reference type, the datasets
    # considered, the unique errors (message -> count, the most frequent few), and a text
    # artifact with one affected id per line (what the DPAS e-mail quotes).
    by_type: dict = dataclasses.field(default_factory=dict)
    candidates: int = 0
    errors: dict = dataclasses.field(default_factory=dict)
    ids_digest: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingHeld(Event):
    """Affected datasets are not sent until the pipeline runs the new context."""

    observatory: str
    new_context: str
    pipeline: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingSkipped(Event):
    """A change of ``latest`` that triggers no reprocessing (a regression to an older or
    the same context, or no previous context), recorded so the log says why."""

    observatory: str
    old_context: str
    new_context: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingOverdue(Event):
    """Held reprocessing whose pipeline has not pushed the new context in time (devs are
    e-mailed)."""

    observatory: str
    new_context: str
    pipeline: str
    held_since: str = ""  # ISO 8601 UTC
    waited_seconds: float = 0.0

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)


@register()
class ReprocessingReleased(Event):
    observatory: str
    new_context: str
    pipeline: str
    pushed_context: str = ""

    @property
    def stream(self) -> str:
        return reprocessing_stream(self.observatory)
