"""The WhatsApp channel's own state (authorized, logged out, QR needed), and records kept as is."""

from __future__ import annotations

import logging

from clinic_bot.delivery.channel import mark_channel
from clinic_bot.domain import events as ev
from clinic_bot.reactions.context import HandlerContext

log = logging.getLogger(__name__)

HEALTHY_CHANNEL = {"AUTH", "CONNECTED"}


def handle_channel(ctx: HandlerContext, event: ev.ChannelChanged) -> str:
    """Keep the channel's state for /healthz; a logged-out phone is logged loudly."""
    # The relay reads this fact: AUTH resumes paused sends, a logged-out state pauses them.
    mark_channel(ctx.session, event.status, ctx.now)
    if event.status not in HEALTHY_CHANNEL:
        log.error("WhatsApp channel needs attention: %s (scan the QR code in Whapi)", event.status)
    return f"channel {event.status}"


def handle_recorded(ctx: HandlerContext, event: ev.Event) -> str:
    """Group, label and chat events are kept in the inbox as the record; nothing to send."""
    return f"recorded {type(event).__name__}"


def handle_ignored(ctx: HandlerContext, event: ev.Ignored) -> str:
    """An event we parse but do not act on: kept with the reason."""
    return f"ignored: {event.reason}"
