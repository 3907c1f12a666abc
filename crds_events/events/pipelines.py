"""Pipeline events: a pipeline registered by an operator, its key rotated, or revoked.

A registered pipeline may push the context it runs (`RemoteContextPushed` records its
*name*, never its key). The server issues the key once and keeps only its hash; the hash is
secret (``secret_fields``): a page or export never shows it, because a key's hash is what a
push is checked against.
"""

from __future__ import annotations

from crds_events.events.registry import Event, register
from crds_events.events.streams import pipeline_stream

__all__ = ["PipelineRegistered", "PipelineKeyRotated", "PipelineRevoked"]


@register()
class PipelineRegistered(Event):
    """An operator registered pipeline ``name``; its key (shown once) hashes to ``key_hash``."""

    name: str
    key_hash: str  # "sha256:<hex>" of the issued key

    secret_fields = ("key_hash",)

    @property
    def stream(self) -> str:
        return pipeline_stream(self.name)


@register()
class PipelineKeyRotated(Event):
    """Pipeline ``name`` got a new key; the one hashing to ``previous_hash`` is refused."""

    name: str
    key_hash: str
    previous_hash: str

    secret_fields = ("key_hash", "previous_hash")

    @property
    def stream(self) -> str:
        return pipeline_stream(self.name)


@register()
class PipelineRevoked(Event):
    """Pipeline ``name`` may no longer push; its key (``key_hash``) is refused from now on."""

    name: str
    key_hash: str

    secret_fields = ("key_hash",)

    @property
    def stream(self) -> str:
        return pipeline_stream(self.name)
