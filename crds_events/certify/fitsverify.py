"""Run the external ``fitsverify`` program (cfitsio) and recategorise its messages as CRDS does.

It is optional: Debian has no package for it, so when it is not on PATH the check is skipped
with an info message saying so. Its ERROR and WARNING lines are re-issued at the level CRDS
gives them: some harmless conventions are demoted to info, checksum problems promoted to
error.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from crds_events.certify.result import FileResult, Level

#: fitsverify message fragment -> the level CRDS gives it.
RECATEGORIZED: dict[str, Level] = {
    "Unregistered XTENSION value": "info",
    "The OGIP long string keyword convention is used": "info",
    "recommended LONGSTRN keyword.": "info",
    "checksum is not": "error",
    "Invalid CHECKSUM": "error",
    "dyld: Library not loaded:": "warning",
}
TIMEOUT_SECONDS = 120


def fitsverify_available() -> str | None:
    """The path of the fitsverify program, or None."""
    return shutil.which("fitsverify")


def run_fitsverify(path: str | os.PathLike, result: FileResult, program: str | None = None) -> None:
    """Run fitsverify on `path` and add its findings to `result`."""
    program = program or fitsverify_available()
    if program is None:
        result.add("info", None, "fitsverify skipped: the fitsverify program is not installed "
                                 "(it is not packaged for Debian; build it from cfitsio's utilities)")
        return
    try:
        completed = subprocess.run([program, os.fspath(path)], capture_output=True, text=True,
                                   timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.add("warning", None, f"fitsverify could not run: {exc}")
        return
    interpret_output(completed.stdout + completed.stderr, result)
    if completed.returncode != 0:
        result.add("info", None, f"fitsverify exited with status {completed.returncode}")


def interpret_output(output: str, result: FileResult) -> None:
    """Add fitsverify's ``Error:``/``Warning:`` lines to `result` at CRDS's levels."""
    for line in output.splitlines():
        if "Error:" not in line and "Warning:" not in line:
            continue
        level: Level = "error" if "Error:" in line else "warning"
        for fragment, recategorized in RECATEGORIZED.items():
            if fragment in line:
                level = recategorized
                break
        result.add(level, None, f"fitsverify: {line.strip()}")
