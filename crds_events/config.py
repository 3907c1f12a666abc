"""Settings: one frozen object, loaded from file, environment and command-line options.

Precedence, lowest first:

1. defaults (everything under the root directory, ``./var`` unless given),
2. ``<root>/crds-events.toml``: top-level keys are setting names; a table groups settings
   by prefix (``[smtp] host = ...`` is ``smtp_host``, ``[paths] ingest = ...`` is
   ``ingest``),
3. environment variables ``CRDS_EVENTS_<SETTING>`` (``CRDS_EVENTS_OBSERVATORY``,
   ``CRDS_EVENTS_SMTP_HOST``, ``CRDS_EVENTS_RECIPIENTS_DPAS=a@x,b@y``, ...),
4. explicit overrides (CLI options).

``CRDS_EVENTS_ROOT`` (or the ``root`` argument) chooses the root, and with it the file.
Relative paths are resolved against the root. Every error names the setting and where its
value came from (``crds-events.toml``, ``$CRDS_EVENTS_...`` or ``option``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crds_events.errors import CrdsEventsError

__all__ = [
    "Settings",
    "ConfigError",
    "load_settings",
    "CONFIG_NAME",
    "OBSERVATORIES",
    "ENV_PREFIX",
]

CONFIG_NAME = "crds-events.toml"
ENV_PREFIX = "CRDS_EVENTS_"
OBSERVATORIES = ("jwst", "hst", "roman")
WATCHER_MODES = ("native", "polling")


class ConfigError(CrdsEventsError, ValueError):
    """A setting with a bad value; the message names the setting and its source."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a crds-events server needs to know. Paths are absolute once loaded."""

    root: Path = Path("var")
    observatory: str = "hst"
    db_path: Path | None = None  # default <root>/events.db
    # where the event log lives: "sqlite:///<path>" (relative to the root; the default is
    # db_path) or "postgresql://user:password@host:port/database" (crds_events.store.postgres)
    database_url: str = ""
    ingest: Path | None = None  # per-user drop directories live below it
    delivery: Path | None = None  # where .cat manifests and file links go for the archive
    catalogs: Path | None = None  # permanent copies of delivered .cat manifests
    store: Path | None = None  # the server's file cache (references, mappings, artifacts)
    maildir: Path | None = None  # e-mails go here when no SMTP host is configured
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_from: str = "crds-events@localhost"
    recipients_redcat: tuple[str, ...] = ()
    recipients_dpas: tuple[str, ...] = ()
    recipients_devs: tuple[str, ...] = ()
    watcher_mode: str = "native"
    watcher_interval: float = 5.0  # seconds between polls (polling mode)
    lock_timeout: float = 4 * 3600.0  # seconds an instrument lock lasts without renewal
    substitutions: Path | None = None  # optional CRDS substitutions file
    # the site's CRDS .tpn directory: certify of submissions checks references with its
    # constraints (and rmap values with its *_ld.tpn) instead of the built-in specs
    tpn_dir: Path | None = None
    # certify of one uploaded file runs in a child process under these limits:
    # seconds of wall clock (and CPU), bytes of address space ("2G", "512M" in the toml)
    certify_seconds: float = 60.0
    certify_memory: int = 2 << 30
    # the NAME of the registered pipeline (`crds-events pipeline add NAME`) whose pushed
    # context releases held reprocessing; "" = ``pipeline_key``, its older name, still read
    repro_pipeline: str = ""
    pipeline_key: str = "pipeline"  # deprecated spelling of repro_pipeline (a name, not a key)
    # seconds held reprocessing may wait for that push before devs are e-mailed
    repro_hold_timeout: float = 24 * 3600.0
    log_format: str = "text"  # text | json (crds_events.server.logging_setup)
    log_level: str = "INFO"
    # the web UI is served over https (behind a TLS proxy): session cookies get Secure
    web_https: bool = False
    # live progress streams (server-sent events) open at once, in all and per user: the web
    # server runs ``stream_limit`` threads on top of its page threads and refuses more
    # streams (429), so streams never hold the threads that serve pages and JSON-RPC
    stream_limit: int = 4
    stream_limit_per_user: int = 2

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def release_pipeline(self) -> str:
        """The pipeline name whose push releases held reprocessing (``repro_pipeline``, or
        ``pipeline_key`` in configurations written before pipelines had keys)."""
        return self.repro_pipeline or self.pipeline_key


