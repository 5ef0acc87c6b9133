"""What a reminder says: allow-listed fields only (first name, date, time, clinic, address)."""

from __future__ import annotations

from datetime import datetime

from clinic_bot.domain.messages import Button
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient
from clinic_bot.models.reminders import FOLLOWUP, MISSED_YOU, THANK_YOU, Reminder


def name_part(patient: Patient) -> str:
    name = (patient.name or patient.push_name or "").split()
    return f" {name[0]}" if name else ""


def when_values(profile: Profile, lang: str | None, instant: datetime) -> dict[str, str]:
    """Weekday, date and time of an instant in the clinic's zone, in the patient's language."""
    local = instant.astimezone(profile.timezone)
    weekdays = profile.text("reminder_weekdays", lang).split(",")
    months = profile.text("reminder_months", lang).split(",")
    date = profile.text(
        "reminder_date", lang, day=local.day, month=months[local.month - 1].strip(), year=local.year
    )
    return {"weekday": weekdays[local.weekday()].strip(), "date": date, "time": f"{local:%H:%M}"}


def appointment_text(profile: Profile, patient: Patient, appt: Appointment, key: str) -> str:
    """A reminder-style text with the allow-listed fields only: never reason, notes or title."""
    lang = patient.language
    values = when_values(profile, lang, appt.starts_at)
    text = profile.text(key, lang, name_part=name_part(patient), **values)
    if profile.address:
        text += "\n" + profile.text("reminder_where", lang, address=profile.address)
    return text


def appointment_buttons(profile: Profile, lang: str | None, appt: Appointment) -> list[Button]:
    """Confirm / Reschedule / Cancel, tied to this version of the appointment."""
    base = f"appt:{appt.id}:{appt.version}"
    return [
        Button(f"{base}:confirm", profile.text("reminder_confirm", lang)),
        Button(f"{base}:reschedule", profile.text("reminder_reschedule", lang)),
        Button(f"{base}:cancel", profile.text("reminder_cancel", lang)),
    ]


def outbox_key(row: Reminder) -> str:
    """The outbox idempotency key: the last guard against a second send."""
    if row.kind == FOLLOWUP:
        return f"followup:{row.appointment_id}"  # at most one per appointment, any version
    if row.kind in (MISSED_YOU, THANK_YOU):
        return f"visit:{row.appointment_id}:{row.kind}"
    return f"reminder:{row.appointment_id}:{row.appointment_version}:{row.kind}"
