"""What the staff pages show, read from the database and put in the clinic's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from clinic_bot.core.clock import local_day_bounds
from clinic_bot.domain.profile import Profile
from clinic_bot.models import (
    Appointment,
    AuditEntry,
    BusyBlock,
    GatewayState,
    InboxEvent,
    OutboxMessage,
    Patient,
    StaffNote,
)
from clinic_bot.models.conversation import StaffAlert
from clinic_bot.models.reminders import SPECIAL_KINDS, Reminder
from clinic_bot.models.statuses import UNDELIVERABLE, UNSENT
from clinic_bot.reactions.channel import HEALTHY_CHANNEL

DEAD_OUTBOX = UNDELIVERABLE
# Channel states that need no banner: the handler's healthy ones, and a channel starting up.
CHANNEL_UP = {*HEALTHY_CHANNEL, "INIT", "LAUNCH", "OK", "UP", "RUNNING"}
PAGE_SIZE = 50
DAY_LIMIT = 500  # appointments one day or week view shows at most (a filter narrows it)


@dataclass
class Page:
    """One page of a list: its items, and whether there are more before or after."""

    items: list
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def page_number(raw) -> int:
    """A page number from a query string; anything odd is page 1."""
    try:
        return max(1, min(int(raw), 1_000_000))
    except (TypeError, ValueError):
        return 1


def paginate(session: Session, stmt, number: int, size: int = PAGE_SIZE) -> Page:
    """Run `stmt` for one page only (LIMIT/OFFSET), with the total count beside it."""
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = list(session.execute(stmt.limit(size).offset((number - 1) * size)).scalars())
    return Page(items, number, size, total)


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
    practitioner_id: str | None = None
    patient_id: int | None = None
    title: str = ""
    notes: str = ""
    past: bool = False
    reminders: list = None
    intake: dict = None
    visit_reason: str = ""  # this visit's intake answer (staff only, never in reminders)

    @property
    def label(self) -> str:
        """What identifies the visit when the patient has no name (an imported title, say)."""
        return self.patient_name or self.title or self.patient_phone or "—"


@dataclass
class BusyRow:
    """Time blocked by an imported busy event or a staff block."""

    starts: datetime
    ends: datetime
    practitioner_id: str | None
    practitioner: str
    summary: str


def appointments_on(
    session: Session,
    day: date,
    profile: Profile,
    *,
    days: int = 1,
    practitioner_id: str | None = None,
    status: str | None = None,
    now: datetime | None = None,
    limit: int = DAY_LIMIT,
) -> list[DayRow]:
    """Appointments starting on these clinic-local days, in time order (bounded by `limit`)."""
    start, _ = local_day_bounds(day, profile.timezone)
    _, end = local_day_bounds(day + timedelta(days=days - 1), profile.timezone)
    stmt = (
        select(Appointment)
        .options(joinedload(Appointment.patient))
        .where(Appointment.starts_at >= start, Appointment.starts_at < end)
        .order_by(Appointment.starts_at, Appointment.id)
        .limit(limit)
    )
    if practitioner_id == "-":
        stmt = stmt.where(Appointment.practitioner_id.is_(None))
    elif practitioner_id:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    if status:
        stmt = stmt.where(Appointment.status == status)
    appts = list(session.execute(stmt).scalars())
    trails = reminder_trails(session, appts)
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
                practitioner_id=a.practitioner_id,
                patient_id=a.patient_id,
                title=a.title or "",
                notes=a.notes or "",
                past=now is not None and a.starts_at <= now,
                reminders=trails[a.id],
                intake=dict(p.intake or {}) if p else {},
                visit_reason=a.visit_reason or "",
            )
        )
    return rows


def reminder_trails(session: Session, appts: list[Appointment]) -> dict[int, list[dict]]:
    """Each visit's reminders (current version) and follow-ups with how far they got, in one query.

    Steps: sent → delivered → read → replied (the patient wrote after it was sent); a skipped or
    failed reminder keeps its status and reason instead.
    """
    if not appts:
        return {}
    by_id = {a.id: a for a in appts}
    rows = session.execute(
        select(Reminder, OutboxMessage)
        .outerjoin(OutboxMessage, OutboxMessage.idempotency_key == Reminder.outbox_key)
        .where(Reminder.appointment_id.in_(list(by_id)))
        .order_by(Reminder.due_at, Reminder.id)
    ).all()
    trails: dict[int, list[dict]] = {a.id: [] for a in appts}
    for r, msg in rows:
        appt = by_id[r.appointment_id]
        special = r.kind in SPECIAL_KINDS
        if not special and r.appointment_version != appt.version:
            continue  # a reminder of the visit's old time
        if special and (msg is None or msg.sent_at is None):
            continue  # a follow-up that never went out is no news
        status, reason, steps = r.status, r.reason, []
        if msg is not None:
            if msg.status in (*UNDELIVERABLE, "cancelled"):
                status, reason = "failed", msg.last_error or f"the message is {msg.status}"
            if msg.sent_at:
                steps.append("sent")
            if msg.delivered_at:
                steps.append("delivered")
            if msg.read_at:
                steps.append("read")
            last = appt.patient.last_inbound_at if appt.patient is not None else None
            if msg.sent_at and last and last > msg.sent_at:
                steps.append("replied")
        label = r.kind.replace("_", " ") if special else r.kind
        trails[appt.id].append({"kind": label, "status": status, "reason": reason, "steps": steps})
    return trails


def busy_blocks(
    session: Session, day: date, profile: Profile, *, days: int = 1, limit: int = 200
) -> list[BusyRow]:
    """Blocked time (imported busy events, staff blocks) overlapping these days."""
    start, _ = local_day_bounds(day, profile.timezone)
    _, end = local_day_bounds(day + timedelta(days=days - 1), profile.timezone)
    rows = session.execute(
        select(BusyBlock)
        .where(BusyBlock.cancelled.is_(False), BusyBlock.starts_at < end, BusyBlock.ends_at > start)
        .order_by(BusyBlock.starts_at)
        .limit(limit)
    ).scalars()
    out = []
    for b in rows:
        pr = profile.practitioner(b.practitioner_id) if b.practitioner_id else None
        out.append(
            BusyRow(
                starts=b.starts_at.astimezone(profile.timezone),
                ends=b.ends_at.astimezone(profile.timezone),
                practitioner_id=b.practitioner_id,
                practitioner=pr.name if pr else ("whole clinic" if not b.practitioner_id else ""),
                summary=b.summary or "busy",
            )
        )
    return out


# ------------------------------------------------------------------------ inbox


@dataclass
class Waiting:
    """A patient waiting for a person, with what they last wrote."""

    patient: Patient
    since: datetime
    last_text: str


def inbound_text(payload: dict) -> str:
    """The visible text of a stored inbound WhatsApp message (text, tap, caption, kind)."""
    if not isinstance(payload, dict):
        return ""
    kind = payload.get("type") or ""
    for key in ("text", "image", "video", "document", "reply", "link_preview"):
        part = payload.get(key)
        if isinstance(part, dict):
            for field_name in ("body", "caption", "title"):
                if isinstance(part.get(field_name), str) and part[field_name]:
                    return part[field_name]
            reply = part.get("buttons_reply") or part.get("list_reply")
            if isinstance(reply, dict) and reply.get("title"):
                return f"[tapped] {reply['title']}"
    return f"[{kind}]" if kind else ""


def waiting_patients(session: Session, limit: int = 100) -> list[Waiting]:
    """Patients in a handoff, the longest-waiting first."""
    patients = session.execute(
        select(Patient)
        .where(Patient.handoff_since.is_not(None))
        .order_by(Patient.handoff_since, Patient.id)
        .limit(limit)
    ).scalars()
    out = []
    for p in patients:
        last = ""
        if p.last_inbound_message_id:
            mid = p.last_inbound_message_id
            ev = session.execute(
                select(InboxEvent.payload)
                .where(InboxEvent.dedupe_key.in_((f"msg:{mid}", mid)))
                .limit(1)
            ).scalar_one_or_none()
            last = inbound_text(ev or {})
        out.append(Waiting(p, p.handoff_since, last))
    return out


def waiting_count(session: Session) -> int:
    """How many patients wait for a person."""
    return session.execute(
        select(func.count()).select_from(Patient).where(Patient.handoff_since.is_not(None))
    ).scalar_one()


@dataclass
class Entry:
    """One line of a conversation timeline."""

    at: datetime
    direction: str  # in | out | note (internal, never sent)
    text: str
    purpose: str = ""
    status: str = ""
    author: str = ""  # who wrote a note


def timeline(session: Session, patient: Patient, limit: int = 200) -> list[Entry]:
    """The patient's conversation, oldest first: their messages and taps, ours with ticks, and
    the staff's internal notes in their place."""
    entries = []
    chat = patient.chat_id
    inbound = session.execute(
        select(InboxEvent)
        .where(InboxEvent.chat_id == chat, InboxEvent.kind == "messages")
        .order_by(InboxEvent.id.desc())
        .limit(limit)
    ).scalars()
    for ev in inbound:
        if (ev.payload or {}).get("from_me"):
            continue
        entries.append(Entry(ev.received_at, "in", inbound_text(ev.payload)))
    outbound = session.execute(
        select(OutboxMessage)
        .where(OutboxMessage.chat_id == chat)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    ).scalars()
    for m in outbound:
        entries.append(Entry(m.created_at, "out", outbox_preview(m), m.purpose, m.status))
    notes = session.execute(
        select(StaffNote)
        .where(StaffNote.patient_id == patient.id)
        .order_by(StaffNote.created_at.desc(), StaffNote.id.desc())
        .limit(limit)
    ).scalars()
    for n in notes:
        entries.append(Entry(n.created_at, "note", n.text, author=n.author))
    entries.sort(key=lambda e: e.at)
    return entries[-limit:]


