"""Each tier holds only its own secrets: instance credentials from their own roots (which ones
still derive from SECRET_KEY), and the workers' checks of the clouds for the web app to show

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:10:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New rows derive from CREDENTIALS_ROOT / GATEWAY_TOKEN_ROOT; every existing credential was
    # an HMAC of SECRET_KEY and stays one until it is rotated.
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("llm_key_legacy", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("gateway_token_legacy", sa.Boolean(), nullable=False, server_default="0"))
    op.execute("UPDATE instances SET llm_key_legacy = true, gateway_token_legacy = true")
    op.create_table(
        "platform_checks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("action", sa.String(length=500), nullable=True),
        sa.Column("checked_at", db.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_platform_checks")),
    )


def downgrade() -> None:
    op.drop_table("platform_checks")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("gateway_token_legacy")
        batch.drop_column("llm_key_legacy")