_PATH_SETTINGS = ("db_path", "ingest", "delivery", "catalogs", "store", "maildir")
_PATH_DEFAULTS = {
    "db_path": "events.db",
    "ingest": "ingest",
    "delivery": "delivery",
    "catalogs": "catalogs",
    "store": "store",
    "maildir": "maildir",
}
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_SETTINGS = ("certify_memory",)  # ints that may be written as sizes ("2G")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _base_type(name: str) -> type:
    hint = _HINTS[name]
    if isinstance(hint, types.UnionType):  # X | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _convert(name: str, value: Any, source: str) -> Any:
    """Coerce ``value`` (from toml, env text or an option) to the setting's type."""
    kind = _base_type(name)

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"setting {name!r} from {source}: {reason} (got {value!r})")

    if value is None:
        if _FIELDS[name].default is None:
            return None
        raise bad("a value is required")
    if kind is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise bad("expected a path")
        return Path(value).expanduser()
    if kind is str:
        if not isinstance(value, str):
            raise bad("expected a string")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise bad("expected true or false")
    if kind is int:
        if isinstance(value, bool):
            raise bad("expected an integer")
        if name in _SIZE_SETTINGS and isinstance(value, str):
            size = _SIZE.match(value)
            if not size:
                raise bad("expected a size in bytes, or e.g. 512M, 2G")
            return int(float(size.group(1)) * _SIZE_UNITS[size.group(2).lower()])
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad("expected an integer") from None
    if kind is float:
        if isinstance(value, bool):
            raise bad("expected a number")
        if isinstance(value, int | float):
            return float(value)
        match = _DURATION.match(str(value))
        if not match:
            raise bad("expected a number of seconds, or e.g. 30s, 15m, 4h, 1d")
        return float(match.group(1)) * _UNITS[match.group(2)]
    if kind is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise bad("expected a list (or comma-separated text)")
        if not all(isinstance(v, str) for v in items):
            raise bad("expected a list of strings")
        return tuple(v for v in items if v)
    raise AssertionError(f"unhandled setting type for {name}")  # pragma: no cover


