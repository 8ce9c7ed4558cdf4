"""Fairness: a tenant's priority is the most its jobs may ask for (max_priority); admission limits
(queued jobs, stored bytes, in-flight and queued deployment requests); a fair-share weight and its
decayed usage; each job's stored bytes.

Columns are added and renamed in place, never by rebuilding a table: SQLite's batch mode copies a
table, and dropping the old tenants or jobs table would cascade to the tokens, jobs and placements
that refer to it (foreign keys stay on inside the migration's transaction).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The pool's defaults (models.DEFAULT_*), which the tenants that exist when this runs get too
LIMITS = (
    ("max_queued_jobs", sa.Integer(), "1000"),
    ("max_stored_bytes", sa.BigInteger(), str(10 << 30)),
    ("max_inflight_requests", sa.Integer(), "8"),
    ("max_queued_requests", sa.Integer(), "32"),
)


def upgrade() -> None:
    op.execute("ALTER TABLE tenants RENAME COLUMN priority TO max_priority")
    for name, kind, default in LIMITS:
        op.add_column("tenants", sa.Column(name, kind, nullable=True, server_default=default))
    op.add_column("tenants", sa.Column("weight", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("tenants", sa.Column("usage_seconds", sa.Float(), nullable=False, server_default="0"))
    op.add_column("tenants", sa.Column("usage_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", recreate="never") as batch:
        batch.drop_column("stored_bytes")
    with op.batch_alter_table("tenants", recreate="never") as batch:
        for name in ("usage_at", "usage_seconds", "weight", *(name for name, _, _ in reversed(LIMITS))):
            batch.drop_column(name)
    op.execute("ALTER TABLE tenants RENAME COLUMN max_priority TO priority")
