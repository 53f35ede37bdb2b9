"""One active instance per user, as a partial unique index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status != 'destroyed'")


def upgrade() -> None:
    op.create_index(
        "uq_instances_one_active_per_user",
        "instances",
        ["user_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_instances_one_active_per_user", table_name="instances")