def pending_outbox(session: Session) -> int:
    """Messages waiting to be sent."""
    return session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(UNSENT))
    ).scalar_one()


def channel_banner(session: Session, profile: Profile) -> str | None:
    """'WhatsApp disconnected since 08:12, 14 messages waiting' when the channel is not up."""
    row = session.get(GatewayState, "channel")
    if row is None:
        return None
    value = dict(row.value or {})
    status = str(value.get("status") or "")
    if not status or status.upper() in CHANNEL_UP:
        return None
    since = _parse(value.get("since") or value.get("at"))
    when = f" since {since.astimezone(profile.timezone):%H:%M}" if since else ""
    waiting = pending_outbox(session)
    return f"WhatsApp disconnected{when} ({status}), {waiting} message(s) waiting to be sent."


def problem_count(session: Session) -> int:
    """How many dead letters (inbox and outbox) wait for a person to look at them."""
    inbox = session.execute(
        select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "dead")
    ).scalar_one()
    outbox = session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(DEAD_OUTBOX))
    ).scalar_one()
    return inbox + outbox


def dead_inbox_events(session: Session, number: int = 1, size: int = PAGE_SIZE) -> Page:
    """One page of webhook events the worker gave up on, newest first."""
    stmt = select(InboxEvent).where(InboxEvent.status == "dead").order_by(InboxEvent.id.desc())
    return paginate(session, stmt, number, size)


