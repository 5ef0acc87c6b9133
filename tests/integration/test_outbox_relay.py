"""The outbox relay against the sandbox gateway over HTTP: retries end in exactly one delivered
message, a refused send is dead-lettered with Whapi's error, and statuses only move forward."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clinic_bot.core.db import claim
from clinic_bot.delivery.outbox import Outbox, enqueue
from clinic_bot.delivery.relay import LEASE, Relay
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent, OutboxMessage

PHONE = "4915112345678"
CHAT = f"{PHONE}@s.whatsapp.net"


@pytest.fixture
def relay(live_server, clock):
    """The worker's relay, driven by hand against the live sandbox gateway."""
    rt = live_server.runtime
    r = Relay(rt.db, rt.client, rt.clock)
    yield r
    r.close()


def queue_text(runtime, text: str, key: str = "test:1") -> int:
    """Queue one text to the test patient, as a handler would; returns the row id."""
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, runtime.clock())
        Outbox(s, runtime.clock(), "test").text(patient, text, key=key)
    return row(runtime, key).id


def row(runtime, key: str) -> OutboxMessage:
    with runtime.db.Session() as s:
        return s.execute(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == key)
        ).scalar_one()


def fault(live, **spec) -> None:
    r = live.http.post(f"{live.base_url}/sandbox/api/faults", json=spec)
    assert r.status_code == 200, r.text


def fault_count(live) -> int:
    return len(live.http.get(f"{live.base_url}/sandbox/api/faults").json()["items"])


def sent_texts(live) -> list[str]:
    return [m["text"] for m in live.outgoing(PHONE)]


def retry_until_settled(relay, clock, rounds: int = 12) -> None:
    """Let retries come due by moving the clock, never by sleeping."""
    for _ in range(rounds):
        relay.drain()
        clock.advance(minutes=15)
    relay.drain()


@pytest.mark.parametrize(
    "spec",
    [{"status": 500, "count": 2}, {"status": 429}, {"status": 503, "count": 3}, {"status": 502}],
    ids=["500-twice", "429", "503-three-times", "502"],
)
def test_gateway_errors_that_pass_end_in_exactly_one_delivered_reply(
    live_server, relay, clock, spec
):
    fault(live_server, **spec)
    queue_text(live_server.runtime, "Your appointment is confirmed.")
    relay.drain()
    first = row(live_server.runtime, "test:1")
    assert first.status == "pending"
    assert first.last_error.startswith(f"HTTP {spec['status']}")
    assert first.next_attempt_at > clock()  # a backoff, not a hot loop
    assert relay.drain() == 0  # nothing is due until time passes
    retry_until_settled(relay, clock)
    assert sent_texts(live_server) == ["Your appointment is confirmed."]
    final = row(live_server.runtime, "test:1")
    assert final.status in ("sent", "delivered", "read")
    assert final.attempts == spec.get("count", 1) + 1
    assert final.provider_message_id


def test_backoff_grows_between_attempts(live_server, relay, clock):
    fault(live_server, status=500, count=4)
    queue_text(live_server.runtime, "Backoff check")
    gaps = []
    for _ in range(4):
        relay.drain()
        due = row(live_server.runtime, "test:1").next_attempt_at
        gaps.append(due - clock())
        clock.set(due)
    assert gaps == sorted(gaps)
    assert gaps[-1] > gaps[0]


def test_a_send_that_timed_out_but_was_delivered_is_not_sent_again(live_server, relay, clock):
    live_server.runtime.client.timeout = (3.05, 0.3)  # read timeout shorter than the delay
    fault(live_server, delay=1.0, deliver=True)
    queue_text(live_server.runtime, "Timed out but delivered")
    relay.drain()
    pending = row(live_server.runtime, "test:1")
    assert pending.status == "pending"
    assert pending.uncertain_since is not None
    assert pending.last_error.startswith("timeout")
    # The gateway did send it: its echo (from_me) arrives and settles the row by fingerprint.
    live_server.wait_for(lambda: sent_texts(live_server))

    def echo_stored():
        with live_server.runtime.db.Session() as s:
            return s.execute(
                select(InboxEvent).where(InboxEvent.payload["from_me"].as_boolean())
            ).first()

    live_server.wait_for(echo_stored)
    drain_inbox(live_server.runtime)
    settled = row(live_server.runtime, "test:1")
    assert settled.status in ("sent", "delivered", "read")  # its statuses may follow the echo
    assert settled.provider_message_id
    retry_until_settled(relay, clock)
    assert sent_texts(live_server) == ["Timed out but delivered"]


