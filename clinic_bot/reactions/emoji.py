"""A patient reacted to a message with an emoji (or took the reaction off)."""

from __future__ import annotations

from sqlalchemy import select

from clinic_bot.core.db import insert_ignore
from clinic_bot.domain import events as ev
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import OutboxMessage, Reaction
from clinic_bot.reactions.context import HandlerContext


def handle_reaction(ctx: HandlerContext, event: ev.ReactionChanged) -> str:
    """Record a reaction against the message it targets; a reaction needs no answer."""
    patient = get_or_create_patient(ctx.session, event.phone, ctx.now)
    insert_ignore(
        ctx.session,
        Reaction,
        [
            dict(
                message_id=event.event_id,
                target_message_id=event.target_id,
                patient_id=patient.id,
                emoji=event.emoji,
                at=event.at or ctx.now,
            )
        ],
        key="message_id",
    )
    target = ctx.session.execute(
        select(OutboxMessage).where(OutboxMessage.provider_message_id == event.target_id)
    ).scalar_one_or_none()
    if target is not None:
        # Keep one current emoji per patient on our message; "" means it was taken off.
        kept = [r for r in target.reactions or [] if r.get("phone") != event.phone]
        if event.emoji:
            kept.append({"phone": event.phone, "emoji": event.emoji})
        target.reactions = kept
    return f"reaction {'removed' if not event.emoji else event.emoji} on {event.target_id}"
