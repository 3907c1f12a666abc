"""The outcome of certifying one file: OK / WARNINGS / ERRORS with every message.

Shared by the certify CLI, the submission pipeline (FileCertified events carry the summary)
and the web page (``to_dict`` is JSON-ready).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Message:
    """One finding: which file, which keyword (or array/expression), and why."""

    level: Level
    file: str
    keyword: str | None
    reason: str

    def __str__(self) -> str:
        where = os.path.basename(self.file) + (f": {self.keyword}" if self.keyword else "")
        return f"{self.level.upper()}: {where}: {self.reason}"


@dataclass
class FileResult:
    """Everything certify found about one file, and the constraints it applied."""

    path: str
    messages: list[Message] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # Constraint.describe() lines

    def add(self, level: Level, keyword: str | None, reason: str) -> None:
        self.messages.append(Message(level, self.path, keyword, reason))

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.messages if m.level == "error"]

    @property
    def warnings(self) -> list[Message]:
        return [m for m in self.messages if m.level == "warning"]

    @property
    def status(self) -> str:
        """``ERRORS`` if any error, else ``WARNINGS`` if any warning, else ``OK``."""
        return "ERRORS" if self.errors else "WARNINGS" if self.warnings else "OK"

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "file": os.path.basename(self.path),
            "status": self.status,
            "messages": [{"level": m.level, "keyword": m.keyword, "reason": m.reason}
                         for m in self.messages],
            "constraints": list(self.constraints),
        }


def exit_code(results: Iterable[FileResult]) -> int:
    """0 when no file has errors, 1 otherwise (warnings do not fail a certify run)."""
    return 1 if any(result.errors for result in results) else 0
