"""busy_block: time not bookable over WhatsApp (imported busy events, staff blocks)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:15:00
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "busy_block",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practitioner_id", sa.String(length=100), nullable=True),
        sa.Column("starts_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("external_uid", sa.Text(), nullable=True),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("busy_block", schema=None) as batch_op:
        batch_op.create_index("ix_busy_block_time", ["starts_at", "ends_at"], unique=False)
        batch_op.create_index("ix_busy_block_uid", ["source", "external_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("busy_block", schema=None) as batch_op:
        batch_op.drop_index("ix_busy_block_uid")
        batch_op.drop_index("ix_busy_block_time")
    op.drop_table("busy_block")
