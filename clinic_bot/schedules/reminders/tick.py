"""The reminder tick: claim due rows, send each once or skip it with its reason."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clinic_bot.core.db import claim
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.messages import Button
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, Patient
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.reminders import FOLLOWUP, MISSED_YOU, SPECIAL_KINDS, THANK_YOU, Reminder
from clinic_bot.reactions.conversation import MENU_BOOK
from clinic_bot.schedules.reminders.messages import (
    appointment_buttons,
    appointment_text,
    name_part,
    outbox_key,
)
from clinic_bot.schedules.reminders.plan import (
    BATCH,
    LATE_AFTER,
    LEASE,
    MAX_ATTEMPTS,
    NO_PATIENT,
    OPEN,
    PURPOSE,
    close,
)

log = logging.getLogger(__name__)


def send_due(runtime) -> int:
    """Tick: claim due rows and turn each into one outbox message or a skip with its reason."""
    total = 0
    while True:
        now = runtime.clock()
        if not _anything_due(runtime.db, now):
            break
        ids = claim(
            runtime.db,
            Reminder,
            now=now,
            lease=LEASE,
            limit=BATCH,
            order_by=[Reminder.due_at, Reminder.id],
        )
        if ids:
            _fire_claimed(runtime, ids, now)
        total += len(ids)
        if len(ids) < BATCH:
            break
    if total:
        log.info("reminder tick: %d rows handled", total)
    return total


def _anything_due(db, now: datetime) -> bool:
    """A cheap look first: two index-only lookups on the (status, due_at) index.

    The claim's OR of "due" and "lease run out" can make a planner with table statistics
    (SQLite after ANALYZE) scan the table; an idle tick must cost next to nothing.
    """
    with db.ReadSession() as s:
        due = select(Reminder.id).where(Reminder.status == "pending", Reminder.due_at <= now)
        # Claimed rows are few and short-lived: any of them sends us to the claim, which
        # checks their lease (a range on locked_until would not be index-only).
        stale = select(Reminder.id).where(Reminder.status == "processing")
        return any(s.execute(q.limit(1)).first() for q in (due, stale))


def _fire_claimed(runtime, ids: list[int], now: datetime) -> None:
    """Send a claimed batch in one transaction; if it fails, row by row, so one bad row
    cannot hold up the others (its lease brings it back, and MAX_ATTEMPTS ends it)."""
    try:
        with runtime.db.transaction() as s:
            _fire(s, runtime.profile, ids, now)
        return
    except Exception:
        log.exception("a batch of %d reminders failed; trying them one by one", len(ids))
    for row_id in ids:
        try:
            with runtime.db.transaction() as s:
                _fire(s, runtime.profile, [row_id], now)
        except Exception as exc:
            log.exception("reminder %s failed; its lease will bring it back", row_id)
            with runtime.db.transaction() as s:
                s.execute(
                    update(Reminder)
                    .where(Reminder.id == row_id, Reminder.status == "processing")
                    .values(reason=f"last attempt failed: {exc!r}"[:500])
                    .execution_options(synchronize_session=False)
                )


def _fire(s: Session, profile: Profile, ids: list[int], now: datetime) -> None:
    # Lock the appointments first (in id order, so two workers never deadlock): a move or a
    # cancel committing meanwhile is then seen in the rows loaded below.
    appts = {
        a.id: a
        for a in s.execute(
            select(Appointment)
            .where(Appointment.id.in_(select(Reminder.appointment_id).where(Reminder.id.in_(ids))))
            .order_by(Appointment.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalars()
    }
    rows = (
        s.execute(
            select(Reminder)
            .where(Reminder.id.in_(ids))
            .order_by(Reminder.due_at, Reminder.id)
            .execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )
    patient_ids = {a.patient_id for a in appts.values() if a.patient_id}
    patients = {
        p.id: p for p in s.execute(select(Patient).where(Patient.id.in_(patient_ids))).scalars()
    }
    due = _due_offsets(s, list(appts), now)
    # The rows' own changes are flushed together at commit, not before every outbox insert.
    with s.no_autoflush:
        for row in rows:
            _fire_one(s, profile, row, appts, patients, due, now)


def _fire_one(s, profile, row, appts, patients, due, now) -> None:
    if row.status != "processing":
        return
    if row.attempts > MAX_ATTEMPTS:
        why = row.reason or "the worker stopped while sending it"
        close(row, "failed", f"gave up after {row.attempts - 1} attempts: {why}")
        return
    appt = appts[row.appointment_id]
    patient = patients.get(appt.patient_id)
    verdict = _why_not(profile, row, appt, patient, now, due)
    if verdict:
        close(row, *verdict)
        return
    key = outbox_key(row)
    if _enqueue(s, profile, row, appt, patient, now, key):
        row.status, row.reason = "sent", None
    elif row.kind == FOLLOWUP:
        close(row, "skipped", "a follow-up was already sent for this appointment")
        return
    else:
        row.status, row.reason = "sent", "already queued"
    row.sent_at, row.outbox_key, row.locked_until = now, key, None


def _due_offsets(s: Session, appt_ids: list[int], now: datetime) -> dict:
    """(appointment id, version) -> [(due_at, kind)] of its open, due offset reminders."""
    out: dict[tuple[int, int], list] = {}
    if not appt_ids:
        return out
    for appt_id, version, kind, due_at in s.execute(
        select(
            Reminder.appointment_id, Reminder.appointment_version, Reminder.kind, Reminder.due_at
        ).where(
            Reminder.appointment_id.in_(appt_ids),
            Reminder.kind.not_in(SPECIAL_KINDS),
            Reminder.status.in_(OPEN),
            Reminder.due_at <= now,
        )
    ):
        out.setdefault((appt_id, version), []).append((due_at, kind))
    return out


def _why_not(profile, row, appt, patient, now, due: dict) -> tuple[str, str] | None:
    """(status, reason) when the row must not be sent now, else None."""
    if patient is None:
        return "voided", NO_PATIENT
    if patient.opted_out:
        return "voided", "the patient opted out"
    if row.kind == MISSED_YOU:
        return None if appt.status == "no_show" else ("voided", f"the visit is {appt.status}")
    if row.kind == THANK_YOU:
        return None if appt.status == "completed" else ("voided", f"the visit is {appt.status}")
    if row.appointment_version != appt.version:
        return "voided", "the appointment moved"
    if appt.status not in ACTIVE_STATUSES:
        return "voided", f"the appointment is {appt.status}"
    if now >= appt.starts_at:
        return "skipped", "the appointment had already started"
    if row.kind == FOLLOWUP:
        if appt.status != "booked":
            return "voided", f"the appointment is {appt.status}"
        wrote = patient.last_inbound_at
        if wrote and row.quiet_since and wrote > row.quiet_since:
            return "skipped", "the patient wrote after the reminder"
        return None
    late = now - row.due_at
    if late > LATE_AFTER and appt.starts_at - now < profile.late_send_min_before:
        return "skipped", (
            f"found {_span(late)} late (worker down), less than "
            f"{_span(profile.late_send_min_before)} before the start"
        )
    later = [kind for due_at, kind in due.get((appt.id, appt.version), []) if due_at > row.due_at]
    if later:
        return "skipped", f"superseded by the {later[0]} reminder, due as well"
    return None


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _enqueue(s, profile, row, appt, patient, now, key) -> bool:
    lang = patient.language
    outbox = Outbox(s, now, key)
    purpose = PURPOSE.get(row.kind, "reminder")
    if row.kind == MISSED_YOU:
        text = profile.text("reminder_missed_you", lang, name_part=name_part(patient))
        book = Button(MENU_BOOK, profile.text("reminder_book_again", lang))
        return outbox.buttons(patient, text, [book], key=key, purpose=purpose)
    if row.kind == THANK_YOU:
        text = profile.text("reminder_thank_you", lang, name_part=name_part(patient))
        return outbox.text(patient, text, key=key, purpose=purpose)
    body_key = "reminder_followup_body" if row.kind == FOLLOWUP else "reminder_body"
    text = appointment_text(profile, patient, appt, body_key)
    buttons = appointment_buttons(profile, lang, appt)
    return outbox.buttons(patient, text, buttons, key=key, purpose=purpose)
