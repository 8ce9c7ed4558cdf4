"""What every part of the Registry shares: the engine, its sessions, the blob store and the event log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from hamr.pool.registry.blobs import BlobStore
from hamr.pool.registry.database import WRITE
from hamr.pool.registry.models import Event
from hamr.pool.registry.scope import Scope, scoped


class RegistryCore:
    def __init__(self, engine: Engine, data_dir: str | Path) -> None:
        self.engine = engine
        self.data_dir = Path(data_dir)
        self.blobs = BlobStore(self.data_dir / "blobs")
        # Returned rows stay readable after their session ends (no lazy loads: the models have no relationships).
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(**WRITE), expire_on_commit=False)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back when it raises."""
        with self._writer.begin() as session:
            yield session

    def _one(self, stmt):
        """The first row of a read-only query, or None."""
        with self.reading() as session:
            return session.scalar(stmt)

    def _all(self, stmt) -> list:
        with self.reading() as session:
            return list(session.scalars(stmt))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # The event log: append-only, one row per thing that happened.

    @staticmethod
    def _event(session: Session, kind: str, subject: str, tenant_id: int | None = None, **payload: Any) -> None:
        session.add(Event(kind=kind, subject=subject, tenant_id=tenant_id, payload=payload))

    def record_event(self, kind: str, subject: str, tenant_id: int | None = None, payload: dict | None = None) -> Event:
        with self.writing() as session:
            event = Event(kind=kind, subject=subject, tenant_id=tenant_id, payload=dict(payload or {}))
            session.add(event)
        return event

    def list_events(self, tenant: Scope, kind: str | None = None, after_id: int = 0, limit: int = 1000) -> list[Event]:
        """Events in order; a tenant sees only its own, ANY_TENANT sees the pool's too (tenant None)."""
        stmt = scoped(select(Event), Event.tenant_id, tenant).where(Event.id > after_id)
        if kind is not None:
            stmt = stmt.where(Event.kind == kind)
        return self._all(stmt.order_by(Event.id).limit(limit))
