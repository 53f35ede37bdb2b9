"""The warm pool: booted servers (with volume and firewall) waiting for a new instance to adopt
them, and which member an instance's server came from

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 20:00:00
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_servers",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("server_image", sa.String(length=64), nullable=False),
        sa.Column("openclaw_image", sa.String(length=255), nullable=False),
        sa.Column("config_digest", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("server_id", sa.String(length=32), nullable=True),
        sa.Column("volume_id", sa.String(length=32), nullable=True),
        sa.Column("firewall_id", sa.String(length=32), nullable=True),
        sa.Column("ipv4", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ready_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_pool_servers_fit", "pool_servers", ["status", "tier", "region"])
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("adopted_from", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("adopted_from")
    op.drop_index("ix_pool_servers_fit", table_name="pool_servers")
    op.drop_table("pool_servers")
