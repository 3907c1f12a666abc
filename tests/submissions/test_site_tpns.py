"""The server's certify reads the site's .tpn directory (setting ``tpn_dir``) and its
certify limits from the config file: a real server (handler runner, ingest observer,
submission worker with contained certify) on an HST root holding the corpus's hst_0001,
with the corpus's HST .tpn files and substitutions."""

from __future__ import annotations

import os
import shutil
import textwrap
from functools import partial
from pathlib import Path

import pytest
from astropy.io import fits
from fixtures.rpc import make_root

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.certify import certify_files
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

ACS = {"deliverer": "Jane Doe", "instrument": "ACS", "description": "ACS biases",
       "change_level": "MODERATE"}


def _bias(corpus: Path, path: Path, **cards: str) -> Path:
    """The corpus's ACS bias with `cards` changed (and so a new sha1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus / "contexts/hst/references/hst_acs_biasfile_0001.fits", path)
    os.chmod(path, 0o644)
    with fits.open(path, mode="update") as hdus:
        for key, value in {"DESCRIP": f"test bias {path.name}", **cards}.items():
            hdus[0].header[key] = value
    return path


@pytest.fixture
def site_factory(tmp_path, corpus):
    """start(certify_toml) -> (settings, store, tpn copy) of a running server whose config
    names a copy of the corpus's HST .tpn directory and has `certify_toml` as its
    ``[certify]`` table."""
    servers = []

    def start(certify_toml: str = 'seconds = 120\nmemory = "3G"'):
        root = tmp_path / "root"
        root.mkdir()
        tpns = tmp_path / "site" / "tpns"
        shutil.copytree(corpus / "site-config/hst/tpns", tpns)
        (root / "crds-events.toml").write_text(textwrap.dedent(f"""
            observatory = "hst"
            tpn_dir = "{tpns}"
            substitutions = "{corpus / 'site-config/hst/substitutions.dat'}"
        """) + "[certify]\n" + certify_toml + "\n")
        settings = make_root(root, corpus, synthetic=0)
        with SQLiteEventStore(settings.db_path) as store:
            users.add_user(store, "jane", "jane@example.org")
        server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                        poll_interval=0.05)
        servers.append(server)
        server.start()
        return settings, server.store, tpns

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def site(site_factory):
    settings, store, tpns = site_factory()
    assert settings.tpn_dir == tpns and settings.certify_memory == 3 << 30
    return settings, store, tpns


def _certified(store, sid: str) -> dict[str, ev.FileCertified]:
    return {r.event.original_name: r.event for r in store.read_all(types=[ev.FileCertified.type])
            if r.data["submission_id"] == sid}


def test_a_tpn_violation_is_bad_files_and_a_good_file_is_ready(site, corpus, tmp_path):
    settings, store, _tpns = site
    made = tmp_path / "made"
    # CCDAMP=XYZ: our built-in specs do not constrain CCDAMP (certify without the site's
    # files passes it); acs_bia.tpn allows A, B, C, D, AC, ..., ANY.
    amp = _bias(corpus, made / "amp_bia.fits", CCDAMP="XYZ")
    [builtin] = certify_files([amp])
    assert builtin.ok, builtin.messages
    detector = _bias(corpus, made / "det_bia.fits", DETECTOR="XYZ")

    bad = drop_submission(settings, "jane", [amp, detector], ACS)
    rejected = review.follow(store, bad, timeout=120)
    assert isinstance(rejected, ev.SubmissionRejected), rejected
    assert set(rejected.bad_files) == {"amp_bia.fits", "det_bia.fits"}
    summaries = {name: event.summary for name, event in _certified(store, bad).items()}
    assert "CCDAMP: value 'XYZ' is not one of [A, B, C, D, AC, AD, BC, BD, ABCD, ABCDALL, ANY]" \
        in summaries["amp_bia.fits"], summaries
    assert "DETECTOR: value 'XYZ' is not one of [WFC, HRC]" in summaries["det_bia.fits"]

    # A clean file certifies with the same .tpn files (and the substitutions that expand
    # its APERTURE='ANY_FULL' for the _ld.tpn values) and reaches READY.
    good = drop_submission(settings, "jane", [_bias(corpus, made / "good_bia.fits")], ACS)
    ready = review.follow(store, good, timeout=120)
    assert isinstance(ready, ev.SubmissionReady), ready
    assert _certified(store, good)["good_bia.fits"].status == "ok"


def test_the_tpn_directory_gone_fails_the_submission_without_naming_it(site, corpus, tmp_path):
    settings, store, tpns = site
    shutil.rmtree(tpns)  # an operator's mistake, after the server started
    sid = drop_submission(settings, "jane", [_bias(corpus, tmp_path / "m" / "x_bia.fits",
                                                   CCDAMP="XYZ")], ACS)
    outcome = review.follow(store, sid, timeout=120)
    # Not BAD FILES (the submitter's file is not at fault) and not READY (nothing checked).
    assert isinstance(outcome, ev.SubmissionFailed), outcome
    assert "tpn_dir" in outcome.error and "missing" in outcome.error
    assert str(tpns) not in outcome.error and str(settings.root) not in outcome.error


def test_the_certify_time_limit_comes_from_the_config_file(site_factory, tmp_path):
    settings, store, _tpns = site_factory("seconds = 2")
    assert settings.certify_seconds == 2.0
    slow = tmp_path / "made" / "slow.yaml"  # minutes for the pure-Python YAML parser
    slow.parent.mkdir(parents=True)
    slow.write_text("meta:\n  instrument: {name: ACS}\n  reftype: BIAS\nbig: ["
                    + ",".join(["1"] * 400_000) + "]\n")
    sid = drop_submission(settings, "jane", [slow], ACS)
    rejected = review.follow(store, sid, timeout=120)
    assert isinstance(rejected, ev.SubmissionRejected), rejected
    assert "certify of slow.yaml exceeded 2 s" in _certified(store, sid)["slow.yaml"].summary
