"""calendar sync: busy-block links and content hashes on imported events, uploads, feed tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00
"""

import sqlalchemy as sa
from alembic import op

import clinic_bot.core.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("imported_event", schema=None) as batch_op:
        batch_op.alter_column("appointment_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("busy_block_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            "fk_imported_event_busy_block", "busy_block", ["busy_block_id"], ["id"],
            ondelete="CASCADE",
        )  # fmt: skip
    op.create_table(
        "calendar_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("staff_email", sa.String(length=320), nullable=True),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("practitioner_id", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_calendar_import_created", "calendar_import", ["created_at"])
    op.create_table(
        "calendar_feed",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=100), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", clinic_bot.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("calendar_feed")
    op.drop_index("ix_calendar_import_created", table_name="calendar_import")
    op.drop_table("calendar_import")
    with op.batch_alter_table("imported_event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_imported_event_busy_block", type_="foreignkey")
        batch_op.drop_column("content_hash")
        batch_op.drop_column("busy_block_id")
        batch_op.alter_column("appointment_id", existing_type=sa.Integer(), nullable=False)
