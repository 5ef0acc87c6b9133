"""Broadcast pacing: send slots without getting the clinic's number flagged.

A tick, holding the one pacer row locked (so two workers pace as one), gives the next
recipients send slots `min_interval` + random `jitter` apart, never in the clinic's quiet hours
and never beyond the daily cap, and writes each recipient's outbox row (key
`broadcast:<id>:<patient id>`, not before its slot) in the same transaction that marks it
queued: a restart resumes where it stopped and repeats nobody. A run of gateway refusals
(403/429) pauses the broadcast and says why.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from clinic_bot.core.clock import local_day_bounds
from clinic_bot.core.db import insert_ignore
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.broadcasts import (
    PACER_KEY,
    PLAN_BATCH,
    REFUSAL_RUN,
    REFUSALS,
    WAITING,
    pause,
)
from clinic_bot.domain.profile import Profile
from clinic_bot.models import GatewayState, OutboxMessage, Patient
from clinic_bot.models.broadcasts import Broadcast, BroadcastRecipient

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


def _lock_pacer(session: Session, now: datetime) -> GatewayState:
    """The one pacer row, locked: two workers planning at once would halve the gaps."""
    insert_ignore(
        session,
        GatewayState,
        [dict(key=PACER_KEY, value={}, updated_at=now)],
        key="key",
        returning=None,
    )
    return session.execute(
        select(GatewayState)
        .where(GatewayState.key == PACER_KEY)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _sent_on_day(session: Session, profile: Profile, instant: datetime) -> int:
    start, end = local_day_bounds(instant.astimezone(profile.timezone).date(), profile.timezone)
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
        pacer = _lock_pacer(s, now)
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
            Outbox(s, now, key).text(patient, b_text, key=key, purpose="broadcast", not_before=slot)
            rec.status, rec.outbox_key, rec.scheduled_at = "queued", key, slot
            used += 1
            queued += 1
            gap = profile.broadcast_min_interval + rng.random() * profile.broadcast_jitter
            slot = slot + gap
        if queued:
            pacer.value = {"next_at": slot.isoformat()}
            pacer.updated_at = now
    return queued
