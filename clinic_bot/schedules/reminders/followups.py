"""Read without reply: a reminder read (or delivered) starts the clock for one follow-up."""

from __future__ import annotations

from sqlalchemy import select

from clinic_bot.models import Appointment, OutboxMessage
from clinic_bot.models.reminders import FOLLOWUP, Reminder
from clinic_bot.schedules.reminders.plan import insert_reminders, reminder_row


def on_status(ctx, event, outcome: str) -> None:
    """A reminder read (or delivered, if the profile says so) starts the follow-up clock."""
    if outcome not in ("delivered", "read", "played"):
        return
    msg = ctx.session.execute(
        select(OutboxMessage).where(OutboxMessage.provider_message_id == event.event_id)
    ).scalar_one_or_none()
    if msg is None or not msg.idempotency_key.startswith("reminder:"):
        return
    row = ctx.session.execute(
        select(Reminder).where(Reminder.outbox_key == msg.idempotency_key)
    ).scalar_one_or_none()
    if row is None:
        return
    row.read_at = row.read_at or msg.read_at
    if outcome == "delivered" and not ctx.profile.followup_on_delivered:
        return
    started = (msg.read_at if outcome != "delivered" else msg.delivered_at) or ctx.now
    appt = ctx.session.get(Appointment, row.appointment_id)
    if appt.version != row.appointment_version or appt.status != "booked":
        return
    due = started + ctx.profile.noshow_followup_after
    fields = {"quiet_since": row.sent_at or started}
    if due >= appt.starts_at:
        fields.update(status="skipped", reason="it would fall after the start")
    insert_reminders(ctx.session, [reminder_row(appt, FOLLOWUP, due, ctx.now, **fields)])
