"""Calls to the clinic's WhatsApp number: a missed call gets a short message and the menu."""

from __future__ import annotations

from clinic_bot.domain import events as ev
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.reactions import conversation
from clinic_bot.reactions.context import HandlerContext

MISSED_CALL_STATUSES = {"missed", "canceled", "cancelled", "rejected"}


def handle_call(ctx: HandlerContext, event: ev.CallReceived) -> str:
    """A missed call gets one short message with the menu; other call states are recorded."""
    if event.group_call or event.status not in MISSED_CALL_STATUSES:
        return f"call {event.status}"
    patient = get_or_create_patient(ctx.session, event.phone, ctx.now)
    if patient.opted_out:
        return "missed call from an opted-out patient"
    ctx.outbox.key_prefix = f"call:{event.event_id}"
    ctx.outbox.text(patient, ctx.profile.text("missed_call", patient.language))
    conversation.show_menu(ctx, patient)
    return "missed call answered"