def test_a_send_that_timed_out_and_was_not_delivered_is_sent_once_later(live_server, relay, clock):
    live_server.runtime.client.timeout = (3.05, 0.3)
    fault(live_server, delay=0.8, deliver=False)
    queue_text(live_server.runtime, "Timed out, lost")
    relay.drain()
    # On a loaded machine the gateway may start handling the first attempt after the client gave
    # up: let it take the fault first, or the retry would take it instead.
    live_server.wait_for(lambda: fault_count(live_server) == 0)
    assert row(live_server.runtime, "test:1").uncertain_since is not None
    assert sent_texts(live_server) == []
    retry_until_settled(relay, clock)
    assert sent_texts(live_server) == ["Timed out, lost"]
    assert row(live_server.runtime, "test:1").status in ("sent", "delivered", "read")


def test_a_400_from_the_gateway_is_dead_lettered_at_once_with_whapis_error(
    live_server, relay, clock
):
    # Meta's button shape: Whapi answers 400 (reference §2.2); the sandbox does the same.
    meta_style = {
        "type": "button",
        "to": CHAT,
        "body": {"text": "Pick one"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
    }
    with live_server.runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, clock())
        enqueue(
            s,
            key="test:400",
            chat_id=CHAT,
            endpoint="messages/interactive",
            body=meta_style,
            now=clock(),
            patient=patient,
        )
    relay.drain()
    dead = row(live_server.runtime, "test:400")
    assert dead.status == "dead"
    assert dead.attempts == 1
    assert dead.failed_at is not None
    assert "HTTP 400" in dead.last_error
    assert "Wrong request parameters" in dead.last_error
    assert "quick_reply" in dead.last_error  # Whapi's details are kept for staff
    retry_until_settled(relay, clock)
    assert row(live_server.runtime, "test:400").attempts == 1
    assert live_server.outgoing(PHONE) == []


def test_an_injected_400_is_dead_lettered_and_the_next_message_still_goes(
    live_server, relay, clock
):
    fault(live_server, status=400, message="Wrong request parameters")
    queue_text(live_server.runtime, "First", key="test:a")
    queue_text(live_server.runtime, "Second", key="test:b")
    retry_until_settled(relay, clock)
    assert row(live_server.runtime, "test:a").status == "dead"
    assert sent_texts(live_server) == ["Second"]


# ------------------------------------------------------------------ statuses


def post_status(live, provider_id: str, status: str, ts: int = 1795500000) -> None:
    body = {
        "statuses": [
            {
                "id": provider_id,
                "code": 3,
                "status": status,
                "recipient_id": CHAT,
                "timestamp": str(ts),
            }
        ],
        "event": {"type": "statuses", "event": "post"},
    }
    assert live.post_webhook(body).status_code == 200


def sent_row(runtime, clock, provider_id: str) -> None:
    """An outbox row already sent with `provider_id` (statuses are about it)."""
    queue_text(runtime, f"text for {provider_id}", key=f"test:{provider_id}")
    with runtime.db.transaction() as s:
        r = s.execute(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == f"test:{provider_id}")
        ).scalar_one()
        r.status, r.provider_message_id, r.sent_at = "sent", provider_id, clock()


def status_of(runtime, provider_id: str) -> str:
    return row(runtime, f"test:{provider_id}").status


@pytest.mark.parametrize(
    "sequence, final",
    [
        (["delivered", "read"], "read"),
        (["read", "delivered"], "read"),
        (["read", "sent", "delivered", "read", "read"], "read"),
        (["delivered", "failed"], "delivered"),
        (["read", "failed"], "read"),
        (["sent", "failed"], "failed"),
        (["failed", "delivered"], "failed"),
        (["read", "played", "read"], "played"),
        (["deleted"], "sent"),
        (["pending"], "sent"),
    ],
)
def test_statuses_arriving_out_of_order_or_repeated_never_move_a_message_back(
    live_server, clock, sequence, final
):
    sent_row(live_server.runtime, clock, "wamid-1")
    for n, status in enumerate(sequence):
        post_status(live_server, "wamid-1", status, ts=1795500000 + n)
        drain_inbox(live_server.runtime)
    assert status_of(live_server.runtime, "wamid-1") == final


def test_read_sets_the_read_and_delivered_times_once(live_server, clock):
    sent_row(live_server.runtime, clock, "wamid-2")
    post_status(live_server, "wamid-2", "read", ts=1795500100)
    drain_inbox(live_server.runtime)
    first = row(live_server.runtime, "test:wamid-2")
    assert first.read_at is not None and first.delivered_at is not None
    post_status(live_server, "wamid-2", "played", ts=1795500900)
    drain_inbox(live_server.runtime)
    later = row(live_server.runtime, "test:wamid-2")
    assert later.read_at == first.read_at


