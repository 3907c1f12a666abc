"""Words and units for people: the template filters every page shares.

* ``state_word``: a submission state code as CRDS's word (`crds_events.submissions.states`);
* ``label``: a field name as a label (``certify_status`` -> ``Certify status``);
* ``duration``: seconds as "0.4 s", "12 s", "3.5 min", "2.1 h" or "3.0 days";
* ``age``: how long ago an ISO time was, in the same units;
* ``when``: an ISO time as ``2024-05-01 12:00:03`` (no ``T``, no fraction);
* ``summary``: an event's payload as "Label: value" words instead of raw JSON.
"""

from __future__ import annotations

import datetime as _dt

from flask import Flask

from crds_events.submissions import states
from crds_events.web.pages import result_view

__all__ = ["register_filters", "label", "duration", "age", "when", "summary", "LABELS"]

# Labels that are not just the words of the field name.
LABELS = {
    "filekind": "Type", "useafter": "Use after", "sha1": "SHA-1", "calver": "Cal version",
    "created_at": "Cataloged", "updated_at": "Updated", "recorded_at": "Recorded",
    "submission_id": "Submission", "reject_reason": "Reason marked bad",
    "certify_status": "Certify status", "calpipe_version": "Calibration pipeline version",
    "etc_delivery": "ETC delivery", "jwst_etc": "JWST ETC", "descrip_updated":
    "DESCRIP updated", "useafter_updated": "USEAFTER updated", "useafter_matches":
    "USEAFTER matches", "ingest_files": "Files to ingest", "history_updated":
    "HISTORY updated", "pedigree_updated": "PEDIGREE updated",
}


def label(name: object) -> str:
    """A snake_case field name as a human label."""
    text = str(name)
    if text in LABELS:
        return LABELS[text]
    words = text.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def duration(seconds: object) -> str:
    """A number of seconds in the unit a person reads it in ('' for none)."""
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value < 10:
        text = f"{value:.1f} s" if value >= 0.05 or value == 0 else f"{value * 1000:.0f} ms"
    elif value < 120:
        text = f"{value:.0f} s"
    elif value < 7200:
        text = f"{value / 60:.1f} min"
    elif value < 3 * 86400:
        text = f"{value / 3600:.1f} h"
    else:
        text = f"{value / 86400:.1f} days"
    return sign + text


def _parse(iso: str) -> _dt.datetime | None:
    try:
        moment = _dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


def age(iso: object, now: _dt.datetime | None = None) -> str:
    """How long ago ``iso`` was ("3.5 min ago"; '' when it is not a time)."""
    moment = _parse(str(iso or ""))
    if moment is None:
        return ""
    now = now or _dt.datetime.now(_dt.UTC)
    return f"{duration(max(0.0, (now - moment).total_seconds()))} ago"


def when(iso: object) -> str:
    """An ISO time as a person reads it: date, space, time to the second."""
    return str(iso or "").replace("T", " ")[:19]


def summary(data: object, limit: int = 160) -> str:
    """An event's payload as words ("Context: jwst_0002.pmap; Kind: edit"), not JSON:
    empty fields left out, lists joined, cut at ``limit`` characters."""
    if not isinstance(data, dict):
        return str(data)[:limit]
    parts = []
    for key, value in data.items():
        if value in (None, "", [], {}, ()):
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{label(key)}: {value}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def register_filters(app: Flask) -> None:
    """Make the filters available to every template of ``app``."""
    app.add_template_filter(states.word, "state_word")
    app.add_template_filter(label, "label")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(age, "age")
    app.add_template_filter(when, "when")
    app.add_template_filter(summary, "summary")
    app.add_template_global(states.CODES, "submission_states")
    app.add_template_filter(result_view.split_names, "split_names")
