"""The image an instance's server is made from: a golden snapshot's id or the stock image, chosen
at its first converge and kept (another image would replace the server)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 18:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("server_image", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("server_image")
