"""Event types: one frozen dataclass per fact, registered by a stable name.

Every state change in crds-events is one of these facts, appended to the log by
`crds_events.store`. An event class declares:

* its stable ``type`` name (the class name; never reused for a different meaning),
* its ``schema_version`` (bumped when the payload shape changes),
* its ``stream`` (a property computed from its fields: ``submission:<id>``, ...).

Payloads are small JSON objects (`encode` / `decode`). When a payload shape changes, the
class gets the new shape, its ``schema_version`` goes up, and an *upcaster* registered with
`upcaster(type, from_version)` turns an old payload into the next version's. Old rows are
upgraded on read and never rewritten: the log stays exactly as it was recorded.

Large results (certify reports, diffs, lists of dataset ids) never go in an event: they are
content-addressed artifacts and the event carries their digest and a summary.

Field types are restricted to JSON-friendly values: str, int, float, bool, None,
``tuple[str, ...]`` (stored as a JSON list, read back as a tuple) and ``dict`` (small maps
of plain values, such as the ReDCaT fields of a submission manifest).

The package: `registry` (the `Event` base, `register`, `upcaster`, the codec), `streams`
(stream names), and one module of event classes per area (`submissions`, `delivery`,
`contexts`, `mail`, `accounts`, `pipelines`). Importing the package registers every event class;
callers use ``from crds_events import events as ev`` and ``ev.SubmissionStarted``.
"""

from __future__ import annotations

from crds_events.events import (
    accounts,
    contexts,
    delivery,
    mail,
    pipelines,
    registry,
    streams,
    submissions,
)
from crds_events.events.accounts import *  # noqa: F403 - the package is the one public name space
from crds_events.events.contexts import *  # noqa: F403 - the package is the one public name space
from crds_events.events.delivery import *  # noqa: F403 - the package is the one public name space
from crds_events.events.mail import *  # noqa: F403 - the package is the one public name space
from crds_events.events.pipelines import *  # noqa: F403 - the package is the one public name space
from crds_events.events.registry import *  # noqa: F403 - the package is the one public name space
from crds_events.events.streams import *  # noqa: F403 - the package is the one public name space
from crds_events.events.submissions import *  # noqa: F403 - the package is the one public name space

__all__ = [
    *registry.__all__,
    *streams.__all__,
    *submissions.__all__,
    *delivery.__all__,
    *contexts.__all__,
    *mail.__all__,
    *accounts.__all__,
    *pipelines.__all__,
]
