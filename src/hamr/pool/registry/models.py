"""The registry's tables (SQLAlchemy 2, typed). Migrations in `migrations/versions/` create them.

Portable on purpose: only types SQLite and PostgreSQL both have (JSON is sqlalchemy.JSON), and
named constraints so Alembic can alter them on either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from hamr.pool.registry.errors import RegistryError
from hamr.pool.registry.states import JOB_STATES, QUEUED

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEFAULT_MAX_QUEUED_JOBS = 1000
DEFAULT_MAX_STORED_BYTES = 10 << 30
DEFAULT_MAX_INFLIGHT_REQUESTS = 8
DEFAULT_MAX_QUEUED_REQUESTS = 32

NODE_UP, NODE_LOST = "up", "lost"
NODE_STATES = (NODE_UP, NODE_LOST)
MISSING = "missing"  # device health when its node's last heartbeat did not report it


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: the registry stores UTC-aware datetimes")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (CheckConstraint(_in("state", NODE_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=NODE_UP)
    last_heartbeat: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(255), unique=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    driver: Mapped[str] = mapped_column(String(64))
    vendor: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    architecture: Mapped[str] = mapped_column(String(255))
    memory_total: Mapped[int] = mapped_column(BigInteger)
    memory_free: Mapped[int | None] = mapped_column(BigInteger)
    compute_units: Mapped[int] = mapped_column(Integer)
    health: Mapped[str] = mapped_column(String(16))
    targets: Mapped[list[str]] = mapped_column(default=list)
    local_id: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    drained: Mapped[bool] = mapped_column(Boolean, default=False)
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time spent running jobs and requests


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    max_devices: Mapped[int | None] = mapped_column(Integer)  # None: no limit
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)  # None: no limit
    max_priority: Mapped[int] = mapped_column(Integer, default=0)  # the highest priority its jobs may ask for
    # Admission (docs/pool.md, "Fairness"); None: no limit. The defaults are the migration's too.
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer, default=DEFAULT_MAX_QUEUED_JOBS)
    max_stored_bytes: Mapped[int | None] = mapped_column(BigInteger, default=DEFAULT_MAX_STORED_BYTES)
    max_inflight_requests: Mapped[int | None] = mapped_column(Integer, default=DEFAULT_MAX_INFLIGHT_REQUESTS)
    max_queued_requests: Mapped[int | None] = mapped_column(Integer, default=DEFAULT_MAX_QUEUED_REQUESTS)
    # Fair share: `weight` against other tenants; `usage_seconds` the device-seconds of its finished
    # attempts, decayed (half-life FAIR_SHARE_HALF_LIFE_S) as of `usage_at`.
    weight: Mapped[int] = mapped_column(Integer, default=1)
    usage_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    usage_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("admin OR tenant_id IS NOT NULL OR node IS NOT NULL", name="owner"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; never the token
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    node: Mapped[str | None] = mapped_column(String(255), index=True)  # an agent token: that node's agent only
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class ExecutableRecord(Base):
    __tablename__ = "executables"
    __table_args__ = (UniqueConstraint("tenant_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    targets: Mapped[list[str]] = mapped_column(default=list)
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(255))  # relative to the blob store root
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        CheckConstraint("n_devices >= 1", name="n_devices"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    executable_id: Mapped[int] = mapped_column(ForeignKey("executables.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # input name -> sha256 of its .npy blob
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # output name -> sha256 of its .npy blob
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times scheduled
    priority: Mapped[int] = mapped_column(Integer, default=0)
    n_devices: Mapped[int] = mapped_column(Integer, default=1)  # > 1: a gang, placed all at once
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # its input and output blobs (max_stored_bytes)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Placement(Base):
    __tablename__ = "placements"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


DEPLOYMENT_ACTIVE, DEPLOYMENT_DELETED = "active", "deleted"
DEPLOYMENT_STATES = (DEPLOYMENT_ACTIVE, DEPLOYMENT_DELETED)
REPLICA_PENDING, REPLICA_READY, REPLICA_STOPPED, REPLICA_FAILED = "pending", "ready", "stopped", "failed"
REPLICA_STATES = (REPLICA_PENDING, REPLICA_READY, REPLICA_STOPPED, REPLICA_FAILED)
LIVE_REPLICA = (REPLICA_PENDING, REPLICA_READY)


class Deployment(Base):
    """N replicas of an executable, kept loaded on devices to serve requests."""

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint(_in("state", DEPLOYMENT_STATES), name="state"),
        CheckConstraint("replicas >= 0", name="replicas"),
        CheckConstraint("share >= 1 AND share <= 1000", name="share"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    executable_id: Mapped[int] = mapped_column(ForeignKey("executables.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    replicas: Mapped[int] = mapped_column(Integer)  # how many the pool keeps live
    share: Mapped[int] = mapped_column(Integer, default=500)  # thousandths of a device each replica reserves
    state: Mapped[str] = mapped_column(String(16), default=DEPLOYMENT_ACTIVE, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Replica(Base):
    """One deployment's executable loaded on one device: pending, ready, then stopped or failed (final)."""

    __tablename__ = "replicas"
    __table_args__ = (CheckConstraint(_in("state", REPLICA_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=REPLICA_PENDING, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was placed there, or why it stopped
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """Append-only: the ORM refuses to update or delete one (see the listeners below)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(Event, "before_update")
@event.listens_for(Event, "before_delete")
def _append_only(mapper, connection, target: Event) -> None:
    raise RegistryError(f"event {target.id} is append-only: events are never changed or deleted")
