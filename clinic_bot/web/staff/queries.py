"""What the staff pages show, read from the database and put in the clinic's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from clinic_bot.core.clock import local_day_bounds
from clinic_bot.domain.profile import Profile
from clinic_bot.models import Appointment, GatewayState, InboxEvent, OutboxMessage
from clinic_bot.models.statuses import UNDELIVERABLE

DEAD_OUTBOX = UNDELIVERABLE


@dataclass
class DayRow:
    """One appointment as the day list shows it."""

    id: int
    starts: datetime  # clinic-local
    ends: datetime  # clinic-local
    patient_name: str
    patient_phone: str
    service: str
    practitioner: str
    status: str
    source: str


def appointments_on(session: Session, day: date, profile: Profile) -> list[DayRow]:
    """Every appointment starting on this clinic-local day, in time order."""
    start, end = local_day_bounds(day, profile.timezone)
    appts = session.execute(
        select(Appointment)
        .options(joinedload(Appointment.patient))
        .where(Appointment.starts_at >= start, Appointment.starts_at < end)
        .order_by(Appointment.starts_at, Appointment.id)
    ).scalars()
    rows = []
    for a in appts:
        p = a.patient
        service = profile.service(a.service_id) if a.service_id else None
        practitioner = profile.practitioner(a.practitioner_id) if a.practitioner_id else None
        rows.append(
            DayRow(
                id=a.id,
                starts=a.starts_at.astimezone(profile.timezone),
                ends=a.ends_at.astimezone(profile.timezone),
                patient_name=(p.name or p.push_name or "") if p else "",
                patient_phone=f"+{p.phone}" if p else "",
                service=service.name if service else (a.service_id or ""),
                practitioner=practitioner.name if practitioner else (a.practitioner_id or ""),
                status=a.status,
                source=a.source,
            )
        )
    return rows


def problem_count(session: Session) -> int:
    """How many dead letters (inbox and outbox) wait for a person to look at them."""
    inbox = session.execute(
        select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "dead")
    ).scalar_one()
    outbox = session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(DEAD_OUTBOX))
    ).scalar_one()
    return inbox + outbox


def dead_inbox_events(session: Session, limit: int = 200) -> list[InboxEvent]:
    """Webhook events the worker gave up on, newest first."""
    return list(
        session.execute(
            select(InboxEvent)
            .where(InboxEvent.status == "dead")
            .order_by(InboxEvent.id.desc())
            .limit(limit)
        ).scalars()
    )


def dead_outbox_messages(session: Session, limit: int = 200) -> list[OutboxMessage]:
    """Messages that could not be sent, newest first."""
    return list(
        session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.status.in_(DEAD_OUTBOX))
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        ).scalars()
    )


def outbox_preview(msg: OutboxMessage) -> str:
    """The visible text of an outgoing message, for staff to recognise it."""
    body = msg.body or {}
    text = body.get("body")
    if isinstance(text, dict):
        text = text.get("text")
    if not text:
        text = body.get("caption") or body.get("filename") or ""
    return str(text)


@dataclass
class SystemState:
    """The WhatsApp channel and the worker, as last recorded."""

    channel_status: str | None
    channel_at: datetime | None
    worker_last_tick: datetime | None
    worker_age: timedelta | None


def _parse(value) -> datetime | None:
    try:
        dt = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def system_state(session: Session, now: datetime) -> SystemState:
    """Read GatewayState `channel` and `worker` (written by the handlers and the heartbeat)."""
    channel = session.get(GatewayState, "channel")
    worker = session.get(GatewayState, "worker")
    channel_value = dict(channel.value) if channel else {}
    tick = _parse((worker.value or {}).get("last_tick")) if worker else None
    return SystemState(
        channel_status=channel_value.get("status"),
        channel_at=_parse(channel_value.get("at")) or (channel.updated_at if channel else None),
        worker_last_tick=tick,
        worker_age=(now - tick) if tick else None,
    )
