"""Broadcasts: one text to many patients; created, paused, resumed and cancelled by staff.

Each recipient is a row; `schedules.broadcasts` paces the sends. Opted-out patients are never
sent to and count as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from clinic_bot.core.clock import iso_z, local_day_bounds
from clinic_bot.domain import messages as bodies
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, OutboxMessage, Patient
from clinic_bot.models.appointments import ACTIVE_STATUSES
from clinic_bot.models.broadcasts import Broadcast, BroadcastRecipient
from clinic_bot.models.statuses import GONE_OUT, UNDELIVERABLE, UNSENT

PACER_KEY = "broadcasts.pacer"
PLAN_BATCH = 200  # recipients given a slot per tick at most
REFUSAL_RUN = 3  # this many refused sends in a row pause the broadcast
REFUSALS = ("HTTP 403", "HTTP 429")
SENT = GONE_OUT
WAITING = UNSENT
FAILED = UNDELIVERABLE


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


def _recipients(session: Session, profile: Profile, audience: Audience, now) -> list[Patient]:
    found: dict[int, Patient] = {}
    for raw in audience.phones or []:
        try:
            digits = normalize_phone(str(raw))
        except InvalidPhone as exc:
            raise BroadcastError("invalid_phone", f"{raw!r}: {exc}") from None
        patient = get_or_create_patient(session, digits, now)
        found.setdefault(patient.id, patient)
    if audience.all_opted_in:
        for p in session.execute(select(Patient).where(Patient.opted_out.is_(False))).scalars():
            found.setdefault(p.id, p)
    if audience.appointments_on:
        start, end = local_day_bounds(audience.appointments_on, profile.timezone)
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
        "created_at": iso_z(b.created_at),
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


def skip_for_patient(session: Session, patient: Patient, now: datetime) -> None:
    """An opted-out patient is skipped by every broadcast still to reach them."""
    session.execute(
        update(BroadcastRecipient)
        .where(BroadcastRecipient.patient_id == patient.id, BroadcastRecipient.status == "pending")
        .values(status="skipped", reason="the patient opted out")
        .execution_options(synchronize_session=False)
    )
