"""The WhatsApp channel as the relay sees it: connected, or paused with messages waiting.

One fact row (`gateway_state` key "channel") holds the channel's last known state, written by
the relay (a 401 or 404 on a send, a GET /health probe) and by the `health`/`user` webhooks.
While it says the phone is logged out or the channel is unknown, nothing is sent and nothing is
dead-lettered: messages wait, and staff see why (`channel_state`, shown in /healthz and pages).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_bot.models import GatewayState, OutboxMessage
from clinic_bot.models.statuses import UNSENT

CHANNEL_KEY = "channel"
# States in which a send cannot go out: hold every message until the channel is AUTH again.
PAUSING = {"UNAUTHORIZED", "NOT_FOUND", "LOGGED_OUT", "QR", "STOP", "ERROR", "SYNC_ERROR"}
HEALTHY = {"AUTH", "CONNECTED"}

OPERATOR_HINT = {
    "NOT_FOUND": "Whapi does not know this channel: check WHAPI_TOKEN (a wrong token is a 404)",
    "UNAUTHORIZED": "the clinic's phone is logged out of WhatsApp: open Whapi and scan the QR code",
}
DEFAULT_HINT = "the clinic's WhatsApp phone is logged out: scan the QR code in Whapi"


def read_channel(session: Session) -> dict:
    """The stored channel fact ({} when none was recorded yet)."""
    row = session.get(GatewayState, CHANNEL_KEY)
    return dict(row.value) if row is not None and isinstance(row.value, dict) else {}


def is_paused(value: dict) -> bool:
    """True when the stored channel state means sends must wait."""
    return str(value.get("status", "")).upper() in PAUSING


def waiting_count(session: Session) -> int:
    """How many outbox messages are not sent yet (pending or in flight)."""
    return session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(UNSENT))
    ).scalar_one()


def channel_state(session: Session, zone: tzinfo | None = None) -> dict:
    """The channel's state and the waiting count, with the sentence staff see on every page.

    {"status", "connected", "since", "waiting", "message", "hint"}; `message` is None while
    the channel is connected, else e.g. "WhatsApp disconnected since 08:12, 14 messages waiting"
    (the time in `zone`, UTC when none is given).
    """
    value = read_channel(session)
    status = str(value.get("status") or "unknown")
    waiting = waiting_count(session)
    paused = is_paused(value)
    since = value.get("since") or value.get("at") if paused else None
    message = hint = None
    if paused:
        hint = OPERATOR_HINT.get(status.upper(), DEFAULT_HINT)
        when = _clock_time(since, zone)
        noun = "message" if waiting == 1 else "messages"
        message = f"WhatsApp disconnected since {when}, {waiting} {noun} waiting"
    return {
        "status": status,
        "connected": not paused,
        "since": since,
        "waiting": waiting,
        "message": message,
        "hint": hint,
        "error": value.get("error") if paused else None,
    }


def _clock_time(iso: str | None, zone: tzinfo | None) -> str:
    if not iso:
        return "an unknown time"
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return "an unknown time"
    return at.astimezone(zone).strftime("%H:%M") if zone else at.strftime("%H:%M UTC")


def mark_channel(session: Session, status: str, now: datetime, error: str | None = None) -> dict:
    """Record the channel's state; the first moment of a disconnection is kept as `since`."""
    old = read_channel(session)
    value = {"status": status, "at": now.isoformat()}
    if status.upper() in PAUSING:
        kept = old.get("since") if is_paused(old) else None
        value["since"] = kept or now.isoformat()
        if error:
            value["error"] = error[:500]
    GatewayState.put(session, CHANNEL_KEY, value, now)
    return value
