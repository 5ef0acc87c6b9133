"""STOP / START: opting out is honoured before any bot logic and voids what is pending."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from .models import Patient

OPT_OUT_WORDS = {"STOP", "STOPP", "PARAR", "BAJA", "ARRÊT", "ARRET", "UNSUBSCRIBE"}
OPT_IN_WORDS = {"START"}

# Other areas (reminders, broadcasts) register what to void when a patient opts out, and what
# to bring back when they opt in again.
OPT_OUT_HOOKS: list[Callable[[Session, Patient, datetime], None]] = []
OPT_IN_HOOKS: list[Callable[[Session, Patient, datetime], None]] = []


def _keyword(text: str) -> str:
    word = unicodedata.normalize("NFC", text).strip().strip(".!¡¿?").strip()
    return word.upper()


def is_opt_out(text: str) -> bool:
    """True when the whole message is an opt-out keyword (case-insensitive, trimmed)."""
    return _keyword(text) in OPT_OUT_WORDS


def is_opt_in(text: str) -> bool:
    """True when the whole message is START."""
    return _keyword(text) in OPT_IN_WORDS


def opt_out(session: Session, patient: Patient, message_id: str, now: datetime) -> bool:
    """Opt the patient out, voiding pending work; False when they were already out."""
    from .outbox import cancel_pending_for

    if patient.opted_out:
        return False
    patient.opted_out = True
    patient.opted_out_at = now
    patient.opt_out_message_id = message_id
    patient.state, patient.state_data = "idle", {}
    patient.handoff_since = None
    session.flush()
    cancel_pending_for(session, patient.id, "patient opted out")
    for hook in OPT_OUT_HOOKS:
        hook(session, patient, now)
    return True


def opt_in(session: Session, patient: Patient, message_id: str, now: datetime) -> bool:
    """Opt the patient back in (their booked visits get reminders again); False when not out."""
    if not patient.opted_out:
        return False
    patient.opted_out = False
    patient.opted_in_at = now
    patient.opt_in_message_id = message_id
    session.flush()
    for hook in OPT_IN_HOOKS:
        hook(session, patient, now)
    return True
