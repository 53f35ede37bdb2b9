"""When each account's email was set: an unverified address blocks others for a day at most.
Accounts from before verification keep their addresses as verified: those have been receiving
the platform's mail all along, and an unverified one would be free for anyone to take.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 14:40:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email_set_at", db.models.UTCDateTime(), nullable=True))
    op.execute("UPDATE users SET email_set_at = created_at WHERE email IS NOT NULL")
    op.execute("UPDATE users SET email_verified = true WHERE email IS NOT NULL")


def downgrade() -> None:
    op.drop_column("users", "email_set_at")
