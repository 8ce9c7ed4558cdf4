"""`Registry`, the pool's state, and `open_registry`, which opens (and migrates) one."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from hamr.pool.registry.core import RegistryCore
from hamr.pool.registry.database import create_registry_engine, upgrade
from hamr.pool.registry.deployments import Deployments
from hamr.pool.registry.executables import Executables
from hamr.pool.registry.fleet import Fleet
from hamr.pool.registry.jobs import Jobs
from hamr.pool.registry.tenancy import Tenancy

DB_NAME = "pool.db"


class Registry(Fleet, Tenancy, Executables, Jobs, Deployments, RegistryCore):
    """A thin API over one database and one blob store.

    Every method that reads or changes a tenant's objects takes the tenant first: a tenant id,
    or ANY_TENANT for the scheduler, node agents and admins. Another tenant's object reads as
    missing (None, an empty list, or NotFound).
    """


def keep_private(data_dir: Path, url: URL) -> None:
    """The data directory 0700 and an SQLite database 0600, made so before anything is written in them:
    they hold every tenant's data and the tokens' hashes. SQLite gives its -wal and -shm files the
    database's mode; files a pool made before this are narrowed too."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    database = Path(url.database)
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite takes an empty file for a new database
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        if path.exists():
            path.chmod(0o600)


def default_data_dir() -> Path:
    from hamr.settings import settings

    return settings().pool_dir


def open_registry(url: str | URL | None = None, data_dir: str | Path | None = None, migrate: bool = True) -> Registry:
    """Open the registry at `url` (default: SQLite in WAL mode at <data_dir>/pool.db), migrated to head.

    Blobs (executables, job inputs and outputs) live in <data_dir>/blobs. `data_dir` defaults to
    $HAMR_POOL_DIR, else ~/.local/share/hamr/pool. Only the pool's user may read either (keep_private).
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    url = make_url(url) if url is not None else URL.create("sqlite", database=str(data_dir / DB_NAME))
    keep_private(data_dir, url)
    engine = create_registry_engine(url)
    try:
        if migrate:
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Registry(engine, data_dir)
