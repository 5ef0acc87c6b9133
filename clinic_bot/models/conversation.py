"""What the conversation leaves for reception to see: alerts raised from a patient's chat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import Patient, utcnow

# running_late: the patient said they will be late (with the appointment);
# handoff_ended: the patient left a handoff (typed MENU) before reception answered.
ALERT_KINDS = ("running_late", "handoff_ended")


class StaffAlert(Base):
    """One thing reception should look at; `seen_at` is set when a staff member dismisses it."""

    __tablename__ = "staff_alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"))
    kind: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patient: Mapped[Patient] = relationship()

    __table_args__ = (Index("ix_staff_alert_open", "seen_at", "created_at"),)
