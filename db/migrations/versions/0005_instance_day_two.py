"""Day two: what runs on an instance (volume, config hash, OpenClaw image) and its restart count

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("volume_id", sa.String(32)))
        table.add_column(sa.Column("config_hash", sa.String(32)))
        table.add_column(sa.Column("openclaw_image", sa.String(255)))
        table.add_column(sa.Column("restarts", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("llm_key_previous_hash", sa.String(64)))
        table.create_index("ix_instances_llm_key_previous_hash", ["llm_key_previous_hash"])
    # "restart" was the fleet scan's reboot of a server; a restart is now the containers'.
    op.execute("UPDATE instances SET requested_action = 'reboot' WHERE requested_action = 'restart'")


def downgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.drop_index("ix_instances_llm_key_previous_hash")
        for column in ("llm_key_previous_hash", "restarts", "openclaw_image", "config_hash", "volume_id"):
            table.drop_column(column)
