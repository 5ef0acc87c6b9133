"""conversation: staff alerts from a chat, a reason for each visit, the waitlist

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("staff_alert", schema=None) as batch_op:
        batch_op.create_index("ix_staff_alert_open", ["seen_at", "created_at"], unique=False)
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visit_reason", sa.Text(), nullable=True))
    op.create_table(
        "waitlist_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.String(length=100), nullable=False),
        sa.Column("practitioner_id", sa.String(length=100), nullable=True),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("part", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("passed", sa.JSON(), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("waitlist_entry", schema=None) as batch_op:
        batch_op.create_index("ix_waitlist_entry_patient_id", ["patient_id"], unique=False)
        batch_op.create_index("ix_waitlist_entry_waiting", ["status", "created_at"], unique=False)
    op.create_table(
        "waitlist_offer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("slot_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("practitioner_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["waitlist_entry.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id", "slot_at", name="uq_waitlist_offer_entry_slot"),
    )
    with op.batch_alter_table("waitlist_offer", schema=None) as batch_op:
        batch_op.create_index("ix_waitlist_offer_open", ["status", "expires_at"], unique=False)
        batch_op.create_index(
            "ix_waitlist_offer_slot", ["slot_at", "practitioner_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("waitlist_offer")
    op.drop_table("waitlist_entry")
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_column("visit_reason")
    with op.batch_alter_table("staff_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_staff_alert_open")
    op.drop_table("staff_alert")
