"""Fleet-wide periodic jobs: one fleet scan per period for the whole fleet

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "periodic_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_periodic_runs")),
    )


def downgrade() -> None:
    op.drop_table("periodic_runs")
