"""Mark bad as CRDS does, seen by the REAL crds client (PyPI ``crds``, run as subprocesses).

A server root holds the complete synthetic HST context ``hst_9000.pmap`` (operational) and a
newer ``hst_9001.pmap`` (edit) in which one bad-pixel table is replaced. Marking a reference
of the operational context bad is refused (nothing recorded); marking the replacement bad
rejects it and blacklists hst_9001's mappings, and then:

* ``crds.getreferences`` on the operational context still serves every (DETECTOR, APERTURE)
  selection - the blacklist never reaches the operational pmap;
* the newer context is refused by the client as bad rules (the blacklist is served).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.rpc import (
    aperture,
    fits_bytes,
    running_server,
    sha1,
    synthetic_reference_name,
    write_synthetic_context,
)

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.rules.checksum import with_checksum
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root

pytestmark = [pytest.mark.slow]

N = 6
OPERATIONAL, NEWER = "hst_9000.pmap", "hst_9001.pmap"
REPLACED = synthetic_reference_name(0)  # in hst_9000 only
REPLACEMENT = "hst_acs_bpixtab_20000.fits"  # in hst_9001 only
NEWER_MAPPINGS = ("hst_9001.pmap", "hst_acs_9001.imap", "hst_acs_bpixtab_9001.rmap")


def _write_newer(work: Path) -> tuple[Path, Path]:
    """hst_9001: the synthetic context again, with aperture 0's table replaced."""
    mappings, references, _ = write_synthetic_context(work / "newer", N, serial=9001)
    rmap = mappings / "hst_acs_bpixtab_9001.rmap"
    text = rmap.read_text().replace(f"'{REPLACED}'", f"'{REPLACEMENT}'")
    rmap.write_text(with_checksum(text, rmap.name))
    (references / REPLACED).unlink()
    (references / REPLACEMENT).write_bytes(fits_bytes({
        "INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(0),
        "FILETYPE": "BAD PIXELS", "USEAFTER": "Jan 01 2000 00:00:00", "REFSERIAL": 20000}))
    return mappings, references


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("crds_bad_files")
    settings = load_settings(work / "root", {"observatory": "hst"}, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "ada", "ada@example.org", "admin")
        mappings, references, _ = write_synthetic_context(work / "operational", N)
        import_cache(settings, store, mappings, references, OPERATIONAL, ("latest", "edit"))
        mappings, references = _write_newer(work)
        import_cache(settings, store, mappings, references, NEWER, ("edit",))
    with running_server(settings) as url:
        yield settings, url, work


def _env(url: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst")
    return env


# One client process asks for every selection of a context; prints {aperture: path} or the
# error's class and text.
_GETREFS = """
import json, sys, crds
context, apertures = sys.argv[1] or None, json.loads(sys.argv[2])
found = {}
try:
    for ap in apertures:
        header = {"INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": ap,
                  "DATE-OBS": "2005-01-01", "TIME-OBS": "00:00:00"}
        found[ap] = crds.getreferences(header, reftypes=["bpixtab"], context=context,
                                       observatory="hst")["bpixtab"]
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps(found))
"""


def _getreferences(url: str, cache: Path, context: str | None) -> dict:
    apertures = [aperture(i) for i in range(N)]
    result = subprocess.run([sys.executable, "-c", _GETREFS, context or "",
                             json.dumps(apertures)],
                            env=_env(url, cache), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def _mark_bad(settings, name: str):
    return CliRunner().invoke(cli, ["mark-bad", name, "--reason", "hot pixels", "--user",
                                    "ada", "--root", str(settings.root)])


def test_operational_context_keeps_serving_after_a_newer_reference_is_marked_bad(server,
                                                                                 tmp_path):
    settings, url, work = server
    with SQLiteEventStore(settings.db_path) as store:
        head = store.head()
        refused = _mark_bad(settings, REPLACED)
        assert refused.exit_code != 0
        assert (f"File '{REPLACED}' is in the current operational context '{OPERATIONAL}'. "
                " Create a new context which does not contain it and make that context "
                f"operational.  Then mark '{REPLACED}' as 'bad'.") in refused.output
        assert store.head() == head, "a refused mark-bad must record nothing"

        marked = _mark_bad(settings, REPLACEMENT)
        assert marked.exit_code == 0, marked.output
        recorded = store.read_all(types=[ev.FileMarkedBad.type])
        assert [r.event.name for r in recorded] == [REPLACEMENT]
        assert set(recorded[0].event.blacklisted) == set(NEWER_MAPPINGS)

    # the operational context: every selection served, the files the server holds
    served = _getreferences(url, tmp_path / "cache", None)
    assert "error" not in served, served
    assert sorted(served) == [aperture(i) for i in range(N)]
    for i in range(N):
        path = Path(served[aperture(i)])
        assert path.name == synthetic_reference_name(i) and path.is_file()
        assert sha1(path) == sha1(work / "operational/references" / path.name)
    # named explicitly, too
    assert _getreferences(url, tmp_path / "cache", OPERATIONAL) == served

    # the newer context is the bad one: the client refuses its rules
    refused_rules = _getreferences(url, tmp_path / "cache2", NEWER)
    assert refused_rules.get("error") == "CrdsBadRulesError", refused_rules
    assert NEWER in refused_rules["message"]
