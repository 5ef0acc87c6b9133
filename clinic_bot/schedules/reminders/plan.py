"""Keep each appointment's reminder rows in step with it, inside the transaction that changed it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clinic_bot.core.db import insert_ignore
from clinic_bot.core.runtime import runtime_of
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.reminders import FOLLOWUP, MISSED_YOU, THANK_YOU, Reminder
from clinic_bot.models.statuses import ReminderStatus

LEASE = timedelta(minutes=2)
BATCH = 200
MAX_ATTEMPTS = 5
# A reminder the tick finds later than this after its due time was held up (the worker was
# down): it goes out only if the start is still `late_send_min_before` away.
LATE_AFTER = timedelta(minutes=5)
OPEN = (ReminderStatus.PENDING, ReminderStatus.PROCESSING)
NO_PATIENT = "the appointment has no patient"
PURPOSE = {FOLLOWUP: "followup", MISSED_YOU: "post_visit", THANK_YOU: "post_visit"}


def insert_reminders(session: Session, rows: list[dict]) -> None:
    """Insert reminder rows; one that exists for (appointment, version, kind) is kept as is."""
    insert_ignore(
        session,
        Reminder,
        rows,
        key=("appointment_id", "appointment_version", "kind"),
        returning=None,
    )


def reminder_row(appt: Appointment, kind: str, due_at: datetime, now: datetime, **kw) -> dict:
    return dict(
        appointment_id=appt.id,
        appointment_version=appt.version,
        kind=kind,
        due_at=due_at,
        status=kw.pop("status", "pending"),
        reason=kw.pop("reason", None),  # every row has the same keys: one executemany
        attempts=0,
        created_at=now,
        **kw,
    )


def close(row: Reminder, status: str, reason: str) -> None:
    row.status, row.reason, row.locked_until = status, reason, None


def plan_reminders(session: Session, appt: Appointment, now: datetime, change: str) -> None:
    """Keep an appointment's rows in step with it, inside the transaction that changed it."""
    profile = runtime_of(session).profile
    rows = list(
        session.execute(select(Reminder).where(Reminder.appointment_id == appt.id)).scalars()
    )
    for row in rows:
        if row.status in OPEN and row.appointment_version != appt.version:
            close(row, "voided", f"the appointment moved (version {appt.version})")
    if appt.status in ACTIVE_STATUSES:
        _plan_offsets(session, profile, appt, now, change, rows)
        if appt.status == "confirmed":
            for row in rows:
                if row.kind == FOLLOWUP and row.status in OPEN:
                    close(row, "voided", "the appointment was confirmed")
        return
    for row in rows:
        if row.status in OPEN and row.kind not in (MISSED_YOU, THANK_YOU):
            close(row, "voided", f"the appointment is {appt.status}")
    if appt.status == "no_show":
        insert_reminders(session, [reminder_row(appt, MISSED_YOU, now, now)])
    elif appt.status == "completed" and profile.thank_you_after_visit:
        insert_reminders(session, [reminder_row(appt, THANK_YOU, now, now)])


def plan_created_reminders(session: Session, appts: list[Appointment], now: datetime) -> None:
    """`plan_reminders(…, "created")` for many new appointments (no rows yet), in one insert."""
    profile = runtime_of(session).profile
    new = []
    for appt in appts:
        if appt.status not in ACTIVE_STATUSES:
            continue
        for label, offset in profile.reminder_offsets:
            due = appt.starts_at - offset
            if appt.patient_id is None:
                skip = NO_PATIENT
            else:
                skip = f"booked less than {label} before the start" if due <= now else None
            status = "skipped" if skip else "pending"
            new.append(reminder_row(appt, label, due, now, status=status, reason=skip))
    for chunk in range(0, len(new), 5000):
        insert_reminders(session, new[chunk : chunk + 5000])


def _plan_offsets(
    session: Session,
    profile: Profile,
    appt: Appointment,
    now: datetime,
    change: str,
    rows: list[Reminder],
) -> None:
    current = {r.kind: r for r in rows if r.appointment_version == appt.version}
    verb = "moved" if change == "moved" else "booked"
    new = []
    for label, offset in profile.reminder_offsets:
        # Real elapsed time before the start instant: DST cannot shift it.
        due = appt.starts_at - offset
        if appt.patient_id is None:  # an imported event nobody could be tied to (yet)
            skip = NO_PATIENT
        else:
            skip = f"{verb} less than {label} before the start" if due <= now else None
        row = current.get(label)
        if row is None:
            status = "skipped" if skip else "pending"
            new.append(reminder_row(appt, label, due, now, status=status, reason=skip))
        elif (
            row.status == "voided"
            or (row.status == "skipped" and row.reason == NO_PATIENT)
            or (row.status == "pending" and row.due_at != due)
        ):
            # Brought back (un-cancelled, a patient found), or moved without a version bump.
            row.due_at, row.attempts = due, 0
            close(row, "skipped" if skip else "pending", skip)
    insert_reminders(session, new)


def void_for_patient(session: Session, patient: Patient, now: datetime) -> None:
    """An opted-out patient's pending reminders and follow-ups are voided."""
    session.execute(
        update(Reminder)
        .where(
            Reminder.status == "pending",
            Reminder.appointment_id.in_(
                select(Appointment.id).where(Appointment.patient_id == patient.id)
            ),
        )
        .values(status="voided", reason="the patient opted out")
        .execution_options(synchronize_session=False)
    )


def replan_for_patient(session: Session, patient: Patient, now: datetime) -> None:
    """A patient who opts in again gets reminders for their visits still ahead."""
    appts = session.execute(
        select(Appointment).where(
            Appointment.patient_id == patient.id,
            Appointment.status.in_(ACTIVE_STATUSES),
            Appointment.starts_at > now,
        )
    ).scalars()
    for appt in appts:
        plan_reminders(session, appt, now, "status")
