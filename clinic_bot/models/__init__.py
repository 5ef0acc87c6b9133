"""Typed SQLAlchemy models, one module per area; importing this package registers them all."""

from clinic_bot.models.appointments import Appointment, PractitionerLock
from clinic_bot.models.broadcasts import Broadcast, BroadcastRecipient  # noqa: F401
from clinic_bot.models.calendar import BusyBlock, CalendarFeed, CalendarImport, ImportedEvent
from clinic_bot.models.conversation import StaffAlert, WaitlistEntry, WaitlistOffer
from clinic_bot.models.core import (
    ApiToken,
    GatewayState,
    InboxEvent,
    OutboxMessage,
    Patient,
    Reaction,
    StaffUser,
)
from clinic_bot.models.reminders import Reminder  # noqa: F401
from clinic_bot.models.sandbox import SandboxMessage
from clinic_bot.models.staff import AuditEntry, LoginFailure, StaffNote, StaffSession

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Appointment",
    "BusyBlock",
    "CalendarFeed",
    "CalendarImport",
    "GatewayState",
    "ImportedEvent",
    "InboxEvent",
    "LoginFailure",
    "OutboxMessage",
    "Patient",
    "PractitionerLock",
    "Reaction",
    "SandboxMessage",
    "StaffSession",
    "StaffAlert",
    "StaffNote",
    "StaffUser",
    "WaitlistEntry",
    "WaitlistOffer",
]
