"""Rollouts: an instance's desired OpenClaw image and pin, rollouts and their members, the digest
of an instance's infrastructure config

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("desired_image", sa.String(255)))
        table.add_column(sa.Column("image_pinned", sa.Boolean(), nullable=False, server_default="0"))
        table.add_column(sa.Column("rollout_id", sa.String(64)))
        table.add_column(sa.Column("infrastructure_digest", sa.String(64)))
    # What runs now is what should run: a changed OPENCLAW_IMAGE no longer moves a running instance.
    op.execute("UPDATE instances SET desired_image = openclaw_image WHERE openclaw_image IS NOT NULL")
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=False),
        sa.Column("cohort", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("allow_replace", sa.Boolean(), nullable=False),
        sa.Column("canary", sa.Integer(), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("soak_seconds", sa.Integer(), nullable=False),
        sa.Column("failure_budget", sa.Double(), nullable=False),
        sa.Column("gate_seconds", sa.Integer(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(), nullable=False),
        sa.Column("started_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("finished_at", db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts") as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_status"), ["status"], unique=False)
    op.create_table(
        "rollout_instances",
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("stack_name", sa.String(length=100), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("planned", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("previous_image", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", db.models.UTCDateTime(), nullable=True),
        sa.Column("finished_at", db.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_instances_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_rollout_instances_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "instance_id", name=op.f("pk_rollout_instances")),
    )
    with op.batch_alter_table("rollout_instances") as batch_op:
        batch_op.create_index("ix_rollout_instances_state", ["rollout_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_table("rollout_instances")
    op.drop_table("rollouts")
    with op.batch_alter_table("instances") as table:
        for column in ("infrastructure_digest", "rollout_id", "image_pinned", "desired_image"):
            table.drop_column(column)
