"""Typed SQLAlchemy models, one module per area; importing this package registers them all."""

from .appointments import Appointment, PractitionerLock
from .broadcasts import Broadcast, BroadcastRecipient  # noqa: F401
from .calendar import ImportedEvent  # noqa: F401
from .core import (
    ApiToken,
    GatewayState,
    InboxEvent,
    OutboxMessage,
    Patient,
    Reaction,
    StaffUser,
)
from .reminders import Reminder  # noqa: F401
from .sandbox import SandboxMessage

__all__ = [
    "ApiToken",
    "Appointment",
    "GatewayState",
    "InboxEvent",
    "OutboxMessage",
    "Patient",
    "PractitionerLock",
    "Reaction",
    "SandboxMessage",
    "StaffUser",
]
