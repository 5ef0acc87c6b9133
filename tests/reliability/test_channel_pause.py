"""A logged-out phone (401) or a wrong token (404) pauses every send; nothing is dead-lettered,
staff see why and how much waits, and sending resumes when the channel is AUTH again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clinic_bot.adapters.whapi.client import classify_response
from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import OutboxMessage
from tests.reliability.support import queue_texts, sent_texts, set_channel, statuses
from tests.reminders_support import book, reminders

PHONE = "4915112345678"


@pytest.fixture
def relay(live_server, clock):
    rt = live_server.runtime
    r = Relay(rt.db, rt.client, rt.clock)
    yield r
    r.close()


def healthz(live) -> dict:
    r = live.http.get(f"{live.base_url}/healthz")
    assert r.status_code == 200
    return r.json()


def back_online(live) -> bool:
    """Handle stored webhooks (the sandbox's `health` one among them); True once AUTH."""
    drain_inbox(live.runtime)
    return healthz(live)["channel"]["connected"]


def test_a_logged_out_phone_holds_every_send_and_they_all_go_once_it_is_back(live_server, relay):
    rt = live_server.runtime
    set_channel(live_server, "logged_out")
    queue_texts(rt, PHONE, ["one", "two", "three"])
    relay.drain()
    assert statuses(rt) == {"pending": 3}  # none dead-lettered, none lost
    body = healthz(live_server)
    assert body["status"] == "degraded"
    assert body["channel"]["connected"] is False
    assert body["channel"]["waiting"] == 3
    assert body["channel"]["message"].startswith("WhatsApp disconnected since ")
    assert body["channel"]["message"].endswith(", 3 messages waiting")
    # The phone is paired again: Whapi's `health` webhook says AUTH, and the relay resumes.
    set_channel(live_server, "auth")
    live_server.wait_for(lambda: back_online(live_server))
    relay.drain()
    assert sent_texts(rt, PHONE) == ["one", "two", "three"]
    assert statuses(rt).get("dead") is None
    assert healthz(live_server)["status"] == "ok"


def test_the_relay_polls_health_and_resumes_without_any_webhook(live_server, relay):
    rt = live_server.runtime
    set_channel(live_server, "logged_out", webhook=False)
    queue_texts(rt, PHONE, ["held"])
    relay.drain()
    assert relay.probe(force=True) == "QR"  # GET /health: still waiting for the QR scan
    assert statuses(rt) == {"pending": 1}
    set_channel(live_server, "auth", webhook=False)
    assert relay.probe(force=True) is None
    relay.drain()
    assert sent_texts(rt, PHONE) == ["held"]


def test_a_wrong_token_stops_sending_with_a_message_for_the_operator(live_server, relay):
    rt = live_server.runtime
    set_channel(live_server, "wrong_token")
    queue_texts(rt, PHONE, ["never lost"])
    relay.drain()
    assert statuses(rt) == {"pending": 1}
    body = healthz(live_server)
    assert body["channel"]["status"] == "NOT_FOUND"
    assert "WHAPI_TOKEN" in body["attention"]
    set_channel(live_server, "auth", webhook=False)
    assert relay.probe(force=True) is None
    relay.drain()
    assert sent_texts(rt, PHONE) == ["never lost"]


def test_a_reminder_that_became_too_late_while_paused_is_skipped_with_that_reason(
    live_server, relay, clock
):
    from clinic_bot.schedules.reminders.tick import send_due

    rt = live_server.runtime
    appt = book(rt, PHONE, clock() + timedelta(hours=3))
    clock.advance(hours=1, minutes=1)  # the 2h reminder is due
    send_due(rt)
    set_channel(live_server, "logged_out")
    relay.drain()
    assert statuses(rt) == {"pending": 1}
    clock.advance(hours=3)  # the phone stays logged out past the appointment's start
    set_channel(live_server, "auth")
    live_server.wait_for(lambda: back_online(live_server))
    relay.drain()
    assert sent_texts(rt, PHONE) == []
    late = [r for r in reminders(rt, appt).values() if (r.reason or "").startswith("too late")]
    assert [r.status for r in late] == ["skipped"]
    with rt.db.Session() as s:
        (msg,) = s.query(OutboxMessage).all()
    assert (msg.status, msg.last_error.startswith("too late")) == ("cancelled", True)


@pytest.mark.parametrize(
    "status, body, expect",
    [
        (401, b'{"error":{"code":401,"message":"Need channel authorization"}}', "unauthorized"),
        (404, b'{"error":{"code":404,"message":"Channel not found"}}', "not_found"),
        (404, b'{"error":{"code":404,"message":"Media with specified id not found"}}', "final"),
        (400, b'{"error":{"code":400,"message":"Wrong request parameters"}}', "final"),
        (402, b'{"error":{"code":402,"message":"Trial version limit exceeded"}}', "final"),
        (403, b'{"error":{"code":403,"message":"forbidden"}}', "final"),
        (429, b'{"error":{"code":429,"message":"Too many requests"}}', "retry"),
        (500, b"<html>oops</html>", "retry"),
        (503, b"", "retry"),
        (200, b'{"sent": true}', "uncertain"),
        (200, b'{"sent": true, "message": {"id": "abc-def"}}', "ok"),
    ],
)
def test_every_gateway_answer_class_is_told_apart(status, body, expect):
    result = classify_response(status, body)
    got = (
        "ok"
        if result.ok
        else result.channel
        or ("uncertain" if result.uncertain else "retry" if result.retryable else "final")
    )
    assert got == expect
