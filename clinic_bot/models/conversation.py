"""What the conversation leaves for reception to see: alerts raised from a patient's chat."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, String, UniqueConstraint
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


class WaitlistEntry(Base):
    """A patient waiting for a time in a day range (and part of day) that had none free."""

    __tablename__ = "waitlist_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    practitioner_id: Mapped[str | None] = mapped_column(String(100))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    part: Mapped[str | None] = mapped_column(String(20))  # morning | afternoon | evening
    # waiting -> booked (through an offer or otherwise) | left (joined again, opted out)
    status: Mapped[str] = mapped_column(String(20), default="waiting")
    # Slot instants (ISO) this entry was offered or had free when joining: never offered again.
    passed: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_waitlist_entry_waiting", "status", "created_at"),)


class WaitlistOffer(Base):
    """One freed slot offered to one waiting patient; the first Book it wins the slot."""

    __tablename__ = "waitlist_offer"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entry.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    slot_at: Mapped[datetime] = mapped_column(UTCDateTime)
    practitioner_id: Mapped[str] = mapped_column(String(100))
    # open -> accepted | declined | expired | gone (someone else booked it first)
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    entry: Mapped[WaitlistEntry] = relationship()

    __table_args__ = (
        # The same slot is offered to an entry once, even with two workers ticking.
        UniqueConstraint("entry_id", "slot_at", name="uq_waitlist_offer_entry_slot"),
        Index("ix_waitlist_offer_open", "status", "expires_at"),
        Index("ix_waitlist_offer_slot", "slot_at", "practitioner_id"),
    )
