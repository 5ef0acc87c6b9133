"""Reminders as rows: planned with every appointment change, sent by a tick that claims them.

Every appointment change (WhatsApp, API, calendar import, staff) runs `plan_reminders` in its
own transaction, so the rows are always those of the appointment's current version. The tick
claims due rows and turns each into one outbox message, keyed so that no reminder can be sent
twice; a read reminder with no reply plans one follow-up; a no-show gets one "we missed you".
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import appointment_hooks, handlers, optout, worker
from .config import EXAMPLE_PROFILE
from .conversation import MENU_BOOK
from .db import claim
from .models import Appointment, OutboxMessage, Patient
from .models.appointments import ACTIVE_STATUSES
from .models.reminders import FOLLOWUP, MISSED_YOU, SPECIAL_KINDS, THANK_YOU, Reminder
from .outbox import Outbox
from .profile import Profile, load_profile
from .whapi.bodies import Button

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
BATCH = 200
MAX_ATTEMPTS = 5
# A reminder the tick finds later than this after its due time was held up (the worker was
# down): it goes out only if the start is still `late_send_min_before` away.
LATE_AFTER = timedelta(minutes=5)
OPEN = ("pending", "processing")
NO_PATIENT = "the appointment has no patient"
PURPOSE = {FOLLOWUP: "followup", MISSED_YOU: "post_visit", THANK_YOU: "post_visit"}


def iso_z(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, as the API shows instants."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@lru_cache(maxsize=1)
def _shipped_profile() -> Profile:
    return load_profile(EXAMPLE_PROFILE)


def _profile(session: Session) -> Profile:
    """The clinic profile of the runtime that opened this session (the shipped one otherwise)."""
    runtime = session.info.get("runtime")
    return runtime.profile if runtime is not None else _shipped_profile()


def _insert_ignore(session: Session, rows: list[dict]) -> None:
    """Insert reminder rows; one that exists for (appointment, version, kind) is kept as is."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(
        insert(Reminder)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["appointment_id", "appointment_version", "kind"])
    )


def _row(appt: Appointment, kind: str, due_at: datetime, now: datetime, **kw) -> dict:
    return dict(
        appointment_id=appt.id,
        appointment_version=appt.version,
        kind=kind,
        due_at=due_at,
        status=kw.pop("status", "pending"),
        attempts=0,
        created_at=now,
        **kw,
    )


def _close(row: Reminder, status: str, reason: str) -> None:
    row.status, row.reason, row.locked_until = status, reason, None


# ------------------------------------------------------------------ the plan


def plan_reminders(session: Session, appt: Appointment, now: datetime, change: str) -> None:
    """Keep an appointment's rows in step with it, inside the transaction that changed it."""
    profile = _profile(session)
    rows = list(
        session.execute(select(Reminder).where(Reminder.appointment_id == appt.id)).scalars()
    )
    for row in rows:
        if row.status in OPEN and row.appointment_version != appt.version:
            _close(row, "voided", f"the appointment moved (version {appt.version})")
    if appt.status in ACTIVE_STATUSES:
        _plan_offsets(session, profile, appt, now, change, rows)
        if appt.status == "confirmed":
            for row in rows:
                if row.kind == FOLLOWUP and row.status in OPEN:
                    _close(row, "voided", "the appointment was confirmed")
        return
    for row in rows:
        if row.status in OPEN and row.kind not in (MISSED_YOU, THANK_YOU):
            _close(row, "voided", f"the appointment is {appt.status}")
    if appt.status == "no_show":
        _insert_ignore(session, [_row(appt, MISSED_YOU, now, now)])
    elif appt.status == "completed" and profile.thank_you_after_visit:
        _insert_ignore(session, [_row(appt, THANK_YOU, now, now)])


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
            new.append(_row(appt, label, due, now, status=status, reason=skip))
        elif (
            row.status == "voided"
            or (row.status == "skipped" and row.reason == NO_PATIENT)
            or (row.status == "pending" and row.due_at != due)
        ):
            # Brought back (un-cancelled, a patient found), or moved without a version bump.
            row.due_at, row.attempts = due, 0
            _close(row, "skipped" if skip else "pending", skip)
    _insert_ignore(session, new)


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
        if msg is not None and msg.status in ("dead", "failed", "cancelled"):
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


# ------------------------------------------------------------------ the messages


def _name_part(patient: Patient) -> str:
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
    text = profile.text(key, lang, name_part=_name_part(patient), **values)
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


# ------------------------------------------------------------------ the tick


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
        _close(row, "failed", f"gave up after {row.attempts - 1} attempts: {why}")
        return
    appt = appts[row.appointment_id]
    patient = patients.get(appt.patient_id)
    verdict = _why_not(profile, row, appt, patient, now, due)
    if verdict:
        _close(row, *verdict)
        return
    key = outbox_key(row)
    if _enqueue(s, profile, row, appt, patient, now, key):
        row.status, row.reason = "sent", None
    elif row.kind == FOLLOWUP:
        _close(row, "skipped", "a follow-up was already sent for this appointment")
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
        text = profile.text("reminder_missed_you", lang, name_part=_name_part(patient))
        book = Button(MENU_BOOK, profile.text("reminder_book_again", lang))
        return outbox.buttons(patient, text, [book], key=key, purpose=purpose)
    if row.kind == THANK_YOU:
        text = profile.text("reminder_thank_you", lang, name_part=_name_part(patient))
        return outbox.text(patient, text, key=key, purpose=purpose)
    body_key = "reminder_followup_body" if row.kind == FOLLOWUP else "reminder_body"
    text = appointment_text(profile, patient, appt, body_key)
    buttons = appointment_buttons(profile, lang, appt)
    return outbox.buttons(patient, text, buttons, key=key, purpose=purpose)


# ------------------------------------------------------------------ read without reply


def on_status(ctx, event, outcome: str) -> None:
    """A reminder read (or delivered, if the profile says so) starts the follow-up clock."""
    if outcome not in ("delivered", "read", "played"):
        return
    msg = ctx.session.execute(
        select(OutboxMessage).where(OutboxMessage.provider_message_id == event.event_id)
    ).scalar_one_or_none()
    if msg is None or not msg.idempotency_key.startswith("reminder:"):
        return
    row = ctx.session.execute(
        select(Reminder).where(Reminder.outbox_key == msg.idempotency_key)
    ).scalar_one_or_none()
    if row is None:
        return
    row.read_at = row.read_at or msg.read_at
    if outcome == "delivered" and not ctx.profile.followup_on_delivered:
        return
    started = (msg.read_at if outcome != "delivered" else msg.delivered_at) or ctx.now
    appt = ctx.session.get(Appointment, row.appointment_id)
    if appt.version != row.appointment_version or appt.status != "booked":
        return
    due = started + ctx.profile.noshow_followup_after
    fields = {"quiet_since": row.sent_at or started}
    if due >= appt.starts_at:
        fields.update(status="skipped", reason="it would fall after the start")
    _insert_ignore(ctx.session, [_row(appt, FOLLOWUP, due, ctx.now, **fields)])


# ------------------------------------------------------------------ STOP


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


appointment_hooks.APPOINTMENT_HOOKS.append(plan_reminders)
handlers.STATUS_HOOKS.append(on_status)
optout.OPT_OUT_HOOKS.append(void_for_patient)
optout.OPT_IN_HOOKS.append(replan_for_patient)
worker.TICKS.append(("reminders", send_due))
