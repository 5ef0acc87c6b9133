"""Appointments, and the per-practitioner lock row that makes double booking impossible."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.models.core import Patient, utcnow
from clinic_bot.models.statuses import ACTIVE_APPOINTMENT, AppointmentSource, AppointmentStatus

ACTIVE_STATUSES = ACTIVE_APPOINTMENT
STATUSES = tuple(AppointmentStatus)
SOURCES = tuple(AppointmentSource)


class Appointment(Base):
    """A visit: a patient, an instant range in UTC, a status and where it came from."""

    __tablename__ = "appointment"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    service_id: Mapped[str | None] = mapped_column(String(100))
    practitioner_id: Mapped[str | None] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="booked")
    source: Mapped[str] = mapped_column(String(20), default="whatsapp")
    # Goes up on every move, so reminder rows and outbox keys of the old time are told apart.
    version: Mapped[int] = mapped_column(Integer, default=1)
    external_uid: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)  # imported SUMMARY; never sent to patients
    notes: Mapped[str | None] = mapped_column(Text)  # staff-only; never sent to patients
    # The patient's reason for this visit (per-visit intake); staff-only, never in reminders.
    visit_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patient: Mapped[Patient | None] = relationship()

    __table_args__ = (
        Index("ix_appointment_practitioner_time", "practitioner_id", "starts_at"),
        Index("ix_appointment_time", "starts_at"),
        # A patient's upcoming appointments ("My appointments", the API's patient filter).
        Index("ix_appointment_patient_time", "patient_id", "starts_at"),
        # Overlap checks assume no appointment ends before it starts.
        CheckConstraint("ends_at >= starts_at", name="ck_appointment_ends_not_before_start"),
    )


class PractitionerLock(Base):
    """One row per practitioner, locked (FOR UPDATE) while an overlap check and insert run."""

    __tablename__ = "practitioner_lock"

    practitioner_id: Mapped[str] = mapped_column(String(100), primary_key=True)
