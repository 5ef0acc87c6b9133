"""Typed SQLAlchemy models, one module per area; importing this package registers them all."""

from clinic_bot.models.appointments import Appointment, PractitionerLock
from clinic_bot.models.broadcasts import Broadcast, BroadcastRecipient  # noqa: F401
from clinic_bot.models.calendar import BusyBlock, ImportedEvent
from clinic_bot.models.core import (
    ApiToken,
    GatewayState,
    InboxEvent,
    OutboxMessage,
    Patient,
    Reaction,
    StaffUser,
)
from clinic_bot.models.operations import AuditEntry
from clinic_bot.models.reminders import Reminder  # noqa: F401
from clinic_bot.models.sandbox import SandboxMessage

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Appointment",
    "BusyBlock",
    "GatewayState",
    "ImportedEvent",
    "InboxEvent",
    "OutboxMessage",
    "Patient",
    "PractitionerLock",
    "Reaction",
    "SandboxMessage",
    "StaffUser",
]
