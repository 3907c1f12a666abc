"""Settings: defaults < crds-events.toml < CRDS_EVENTS_* < options; errors name key+source."""

from __future__ import annotations

import pytest

from crds_events.config import ConfigError, load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root


def write_toml(root, text):
    root.mkdir(parents=True, exist_ok=True)
    (root / "crds-events.toml").write_text(text)


def test_defaults_live_under_the_root(tmp_path):
    s = load_settings(tmp_path, environ={})
    assert s.root == tmp_path.resolve() and s.observatory == "hst"
    assert s.db_path == s.root / "events.db"
    assert (s.ingest, s.delivery, s.catalogs, s.store) == (
        s.root / "ingest", s.root / "delivery", s.root / "catalogs", s.root / "store")
    assert s.lock_timeout == 4 * 3600 and s.watcher_mode == "native"
    assert s.substitutions is None and s.recipients_dpas == ()


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).root == (tmp_path / "var").resolve()
    env = {"CRDS_EVENTS_ROOT": str(tmp_path / "elsewhere")}
    assert load_settings(environ=env).root == (tmp_path / "elsewhere").resolve()


def test_precedence_file_env_option(tmp_path):
    write_toml(tmp_path, """
observatory = "jwst"
lock_timeout = "30m"
[smtp]
host = "mail.example.org"
port = 587
starttls = true
[recipients]
dpas = ["dpas@example.org"]
[watcher]
mode = "polling"
interval = 2
[paths]
ingest = "/srv/ingest"
delivery = "out/delivery"
""")
    s = load_settings(tmp_path, environ={})
    assert (s.observatory, s.lock_timeout, s.smtp_host, s.smtp_port, s.smtp_starttls) == (
        "jwst", 1800.0, "mail.example.org", 587, True)
    assert s.recipients_dpas == ("dpas@example.org",)
    assert (s.watcher_mode, s.watcher_interval) == ("polling", 2.0)
    assert s.ingest.as_posix() == "/srv/ingest"
    assert s.delivery == tmp_path.resolve() / "out" / "delivery"

    env = {"CRDS_EVENTS_OBSERVATORY": "roman", "CRDS_EVENTS_SMTP_PORT": "2525",
           "CRDS_EVENTS_RECIPIENTS_DPAS": "a@x, b@y", "CRDS_EVENTS_SMTP_STARTTLS": "no"}
    s = load_settings(tmp_path, environ=env)
    assert (s.observatory, s.smtp_port, s.smtp_starttls) == ("roman", 2525, False)
    assert s.recipients_dpas == ("a@x", "b@y")

    s = load_settings(tmp_path, {"observatory": "hst", "smtp_port": None}, environ=env)
    assert s.observatory == "hst" and s.smtp_port == 2525  # None options do not override


@pytest.mark.parametrize(
    ("toml", "env", "options", "message"),
    [
        ('observatory = "tess"', {}, {}, r"'observatory' from .*crds-events.toml: must be one of"),
        ("", {"CRDS_EVENTS_OBSERVATORY": "tess"}, {}, r"'observatory' from \$CRDS_EVENTS_OBS"),
        ("", {}, {"observatory": "tess"}, r"'observatory' from option"),
        ("smtp_port = 'x'", {}, {}, r"'smtp_port' from .*toml: expected an integer"),
        ("", {"CRDS_EVENTS_SMTP_PORT": "99999"}, {}, r"'smtp_port' from \$CRDS_EVENTS_SMTP_PORT"),
        ("", {"CRDS_EVENTS_LOCK_TIMEOUT": "soon"}, {}, r"'lock_timeout' .*e\.g\. 30s"),
        ("", {"CRDS_EVENTS_WATCHER_MODE": "inotify"}, {}, r"'watcher_mode' .*native or polling"),
        ("", {"CRDS_EVENTS_SMTP_STARTTLS": "maybe"}, {}, r"'smtp_starttls' .*true or false"),
        ("recipients_devs = [1]", {}, {}, r"'recipients_devs' .*list of strings"),
        ("colour = 'blue'", {}, {}, r"crds-events.toml: unknown setting 'colour'"),
        ("[smtp]\nhots = 'x'", {}, {}, r"unknown setting 'smtp_hots'"),
        ("observatory = ", {}, {}, r"crds-events.toml: not valid TOML"),
        ("", {}, {"colour": "blue"}, r"unknown setting 'colour' from option"),
        ("[stream]\nlimit = 0", {}, {}, r"'stream_limit' from .*toml: must be at least 1"),
        ("", {"CRDS_EVENTS_STREAM_LIMIT_PER_USER": "-2"}, {},
         r"'stream_limit_per_user' from \$CRDS_EVENTS_STREAM_LIMIT_PER_USER: must be at least 1"),
        ('tpn_dir = "no-such-dir"', {}, {}, r"'tpn_dir' from .*toml: not a directory"),
        ("[certify]\nmemory = 'lots'", {}, {}, r"'certify_memory' .*e\.g\. 512M, 2G"),
        ("[certify]\nmemory = '1M'", {}, {}, r"'certify_memory' .*must be at least 64M"),
        ("", {"CRDS_EVENTS_CERTIFY_SECONDS": "0"}, {},
         r"'certify_seconds' from \$CRDS_EVENTS_CERTIFY_SECONDS: must be positive"),
    ],
)
def test_errors_name_the_setting_and_source(tmp_path, toml, env, options, message):
    write_toml(tmp_path, toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, options, environ=env)


