"""Deployments and their replicas; the time each device spent busy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _fk(table: str, column: str, referred: str, ondelete: str | None = None) -> sa.Column:
    name = op.f(f"fk_{table}_{column}_{referred}")
    return sa.Column(
        column, sa.Integer(), sa.ForeignKey(f"{referred}.id", name=name, ondelete=ondelete), nullable=False
    )


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("busy_seconds", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        _fk("deployments", "tenant_id", "tenants", ondelete="CASCADE"),
        _fk("deployments", "executable_id", "executables"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("share", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.CheckConstraint("state IN ('active', 'deleted')", name=op.f("ck_deployments_state")),
        sa.CheckConstraint("replicas >= 0", name=op.f("ck_deployments_replicas")),
        sa.CheckConstraint("share >= 1 AND share <= 1000", name=op.f("ck_deployments_share")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    for column in ("executable_id", "state", "tenant_id"):
        op.create_index(op.f(f"ix_deployments_{column}"), "deployments", [column])
    op.create_table(
        "replicas",
        sa.Column("id", sa.Integer(), nullable=False),
        _fk("replicas", "deployment_id", "deployments", ondelete="CASCADE"),
        _fk("replicas", "device_id", "devices"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.CheckConstraint("state IN ('pending', 'ready', 'stopped', 'failed')", name=op.f("ck_replicas_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    for column in ("deployment_id", "device_id", "state"):
        op.create_index(op.f(f"ix_replicas_{column}"), "replicas", [column])


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_table("deployments")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("busy_seconds")
