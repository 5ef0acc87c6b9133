"""Paced broadcasts: one text to many patients without getting the clinic's number flagged.

Each recipient is a row. A tick, holding the one pacer row locked (so two workers pace as
one), gives the next recipients send slots `min_interval` + random `jitter` apart, never in
the clinic's quiet hours and never beyond the daily cap, and writes each recipient's outbox
row (key `broadcast:<id>:<patient id>`, not before its slot) in the same transaction that
marks it queued: a restart resumes where it stopped and repeats nobody. A run of gateway
refusals (403/429) pauses the broadcast and says why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from . import handlers, optout, worker
from .models import Appointment, GatewayState, OutboxMessage, Patient
from .models.appointments import ACTIVE_STATUSES
from .models.broadcasts import Broadcast, BroadcastRecipient
from .outbox import enqueue
from .phones import InvalidPhone, normalize_phone
from .profile import Profile
from .whapi import bodies

PACER_KEY = "broadcasts.pacer"
PLAN_BATCH = 200  # recipients given a slot per tick at most
REFUSAL_RUN = 3  # this many refused sends in a row pause the broadcast
REFUSALS = ("HTTP 403", "HTTP 429")
SENT = ("sent", "delivered", "read", "played")
WAITING = ("pending", "sending")
FAILED = ("dead", "failed")


class BroadcastError(ValueError):
    """A broadcast request that cannot be honoured; `code` is the API's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Audience:
    """Who gets a broadcast: listed phones, every opted-in patient, a day's patients."""

    phones: list[str] | None = None
    all_opted_in: bool = False
    appointments_on: date | None = None

    def describe(self) -> str:
        """A short human description, kept on the broadcast for staff."""
        parts = []
        if self.phones:
            parts.append(f"{len(self.phones)} phones")
        if self.all_opted_in:
            parts.append("all opted-in patients")
        if self.appointments_on:
            parts.append(f"appointments on {self.appointments_on.isoformat()}")
        return ", ".join(parts)