def test_a_status_that_outruns_the_send_result_is_applied_once_the_send_is_recorded(
    live_server, clock
):
    post_status(live_server, "wamid-early", "delivered")
    drain_inbox(live_server.runtime)
    with live_server.runtime.db.Session() as s:
        waiting = s.execute(select(InboxEvent)).scalar_one()
    assert waiting.status == "pending"  # retried shortly: the send may not be recorded yet
    sent_row(live_server.runtime, clock, "wamid-early")
    clock.advance(seconds=5)
    drain_inbox(live_server.runtime)
    assert status_of(live_server.runtime, "wamid-early") == "delivered"


def test_a_status_for_a_message_we_never_sent_is_let_go_after_a_while(live_server, clock):
    post_status(live_server, "wamid-stranger", "read")
    drain_inbox(live_server.runtime)
    clock.advance(minutes=3)
    drain_inbox(live_server.runtime)
    with live_server.runtime.db.Session() as s:
        done = s.execute(select(InboxEvent)).scalar_one()
    assert done.status == "done"
    assert "did not send" in done.outcome


def test_the_real_send_path_moves_to_read_through_the_sandbox_statuses(live):
    """Over the running worker: the echo and sent/delivered/read webhooks settle the row."""
    live.patient(PHONE, text="hi")
    live.wait_for(lambda: live.outgoing(PHONE))
    live.settle()

    def read_rows():
        with live.runtime.db.Session() as s:
            return (
                s.execute(select(OutboxMessage).where(OutboxMessage.status == "read"))
                .scalars()
                .all()
            )

    rows = live.wait_for(read_rows)
    assert all(r.read_at and r.delivered_at and r.sent_at for r in rows)
    assert rows[0].read_at - rows[0].sent_at < timedelta(minutes=1)


# ------------------------------------------------------------------ sends a dead worker left


def abandon(runtime, clock) -> None:
    """A worker claims the row for sending and dies before it records anything."""
    ids = claim(
        runtime.db,
        OutboxMessage,
        now=clock(),
        lease=LEASE,
        limit=10,
        claimed_status="sending",
    )
    assert len(ids) == 1
    clock.advance(seconds=LEASE.total_seconds() + 1)


def test_a_send_left_in_flight_by_a_dead_worker_waits_for_its_echo_first(live_server, relay, clock):
    queue_text(live_server.runtime, "Were you sent?")
    abandon(live_server.runtime, clock)
    relay.drain()
    parked = row(live_server.runtime, "test:1")
    assert parked.status == "pending"
    assert parked.uncertain_since is not None
    assert parked.next_attempt_at > clock()
    assert live_server.outgoing(PHONE) == []
    # The dead worker's send had gone out: Whapi's echo arrives and settles the row.
    echo = {
        "messages": [
            {
                "id": "echo-of-abandoned",
                "from_me": True,
                "type": "text",
                "chat_id": CHAT,
                "timestamp": 1795500000,
                "source": "api",
                "status": "pending",
                "text": {"body": "Were you sent?"},
            }
        ],
        "event": {"type": "messages", "event": "post"},
    }
    assert live_server.post_webhook(echo).status_code == 200
    drain_inbox(live_server.runtime)
    retry_until_settled(relay, clock)
    settled = row(live_server.runtime, "test:1")
    assert (settled.status, settled.provider_message_id) == ("sent", "echo-of-abandoned")
    assert live_server.outgoing(PHONE) == []  # never sent a second time


def test_a_send_left_in_flight_without_an_echo_is_sent_once_after_a_lease(
    live_server, relay, clock
):
    queue_text(live_server.runtime, "Lost with its worker")
    abandon(live_server.runtime, clock)
    relay.drain()
    assert live_server.outgoing(PHONE) == []
    retry_until_settled(relay, clock)
    assert sent_texts(live_server) == ["Lost with its worker"]


def test_a_send_left_in_flight_is_never_taken_straight_back_by_the_claim(live_server, relay, clock):
    relay._parked_at = float("inf")  # it has just looked for abandoned sends: not again yet
    queue_text(live_server.runtime, "Only through the parking step")
    abandon(live_server.runtime, clock)
    relay.drain()
    assert live_server.outgoing(PHONE) == []
    assert row(live_server.runtime, "test:1").status == "sending"
    assert relay.park_abandoned(clock()) == 1
    retry_until_settled(relay, clock)
    assert sent_texts(live_server) == ["Only through the parking step"]
