"""Dead letters: Retry (back to the worker) or Dismiss (kept, marked handled), for events and
messages alike. One place, used by the staff operations page and the admin API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from clinic_bot.models import InboxEvent, OutboxMessage
from clinic_bot.models.statuses import UNDELIVERABLE

ACTIONS = ("retry", "dismiss")


def settle_event(
    session: Session, event_id: int, action: str, *, now: datetime, by: str
) -> InboxEvent | None:
    """Retry or dismiss a dead webhook event; None when it is not (or no longer) dead."""
    ev = session.get(InboxEvent, event_id)
    if ev is None or ev.status != "dead" or action not in ACTIONS:
        return None
    if action == "retry":
        ev.status, ev.attempts, ev.next_attempt_at, ev.locked_until = "pending", 0, now, None
    else:
        ev.status, ev.outcome = "ignored", f"dismissed by {by}"[:200]
    return ev


def settle_message(
    session: Session, message_id: int, action: str, *, now: datetime, by: str
) -> OutboxMessage | None:
    """Retry (send again) or dismiss (withdraw) a message that could not be sent; None when
    it is not (or no longer) undeliverable."""
    m = session.get(OutboxMessage, message_id)
    if m is None or m.status not in UNDELIVERABLE or action not in ACTIONS:
        return None
    if action == "retry":
        m.status, m.attempts, m.next_attempt_at, m.locked_until = "pending", 0, now, None
        m.uncertain_since, m.provider_message_id, m.failed_at = None, None, None
    else:
        m.status = "cancelled"
        m.last_error = f"{m.last_error or ''} (dismissed by {by})".strip()
    return m
