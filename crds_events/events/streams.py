"""Stream names: one helper per aggregate, so that every writer spells a stream the same way."""

from __future__ import annotations

__all__ = [
    "submission_stream",
    "delivery_stream",
    "delivery_directory_stream",
    "context_stream",
    "file_stream",
    "lock_stream",
    "email_stream",
    "datasets_stream",
    "reprocessing_stream",
    "user_stream",
    "pipeline_stream",
]


def submission_stream(submission_id: str) -> str:
    return f"submission:{submission_id}"


def delivery_stream(delivery: str) -> str:
    return f"delivery:{delivery}"


def delivery_directory_stream(observatory: str) -> str:
    """The delivery directory's own facts (its marker, outages); not a ``delivery:`` stream,
    so listing deliveries by that prefix never meets it."""
    return f"delivery-directory:{observatory}"


def context_stream(observatory: str) -> str:
    return f"context:{observatory}"


def file_stream(name: str) -> str:
    return f"file:{name}"


def lock_stream(instrument: str) -> str:
    return f"lock:{instrument}"


def email_stream(email_id: str) -> str:
    return f"email:{email_id}"


def datasets_stream(observatory: str) -> str:
    return f"datasets:{observatory}"


def reprocessing_stream(observatory: str) -> str:
    return f"reprocessing:{observatory}"


def user_stream(username: str) -> str:
    return f"user:{username}"


def pipeline_stream(name: str) -> str:
    return f"pipeline:{name}"
