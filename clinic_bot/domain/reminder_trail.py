"""The reminder trail of an appointment, as the API and the staff pages show it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.core.clock import iso_z
from clinic_bot.models import Appointment, OutboxMessage
from clinic_bot.models.reminders import SPECIAL_KINDS, Reminder
from clinic_bot.models.statuses import UNDELIVERABLE, DeliveryStatus


def reminders_for(session: Session, appt: Appointment) -> list[dict]:
    """The API's reminder entries for the appointment's current version, earliest first.

    A sent reminder shows its message's fate: when the gateway took it and the patient read
    it, or `failed` when the outbox gave up on it (or it was withdrawn at an opt-out).
    """
    rows = session.execute(
        select(Reminder, OutboxMessage)
        .outerjoin(OutboxMessage, OutboxMessage.idempotency_key == Reminder.outbox_key)
        .where(
            Reminder.appointment_id == appt.id,
            Reminder.appointment_version == appt.version,
            Reminder.kind.not_in(SPECIAL_KINDS),
        )
        .order_by(Reminder.due_at, Reminder.id)
    )
    out = []
    for r, msg in rows:
        status, reason = r.status, r.reason
        if msg is not None and msg.status in (*UNDELIVERABLE, DeliveryStatus.CANCELLED):
            status, reason = "failed", msg.last_error or f"the message is {msg.status}"
        out.append(
            {
                "kind": r.kind,
                "due_at": iso_z(r.due_at),
                "status": status,
                "sent_at": iso_z((msg.sent_at if msg is not None else None) or r.sent_at),
                "read_at": iso_z((msg.read_at if msg is not None else None) or r.read_at),
                "reason": reason,
            }
        )
    return out
