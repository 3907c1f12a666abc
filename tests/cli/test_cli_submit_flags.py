"""`crds-events submit`'s crds-style flags: @file lists, --redcat-parameters, --creator,
--stats, --log-time, --logout, --wipe-existing-files / --keep-existing-files; on a real
server over HTTP (--server) and on a local root with its submission worker running."""

from __future__ import annotations

import re
import textwrap

import pytest
from click.testing import CliRunner
from fixtures.servers import SubmissionServer
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.cli import cli


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = SubmissionServer(tmp_path_factory.mktemp("flags"))
    yield server
    server.stop()


def _run(args: list[str], **env: str):
    return CliRunner().invoke(cli, args, env=env or None)


def test_a_listed_remote_submission_with_redcat_fields_stats_times_and_logout(live, tmp_path):
    made = tmp_path / "made"
    flats = [make_flat(made / f"flat_{i}.fits", "nircam", f, seed=40 + i)
             for i, f in enumerate(["F200W", "F444W", "F090W"])]
    (tmp_path / "more.txt").write_text(f"# the third\n{flats[2]}\n")
    (tmp_path / "files.txt").write_text(
        f"# flats for the test\n{flats[0]}  {flats[1]}\n\n   # indented comment\n"
        f"@{tmp_path / 'more.txt'}\n")
    params = tmp_path / "redcat.yaml"
    params.write_text(textwrap.dedent("""
        instrument: NIRCAM
        description: flats from a list
        change_level: moderate
        other_email: pi@example.org, cs@example.org
        history_updated: yes
        useafter_matches: N/A
        calpipe_version: 1.15.0
        creator: From The File
    """))
    result = _run(["submit", "--server", live.url, "--token", live.token,
                   f"@{tmp_path / 'files.txt'}", "--redcat-parameters", str(params),
                   "--creator", "NIRCam Team", "--monitor", "--timeout", "90", "--stats",
                   "--log-time", "--wipe-existing-files", "--logout",
                   "--deliverer", "Jane Doe"])
    assert result.exit_code == 0, result.output
    assert "3 file(s) uploaded" in result.output and "READY" in result.output
    progress = [line for line in result.output.splitlines() if line.startswith(">>")
                or re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)]
    assert progress and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)
                            for line in progress), result.output
    stats = re.search(r"stats: 3 file\(s\), ([\d,]+) bytes in [\d.]+ s", result.output)
    assert stats and int(stats.group(1).replace(",", "")) == sum(
        f.stat().st_size for f in flats)

    sid = live.submissions()[-1]
    started = live.store.read_stream(ev.submission_stream(sid))[0].event
    assert sorted(started.files) == ["flat_0.fits", "flat_1.fits", "flat_2.fits"]
    assert (started.description, started.change_level) == ("flats from a list", "MODERATE")
    assert started.other_emails == ("pi@example.org", "cs@example.org")
    assert started.redcat["creator_name"] == "NIRCam Team"  # the option wins over the file
    assert started.redcat["history_updated"] is True
    assert started.redcat["useafter_matches"] == "N/A"
    assert locks.current_lock(live.store, "nircam") is None  # --logout released it

    # the submission is READY and its lock was taken: a later --logout alone releases it
    again = _run(["submit", "--server", live.url, "--token", live.token, "--instrument",
                  "MIRI", "--description", "one more", "--wait", "--timeout", "90",
                  "--deliverer", "Jane Doe",
                  str(make_flat(made / "miri.fits", "miri", "F070W", seed=49))])
    assert again.exit_code == 0, again.output
    assert locks.current_lock(live.store, "miri").owner == "jane"
    out = _run(["submit", "--logout", "--server", live.url, "--token", live.token])
    assert out.exit_code == 0 and "released the lock on miri" in out.output, out.output
    assert locks.current_lock(live.store, "miri") is None
    out = _run(["submit", "--logout", "--server", live.url, "--token", live.token])
    assert out.exit_code == 0 and "held no instrument lock" in out.output


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("instrument: NIRCAM\ncolour: blue\n", "colour: unknown field"),
    ("history_updated: perhaps\n", "history_updated: 'perhaps': answer yes or no"),
    ("change_level: HUGE\n", "change_level: 'HUGE': one of SEVERE, MODERATE, TRIVIAL"),
    ("description: [1, 2]\n", "description: expected non-empty text"),
    ("- a list\n", "expected a mapping of field: value"),
    ("a: &x [1]\nb: *x\n", "not valid YAML"),
])
def test_bad_redcat_parameters_name_the_field_and_upload_nothing(live, tmp_path, yaml_text,
                                                                message):
    params = tmp_path / "redcat.yaml"
    params.write_text(yaml_text)
    flat = make_flat(tmp_path / "flat.fits", "nircam", seed=60)
    before = live.submissions()
    result = _run(["submit", "--server", live.url, "--token", live.token, str(flat),
                   "--instrument", "NIRCAM", "--description", "x",
                   "--redcat-parameters", str(params)])
    assert result.exit_code == 2, result.output
    assert "--redcat-parameters" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert live.submissions() == before


