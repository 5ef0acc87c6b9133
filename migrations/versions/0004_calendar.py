"""calendar: imported event keys (source, UID[#RECURRENCE-ID]) to appointments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 02:26:11.435431
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imported_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("uid_key", sa.Text(), nullable=False),
        sa.Column("uid", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("import_cancelled", sa.Boolean(), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "uid_key", name="uq_imported_event_key"),
    )
    with op.batch_alter_table("imported_event", schema=None) as batch_op:
        batch_op.create_index("ix_imported_event_appointment", ["appointment_id"], unique=False)
        batch_op.create_index("ix_imported_event_uid", ["source", "uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("imported_event", schema=None) as batch_op:
        batch_op.drop_index("ix_imported_event_uid")
        batch_op.drop_index("ix_imported_event_appointment")

    op.drop_table("imported_event")
