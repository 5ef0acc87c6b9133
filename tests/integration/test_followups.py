"""Read without reply, STOP, and after the visit: over real HTTP through the sandbox gateway."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import OutboxMessage
from clinic_bot.schedules.reminders.tick import send_due
from tests.reminders_support import (
    body_text,
    book,
    outbox,
    reminders,
    set_status,
    use_profile,
)

PHONE = "4915112345678"
START = datetime.fromisoformat("2026-12-01T09:00:00+00:00")


@pytest.fixture
def chat(live_server, clock):
    """The app on loopback with the sandbox; read receipts are sent only when a test says so."""
    clock.set(START - timedelta(days=10))
    r = live_server.http.put(
        f"{live_server.base_url}/sandbox/api/settings", json={"auto_read": False}
    )
    assert r.status_code == 200
    relay = Relay(live_server.runtime.db, live_server.runtime.client, live_server.runtime.clock)
    live_server.relay = relay
    yield live_server
    relay.close()


def tick(live) -> None:
    """One reminder tick, then hand what it queued to the gateway."""
    send_due(live.runtime)
    live.relay.drain()


def receipt(live, key: str, status: str = "read") -> None:
    """The patient's phone reports `status` for the message with this outbox key."""
    with live.runtime.db.Session() as s:
        pid = s.execute(
            select(OutboxMessage.provider_message_id).where(OutboxMessage.idempotency_key == key)
        ).scalar_one()
    assert pid, f"{key} was not sent"
    r = live.http.post(
        f"{live.base_url}/sandbox/api/statuses", json={"message_id": pid, "status": status}
    )
    assert r.json()["webhook_status"] == 200
    drain_inbox(live.runtime)


