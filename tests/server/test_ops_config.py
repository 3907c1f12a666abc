"""The sample production configuration in ops/ loads and says what it claims."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from crds_events.config import load_settings

OPS = Path(__file__).resolve().parents[2] / "ops"


def test_sample_config_loads(tmp_path):
    shutil.copy(OPS / "crds-events.toml", tmp_path / "crds-events.toml")
    settings = load_settings(tmp_path, environ={})
    assert settings.observatory == "jwst"
    assert settings.watcher_mode == "polling"  # the delivery directory is on NFS/GPFS
    assert settings.log_format == "json"
    assert settings.lock_timeout == 4 * 3600
    assert settings.db_path == tmp_path / "events.db"  # the log stays on a local disk
    assert settings.recipients_dpas and settings.recipients_redcat and settings.recipients_devs


def test_systemd_units_run_the_real_entry_points():
    server = (OPS / "systemd" / "crds-events.service").read_text()
    web = (OPS / "systemd" / "crds-events-web.service").read_text()
    assert "crds-events serve" in server
    assert "crds_events.web.gunicorn_app:application" in web
    assert "gunicorn.conf.py" in web
    namespace = runpy.run_path(str(OPS / "gunicorn.conf.py"))  # what gunicorn does with it
    assert namespace["worker_class"] == "gthread" and namespace["threads"] >= 2


def test_the_two_server_unit_runs_serve_on_the_shared_database():
    unit = (OPS / "systemd" / "crds-events@.service").read_text()
    assert "crds-events serve" in unit and "--port 801%i" in unit
    assert "EnvironmentFile=/etc/crds-events/database.env" in unit
    assert "CRDS_EVENTS_DATABASE_URL=postgresql://" in unit
    assert "Restart=always" in unit
