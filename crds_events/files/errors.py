"""The one error type raised by the reference-file readers."""

from __future__ import annotations

import os

from crds_events.errors import CrdsEventsError


class ReferenceFileError(CrdsEventsError):
    """A reference file could not be read or processed.

    Carries the file, the keyword (when one is at fault) and the reason, so callers can show
    ``file: keyword: reason`` without parsing the message.
    """

    def __init__(self, path: str | os.PathLike, reason: str, keyword: str | None = None):
        self.path = os.fspath(path)
        self.reason = reason
        self.keyword = keyword
        where = os.path.basename(self.path)
        if keyword:
            where += f": {keyword}"
        super().__init__(f"{where}: {reason}")
