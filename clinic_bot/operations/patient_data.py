"""Data-subject requests: export everything about one patient, or erase it.

An erasure removes every row that names the patient or carries their words (patient, messages
both ways, webhook payloads, reactions, appointments and their reminders, broadcast recipient
rows, the sandbox chat) and keeps one audit entry with counts and a keyed hash of the phone.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import Text, cast, delete, select
from sqlalchemy.orm import Session

from clinic_bot.domain.phones import normalize_phone
from clinic_bot.models import (
    Appointment,
    AuditEntry,
    InboxEvent,
    OutboxMessage,
    Patient,
    Reaction,
    Reminder,
    SandboxMessage,
    StaffNote,
)
from clinic_bot.models.broadcasts import BroadcastRecipient
from clinic_bot.models.calendar import ImportedEvent
from clinic_bot.models.conversation import StaffAlert, WaitlistEntry, WaitlistOffer
from clinic_bot.models.statuses import ACTIVE_APPOINTMENT


def chat_id_for(phone: str) -> str:
    """The WhatsApp chat id of a stored phone (CONTRACT §7)."""
    return f"{phone}@s.whatsapp.net"


class PatientDataError(Exception):
    """A request that cannot be carried out (unknown patient, a future appointment)."""


def subject_hash(phone: str, key: str) -> str:
    """A keyed hash of the phone: recognises a repeated request without keeping the number."""
    return hmac.new(key.encode(), phone.encode(), hashlib.sha256).hexdigest()[:32]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _inbox_rows(session: Session, phone: str) -> list[InboxEvent]:
    """Webhook items from or to this patient (found in the payload, checked field by field)."""
    chat = chat_id_for(phone)
    candidates = session.scalars(
        select(InboxEvent).where(cast(InboxEvent.payload, Text).contains(phone))
    ).all()
    mine = []
    for row in candidates:
        p = row.payload or {}
        ids = {p.get("chat_id"), p.get("from"), p.get("recipient_id"), p.get("id")}
        ids |= {str(p.get("chat_id", "")).split("@")[0]}
        if chat in ids or phone in ids or phone in str(p.get("chat_id", "")):
            mine.append(row)
    return mine


def _find(session: Session, phone: str) -> Patient:
    patient = session.scalars(select(Patient).where(Patient.phone == phone)).first()
    if patient is None:
        raise PatientDataError("no patient with this phone number")
    return patient


def export_patient(session: Session, raw_phone: str) -> dict:
    """Everything stored about one patient, as one JSON-ready document."""
    phone = normalize_phone(raw_phone)
    p = _find(session, phone)
    appointments = session.scalars(
        select(Appointment).where(Appointment.patient_id == p.id).order_by(Appointment.starts_at)
    ).all()
    appt_ids = [a.id for a in appointments]
    reminders = (
        session.scalars(select(Reminder).where(Reminder.appointment_id.in_(appt_ids))).all()
        if appt_ids
        else []
    )
    outbox = session.scalars(
        select(OutboxMessage)
        .where((OutboxMessage.patient_id == p.id) | (OutboxMessage.chat_id == chat_id_for(phone)))
        .order_by(OutboxMessage.id)
    ).all()
    return {
        "patient": {
            "phone": p.phone,
            "name": p.name,
            "push_name": p.push_name,
            "language": p.language,
            "opted_out": p.opted_out,
            "opted_out_at": _iso(p.opted_out_at),
            "opted_in_at": _iso(p.opted_in_at),
            "state": p.state,
            "intake": p.intake or {},
            "created_at": _iso(p.created_at),
            "last_inbound_at": _iso(p.last_inbound_at),
        },
        "appointments": [
            {
                "id": a.id,
                "starts_at": _iso(a.starts_at),
                "ends_at": _iso(a.ends_at),
                "status": a.status,
                "source": a.source,
                "service_id": a.service_id,
                "practitioner_id": a.practitioner_id,
                "notes": a.notes,
            }
            for a in appointments
        ],
        "reminders": [
            {
                "appointment_id": r.appointment_id,
                "kind": r.kind,
                "due_at": _iso(r.due_at),
                "status": r.status,
                "sent_at": _iso(r.sent_at),
            }
            for r in reminders
        ],
        "messages_received": [
            {"at": _iso(r.received_at), "kind": r.kind, "payload": r.payload}
            for r in _inbox_rows(session, phone)
        ],
        "messages_sent": [
            {"at": _iso(m.created_at), "status": m.status, "purpose": m.purpose, "body": m.body}
            for m in outbox
        ],
        "staff_notes": [
            {"at": _iso(n.created_at), "author": n.author, "text": n.text}
            for n in session.scalars(
                select(StaffNote).where(StaffNote.patient_id == p.id).order_by(StaffNote.id)
            )
        ],
        "staff_alerts": [
            {
                "at": _iso(a.created_at),
                "kind": a.kind,
                "appointment_id": a.appointment_id,
                "seen_at": _iso(a.seen_at),
            }
            for a in session.scalars(
                select(StaffAlert).where(StaffAlert.patient_id == p.id).order_by(StaffAlert.id)
            )
        ],  # fmt: skip
        "waitlist": [
            {
                "joined_at": _iso(w.created_at),
                "service_id": w.service_id,
                "practitioner_id": w.practitioner_id,
                "first_day": w.first_day.isoformat(),
                "last_day": w.last_day.isoformat(),
                "part": w.part,
                "status": w.status,
            }
            for w in session.scalars(
                select(WaitlistEntry)
                .where(WaitlistEntry.patient_id == p.id)
                .order_by(WaitlistEntry.id)
            )
        ],  # fmt: skip
    }


def erase_patient(
    session: Session, raw_phone: str, now: datetime, *, key: str, force: bool = False
) -> dict:
    """Remove everything about one patient, keep one audit entry; refuse while a visit is ahead."""
    phone = normalize_phone(raw_phone)
    p = _find(session, phone)
    upcoming = session.scalars(
        select(Appointment.starts_at).where(
            Appointment.patient_id == p.id,
            Appointment.starts_at > now,
            Appointment.status.in_(ACTIVE_APPOINTMENT),
        )
    ).first()
    if upcoming is not None and not force:
        raise PatientDataError(
            f"the patient has an appointment on {upcoming.isoformat()}; cancel it first "
            "or erase with --force"
        )
    chat = chat_id_for(phone)
    appt_ids = list(session.scalars(select(Appointment.id).where(Appointment.patient_id == p.id)))
    counts = {}

    def gone(name: str, stmt) -> None:
        counts[name] = session.execute(stmt).rowcount or 0

    inbox_ids = [r.id for r in _inbox_rows(session, phone)]
    outbox_ids = list(
        session.scalars(
            select(OutboxMessage.id).where(
                (OutboxMessage.patient_id == p.id) | (OutboxMessage.chat_id == chat)
            )
        )
    )
    provider_ids = [
        m
        for m in session.scalars(
            select(OutboxMessage.provider_message_id).where(OutboxMessage.id.in_(outbox_ids))
        )
        if m
    ]
    # Reactions and statuses about our messages to this patient name their message ids.
    if provider_ids:
        inbox_ids += [
            r.id
            for r in session.scalars(select(InboxEvent).where(InboxEvent.kind == "statuses"))
            if (r.payload or {}).get("id") in provider_ids
        ]
    gone("inbox_events", delete(InboxEvent).where(InboxEvent.id.in_(set(inbox_ids))))
    gone(
        "reactions",
        delete(Reaction).where(
            (Reaction.patient_id == p.id) | Reaction.target_message_id.in_(provider_ids)
        ),
    )
    gone(
        "broadcast_recipients",
        delete(BroadcastRecipient).where(BroadcastRecipient.patient_id == p.id),
    )
    # Rows that point at the patient or their visits go before them (foreign keys).
    alert_about = StaffAlert.patient_id == p.id
    if appt_ids:
        alert_about = alert_about | StaffAlert.appointment_id.in_(appt_ids)
    gone("staff_alerts", delete(StaffAlert).where(alert_about))
    gone("waitlist_offers", delete(WaitlistOffer).where(WaitlistOffer.patient_id == p.id))
    gone("waitlist_entries", delete(WaitlistEntry).where(WaitlistEntry.patient_id == p.id))
    if appt_ids:
        gone("reminders", delete(Reminder).where(Reminder.appointment_id.in_(appt_ids)))
        session.execute(delete(ImportedEvent).where(ImportedEvent.appointment_id.in_(appt_ids)))
    gone("appointments", delete(Appointment).where(Appointment.id.in_(appt_ids)))
    gone("outbox_messages", delete(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids)))
    gone("sandbox_messages", delete(SandboxMessage).where(SandboxMessage.phone == phone))
    gone("staff_notes", delete(StaffNote).where(StaffNote.patient_id == p.id))
    patient_id = p.id
    session.expunge(p)
    gone("patients", delete(Patient).where(Patient.id == patient_id))
    session.add(
        AuditEntry(
            at=now,
            action="patient_erase",
            target=f"patient:{patient_id}:{subject_hash(phone, key)}",
            detail={"forced": bool(force and upcoming is not None), **counts},
        )
    )
    return {"patient_id": patient_id, **counts}
