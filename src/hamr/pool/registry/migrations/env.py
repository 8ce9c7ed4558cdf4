"""Alembic environment of the pool registry.

Run from code (`hamr.pool.registry.database.upgrade`), which hands over the engine in
`config.attributes["engine"]`; or by the alembic CLI with `sqlalchemy.url` set. `--sql` (offline)
writes the DDL for the configured URL.
"""

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from hamr.pool.registry.database import MIGRATION_LOCK_ID, WRITE
from hamr.pool.registry.models import Base

config = context.config
target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as connection:
        connection.execution_options(**WRITE)  # SQLite: the whole migration holds the write lock
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
            transactional_ddl=True,  # SQLite too: all migrations in one transaction, all or nothing
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":  # one migrating process at a time
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