def test_the_stream_budget_settings(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    defaults = load_settings(root, environ={})
    assert (defaults.stream_limit, defaults.stream_limit_per_user) == (4, 2)
    (root / "crds-events.toml").write_text("[stream]\nlimit = 10\nlimit_per_user = 3\n")
    settings = load_settings(root, environ={"CRDS_EVENTS_STREAM_LIMIT": "6"})
    assert (settings.stream_limit, settings.stream_limit_per_user) == (6, 3)


def test_the_site_tpn_directory_and_the_certify_limits(tmp_path):
    root = tmp_path / "root"
    (root / "tpns").mkdir(parents=True)
    defaults = load_settings(root, environ={})
    assert defaults.tpn_dir is None
    assert (defaults.certify_seconds, defaults.certify_memory) == (60.0, 2 << 30)
    (root / "crds-events.toml").write_text('tpn_dir = "tpns"\n[certify]\nseconds = "2m"\n'
                                           'memory = "512M"\n')
    settings = load_settings(root, environ={})
    assert settings.tpn_dir == root.resolve() / "tpns"  # relative to the root
    assert (settings.certify_seconds, settings.certify_memory) == (120.0, 512 << 20)
    elsewhere = tmp_path / "site-tpns"
    elsewhere.mkdir()
    env = {"CRDS_EVENTS_TPN_DIR": str(elsewhere), "CRDS_EVENTS_CERTIFY_MEMORY": "1.5GiB"}
    settings = load_settings(root, environ=env)
    assert settings.tpn_dir == elsewhere and settings.certify_memory == 3 << 29


def test_the_release_pipeline_is_named_by_repro_pipeline_or_the_older_pipeline_key(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert load_settings(root, environ={}).release_pipeline == "pipeline"
    (root / "crds-events.toml").write_text('pipeline_key = "ops-old"\n')
    assert load_settings(root, environ={}).release_pipeline == "ops-old"  # still read
    (root / "crds-events.toml").write_text('pipeline_key = "ops-old"\n[repro]\n'
                                           'pipeline = "ops"\n')
    assert load_settings(root, environ={}).release_pipeline == "ops"
    env = {"CRDS_EVENTS_REPRO_PIPELINE": "ops-env"}
    assert load_settings(root, environ=env).release_pipeline == "ops-env"


def test_init_root_creates_layout_and_is_idempotent(tmp_path):
    root = tmp_path / "srv"
    settings = load_settings(root, {"observatory": "jwst"}, environ={})
    created = init_root(settings)
    for path in (root, settings.ingest, settings.delivery, settings.catalogs, settings.store,
                 settings.config_path, settings.db_path):
        assert path.exists() and path in created
    store = SQLiteEventStore(settings.db_path)
    try:
        assert store.head() == 0
    finally:
        store.close()
    # the written config records the observatory: a later load without options agrees
    assert load_settings(root, environ={}).observatory == "jwst"
    before = settings.config_path.read_text()
    assert init_root(load_settings(root, environ={})) == []
    assert settings.config_path.read_text() == before
    with pytest.raises(ConfigError, match="set up for observatory 'jwst', not 'hst'"):
        init_root(load_settings(root, {"observatory": "hst"}, environ={}))
