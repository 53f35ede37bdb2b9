"""Operations: the email outbox, worker-side metric counters, request ids of operations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:21:58.300580
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_counters",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("labels", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", name=op.f("pk_ops_counters")),
    )
    op.create_table(
        "outbox_emails",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("dedupe_key", sa.String(length=120), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("sent_at", db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_emails")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_emails_dedupe_key")),
    )
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_emails_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_emails_instance_id"), ["instance_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_emails_user_id"), ["user_id"], unique=False)

    op.create_table(
        "operation_requests",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("at", db.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_operation_requests_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_operation_requests")),
    )


def downgrade() -> None:
    op.drop_table("operation_requests")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_emails_user_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_emails_instance_id"))
        batch_op.drop_index("ix_outbox_emails_due")

    op.drop_table("outbox_emails")
    op.drop_table("ops_counters")
