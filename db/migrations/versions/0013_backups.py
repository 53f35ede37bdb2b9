"""Customer backups: one row per backup of an instance's gateway state, and owners' restore and
export requests

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 17:30:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("object_key", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("archive_size", sa.BigInteger(), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("verify_message", sa.Text(), nullable=False),
        sa.Column("verified_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("started_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("expires_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("deleted_at", db.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_backups_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
    )
    op.create_index("ix_backups_instance_started", "backups", ["instance_id", "started_at"])
    op.create_table(
        "backup_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("backup_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("link_expires_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("created_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("started_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("finished_at", db.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_backup_requests_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_requests")),
    )
    op.create_index(op.f("ix_backup_requests_instance_id"), "backup_requests", ["instance_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_backup_requests_instance_id"), table_name="backup_requests")
    op.drop_table("backup_requests")
    op.drop_index("ix_backups_instance_started", table_name="backups")
    op.drop_table("backups")
