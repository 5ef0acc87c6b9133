"""STOP beats everything: over the running worker, an opt-out keyword is honoured first, recorded
with its message id and time, confirmed once, voids what is pending, and START resumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import InboxEvent, OutboxMessage
from clinic_bot.web.api.auth import create_token

PHONE = "4915112345678"


@pytest.fixture
def api(live):
    """An authenticated API session, with a token made as `clinic-bot api-token create` does."""
    with live.runtime.db.transaction() as s:
        token = create_token(s, "tests", live.runtime.clock())
    session = live.http.__class__()
    session.headers["Authorization"] = f"Bearer {token}"
    return lambda path: session.get(f"{live.base_url}/api/v1{path}")


def handled(live, message_id: str) -> bool:
    """True once the worker has handled the inbound message with this id."""
    with live.runtime.db.Session() as s:
        row = s.execute(
            select(InboxEvent).where(InboxEvent.dedupe_key == f"msg:{message_id}")
        ).scalar_one_or_none()
        return row is not None and row.status in ("done", "ignored")


def say(live, text: str, phone: str = PHONE) -> str:
    """The patient writes; returns once the worker has handled it and the outbox is quiet."""
    mid = live.patient(phone, text=text)["message_id"]
    live.wait_for(lambda: handled(live, mid))
    live.settle()
    return mid


def call_missed(live, phone: str = PHONE) -> None:
    call_id = live.patient(phone, call="missed")["message_id"]

    def done():
        with live.runtime.db.Session() as s:
            row = s.execute(
                select(InboxEvent).where(InboxEvent.dedupe_key.like(f"call:{call_id}:%"))
            ).scalar_one_or_none()
            return row is not None and row.status == "done"

    live.wait_for(done)
    live.settle()


KEYWORDS = ["STOP", "stop", "  Stop  ", "STOPP", "parar", "BAJA", "ARRÊT", "arrêt", "Arret"] + [
    "UNSUBSCRIBE",
    "unsubscribe\n",
    "\tBaja.",
]


def test_every_opt_out_keyword_is_recorded_and_confirmed_once(live, api):
    """One patient per keyword, all in one webhook; each is opted out with its own message."""
    phones = {word: f"49151100000{n:02d}" for n, word in enumerate(KEYWORDS)}
    items = [
        {
            "id": f"kw-{n}",
            "from_me": False,
            "type": "text",
            "chat_id": f"{phone}@s.whatsapp.net",
            "timestamp": 1795500000,
            "source": "mobile",
            "text": {"body": word},
            "from": phone,
        }
        for n, (word, phone) in enumerate(phones.items())
    ]
    before = datetime.now(UTC) - timedelta(seconds=1)
    body = {"messages": items, "event": {"type": "messages", "event": "post"}}
    assert live.post_webhook(body).json()["stored"] == len(KEYWORDS)
    live.wait_for(lambda: all(handled(live, f"kw-{n}") for n in range(len(KEYWORDS))))
    live.settle()
    after = datetime.now(UTC) + timedelta(seconds=1)
    for n, (word, phone) in enumerate(phones.items()):
        sent = live.outgoing(phone)
        assert len(sent) == 1, word
        assert not sent[0].get("buttons")
        assert "START" in sent[0]["text"]
        patient = api(f"/patients/+{phone}").json()
        assert patient["opted_out"] is True, word
        assert patient["opt_out_message_id"] == f"kw-{n}"
        at = datetime.fromisoformat(patient["opted_out_at"].replace("Z", "+00:00"))
        assert before <= at <= after


def test_after_stop_nothing_else_is_sent_until_start(live, api):
    say(live, "hi")
    assert len(live.outgoing(PHONE)) == 1  # the menu
    say(live, "STOP")
    assert len(live.outgoing(PHONE)) == 2  # plus the confirmation
    say(live, "hello?")
    say(live, "menu")
    call_missed(live)
    say(live, "stop")  # a second STOP is not confirmed again
    assert len(live.outgoing(PHONE)) == 2
    assert api(f"/patients/{PHONE}").json()["opted_out"] is True

    say(live, "START")
    sent = live.outgoing(PHONE)
    assert len(sent) >= 3
    assert any(m.get("buttons") for m in sent[2:]), "START shows the menu again"
    assert api(f"/patients/{PHONE}").json()["opted_out"] is False
    count = len(sent)
    say(live, "hi again")
    assert len(live.outgoing(PHONE)) > count


def test_stop_voids_messages_still_waiting_to_be_sent(live):
    later = live.runtime.clock() + timedelta(hours=6)
    with live.runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, live.runtime.clock())
        Outbox(s, live.runtime.clock(), "test").text(
            patient, "Reminder: your visit is tomorrow", key="reminder:test:1", not_before=later
        )
    say(live, "STOP")
    with live.runtime.db.Session() as s:
        reminder = s.execute(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == "reminder:test:1")
        ).scalar_one()
    assert reminder.status == "cancelled"
    assert reminder.last_error == "patient opted out"


def test_stop_in_the_same_webhook_as_a_greeting_is_the_last_word(live):
    base = {
        "from_me": False,
        "type": "text",
        "chat_id": f"{PHONE}@s.whatsapp.net",
        "timestamp": 1795500000,
        "source": "mobile",
        "from": PHONE,
    }
    body = {
        "messages": [
            {**base, "id": "batch-hi", "text": {"body": "hi"}},
            {**base, "id": "batch-stop", "text": {"body": "STOP"}},
        ],
        "event": {"type": "messages", "event": "post"},
    }
    assert live.post_webhook(body).status_code == 200
    live.wait_for(lambda: handled(live, "batch-stop"))
    live.settle()
    sent = live.outgoing(PHONE)
    # The worker may already have sent the menu for "hi"; after STOP only its confirmation goes.
    assert "START" in sent[-1]["text"]
    assert [m for m in sent if "START" in m["text"]] == [sent[-1]]
    assert len(sent) <= 2


def test_stop_in_the_middle_of_a_flow_still_opts_out(live, api):
    say(live, "hi")
    menu = next(m for m in live.outgoing(PHONE) if m.get("buttons"))
    tap = live.patient(PHONE, button={"id": menu["buttons"][0]["id"]})["message_id"]
    live.wait_for(lambda: handled(live, tap))
    live.settle()
    count = len(live.outgoing(PHONE))
    say(live, "Stop")
    assert api(f"/patients/{PHONE}").json()["opted_out"] is True
    assert len(live.outgoing(PHONE)) == count + 1


def test_a_sentence_with_stop_in_it_is_not_an_opt_out(live, api):
    say(live, "please don't stop my appointment")
    assert api(f"/patients/{PHONE}").json()["opted_out"] is False


def test_nothing_new_can_be_queued_for_an_opted_out_patient(live):
    say(live, "STOP")
    with live.runtime.db.transaction() as s:
        patient = get_or_create_patient(s, PHONE, live.runtime.clock())
        queued = Outbox(s, live.runtime.clock(), "test").text(patient, "Broadcast", key="b:1")
    assert queued is False
