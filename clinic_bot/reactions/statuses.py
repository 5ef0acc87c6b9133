"""Our messages moving forward (sent, delivered, read) and our own sends coming back as echoes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from clinic_bot.delivery.outbox import apply_status, match_echo
from clinic_bot.domain import events as ev
from clinic_bot.models import InboxEvent
from clinic_bot.reactions.context import HandlerContext, RetryLater

# How long a status for a message we have not recorded yet is retried before it is let go.
UNKNOWN_STATUS_PATIENCE = timedelta(minutes=2)


def handle_status(ctx: HandlerContext, event: ev.StatusChanged) -> str:
    """Move our sent message forward; statuses of inbound messages are just recorded."""
    outcome = apply_status(ctx.session, event.event_id, event.status, event.at or ctx.now)
    if outcome != "unknown":
        for hook in ctx.runtime.registry.status_hooks:
            hook(ctx, event, outcome)
        return f"status {outcome}"
    inbound = ctx.session.execute(
        select(InboxEvent.id).where(InboxEvent.dedupe_key == f"msg:{event.event_id}")
    ).first()
    if inbound:
        return "status of an inbound message"
    if ctx.now - ctx.received_at < UNKNOWN_STATUS_PATIENCE:
        raise RetryLater(f"no outbox message with provider id {event.event_id} yet")
    return "status for a message we did not send"


def handle_echo(ctx: HandlerContext, event: ev.OwnEcho) -> str:
    """Our own send (or staff on the clinic phone) coming back: recorded, never answered."""
    return f"own message {match_echo(ctx.session, event.event_id, event.chat_id, event.text)}"
