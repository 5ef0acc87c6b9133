"""Queue depths for /healthz and /metrics: backlog, oldest waiting row, dead letters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_bot.models import InboxEvent, OutboxMessage

INBOX_WAITING = ("pending", "processing")
OUTBOX_WAITING = ("pending", "sending")


def _age(now: datetime, oldest: datetime | None) -> float | None:
    return None if oldest is None else max(0.0, round((now - oldest).total_seconds(), 1))


def queue_stats(session: Session, now: datetime) -> dict:
    """Inbox and outbox backlog (rows still to handle or send), oldest age, dead letters."""
    inbox_n, inbox_oldest = session.execute(
        select(func.count(), func.min(InboxEvent.received_at)).where(
            InboxEvent.status.in_(INBOX_WAITING)
        )
    ).one()
    outbox_n, outbox_oldest = session.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status.in_(OUTBOX_WAITING)
        )
    ).one()
    inbox_dead = session.execute(
        select(func.count()).where(InboxEvent.status == "dead")
    ).scalar_one()
    outbox_dead = session.execute(
        select(func.count()).where(OutboxMessage.status == "dead")
    ).scalar_one()
    return {
        "inbox": {"backlog": inbox_n, "oldest_age_seconds": _age(now, inbox_oldest)},
        "outbox": {"backlog": outbox_n, "oldest_age_seconds": _age(now, outbox_oldest)},
        "dead_letters": {"inbox": inbox_dead, "outbox": outbox_dead},
    }


def health_extras(session: Session, now: datetime) -> dict:
    """What /healthz adds to its body: `{"backlog": {...}, "dead_letters": {...}}`."""
    stats = queue_stats(session, now)
    return {
        "backlog": {"inbox": stats["inbox"]["backlog"], "outbox": stats["outbox"]["backlog"]},
        "dead_letters": stats["dead_letters"],
    }