def _local_day(profile: Profile, day: date) -> tuple[datetime, datetime]:
    """The UTC instants where a clinic-local day begins and ends."""
    start = datetime.combine(day, time(0), profile.timezone)
    end = datetime.combine(day + timedelta(days=1), time(0), profile.timezone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _recipients(session: Session, profile: Profile, audience: Audience, now) -> list[Patient]:
    found: dict[int, Patient] = {}
    for raw in audience.phones or []:
        try:
            digits = normalize_phone(str(raw))
        except InvalidPhone as exc:
            raise BroadcastError("invalid_phone", f"{raw!r}: {exc}") from None
        patient = handlers.get_or_create_patient(session, digits, now)
        found.setdefault(patient.id, patient)
    if audience.all_opted_in:
        for p in session.execute(select(Patient).where(Patient.opted_out.is_(False))).scalars():
            found.setdefault(p.id, p)
    if audience.appointments_on:
        start, end = _local_day(profile, audience.appointments_on)
        ids = select(Appointment.patient_id).where(
            Appointment.starts_at >= start,
            Appointment.starts_at < end,
            Appointment.status.in_(ACTIVE_STATUSES),
        )
        for p in session.execute(select(Patient).where(Patient.id.in_(ids))).scalars():
            found.setdefault(p.id, p)
    return list(found.values())


def create(
    session: Session,
    profile: Profile,
    *,
    text: str,
    audience: Audience,
    now: datetime,
    created_by: str | None = None,
) -> Broadcast:
    """Store a broadcast and one row per distinct recipient; opted-out ones are skipped."""
    text = text.strip()
    if not text:
        raise BroadcastError("invalid_body", "text must not be empty")
    if len(text) > bodies.TEXT_BODY:
        raise BroadcastError("invalid_body", f"text is longer than {bodies.TEXT_BODY} characters")
    if not (audience.phones or audience.all_opted_in or audience.appointments_on):
        raise BroadcastError("invalid_body", "give patient_phones, all_opted_in or appointments_on")
    patients = _recipients(session, profile, audience, now)
    b = Broadcast(
        text=text,
        status="running",
        audience=audience.describe()[:200],
        total=len(patients),
        created_by=created_by,
        created_at=now,
    )
    session.add(b)
    session.flush()
    session.add_all(
        BroadcastRecipient(
            broadcast_id=b.id,
            patient_id=p.id,
            status="skipped" if p.opted_out else "pending",
            reason="the patient opted out" if p.opted_out else None,
        )
        for p in patients
    )
    if not any(not p.opted_out for p in patients):
        b.status, b.finished_at = "done", now
    session.flush()
    return b


def progress(session: Session, b: Broadcast) -> dict:
    """The API's view: CONTRACT's id/status/total/sent/failed/skipped, and a little more."""
    counts = {k: 0 for k in ("sent", "failed", "skipped", "queued", "pending", "cancelled")}
    rows = session.execute(
        select(BroadcastRecipient.status, OutboxMessage.status, func.count())
        .select_from(BroadcastRecipient)
        .outerjoin(OutboxMessage, OutboxMessage.idempotency_key == BroadcastRecipient.outbox_key)
        .where(BroadcastRecipient.broadcast_id == b.id)
        .group_by(BroadcastRecipient.status, OutboxMessage.status)
    )
    for status, sent_status, n in rows:
        if status != "queued":
            counts[status] = counts.get(status, 0) + n
        elif sent_status in SENT:
            counts["sent"] += n
        elif sent_status in FAILED:
            counts["failed"] += n
        elif sent_status == "cancelled":  # the patient opted out after it was queued
            counts["skipped"] += n
        else:
            counts["queued"] += n
    return {
        "id": b.id,
        "status": b.status,
        "total": b.total,
        **counts,
        "reason": b.status_reason,
        "audience": b.audience,
        "created_at": b.created_at.isoformat().replace("+00:00", "Z"),
    }


# ------------------------------------------------------------------ staff controls


def _release_unsent(session: Session, b: Broadcast) -> int:
    """Take back queued sends the relay has not started, so a pause really stops sending."""
    keys = select(BroadcastRecipient.outbox_key).where(
        BroadcastRecipient.broadcast_id == b.id, BroadcastRecipient.status == "queued"
    )
    released = list(
        session.execute(
            delete(OutboxMessage)
            .where(
                OutboxMessage.idempotency_key.in_(keys),
                OutboxMessage.status == "pending",
                # A timed-out send may have gone out: keep it, so it is never sent twice.
                OutboxMessage.uncertain_since.is_(None),
            )
            .returning(OutboxMessage.idempotency_key)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    if released:
        session.execute(
            update(BroadcastRecipient)
            .where(
                BroadcastRecipient.broadcast_id == b.id,
                BroadcastRecipient.outbox_key.in_(released),
            )
            .values(status="pending", outbox_key=None, scheduled_at=None)
            .execution_options(synchronize_session=False)
        )
    return len(released)


def pause(session: Session, b: Broadcast, reason: str, now: datetime) -> None:
    """Stop sending until resumed; unsent queued messages go back to waiting."""
    if b.status != "running":
        raise BroadcastError("conflict", f"broadcast {b.id} is {b.status}, not running")
    b.status, b.status_reason = "paused", reason
    _release_unsent(session, b)


def resume(session: Session, b: Broadcast, now: datetime) -> None:
    """Carry on where the broadcast stopped; nobody already sent to is sent to again."""
    if b.status != "paused":
        raise BroadcastError("conflict", f"broadcast {b.id} is {b.status}, not paused")
    b.status, b.status_reason, b.resumed_at = "running", None, now


def cancel(session: Session, b: Broadcast, reason: str, now: datetime) -> None:
    """Stop for good: whoever was not sent to yet never will be."""
    if b.status in ("done", "cancelled"):
        raise BroadcastError("conflict", f"broadcast {b.id} is already {b.status}")
    _release_unsent(session, b)
    session.execute(
        update(BroadcastRecipient)
        .where(BroadcastRecipient.broadcast_id == b.id, BroadcastRecipient.status == "pending")
        .values(status="cancelled", reason="the broadcast was cancelled")
        .execution_options(synchronize_session=False)
    )
    b.status, b.status_reason, b.finished_at = "cancelled", reason, now


# ------------------------------------------------------------------ pacing


def in_quiet_hours(profile: Profile, instant: datetime) -> bool:
    """True when `instant` falls in the clinic's quiet hours (which may span midnight)."""
    if profile.quiet_hours is None:
        return False
    start, end = profile.quiet_hours
    local = instant.astimezone(profile.timezone).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def _lock_pacer(session: Session, is_postgres: bool, now: datetime) -> GatewayState:
    """The one pacer row, locked: two workers planning at once would halve the gaps."""
    if is_postgres:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(
        insert(GatewayState)
        .values(key=PACER_KEY, value={}, updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return session.execute(
        select(GatewayState)
        .where(GatewayState.key == PACER_KEY)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _sent_on_day(session: Session, profile: Profile, instant: datetime) -> int:
    start, end = _local_day(profile, instant.astimezone(profile.timezone).date())
    return session.execute(
        select(func.count()).where(
            BroadcastRecipient.scheduled_at >= start, BroadcastRecipient.scheduled_at < end
        )
    ).scalar()


def _refusal_run(session: Session, b: Broadcast) -> str | None:
    """The last error when this broadcast's latest attempted sends were all refused."""
    since = b.resumed_at or b.created_at
    errors = list(
        session.execute(
            select(OutboxMessage.last_error)
            .join(
                BroadcastRecipient, BroadcastRecipient.outbox_key == OutboxMessage.idempotency_key
            )
            .where(
                BroadcastRecipient.broadcast_id == b.id,
                BroadcastRecipient.scheduled_at >= since,
                OutboxMessage.attempts > 0,
            )
            .order_by(OutboxMessage.id.desc())
            .limit(REFUSAL_RUN)
        ).scalars()
    )
    if len(errors) == REFUSAL_RUN and all(e and e.startswith(REFUSALS) for e in errors):
        return errors[0]
    return None


def _settle(session: Session, running: list[Broadcast], now: datetime) -> list[int]:
    """Pause broadcasts the gateway keeps refusing, mark finished ones done; the rest's ids."""
    still = []
    for b in running:
        refused = _refusal_run(session, b)
        if refused:
            pause(
                session,
                b,
                f"the gateway refused {REFUSAL_RUN} sends in a row ({refused[:200]}); "
                "paused to protect the clinic's number",
                now,
            )
            continue
        waiting = session.execute(
            select(func.count())
            .select_from(BroadcastRecipient)
            .outerjoin(
                OutboxMessage, OutboxMessage.idempotency_key == BroadcastRecipient.outbox_key
            )
            .where(
                BroadcastRecipient.broadcast_id == b.id,
                (BroadcastRecipient.status == "pending")
                | and_(BroadcastRecipient.status == "queued", OutboxMessage.status.in_(WAITING)),
            )
        ).scalar()
        if waiting:
            still.append(b.id)
        else:
            b.status, b.finished_at = "done", now
    return still


def pace(runtime, rng: random.Random | None = None) -> int:
    """Tick: give the next recipients paced send slots; returns how many were queued."""
    rng = rng or random
    profile: Profile = runtime.profile
    now = runtime.clock()
    plan_until = now + timedelta(seconds=2 * runtime.settings.worker_tick_seconds)
    queued = 0
    with runtime.db.ReadSession() as s:
        if s.execute(select(Broadcast.id).where(Broadcast.status == "running")).first() is None:
            return 0  # the usual case: no broadcast, no lock taken
    with runtime.db.transaction() as s:
        pacer = _lock_pacer(s, runtime.db.is_postgres, now)
        # Locked too: a pause or cancel committing meanwhile waits for this tick, then takes
        # back what it queued; one that committed first is seen here.
        running = list(
            s.execute(
                select(Broadcast)
                .where(Broadcast.status == "running")
                .order_by(Broadcast.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalars()
        )
        running_ids = _settle(s, running, now)
        stored = pacer.value.get("next_at")
        slot = max(now, datetime.fromisoformat(stored)) if stored else now
        candidates = s.execute(
            select(BroadcastRecipient, Patient)
            .join(Patient, Patient.id == BroadcastRecipient.patient_id)
            .where(
                BroadcastRecipient.broadcast_id.in_(running_ids),
                BroadcastRecipient.status == "pending",
            )
            .order_by(BroadcastRecipient.broadcast_id, BroadcastRecipient.id)
            .limit(PLAN_BATCH)
        ).all()
        texts = {b.id: b.text for b in running}
        day, used = None, 0
        for rec, patient in candidates:
            if patient.opted_out:
                rec.status, rec.reason = "skipped", "the patient opted out"
                continue
            if slot > plan_until or in_quiet_hours(profile, slot):
                break
            slot_day = slot.astimezone(profile.timezone).date()
            if slot_day != day:
                day, used = slot_day, _sent_on_day(s, profile, slot)
            if used >= profile.broadcast_daily_cap:
                break
            b_text = texts[rec.broadcast_id]
            key = f"broadcast:{rec.broadcast_id}:{patient.id}"
            enqueue(
                s,
                key=key,
                chat_id=patient.chat_id,
                endpoint="messages/text",
                body=bodies.text_body(patient.chat_id, b_text),
                now=now,
                patient=patient,
                purpose="broadcast",
                not_before=slot,
            )
            rec.status, rec.outbox_key, rec.scheduled_at = "queued", key, slot
            used += 1
            queued += 1
            gap = profile.broadcast_min_interval + rng.random() * profile.broadcast_jitter
            slot = slot + gap
        if queued:
            pacer.value = {"next_at": slot.isoformat()}
            pacer.updated_at = now
    return queued


def skip_for_patient(session: Session, patient: Patient, now: datetime) -> None:
    """An opted-out patient is skipped by every broadcast still to reach them."""
    session.execute(
        update(BroadcastRecipient)
        .where(BroadcastRecipient.patient_id == patient.id, BroadcastRecipient.status == "pending")
        .values(status="skipped", reason="the patient opted out")
        .execution_options(synchronize_session=False)
    )


optout.OPT_OUT_HOOKS.append(skip_for_patient)
worker.TICKS.append(("broadcasts", pace))
