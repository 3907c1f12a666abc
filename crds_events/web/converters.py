"""URL converters of the app: ``<int:...>`` bounded to what SQLite can hold.

Werkzeug's ``int`` converter accepts any run of digits; ``/events/9223372036854775808``
then reached SQLite as a number it cannot bind (OverflowError, a 500). This one answers 400
naming the parameter and the range instead. It replaces ``int`` for every route of the app,
so a new route taking an integer is bounded without anyone remembering to.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter, Map

__all__ = ["SQLiteIntConverter", "install", "SQLITE_MAX_INT"]

SQLITE_MAX_INT = 2**63 - 1


class SQLiteIntConverter(IntegerConverter):
    """Digits as an int in 0 .. 2**63 - 1 (the route's own ``min``/``max`` still apply)."""

    def __init__(self, map: Map, *args: object, **kwargs: object) -> None:  # noqa: A002
        super().__init__(map, *args, **kwargs)  # type: ignore[arg-type]
        if self.max is None or self.max > SQLITE_MAX_INT:
            self.max = SQLITE_MAX_INT

    def to_python(self, value: str) -> int:
        # a 400, not a silent "no such route": the path was right, the number is not
        if len(value) > 19 or int(value) > SQLITE_MAX_INT:
            raise BadRequest(f"{value[:30]}{'...' if len(value) > 30 else ''}: not a number "
                             f"from 0 to {SQLITE_MAX_INT}")
        return super().to_python(value)


def install(app: Flask) -> None:
    """Make ``<int:...>`` the bounded converter (before any blueprint is registered)."""
    app.url_map.converters["int"] = SQLiteIntConverter
