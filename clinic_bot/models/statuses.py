"""The statuses rows move through, as StrEnums (they compare equal to the stored strings)."""

from __future__ import annotations

from enum import StrEnum


class AppointmentStatus(StrEnum):
    """Where an appointment stands (CONTRACT §5)."""

    BOOKED = "booked"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    COMPLETED = "completed"


# Appointments that still hold their time and get reminders.
ACTIVE_APPOINTMENT = (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED)


class AppointmentSource(StrEnum):
    """Where an appointment came from."""

    WHATSAPP = "whatsapp"
    ICS = "ics"
    API = "api"
    STAFF = "staff"


class DeliveryStatus(StrEnum):
    """An outbox message's fate: forward only through pending → … → played (STATUS_RANK)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"  # the gateway reported it failed
    DEAD = "dead"  # we gave up on it (dead letter)
    CANCELLED = "cancelled"  # withdrawn before it was sent (opt-out, paused broadcast)


# Delivery progress; a status webhook may only move a message to a higher rank.
DELIVERY_RANK = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
    DeliveryStatus.PLAYED: 5,
}
UNSENT = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
GONE_OUT = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.PLAYED,
)
UNDELIVERABLE = (DeliveryStatus.DEAD, DeliveryStatus.FAILED)


class InboxStatus(StrEnum):
    """A stored webhook item's handling."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    IGNORED = "ignored"
    DEAD = "dead"


class ReminderStatus(StrEnum):
    """A reminder row's fate; a skipped or voided row keeps its reason."""

    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    SKIPPED = "skipped"
    VOIDED = "voided"
    FAILED = "failed"
