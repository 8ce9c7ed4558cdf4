"""The registry's first schema: nodes, devices, tenants, tokens, executables, jobs, placements, events.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JOB_STATES = ("queued", "scheduled", "running", "succeeded", "failed", "cancelled", "requeued")


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _table(name: str, *columns, indexes: tuple[str, ...] = ()) -> None:
    """A table with an integer primary key `id` and an index on each of `indexes`.

    Constraints and indexes are named as models.NAMING names them.
    """
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    for column in indexes:
        op.create_index(op.f(f"ix_{name}_{column}"), name, [column])


def _fk(table: str, column: str, referred: str, ondelete: str | None = None, nullable: bool = False) -> sa.Column:
    name = op.f(f"fk_{table}_{column}_{referred}")
    return sa.Column(
        column, sa.Integer(), sa.ForeignKey(f"{referred}.id", name=name, ondelete=ondelete), nullable=nullable
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    _table(
        "nodes",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _when("last_heartbeat"),
        _when("created_at"),
        sa.CheckConstraint(_in("state", ("up", "lost")), name=op.f("ck_nodes_state")),
        sa.UniqueConstraint("name", name=op.f("uq_nodes_name")),
    )
    _table(
        "tenants",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=True),
        sa.Column("max_running_jobs", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    _table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        _fk("api_tokens", "tenant_id", "tenants", ondelete="CASCADE", nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        sa.CheckConstraint("admin OR tenant_id IS NOT NULL", name=op.f("ck_api_tokens_owner")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        indexes=("tenant_id",),
    )
    _table(
        "devices",
        sa.Column("uuid", sa.String(255), nullable=False),
        _fk("devices", "node_id", "nodes", ondelete="CASCADE"),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("vendor", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("architecture", sa.String(255), nullable=False),
        sa.Column("memory_total", sa.BigInteger(), nullable=False),
        sa.Column("memory_free", sa.BigInteger(), nullable=True),
        sa.Column("compute_units", sa.Integer(), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("local_id", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _when("last_seen"),
        sa.Column("drained", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("uuid", name=op.f("uq_devices_uuid")),
        indexes=("node_id",),
    )
    _table(
        "events",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        _fk("events", "tenant_id", "tenants", nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _when("created_at"),
        indexes=("kind", "tenant_id"),
    )
    _table(
        "executables",
        _fk("executables", "tenant_id", "tenants", ondelete="CASCADE"),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("tenant_id", "sha256", name=op.f("uq_executables_tenant_id_sha256")),
        indexes=(
            "sha256",
            "tenant_id",
        ),
    )
    _table(
        "jobs",
        _fk("jobs", "tenant_id", "tenants", ondelete="CASCADE"),
        _fk("jobs", "executable_id", "executables"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("n_devices", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.CheckConstraint(_in("state", JOB_STATES), name=op.f("ck_jobs_state")),
        sa.CheckConstraint("n_devices >= 1", name=op.f("ck_jobs_n_devices")),
        indexes=("executable_id", "state", "tenant_id"),
    )
    _table(
        "placements",
        _fk("placements", "job_id", "jobs", ondelete="CASCADE"),
        _fk("placements", "device_id", "devices"),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("created_at"),
        indexes=("device_id", "job_id"),
    )


def downgrade() -> None:
    for table in ("placements", "jobs", "executables", "events", "devices", "api_tokens", "tenants", "nodes"):
        op.drop_table(table)  # drops the table's indexes with it
