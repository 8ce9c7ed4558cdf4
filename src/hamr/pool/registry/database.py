"""Engines and migrations: SQLite (embedded, WAL) or PostgreSQL, always migrated to head on open."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
WRITE = {"hamr_begin": "BEGIN IMMEDIATE"}  # execution options of write transactions (SQLite)
MIGRATION_LOCK_ID = 0x68616D72  # "hamr": the PostgreSQL advisory lock migrations hold
_alembic_lock = threading.Lock()  # alembic's command API keeps module-global state: one at a time per process


def create_registry_engine(url: str | URL) -> Engine:
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; writers take the lock up front.

    pysqlite's own transaction handling is turned off so that SQLAlchemy emits BEGIN itself:
    a write transaction starts with BEGIN IMMEDIATE, so two writers queue on the busy timeout
    instead of one failing with "database is locked" when it upgrades a read lock.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get("hamr_begin", "BEGIN"))


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic Config for the packaged migrations; with `engine`, the migrations run on it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`. Safe when several processes open one fresh database at once: the
    migration runs in one transaction holding the database's write lock (SQLite) or an advisory
    lock (PostgreSQL), and alembic reads the current revision after taking it."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with _alembic_lock:
        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with _alembic_lock:
        command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
