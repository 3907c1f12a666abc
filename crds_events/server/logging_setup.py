"""Logging for `crds-events serve` (and the demo): human text, or one JSON object a line.

    configure_logging(settings.log_format, level="INFO")

``text`` (the default): ``2026-11-28 12:00:00,123 INFO crds_events.server.core: starting web``.
``json``: what log shippers (journald -> Loki, Fluent Bit, Elastic) take without parsing
rules::

    {"time": "2026-11-28T12:00:00.123Z", "level": "INFO", "logger": "crds_events.server.core",
     "message": "starting web", "thread": "MainThread", "process": 1234}

plus ``exc_info`` (the formatted traceback) when there is one, and any ``extra={...}``
fields given to the logging call (JSON-safe ones as they are, others as ``str``).
Calling it again replaces the handler it installed (never duplicates output).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["JsonFormatter", "configure_logging", "LOG_FORMATS"]

LOG_FORMATS = ("text", "json")
_MARK = "_crds_events_handler"
# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (UTC timestamps with milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    value = str(value)
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: str | int = "INFO",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger writing `log_format` to `stream` (stderr)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format: expected one of {', '.join(LOG_FORMATS)} (got {log_format!r})")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _MARK, True)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
