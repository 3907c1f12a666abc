"""A root directory made ready for a server: its layout, its config file and an empty log."""

from __future__ import annotations

from pathlib import Path

from crds_events.config import CONFIG_TEMPLATE, ConfigError, Settings, read_toml
from crds_events.store.eventlog import SQLiteEventStore

__all__ = ["init_root"]


def init_root(settings: Settings) -> list[Path]:
    """Create the directory layout, the config file (if missing) and the empty log.

    Running it again is harmless: nothing that exists is changed. Returns what it created.
    """
    if settings.config_path.is_file():
        recorded = read_toml(settings.config_path).get("observatory", settings.observatory)
        if recorded != settings.observatory:
            raise ConfigError(
                f"{settings.config_path}: this root is set up for observatory {recorded!r}, "
                f"not {settings.observatory!r} (one observatory per server)"
            )
    created: list[Path] = []
    dirs = [settings.root, settings.ingest, settings.delivery, settings.catalogs,
            settings.store, settings.maildir, settings.db_path.parent]
    for directory in dirs:
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            created.append(directory)
    if not settings.config_path.exists():
        settings.config_path.write_text(CONFIG_TEMPLATE.format(observatory=settings.observatory))
        created.append(settings.config_path)
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        from crds_events.store.postgres import PostgresEventStore  # psycopg only when used

        PostgresEventStore(settings.database_url).close()  # applies pending migrations
        return created
    if not settings.db_path.exists():
        created.append(settings.db_path)
    SQLiteEventStore(settings.db_path).close()  # applies pending migrations
    return created
