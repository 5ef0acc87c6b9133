"""Patients: found or created by phone; STOP / START honoured before any bot logic."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.core.db import insert_ignore
from clinic_bot.core.runtime import runtime_of
from clinic_bot.models import Patient

OPT_OUT_WORDS = {"STOP", "STOPP", "PARAR", "BAJA", "ARRÊT", "ARRET", "UNSUBSCRIBE"}
OPT_IN_WORDS = {"START"}


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
    if patient.opted_out:
        return False
    patient.opted_out = True
    patient.opted_out_at = now
    patient.opt_out_message_id = message_id
    patient.state, patient.state_data = "idle", {}
    patient.handoff_since = None
    session.flush()
    # What to void (pending sends, reminders, broadcasts) is installed by the bootstrap.
    for hook in runtime_of(session).registry.opt_out_hooks:
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
    for hook in runtime_of(session).registry.opt_in_hooks:
        hook(session, patient, now)
    return True


def get_or_create_patient(session: Session, phone: str, now: datetime) -> Patient:
    """The patient with this phone, created on first contact (race-safe)."""
    insert_ignore(
        session,
        Patient,
        [
            dict(
                phone=phone,
                state="idle",
                state_data={},
                intake={},
                prompt_seq=0,
                opted_out=False,
                created_at=now,
                version=1,
            )
        ],
        key="phone",
    )
    return session.execute(select(Patient).where(Patient.phone == phone)).scalar_one()
