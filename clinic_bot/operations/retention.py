"""Retention: message bodies, payloads and intake answers older than the profile's period go.

What stays is the metadata audit and statistics need: every inbox and outbox row with its kind,
status, times, outcome and ids; appointments; reminders. Only content is emptied, never a row,
so counts in /metrics and the staff pages stay true.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Text, cast, func, or_, update
from sqlalchemy.orm import Session

from clinic_bot.models import AuditEntry, InboxEvent, OutboxMessage, Patient, SandboxMessage
from clinic_bot.models.broadcasts import Broadcast

log = logging.getLogger(__name__)

DEFAULT_KEEP = timedelta(days=180)
EMPTY_JSON = "{}"
# Rows still being worked on keep their content whatever their age.
INBOX_FINAL = ("done", "ignored", "dead")
OUTBOX_OPEN = ("pending", "sending")
BROADCAST_FINAL = ("done", "cancelled")


def retention_period(profile) -> timedelta:
    """The profile's `[retention] keep` (a timedelta, or days as a number), else 180 days."""
    value = getattr(profile, "retention_keep", None)
    if isinstance(value, timedelta) and value > timedelta(0):
        return value
    if isinstance(value, int | float) and value > 0:
        return timedelta(days=value)
    return DEFAULT_KEEP


def _not_empty(column):
    # JSON columns compare as text on both dialects; '{}' is how SQLAlchemy stores {}.
    return cast(column, Text) != EMPTY_JSON


def apply_retention(session: Session, now: datetime, keep: timedelta) -> dict:
    """Empty the content older than `now - keep` in the caller's transaction; return counts."""
    cutoff = now - keep
    counts = {}
    counts["inbox_payloads"] = _run(
        session,
        update(InboxEvent)
        .where(
            InboxEvent.received_at < cutoff,
            InboxEvent.status.in_(INBOX_FINAL),
            _not_empty(InboxEvent.payload),
        )
        .values(payload={}),
    )
    counts["outbox_bodies"] = _run(
        session,
        update(OutboxMessage)
        .where(
            OutboxMessage.created_at < cutoff,
            OutboxMessage.status.not_in(OUTBOX_OPEN),
            _not_empty(OutboxMessage.body),
        )
        .values(body={}),
    )
    counts["sandbox_messages"] = _run(
        session,
        update(SandboxMessage)
        .where(SandboxMessage.created_at < cutoff, _not_empty(SandboxMessage.payload))
        .values(payload={}),
    )
    counts["broadcast_texts"] = _run(
        session,
        update(Broadcast)
        .where(
            func.coalesce(Broadcast.finished_at, Broadcast.created_at) < cutoff,
            Broadcast.status.in_(BROADCAST_FINAL),
            Broadcast.text != "",
        )
        .values(text=""),
    )
    counts["intake_answers"] = _run(
        session,
        update(Patient)
        .where(
            or_(
                Patient.last_inbound_at < cutoff,
                Patient.last_inbound_at.is_(None) & (Patient.created_at < cutoff),
            ),
            _not_empty(Patient.intake),
        )
        # The version bump makes a conversation turn that read the old answers retry.
        .values(intake={}, version=Patient.version + 1),
    )
    report = {"cutoff": cutoff.isoformat(), "keep_days": keep / timedelta(days=1), **counts}
    session.add(AuditEntry(at=now, action="retention", target="", detail=report))
    return report


def _run(session: Session, stmt) -> int:
    return session.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0


def describe(report: dict) -> str:
    """One line saying what a run removed."""
    parts = [
        f"{report[k]} {k.replace('_', ' ')}"
        for k in (
            "inbox_payloads",
            "outbox_bodies",
            "intake_answers",
            "broadcast_texts",
            "sandbox_messages",
        )
    ]
    return f"retention: removed content older than {report['cutoff']}: " + ", ".join(parts)