def _flatten_toml(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Top-level keys and ``[table] key`` pairs as flat setting names."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                # [paths] holds the directory settings under their own names
                name = sub if key == "paths" else f"{key}_{sub}"
                flat[name] = subvalue
        else:
            flat[key] = value
    return flat


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    flat = _flatten_toml(data, path)
    for name in flat:
        if name not in _FIELDS or name == "root":
            raise ConfigError(f"{path}: unknown setting {name!r}")
    return flat


def _validate(values: dict[str, Any], sources: dict[str, str]) -> None:
    observatory = values["observatory"]
    if observatory not in OBSERVATORIES:
        raise ConfigError(
            f"setting 'observatory' from {sources.get('observatory', 'defaults')}: "
            f"must be one of {', '.join(OBSERVATORIES)} (got {observatory!r})"
        )
    if values["watcher_mode"] not in WATCHER_MODES:
        raise ConfigError(
            f"setting 'watcher_mode' from {sources.get('watcher_mode', 'defaults')}: "
            f"must be native or polling (got {values['watcher_mode']!r})"
        )
    if values.get("log_format", "text") not in ("text", "json"):
        raise ConfigError(
            f"setting 'log_format' from {sources.get('log_format', 'defaults')}: "
            f"must be text or json (got {values['log_format']!r})"
        )
    for name in ("watcher_interval", "lock_timeout"):
        if values[name] <= 0:
            raise ConfigError(f"setting {name!r} from {sources.get(name)}: must be positive")
    for name in ("stream_limit", "stream_limit_per_user"):
        if values[name] < 1:
            raise ConfigError(f"setting {name!r} from {sources.get(name, 'defaults')}: "
                              f"must be at least 1 (got {values[name]!r})")
    if values["certify_seconds"] <= 0:
        raise ConfigError(f"setting 'certify_seconds' from {sources.get('certify_seconds', 'defaults')}: "
                          f"must be positive (got {values['certify_seconds']!r})")
    if values["certify_memory"] < 64 << 20:
        raise ConfigError(f"setting 'certify_memory' from {sources.get('certify_memory', 'defaults')}: "
                          f"must be at least 64M (got {values['certify_memory']!r} bytes)")
    if not 0 < values["smtp_port"] < 65536:
        raise ConfigError(
            f"setting 'smtp_port' from {sources.get('smtp_port')}: not a port number"
        )


def _resolve_database_url(values: dict[str, Any], sources: dict[str, str], root: Path) -> None:
    """``database_url`` made explicit: empty -> ``sqlite:///<db_path>``; an explicit
    ``sqlite:///path`` also sets ``db_path`` (everything on SQLite reads that)."""
    url = values["database_url"].strip()
    if not url:
        values["database_url"] = f"sqlite:///{values['db_path']}"
    elif url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        path = Path(url[len("sqlite:///"):]).expanduser()
        values["db_path"] = path if path.is_absolute() else (root / path).resolve()
        values["database_url"] = f"sqlite:///{values['db_path']}"
    elif not url.startswith(("postgresql://", "postgres://")):
        # only the scheme is shown: the rest may hold a password
        raise ConfigError(
            f"setting 'database_url' from {sources.get('database_url', 'defaults')}: must "
            f"start with sqlite:/// or postgresql:// (got {url.split(':', 1)[0]!r}...)")


def load_settings(
    root: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from defaults < ``<root>/crds-events.toml`` < ``CRDS_EVENTS_*`` < overrides.

    ``root``: the root directory (default ``$CRDS_EVENTS_ROOT``, else ``./var``).
    ``overrides``: setting name -> value, e.g. from CLI options; None values are ignored.
    ``environ``: for tests (default ``os.environ``). The toml file is optional.
    """
    environ = os.environ if environ is None else environ
    if root is None:
        root = environ.get(ENV_PREFIX + "ROOT") or "var"
    root_path = Path(root).expanduser().resolve()
    values: dict[str, Any] = {n: f.default for n, f in _FIELDS.items() if n != "root"}
    sources: dict[str, str] = {}

    config_path = root_path / CONFIG_NAME
    if config_path.is_file():
        source = str(config_path)
        for name, value in read_toml(config_path).items():
            values[name] = _convert(name, value, source)
            sources[name] = source
    for name in _FIELDS:
        if name == "root":
            continue
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _convert(name, environ[env_name], f"${env_name}")
            sources[name] = f"${env_name}"
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in _FIELDS or name == "root":
            raise ConfigError(f"unknown setting {name!r} from option")
        values[name] = _convert(name, value, "option")
        sources[name] = "option"

    _validate(values, sources)
    for name in _PATH_SETTINGS:
        if values[name] is None:
            values[name] = Path(_PATH_DEFAULTS[name])
    for name, value in values.items():
        if isinstance(value, Path) and not value.is_absolute():
            values[name] = (root_path / value).resolve()
    _resolve_database_url(values, sources, root_path)
    if values["tpn_dir"] is not None and not values["tpn_dir"].is_dir():
        # A typo here would silently certify with no constraints at all: refuse to start.
        raise ConfigError(f"setting 'tpn_dir' from {sources.get('tpn_dir')}: not a directory "
                          f"(got {str(values['tpn_dir'])!r})")
    return Settings(root=root_path, **values)


CONFIG_TEMPLATE = """\
# crds-events settings. Every key can also be set with a CRDS_EVENTS_<KEY> environment
# variable (e.g. CRDS_EVENTS_SMTP_HOST), and most with a command-line option.
observatory = "{observatory}"
# lock_timeout = "4h"
# repro_pipeline = "pipeline"   # the registered pipeline whose push releases reprocessing
# repro_hold_timeout = "24h"
# web_https = true        # the web UI is behind https: Secure session cookies
# substitutions = "substitutions.json"
# tpn_dir = "tpns"        # the site's CRDS .tpn files: certify uses them, not the built-in specs

[certify] # each uploaded file is certified in a child process under these limits
# seconds = 60
# memory = "2G"

[paths]   # relative to this directory
# db_path = "events.db"
# database_url = "postgresql://crds:secret@db.example.org/crds"   # the log on PostgreSQL
# ingest = "ingest"
# delivery = "delivery"
# catalogs = "catalogs"
# store = "store"
# maildir = "maildir"

[smtp]    # without a host, e-mails are written to the maildir
# host = "smtp.example.org"
# port = 25
# user = ""
# password = ""
# starttls = false
# from = "crds-events@localhost"

[recipients]
# redcat = ["redcat@example.org"]
# dpas = ["dpas@example.org"]
# devs = []

[watcher]
# mode = "native"     # or "polling" for NFS/GPFS
# interval = 5.0

[stream]  # live progress streams open at once (more are refused with 429)
# limit = 4
# limit_per_user = 2
"""
