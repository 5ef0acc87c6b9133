"""Reception's side of a handoff: staff replies, staff-started handoffs and resolving."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.models import Patient


def _outbox(session: Session, now: datetime) -> Outbox:
    return Outbox(session, now, f"staff:{uuid.uuid4().hex}")


def take_over(patient: Patient, now: datetime) -> None:
    """Reception takes the chat (or keeps it): the bot stays quiet; expiry counts from now."""
    if patient.handoff_since is None:
        patient.handoff_since = now
        patient.state, patient.state_data = "handoff", {}
    patient.handoff_staff_at = now


def staff_message(
    session: Session, profile, patient: Patient, text: str, now: datetime, signature: str = ""
) -> bool:
    """Queue a staff reply (signed when `signature` is given); the chat stays with reception."""
    take_over(patient, now)
    patient.state_data = {**(patient.state_data or {}), "staff_at": now.isoformat()}
    if signature:
        text = f"{text}\n\n— {signature}"
    return _outbox(session, now).text(patient, text, purpose="staff")


def resolve(session: Session, profile, patient: Patient, now: datetime) -> bool:
    """End the handoff: the bot answers again; False when there was none."""
    if patient.handoff_since is None:
        return False
    patient.handoff_since = None
    patient.handoff_staff_at = None
    patient.state, patient.state_data = "idle", {}
    lang = patient.language or profile.language
    text = profile.text("conv_handoff_resolved", lang)
    _outbox(session, now).text(patient, text, purpose="staff")
    return True
