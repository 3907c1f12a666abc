"""How large the text in an event may be: error messages and reasons are cut to a bound.

Events stay small (the store refuses a payload over `crds_events.store.interface
.MAX_EVENT_BYTES`); text that comes from outside - an exception's message, a certify
report, a user's manifest - is cut where the event is built, saying how much was left out,
and the full text goes to an artifact when it matters.
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_CHARS", "truncate_text"]

#: Characters of one error/reason/message field of an event.
MAX_MESSAGE_CHARS = 4000


def truncate_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to at most `limit` characters, ending with how many were left out."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = limit
    for _ in range(3):  # the note's length depends on the count it gives
        note = f" ... [{len(text) - keep} more characters cut]"
        keep = max(limit - len(note), 0)
    return (text[:keep] + note)[:limit]
