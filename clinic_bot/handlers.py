"""One handler per event type; the worker commits each handler's changes and sends together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import conversation, optout
from . import events as ev
from .db import insert_ignore
from .models import GatewayState, InboxEvent, OutboxMessage, Patient, Reaction
from .outbox import Outbox, apply_status, match_echo
from .runtime import Runtime

log = logging.getLogger(__name__)

# How long a status for a message we have not recorded yet is retried before it is let go.
UNKNOWN_STATUS_PATIENCE = timedelta(minutes=2)
MISSED_CALL_STATUSES = {"missed", "canceled", "cancelled", "rejected"}
HEALTHY_CHANNEL = {"AUTH", "CONNECTED"}


class RetryLater(Exception):
    """The event cannot be handled yet (its message is not recorded); try again shortly."""


@dataclass
class HandlerContext:
    """What a handler gets: one open transaction, the runtime, the event's time and an outbox."""

    session: Session
    runtime: Runtime
    now: datetime
    inbox_id: int
    received_at: datetime
    outbox: Outbox

    @property
    def profile(self):
        return self.runtime.profile


def get_or_create_patient(session: Session, phone: str, now: datetime) -> Patient:
    """The patient with this phone, created on first contact (race-safe)."""
    insert_ignore(
        session,
        Patient,
        [
            dict(
                phone=phone,
                state="idle",
                state_data={},
                intake={},
                prompt_seq=0,
                opted_out=False,
                created_at=now,
                version=1,
            )
        ],
        key="phone",
    )
    return session.execute(select(Patient).where(Patient.phone == phone)).scalar_one()


def handle_patient_message(ctx: HandlerContext, event: ev.PatientMessage) -> str:
    """STOP/START first; opted-out patients get nothing; the rest goes to the conversation."""
    patient = get_or_create_patient(ctx.session, event.phone, ctx.now)
    if event.push_name and event.push_name != patient.push_name:
        patient.push_name = event.push_name[:200]
    text = event.text if isinstance(event, ev.TextReceived) else ""
    if text and optout.is_opt_out(text):
        if optout.opt_out(ctx.session, patient, event.event_id, ctx.now):
            ctx.outbox.text(
                patient, ctx.profile.text("opted_out", patient.language), purpose="optout"
            )
            return "opted out"
        return "already opted out"
    opting_in = text and optout.is_opt_in(text)
    if opting_in and optout.opt_in(ctx.session, patient, event.event_id, ctx.now):
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


def handle_status(ctx: HandlerContext, event: ev.StatusChanged) -> str:
    """Move our sent message forward; statuses of inbound messages are just recorded."""
    outcome = apply_status(ctx.session, event.event_id, event.status, event.at or ctx.now)
    if outcome != "unknown":
        for hook in STATUS_HOOKS:
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


def _set_state(session: Session, key: str, value: dict, now: datetime) -> None:
    row = session.get(GatewayState, key)
    if row is None:
        session.add(GatewayState(key=key, value=value, updated_at=now))
    else:
        row.value, row.updated_at = value, now


def handle_channel(ctx: HandlerContext, event: ev.ChannelChanged) -> str:
    """Keep the channel's state for /healthz; a logged-out phone is logged loudly."""
    _set_state(ctx.session, "channel", {"status": event.status, "at": ctx.now.isoformat()}, ctx.now)
    if event.status not in HEALTHY_CHANNEL:
        log.error("WhatsApp channel needs attention: %s (scan the QR code in Whapi)", event.status)
    return f"channel {event.status}"


def handle_recorded(ctx: HandlerContext, event: ev.Event) -> str:
    """Group, label and chat events are kept in the inbox as the record; nothing to send."""
    return f"recorded {type(event).__name__}"


def handle_ignored(ctx: HandlerContext, event: ev.Ignored) -> str:
    return f"ignored: {event.reason}"


# Extended by other areas (reminders watch statuses for read-without-reply follow-ups).
STATUS_HOOKS: list[Callable[[HandlerContext, ev.StatusChanged, str], None]] = []

DISPATCH: dict[type, Callable[[HandlerContext, ev.Event], str]] = {
    ev.TextReceived: handle_patient_message,
    ev.MediaReceived: handle_patient_message,
    ev.LocationReceived: handle_patient_message,
    ev.ContactReceived: handle_patient_message,
    ev.ButtonTapped: handle_patient_message,
    ev.ListPicked: handle_patient_message,
    ev.OtherMessage: handle_patient_message,
    ev.ReactionChanged: handle_reaction,
    ev.StatusChanged: handle_status,
    ev.OwnEcho: handle_echo,
    ev.CallReceived: handle_call,
    ev.ChannelChanged: handle_channel,
    ev.GroupChanged: handle_recorded,
    ev.LabelChanged: handle_recorded,
    ev.ChatChanged: handle_recorded,
    ev.Ignored: handle_ignored,
}
