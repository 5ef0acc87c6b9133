"""reliability: an index that lets patient messages be claimed before bulk events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:40:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The inbox claim looks for due rows of the urgent kinds (messages, calls, channel state)
    # first; under a flood of chats/labels/statuses rows this finds them without a scan.
    op.create_index("ix_inbox_kind_ready", "inbox_event", ["status", "kind", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_kind_ready", table_name="inbox_event")
