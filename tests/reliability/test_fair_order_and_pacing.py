"""Patient messages are handled before a flood of bulk events; proactive sends share one pacer
enforced at send time, and replies to a patient who just wrote never wait for it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import INBOX_LEASE, claim_fairly, drain_inbox
from clinic_bot.models import InboxEvent, OutboxMessage, SandboxMessage
from tests.conftest import WEBHOOK_SECRET
from tests.reliability.support import queue_texts, sent_texts

PHONE = "4915112345678"


def post(client, body):
    return client.post(
        "/webhooks/whapi",
        data=json.dumps(body),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )


def test_a_hi_sent_during_a_flood_of_chat_events_is_handled_first(client, runtime):
    chats = {"type": "chats", "event": "post"}
    for batch in range(5):
        items = [{"id": f"{batch}-{n}@s.whatsapp.net", "unread": n} for n in range(1000)]
        assert post(client, {"chats": items, "event": chats}).status_code == 200
    hi = {
        "id": "hi-during-flood",
        "from_me": False,
        "type": "text",
        "chat_id": f"{PHONE}@s.whatsapp.net",
        "timestamp": 1772442000,
        "text": {"body": "hi"},
    }
    assert (
        post(client, {"messages": [hi], "event": {"type": "messages", "event": "post"}}).status_code
        == 200
    )
    first = claim_fairly(runtime, INBOX_LEASE)
    with runtime.db.Session() as s:
        kinds = [s.get(InboxEvent, i).kind for i in first]
    assert kinds == ["messages"]  # 5,000 chat events were stored before it, and wait


def test_the_flood_is_handled_too_once_patients_are_answered(client, runtime):
    items = [{"id": f"{n}@s.whatsapp.net"} for n in range(120)]
    assert (
        post(client, {"chats": items, "event": {"type": "chats", "event": "post"}}).status_code
        == 200
    )
    assert drain_inbox(runtime) == 120


@pytest.fixture
def paced(live_server, clock):
    rt = live_server.runtime
    relay = Relay(
        rt.db,
        rt.client,
        rt.clock,
        proactive_interval=timedelta(seconds=1),
        broadcast_interval=timedelta(seconds=3),
    )
    yield relay
    relay.close()


def send_times(runtime) -> list:
    with runtime.db.Session() as s:
        return [
            m.created_at
            for m in s.query(SandboxMessage)
            .filter(SandboxMessage.direction == "out")
            .order_by(SandboxMessage.id)
        ]


def test_proactive_sends_to_different_patients_are_paced_at_send_time(live_server, paced, clock):
    rt = live_server.runtime
    for n in range(3):
        queue_texts(rt, f"49151123456{n:02d}", [f"reminder {n}"], purpose="reminder")
    for _ in range(4):
        paced.drain()
        clock.advance(seconds=1)
    times = send_times(rt)
    assert len(times) == 3
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False))


def test_broadcast_sends_keep_the_broadcast_minimum_between_actual_sends(live_server, paced, clock):
    rt = live_server.runtime
    for n in range(2):
        queue_texts(rt, f"49151123457{n:02d}", [f"news {n}"], purpose="broadcast")
    paced.drain()
    assert len(send_times(rt)) == 1
    clock.advance(seconds=2)
    paced.drain()
    assert len(send_times(rt)) == 1  # 2 s later is still under the 3 s broadcast minimum
    clock.advance(seconds=1)
    paced.drain()
    times = send_times(rt)
    assert len(times) == 2 and times[1] - times[0] >= timedelta(seconds=3)


def test_a_reply_to_a_patient_who_just_wrote_never_waits_for_the_pacer(live_server, paced, clock):
    rt = live_server.runtime
    queue_texts(rt, "4915112345600", ["reminder a"], purpose="reminder")
    queue_texts(rt, "4915112345601", ["reminder b"], purpose="reminder")
    queue_texts(rt, PHONE, ["your answer"], purpose="reply")
    paced.drain()
    assert sorted(sent_texts(rt)) == ["reminder a", "your answer"]
    with rt.db.Session() as s:
        waiting = s.query(OutboxMessage).filter(OutboxMessage.status == "pending").one()
    assert waiting.next_attempt_at == clock() + timedelta(seconds=1)
    assert waiting.attempts == 0  # a paced row did not spend an attempt