def test_bad_file_lists_and_flags_are_usage_errors(live, tmp_path):
    loop_a, loop_b = tmp_path / "a.txt", tmp_path / "b.txt"
    loop_a.write_text(f"@{loop_b}\n")
    loop_b.write_text(f"@{loop_a}\n")
    before = live.submissions()
    for args, message in [
        ([f"@{loop_a}"], "file lists name each other in a loop"),
        ([f"@{tmp_path / 'absent.txt'}"], "cannot read the file list"),
        (["@"], "must be followed by a file list"),
        ([str(make_flat(tmp_path / "f.fits", seed=61)), "--wipe-existing-files",
          "--keep-existing-files"], "mutually exclusive"),
        ([str(tmp_path / "f.fits")], "--instrument: required"),
        ([], "name the files to submit"),
    ]:
        result = _run(["submit", "--server", live.url, "--token", live.token,
                       "--description", "x", "--deliverer", "Jane Doe", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert live.submissions() == before


def test_logout_needs_a_valid_token(live):
    result = _run(["submit", "--logout", "--server", live.url])
    assert result.exit_code == 1 and "an API token is required" in result.output
    result = _run(["submit", "--logout", "--server", live.url, "--token", live.revoked])
    assert result.exit_code == 1 and "logout refused" in result.output, result.output
    result = _run(["submit", "--logout", "--server", live.url, "--token", "made-up"])
    assert result.exit_code == 1 and "logout refused" in result.output


def test_local_wipe_keep_and_logout(live, tmp_path):
    settings = live.settings
    area = settings.ingest / "jane"
    area.mkdir(parents=True, exist_ok=True)
    (area / "left_over.fits").write_bytes(b"old")
    root = ["--root", str(settings.root), "--user", "jane"]
    flat = make_flat(tmp_path / "local.fits", "miri", "F070W", seed=70)
    warned = _run(["submit", *root, "--instrument", "MIRI", "--description", "local",
                   "--wait", "--timeout", "90", str(flat)])
    assert warned.exit_code == 0, warned.output
    assert "left_over.fits" in warned.output and "--wipe-existing-files" in warned.output
    assert (area / "left_over.fits").exists()
    assert locks.current_lock(live.store, "miri").owner == "jane"

    kept = _run(["submit", *root, "--instrument", "MIRI", "--description", "kept",
                 "--keep-existing-files", "--logout",
                 str(make_flat(tmp_path / "kept.fits", "miri", "F070W", seed=71))])
    assert kept.exit_code == 0, kept.output
    assert "left_over.fits" not in kept.output and (area / "left_over.fits").exists()
    assert "released the lock on miri" in kept.output

    wiped = _run(["submit", *root, "--instrument", "MIRI", "--description", "wiped",
                  "--wipe-existing-files",
                  str(make_flat(tmp_path / "wiped.fits", "miri", "F070W", seed=72))])
    assert wiped.exit_code == 0, wiped.output
    assert "wiped left_over.fits" in wiped.output and not (area / "left_over.fits").exists()
    # a submission's own directory is never wiped
    assert any(entry.is_dir() for entry in area.iterdir())
    out = _run(["submit", "--logout", *root])
    assert out.exit_code == 0, out.output
    anonymous = _run(["submit", "--logout", "--root", str(settings.root)],
                     CRDS_EVENTS_USER="")
    assert anonymous.exit_code == 1 and "--user" in anonymous.output
