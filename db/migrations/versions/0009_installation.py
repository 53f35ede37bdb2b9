"""The installation's id: a label on every cloud resource, so installations sharing a cloud
project never touch each other's

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:40:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    op.bulk_insert(table, [{"id": f"cd-{secrets.token_hex(6)}"}])


def downgrade() -> None:
    op.drop_table("installation")
