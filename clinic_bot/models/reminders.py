"""Planned patient messages about one appointment: reminders, follow-ups, post-visit notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, synonym

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.appointments import Appointment
from clinic_bot.models.core import utcnow

# Kinds that are not an offset label from the profile ("24h", "2h", …).
FOLLOWUP = "noshow_followup"
MISSED_YOU = "missed_you"
THANK_YOU = "thank_you"
SPECIAL_KINDS = (FOLLOWUP, MISSED_YOU, THANK_YOU)


class Reminder(Base):
    """One message planned for one version of an appointment, sent by the reminder tick.

    `kind` is an offset label ("24h") for reminders, or one of SPECIAL_KINDS. A move bumps the
    appointment's version, so rows of the old time are voided and new ones planned beside them.
    """

    __tablename__ = "reminder"

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id", ondelete="CASCADE"))
    appointment_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # pending -> processing -> sent | skipped | voided | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped / voided / failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Follow-ups: the patient must have written nothing since this instant (the reminder's send).
    quiet_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outbox_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # The claim helper reads `next_attempt_at`; a reminder never backs off (retrying a send is
    # the outbox relay's job), so its due instant is that column and the (status, due_at)
    # index serves every tick's query.
    next_attempt_at = synonym("due_at")

    appointment: Mapped[Appointment] = relationship()

    __table_args__ = (
        UniqueConstraint("appointment_id", "appointment_version", "kind", name="uq_reminder_kind"),
        Index("ix_reminder_due", "status", "due_at"),
        Index("ix_reminder_appointment", "appointment_id", "appointment_version"),
    )
