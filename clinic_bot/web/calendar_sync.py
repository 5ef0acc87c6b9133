"""One calendar import as every entry point runs it (API, staff page, CLI).

The file is read and expanded first, with no transaction open; then one short write
transaction applies the plan, and (when the profile's `notify_on_import` says so) tells the
new appointments' patients through the outbox, like a staff booking would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.adapters.ical.importer import MAX_IMPORT_BYTES, CalendarRefused, apply_plan, prepare
from clinic_bot.core.runtime import Runtime
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient

__all__ = ["MAX_IMPORT_BYTES", "CalendarRefused", "notify_imported", "run_import"]


def _size(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n:,} bytes"


def _when(profile: Profile, lang: str | None, appt: Appointment) -> dict[str, str]:
    local = appt.starts_at.astimezone(profile.timezone)
    weekdays = [w.strip() for w in profile.text("reminder_weekdays", lang).split(",")]
    months = [m.strip() for m in profile.text("reminder_months", lang).split(",")]
    day = profile.text(
        "reminder_date", lang, day=local.day, month=months[local.month - 1], year=local.year
    )
    return {"weekday": weekdays[local.weekday()], "date": day, "time": f"{local:%H:%M}"}


def notify_imported(session: Session, profile: Profile, appointment_ids: list[int], now) -> int:
    """Queue the "booked for you" message for imported appointments; only with notify_on_import.

    Off by default: reception's own calendar entries should not surprise patients.
    """
    if not profile.notify_on_import or not appointment_ids:
        return 0
    sent = 0
    for chunk in range(0, len(appointment_ids), 500):
        ids = appointment_ids[chunk : chunk + 500]
        pairs = session.execute(
            select(Appointment, Patient)
            .join(Patient, Patient.id == Appointment.patient_id)
            .where(Appointment.id.in_(ids))
        ).all()
        for appt, patient in pairs:
            first = (patient.name or patient.push_name or "").split()
            text = profile.text(
                "booking_staff_booked",
                patient.language,
                name_part=f" {first[0]}" if first else "",
                **_when(profile, patient.language, appt),
            )
            outbox = Outbox(session, now, key_prefix=f"ics-booking:{appt.id}:{appt.version}")
            sent += bool(outbox.text(patient, text, purpose="booking"))
    return sent


def run_import(
    runtime: Runtime,
    raw: bytes,
    *,
    mode: str = "merge",
    source: str | None = None,
    practitioner_id: str | None = None,
    dry_run: bool = False,
    max_bytes: int | None = MAX_IMPORT_BYTES,
    progress: Callable[[int, int], None] | None = None,
    details: dict | None = None,
) -> dict:
    """Import `raw`: read it outside any transaction, then apply it in one short one.

    `details`, when given, receives the source name the import used ("source") and the
    seconds spent reading ("read_s", no transaction open) and writing ("write_s").
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise CalendarRefused(f"the file is {_size(len(raw))}; the limit is {_size(max_bytes)}")
    now = runtime.clock()
    started = time.perf_counter()
    plan = prepare(
        runtime.profile, raw, now=now, mode=mode, source=source, practitioner_id=practitioner_id
    )
    read = time.perf_counter()
    with runtime.db.transaction() as s:
        outcome = apply_plan(s, runtime.profile, plan, dry_run=dry_run, progress=progress)
        if not dry_run:
            notify_imported(s, runtime.profile, outcome.created_with_patient, now)
    if details is not None:
        details.update(
            source=plan.source,
            read_s=round(read - started, 3),
            write_s=round(time.perf_counter() - read, 3),
        )
    if not dry_run:
        runtime.waker.wake()  # reminders (and notifications) may be due soon
    return outcome.report
