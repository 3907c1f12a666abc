"""The one vocabulary of submission states: CRDS's words, on every page, e-mail and JSON.

Internally a submission's state is a lower-case code (``started``, ``processing``,
``ready``, ``rejected``, ``failed``, ``confirmed``, ``forced``, ``cancelled``: what the
folds and `crds_events.submissions.review` record, and what API clients compare). People
read CRDS's words instead: STARTED, READY, BAD FILES, FAIL, CONFIRMED, FORCED, CANCELLED.
`word` turns a code into its word; every template, the monitor, the e-mails and the JSON
twins (``status`` beside ``state``) go through it, so one rejection reads BAD FILES
everywhere.
"""

from __future__ import annotations

__all__ = ["WORDS", "CODES", "word", "code_of", "css_class"]

# code -> CRDS's word. "processing" is not a CRDS state: a submission being processed is
# STARTED until its outcome (READY, BAD FILES or FAIL) is known.
WORDS: dict[str, str] = {
    "started": "STARTED",
    "processing": "STARTED",
    "ready": "READY",
    "rejected": "BAD FILES",
    "failed": "FAIL",
    "confirmed": "CONFIRMED",
    "forced": "FORCED",
    "cancelled": "CANCELLED",
}

# The codes a list may be filtered by, in the order of a submission's life (one per word).
CODES: tuple[str, ...] = ("started", "ready", "rejected", "failed", "confirmed", "forced",
                          "cancelled")

_BY_WORD = {w: c for c, w in WORDS.items() if c != "processing"}


def word(code: str | None) -> str:
    """CRDS's word for a state code (an unknown code upper-cased, '' for none)."""
    if not code:
        return ""
    return WORDS.get(code.lower(), code.upper())


def code_of(text: str) -> str:
    """The state code a filter names, by code or by word (``BAD FILES``, ``bad-files``,
    ``rejected`` -> ``rejected``); '' when it names none."""
    cleaned = text.strip().lower().replace("-", " ").replace("_", " ")
    if cleaned in WORDS:
        return cleaned
    return _BY_WORD.get(cleaned.upper(), "")


def css_class(code: str | None) -> str:
    """The class a page styles the state with (``state-rejected``)."""
    return f"state-{(code or '').lower()}"
