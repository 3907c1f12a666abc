"""Forms that keep what was typed: a page whose query is refused (400: a bad date, a bad
number, an unknown state) is drawn again with the input in its fields and the reason beside
the field it names, instead of a bare error page. The JSON twins still answer the 400.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from flask import render_template, request
from werkzeug.exceptions import HTTPException

from crds_events.web.pages import common

__all__ = ["keeps_input", "field_of"]

_FIELD = re.compile(r"^parameter '(\w+)'")


def field_of(message: str) -> str:
    """The query parameter a 400's message names ("parameter 'since': ..."), or ''."""
    found = _FIELD.match(message)
    return found.group(1) if found else ""


def keeps_input(template: str, **empty: Any) -> Callable:
    """Decorate a GET page: on a 400, render ``template`` with ``filters`` (the query as
    typed), ``errors`` ({field: reason}) and ``empty`` (what the page shows with no
    results), status 400."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except HTTPException as exc:
                if common.wants_json() or exc.code != 400:
                    raise
                message = str(exc.description)
                filters = {k: v.strip()[:200] for k, v in request.args.items() if v.strip()}
                errors = {field_of(message) or "form": message}
                return render_template(template, filters=filters, errors=errors,
                                       **empty), 400

        return wrapped

    return decorate
