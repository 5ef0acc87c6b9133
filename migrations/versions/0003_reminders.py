"""reminders: reminder rows (one per appointment version and kind), broadcasts and recipients

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 02:07:06.404586
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("audience", sa.String(length=200), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resumed_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.create_index("ix_broadcast_status", ["status"], unique=False)

    op.create_table(
        "broadcast_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outbox_key", sa.String(length=300), nullable=True),
        sa.Column("scheduled_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["broadcast_id"], ["broadcast.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("broadcast_id", "patient_id", name="uq_broadcast_recipient"),
    )
    with op.batch_alter_table("broadcast_recipient", schema=None) as batch_op:
        batch_op.create_index("ix_broadcast_recipient_slot", ["scheduled_at"], unique=False)
        batch_op.create_index(
            "ix_broadcast_recipient_status", ["broadcast_id", "status", "id"], unique=False
        )

    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("appointment_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("due_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("quiet_since", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outbox_key", sa.String(length=300), nullable=True),
        sa.Column("sent_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "appointment_id", "appointment_version", "kind", name="uq_reminder_kind"
        ),
        sa.UniqueConstraint("outbox_key"),
    )
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reminder_appointment", ["appointment_id", "appointment_version"], unique=False
        )
        batch_op.create_index("ix_reminder_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reminder", schema=None) as batch_op:
        batch_op.drop_index("ix_reminder_due")
        batch_op.drop_index("ix_reminder_appointment")

    op.drop_table("reminder")
    with op.batch_alter_table("broadcast_recipient", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcast_recipient_status")
        batch_op.drop_index("ix_broadcast_recipient_slot")

    op.drop_table("broadcast_recipient")
    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcast_status")

    op.drop_table("broadcast")