def test_a_read_reminder_without_reply_gets_exactly_one_follow_up(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    clock.advance(minutes=10)
    receipt(chat, f"reminder:{appt_id}:1:24h")
    assert reminders(chat.runtime, appt_id)[(1, "24h")].read_at == clock()

    clock.advance(hours=2, seconds=-1)
    tick(chat)
    assert outbox(chat.runtime, "followup:") == []
    clock.advance(seconds=1)
    tick(chat)
    (row,) = outbox(chat.runtime, "followup:")
    assert "will you make it" in body_text(row)
    assert "Tuesday, December 1, 2026 at 10:00" in body_text(row)
    ids = [b["id"] for b in row.body["action"]["buttons"]]
    assert ids == [f"appt:{appt_id}:1:{a}" for a in ("confirm", "reschedule", "cancel")]

    # The 2h reminder is read as well, and nobody answers: still one follow-up in all.
    clock.set(START - timedelta(hours=2))
    tick(chat)
    receipt(chat, f"reminder:{appt_id}:1:2h")
    clock.set(START - timedelta(minutes=1))
    tick(chat)
    assert len(outbox(chat.runtime, "followup:")) == 1
    assert len(outbox(chat.runtime, "reminder:")) == 2


def test_a_patient_who_writes_after_the_reminder_gets_no_follow_up(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    clock.advance(minutes=5)
    receipt(chat, f"reminder:{appt_id}:1:24h")
    clock.advance(minutes=5)
    chat.patient(PHONE, text="thanks, see you")
    drain_inbox(chat.runtime)
    clock.advance(hours=3)
    tick(chat)
    assert outbox(chat.runtime, "followup:") == []
    followup = reminders(chat.runtime, appt_id)[(1, "noshow_followup")]
    assert (followup.status, followup.reason) == ("skipped", "the patient wrote after the reminder")


def test_confirming_the_appointment_means_no_follow_up(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    receipt(chat, f"reminder:{appt_id}:1:24h")
    clock.advance(minutes=30)
    set_status(chat.runtime, appt_id, "confirmed")  # what the Confirm tap does
    clock.advance(hours=3)
    tick(chat)
    assert outbox(chat.runtime, "followup:") == []
    assert reminders(chat.runtime, appt_id)[(1, "noshow_followup")].status == "voided"


def test_delivered_starts_the_follow_up_clock_only_when_the_profile_says_so(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    receipt(chat, f"reminder:{appt_id}:1:24h", "delivered")
    assert (1, "noshow_followup") not in reminders(chat.runtime, appt_id)

    use_profile(chat.runtime, reminders={"followup_on_delivered": True})
    other = book(chat.runtime, "4915199999999", START + timedelta(hours=1))
    clock.set(START - timedelta(hours=23))
    tick(chat)
    receipt(chat, f"reminder:{other}:1:24h", "delivered")
    (sent,) = outbox(chat.runtime, f"reminder:{other}:")
    followup = reminders(chat.runtime, other)[(1, "noshow_followup")]
    assert followup.due_at == sent.delivered_at + timedelta(hours=2)
    clock.set(followup.due_at)
    tick(chat)
    assert [r.idempotency_key for r in outbox(chat.runtime, "followup:")] == [f"followup:{other}"]


def test_a_follow_up_never_goes_out_after_the_start(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=2))  # the 24h reminder was skipped as superseded
    tick(chat)
    clock.advance(minutes=30)
    receipt(chat, f"reminder:{appt_id}:1:2h")
    followup = reminders(chat.runtime, appt_id)[(1, "noshow_followup")]
    assert (followup.status, followup.reason) == ("skipped", "it would fall after the start")
    clock.set(START + timedelta(hours=1))
    tick(chat)
    assert outbox(chat.runtime, "followup:") == []


def test_stop_means_no_reminder_and_no_follow_up(chat, clock):
    first = book(chat.runtime, PHONE, START)
    second = book(chat.runtime, PHONE, START + timedelta(days=7))
    clock.set(START - timedelta(hours=24))
    tick(chat)
    receipt(chat, f"reminder:{first}:1:24h")
    chat.patient(PHONE, text="STOP")
    drain_inbox(chat.runtime)

    rows = reminders(chat.runtime, first) | reminders(chat.runtime, second)
    open_rows = [r for r in rows.values() if r.status not in ("sent",)]
    assert open_rows and {r.status for r in open_rows} == {"voided"}
    assert {r.reason for r in open_rows} == {"the patient opted out"}
    for when in (START - timedelta(hours=2), START + timedelta(days=6)):
        clock.set(when)
        tick(chat)
    assert [r.idempotency_key for r in outbox(chat.runtime, "reminder:")] == [
        f"reminder:{first}:1:24h"
    ]
    assert outbox(chat.runtime, "followup:") == []


def test_no_show_sends_the_missed_you_message_once_with_a_book_button(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START + timedelta(hours=1))
    set_status(chat.runtime, appt_id, "no_show")
    tick(chat)
    set_status(chat.runtime, appt_id, "no_show")  # marked twice (API and staff)
    tick(chat)
    (row,) = outbox(chat.runtime, "visit:")
    assert row.idempotency_key == f"visit:{appt_id}:missed_you"
    assert "we missed you" in body_text(row)
    assert [b["id"] for b in row.body["action"]["buttons"]] == ["menu:book"]
    assert row.status == "sent"  # handed to the gateway
    offered = [m.get("buttons") for m in chat.outgoing(PHONE) if m.get("buttons")]
    assert offered == [[{"id": "menu:book", "title": "Book again"}]]


def test_completed_sends_nothing_unless_the_profile_enables_a_thank_you(chat, clock):
    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START + timedelta(hours=1))
    set_status(chat.runtime, appt_id, "completed")
    tick(chat)
    assert outbox(chat.runtime, "visit:") == []
    assert not [r for r in outbox(chat.runtime) if r.idempotency_key.startswith("reminder:")]

    use_profile(chat.runtime, reminders={"thank_you_after_visit": True})
    other = book(chat.runtime, "4915199999999", START - timedelta(minutes=30) + timedelta(days=1))
    clock.set(START + timedelta(days=1))
    set_status(chat.runtime, other, "completed")
    tick(chat)
    (row,) = outbox(chat.runtime, "visit:")
    assert row.idempotency_key == f"visit:{other}:thank_you"
    assert "thank you for visiting" in body_text(row)


def test_tapping_confirm_on_the_reminder_confirms_and_stops_the_follow_up(chat, clock):
    from clinic_bot.models import Appointment

    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    receipt(chat, f"reminder:{appt_id}:1:24h")
    clock.advance(minutes=20)
    chat.patient(PHONE, button={"id": f"appt:{appt_id}:1:confirm"})
    drain_inbox(chat.runtime)
    with chat.runtime.db.Session() as s:
        assert s.get(Appointment, appt_id).status == "confirmed"
    followup = reminders(chat.runtime, appt_id)[(1, "noshow_followup")]
    assert (followup.status, followup.reason) == ("voided", "the appointment was confirmed")
    assert reminders(chat.runtime, appt_id)[(1, "2h")].status == "pending"
    clock.advance(hours=3)
    tick(chat)
    assert outbox(chat.runtime, "followup:") == []


def test_tapping_cancel_on_the_reminder_cancels_and_voids_the_rest(chat, clock):
    from clinic_bot.models import Appointment

    appt_id = book(chat.runtime, PHONE, START)
    clock.set(START - timedelta(hours=24))
    tick(chat)
    chat.patient(PHONE, button={"id": f"appt:{appt_id}:1:cancel"})
    drain_inbox(chat.runtime)
    chat.relay.drain()
    ask = chat.wait_for(lambda: [m for m in chat.outgoing(PHONE) if m.get("buttons")][-1:])[0]
    assert ask["buttons"][0]["id"] != f"appt:{appt_id}:1:confirm"  # the "are you sure?" step
    chat.patient(PHONE, button={"id": ask["buttons"][0]["id"]})
    drain_inbox(chat.runtime)
    with chat.runtime.db.Session() as s:
        assert s.get(Appointment, appt_id).status == "cancelled"
    assert reminders(chat.runtime, appt_id)[(1, "2h")].status == "voided"
    clock.set(START - timedelta(hours=2))
    tick(chat)
    assert [r.idempotency_key for r in outbox(chat.runtime, "reminder:")] == [
        f"reminder:{appt_id}:1:24h"
    ]


def test_a_reminders_api_entry_shows_when_it_was_sent_and_read_or_that_it_failed(chat, clock):
    from clinic_bot.domain.reminder_trail import reminders_for
    from clinic_bot.models import Appointment

    first = book(chat.runtime, PHONE, START)
    second = book(chat.runtime, "4915199999999", START + timedelta(minutes=30))
    clock.set(START - timedelta(hours=24))
    tick(chat)  # the first is handed to the gateway
    clock.advance(minutes=7)
    receipt(chat, f"reminder:{first}:1:24h")
    faults = f"{chat.base_url}/sandbox/api/faults"
    chat.http.post(faults, json={"status": 400, "message": "Wrong request parameters"})
    clock.set(START - timedelta(hours=23, minutes=30))
    tick(chat)  # the gateway refuses the second for good

    with chat.runtime.db.Session() as s:
        ok = reminders_for(s, s.get(Appointment, first))[0]
        bad = reminders_for(s, s.get(Appointment, second))[0]
    assert (ok["status"], ok["sent_at"], ok["read_at"]) == (
        "sent",
        "2026-11-30T09:00:00Z",
        "2026-11-30T09:07:00Z",
    )
    assert bad["status"] == "failed" and "HTTP 400" in bad["reason"]
