"""Agent tokens: an API token may belong to one node's agent instead of a tenant or the admins.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OWNER_0002 = "admin OR tenant_id IS NOT NULL"
OWNER_0003 = "admin OR tenant_id IS NOT NULL OR node IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("node", sa.String(255), nullable=True))
        batch.drop_constraint(op.f("ck_api_tokens_owner"), type_="check")
        batch.create_check_constraint(op.f("ck_api_tokens_owner"), OWNER_0003)
        batch.create_index(op.f("ix_api_tokens_node"), ["node"])


def downgrade() -> None:
    op.execute("DELETE FROM api_tokens WHERE node IS NOT NULL")  # 0002 has no such owner
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index(op.f("ix_api_tokens_node"))
        batch.drop_constraint(op.f("ck_api_tokens_owner"), type_="check")
        batch.create_check_constraint(op.f("ck_api_tokens_owner"), OWNER_0002)
        batch.drop_column("node")
