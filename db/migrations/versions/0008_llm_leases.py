"""LLM leases: tokens a proxy process holds against an owner's monthly quota

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 11:00:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_leases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", db.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_llm_leases_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_leases")),
    )
    op.create_index(op.f("ix_llm_leases_user_id"), "llm_leases", ["user_id"])


def downgrade() -> None:
    op.drop_table("llm_leases")
