"""A patient wrote or tapped: STOP/START first, then the conversation."""

from __future__ import annotations

from clinic_bot.domain import events as ev
from clinic_bot.domain import patients
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.reactions import conversation
from clinic_bot.reactions.context import HandlerContext


def handle_patient_message(ctx: HandlerContext, event: ev.PatientMessage) -> str:
    """STOP/START first; opted-out patients get nothing; the rest goes to the conversation."""
    patient = get_or_create_patient(ctx.session, event.phone, ctx.now)
    if event.push_name and event.push_name != patient.push_name:
        patient.push_name = event.push_name[:200]
    text = event.text if isinstance(event, ev.TextReceived) else ""
    if text and patients.is_opt_out(text):
        if patients.opt_out(ctx.session, patient, event.event_id, ctx.now):
            ctx.outbox.text(
                patient, ctx.profile.text("opted_out", patient.language), purpose="optout"
            )
            return "opted out"
        return "already opted out"
    opting_in = text and patients.is_opt_in(text)
    if opting_in and patients.opt_in(ctx.session, patient, event.event_id, ctx.now):
        ctx.outbox.text(patient, ctx.profile.text("opted_in", patient.language))
        patient.last_inbound_at = ctx.now
        conversation.show_menu(ctx, patient)
        return "opted in"
    if patient.opted_out:
        return "opted out: not answered"
    outcome = conversation.respond(ctx, patient, event)
    patient.last_inbound_at = ctx.now
    patient.last_inbound_message_id = event.event_id
    return outcome
