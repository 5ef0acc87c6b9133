"""Typed events: what the worker sees once the gateway adapter has parsed an inbox row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Event:
    """Base of every typed event; `event_id` is the gateway's id for the item."""

    event_id: str


@dataclass(frozen=True)
class PatientMessage(Event):
    """Something a person sent in a one-to-one chat."""

    phone: str  # E.164 digits
    chat_id: str
    at: datetime | None
    push_name: str | None = None
    quoted_id: str | None = None


@dataclass(frozen=True)
class TextReceived(PatientMessage):
    text: str = ""


@dataclass(frozen=True)
class MediaReceived(PatientMessage):
    media_type: str = ""  # image, video, gif, short, audio, voice, document, sticker
    mime_type: str | None = None
    caption: str | None = None
    media_id: str | None = None


@dataclass(frozen=True)
class LocationReceived(PatientMessage):
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None


@dataclass(frozen=True)
class ContactReceived(PatientMessage):
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ButtonTapped(PatientMessage):
    """A quick-reply button tap; `button_id` has the gateway's `ButtonsV3:` prefix removed."""

    button_id: str = ""
    title: str = ""


@dataclass(frozen=True)
class ListPicked(PatientMessage):
    """A list row pick; `row_id` has the gateway's `ListV3:` prefix removed."""

    row_id: str = ""
    title: str = ""
    description: str = ""


@dataclass(frozen=True)
class ReactionChanged(PatientMessage):
    """An emoji reaction added (emoji set) or removed (emoji empty) on `target_id`."""

    target_id: str = ""
    emoji: str = ""


@dataclass(frozen=True)
class OtherMessage(PatientMessage):
    """A message type the bot does not understand (poll, product, edit, …); it still answers."""

    message_type: str = ""


@dataclass(frozen=True)
class OwnEcho(Event):
    """A message sent from the clinic's own number (our API sends, or staff on the phone)."""

    chat_id: str
    source: str
    text: str = ""


@dataclass(frozen=True)
class StatusChanged(Event):
    """A delivery receipt for a message: sent, delivered, read, played, failed, …"""

    status: str
    recipient: str = ""
    at: datetime | None = None
    errors: tuple = ()


@dataclass(frozen=True)
class CallReceived(Event):
    phone: str
    status: str  # initiated, ringing, missed, answered, canceled, rejected
    video: bool = False
    group_call: bool = False
    at: datetime | None = None


@dataclass(frozen=True)
class GroupChanged(Event):
    group_id: str
    action: str  # created, add, remove, promote, demote, updated, message
    participants: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelChanged(Event):
    label_id: str
    name: str = ""
    removed: bool = False


@dataclass(frozen=True)
class ChannelChanged(Event):
    """The gateway channel's health, or the clinic phone logging in or out."""

    status: str  # AUTH, QR, INIT, LAUNCH, ERROR, STOP, LOGGED_OUT, CONNECTED
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChatChanged(Event):
    chat_id: str
    action: str


@dataclass(frozen=True)
class Ignored(Event):
    """Something recorded but deliberately not acted on (system notices, unknown kinds)."""

    reason: str
