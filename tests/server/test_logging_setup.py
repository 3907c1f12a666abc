"""JSON logs option: one parseable object per line; text stays the default."""

from __future__ import annotations

import io
import json
import logging

import pytest

from crds_events.config import ConfigError, load_settings
from crds_events.server.logging_setup import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_with_extra_fields_and_tracebacks():
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream)
    configure_logging("json", "DEBUG", stream)  # again: still one handler
    log = logging.getLogger("crds_events.test")
    log.info("delivery %s archived", "jwst_0007", extra={"delivery": "jwst_0007", "obj": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "delivery jwst_0007 archived"
    assert first["level"] == "INFO" and first["logger"] == "crds_events.test"
    assert first["delivery"] == "jwst_0007" and first["obj"].startswith("<object")
    assert first["time"].endswith("Z")
    assert "ValueError: boom" in second["exc_info"]


def test_text_format_and_setting(tmp_path, monkeypatch):
    stream = io.StringIO()
    configure_logging("text", "INFO", stream)
    logging.getLogger("x").info("hello")
    assert stream.getvalue().rstrip().endswith("INFO x: hello")
    monkeypatch.setenv("CRDS_EVENTS_LOG_FORMAT", "json")
    assert load_settings(tmp_path).log_format == "json"
    monkeypatch.setenv("CRDS_EVENTS_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="log_format"):
        load_settings(tmp_path)
    with pytest.raises(ValueError, match="log_format"):
        configure_logging("xml")