def dead_outbox_messages(session: Session, number: int = 1, size: int = PAGE_SIZE) -> Page:
    """One page of messages that could not be sent, newest first."""
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status.in_(DEAD_OUTBOX))
        .order_by(OutboxMessage.id.desc())
    )
    return paginate(session, stmt, number, size)


def audit_entries(who: str = "", action: str = "", since: datetime | None = None):
    """The audit log, newest first, narrowed by who (part of an email), action and start."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    if who:
        stmt = stmt.where(AuditEntry.staff_email.ilike(f"%{who}%"))
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    return stmt


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


def pending_inbox(session: Session) -> int:
    """Webhook events waiting for the worker."""
    return session.execute(
        select(func.count())
        .select_from(InboxEvent)
        .where(InboxEvent.status.in_(("pending", "processing")))
    ).scalar_one()


ALERT_LABELS = {
    "running_late": "Running late",
    "handoff_ended": "Left the handoff (typed MENU) before reception answered",
}


@dataclass
class AlertRow:
    """A staff alert the conversation raised, as the inbox lists it."""

    id: int
    label: str
    patient_id: int
    patient: str
    at: datetime  # clinic-local
    appointment: datetime | None  # clinic-local start of the visit it is about


def open_alerts(session: Session, tz, limit: int = 50) -> list[AlertRow]:
    """Alerts nobody dismissed yet, newest first (running late, handoffs the patient ended)."""
    rows = session.execute(
        select(StaffAlert, Patient, Appointment)
        .join(Patient, Patient.id == StaffAlert.patient_id)
        .outerjoin(Appointment, Appointment.id == StaffAlert.appointment_id)
        .where(StaffAlert.seen_at.is_(None))
        .order_by(StaffAlert.created_at.desc(), StaffAlert.id.desc())
        .limit(limit)
    )
    return [
        AlertRow(
            id=alert.id,
            label=ALERT_LABELS.get(alert.kind, alert.kind),
            patient_id=patient.id,
            patient=patient.name or patient.push_name or f"+{patient.phone}",
            at=alert.created_at.astimezone(tz),
            appointment=appt.starts_at.astimezone(tz) if appt is not None else None,
        )
        for alert, patient, appt in rows
    ]
