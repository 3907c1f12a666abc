"""Delivery, archive and release events: the `.cat` manifest's life in the delivery directory
as the archive's poller sees it, files released for download, and files marked bad or ok.
"""

from __future__ import annotations

from crds_events.events.registry import Event, register
from crds_events.events.streams import delivery_directory_stream, delivery_stream, file_stream

__all__ = [
    "DeliveryCreated",
    "FileCataloged",
    "DeliveryArchiving",
    "DeliveryFailed",
    "DeliveryRequested",
    "DeliveryProblemFound",
    "DeliveryArchived",
    "FileReleased",
    "FileMarkedBad",
    "FileMarkedOk",
    "DeliveryRedelivered",
    "DeliveryDirectoryMarked",
    "DeliveryDirectoryUnavailable",
    "DeliveryDirectoryRestored",
]


@register()
class DeliveryCreated(Event):
    """Confirmed files were linked into the delivery directory with a ``.cat`` manifest."""

    delivery: str  # e.g. "hst_0042"
    observatory: str
    submission_id: str
    files: tuple[str, ...]
    catalog: str = ""  # path of the permanent catalog copy

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class FileCataloged(Event):
    """A file was entered in the catalog as part of a delivery."""

    name: str
    delivery: str
    observatory: str
    sha1: str
    size: int
    kind: str
    instrument: str
    filekind: str
    useafter: str = ""
    submission_id: str = ""

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryArchiving(Event):
    """The archive poller renamed ``.cat`` to ``.cat_proc``."""

    delivery: str

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryFailed(Event):
    """The archive poller renamed the manifest to ``.cat_err``."""

    delivery: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryRequested(Event):
    """A confirmed submission was given its delivery name (serial allocated at confirm);
    the delivery worker links the files and writes the ``.cat`` next (`DeliveryCreated`)."""

    delivery: str  # e.g. "jwst_0042"
    observatory: str
    submission_id: str
    files: tuple[str, ...]
    serial: int
    redelivery_of: str = ""  # the failed delivery this one delivers again (redeliver)

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryProblemFound(Event):
    """Something about a delivery is wrong on disk (e.g. its ``.cat`` names files that do
    not exist); its state is unchanged. ``missing`` lists the absent files."""

    delivery: str
    problem: str
    missing: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryArchived(Event):
    """The archive poller deleted the manifest: every file in it is archived."""

    delivery: str

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class FileReleased(Event):
    """An archived file may now be served for download."""

    name: str
    delivery: str = ""

    @property
    def stream(self) -> str:
        return file_stream(self.name)


@register()
class FileMarkedBad(Event):
    """An operator rejected a file; mappings referring to it are blacklisted with it."""

    name: str
    by: str
    reason: str
    blacklisted: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return file_stream(self.name)


@register()
class FileMarkedOk(Event):
    name: str
    by: str
    reason: str = ""
    unblacklisted: tuple[str, ...] = ()

    @property
    def stream(self) -> str:
        return file_stream(self.name)


@register()
class DeliveryRedelivered(Event):
    """An operator delivered a failed delivery's files again under a new name
    (``redelivery``, whose `DeliveryRequested` names this one in ``redelivery_of``)."""

    delivery: str  # the failed one
    redelivery: str  # the new delivery's name
    by: str
    reason: str = ""

    @property
    def stream(self) -> str:
        return delivery_stream(self.delivery)


@register()
class DeliveryDirectoryMarked(Event):
    """The server wrote its marker (a random id) into the delivery directory: from now on
    the directory is trusted only while it holds that marker."""

    observatory: str
    directory: str
    marker: str

    @property
    def stream(self) -> str:
        return delivery_directory_stream(self.observatory)


@register()
class DeliveryDirectoryUnavailable(Event):
    """The delivery directory is missing, not a directory, unreadable or not ours (no
    marker, or another one: e.g. an unmounted share). Nothing is concluded from what is
    absent in it until `DeliveryDirectoryRestored`. Recorded once per outage."""

    observatory: str
    directory: str
    reason: str

    @property
    def stream(self) -> str:
        return delivery_directory_stream(self.observatory)


@register()
class DeliveryDirectoryRestored(Event):
    """The delivery directory holds our marker again: reconciliation resumes."""

    observatory: str
    directory: str

    @property
    def stream(self) -> str:
        return delivery_directory_stream(self.observatory)
