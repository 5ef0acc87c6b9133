"""A patient message with an odd field still gets its reply; one nothing can be made of is a
staff-visible dead letter naming the patient. Outbox keys stay bounded whatever the ids."""

from __future__ import annotations

import json

import pytest

from clinic_bot.delivery.outbox import MAX_KEY
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import OutboxMessage
from tests.conftest import WEBHOOK_SECRET
from tests.reliability.support import inbox

PHONE = "4915112345678"
MSG = {"type": "messages", "event": "post"}


def base(mid) -> dict:
    return {
        "id": mid,
        "from_me": False,
        "type": "text",
        "chat_id": f"{PHONE}@s.whatsapp.net",
        "timestamp": 1772442000,
        "from": PHONE,
    }


def post(client, *items):
    return client.post(
        "/webhooks/whapi",
        data=json.dumps({"messages": list(items), "event": MSG}),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "odd",
    [
        {"text": "hi"},  # a bare string where {"body": …} belongs
        {"text": ["hi", "there"]},  # a list where a string belongs
        {"text": {"body": "hi"}, "id": 4711},  # a number for an id
        {"text": {"body": "hi"}, "id": "x" * 10_000},  # a 10 KB id
        {"text": {"body": "hi"}, "from_name": ["Ana"], "context": "not an object"},
        {"text": {"body": "hi"}, "from_me": "false", "timestamp": "yesterday"},
        {"text": {"body": "hi"}, "type": None},
    ],
    ids=["text-string", "text-list", "id-number", "id-10kb", "odd-names", "odd-flags", "no-type"],
)
def test_a_patient_message_with_an_odd_field_still_gets_a_reply(client, runtime, odd):
    assert post(client, {**base("odd-1"), **odd}).status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    assert row.status == "done", row.last_error
    with runtime.db.Session() as s:
        keys = [m.idempotency_key for m in s.query(OutboxMessage).all()]
    assert keys, "the patient got no answer"
    assert all(len(k) <= MAX_KEY for k in keys)


def test_a_message_nothing_can_be_made_of_is_a_dead_letter_naming_the_patient(client, runtime):
    unreadable = {"id": "lost-1", "type": "text", "from": PHONE, "chat_id": ["not", "a", "chat"]}
    unreadable["from"] = {"not": "a phone"}
    assert post(client, unreadable, "just a string").status_code == 200
    drain_inbox(runtime)
    rows = inbox(runtime)
    assert [r.status for r in rows] == ["dead", "dead"]
    assert all(r.last_error.startswith("could not understand") for r in rows)
    assert all(r.attempts == 1 for r in rows)  # not retried: retrying cannot help


def test_a_message_with_an_unusable_chat_id_is_answered_through_its_sender(client, runtime):
    item = {"id": "lost-2", "type": "text", "from": PHONE, "chat_id": 42}
    item["chat_id"] = {"odd": True}
    assert post(client, item).status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    # The sender's number is usable even when chat_id is not: the patient still gets the reply.
    assert row.status == "done"


def test_a_call_notice_in_the_chat_never_answers_a_missed_call_twice(client, runtime):
    notice = {**base("call-notice-1"), "type": "call"}
    assert post(client, notice).status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    assert row.status == "ignored"
    with runtime.db.Session() as s:
        assert s.query(OutboxMessage).count() == 0


@pytest.mark.parametrize("kind", ["poll", "order", "product", "event", "hsm"])
def test_message_types_we_do_not_handle_are_recorded_and_answered_with_the_menu(
    client, runtime, kind
):
    assert post(client, {**base(f"{kind}-1"), "type": kind, kind: {"x": 1}}).status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    assert row.status == "done"
    with runtime.db.Session() as s:
        assert s.query(OutboxMessage).count() >= 1


def test_messages_removed_all_and_the_method_spelling_of_the_envelope_are_accepted(client, runtime):
    body = {
        "messages_removed_all": f"{PHONE}@s.whatsapp.net",
        "event": {"type": "messages", "method": "delete"},
    }
    r = client.post(
        "/webhooks/whapi",
        data=json.dumps(body),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    assert (row.kind, row.event_method, row.status) == ("messages_removed_all", "delete", "ignored")


def test_a_document_with_caption_is_taken_as_a_document(client, runtime):
    item = {**base("dwc-1"), "type": "documentWithCaption"}
    item["document"] = {"id": "m-1", "mime_type": "application/pdf", "caption": "my referral"}
    assert post(client, item).status_code == 200
    drain_inbox(runtime)
    (row,) = inbox(runtime)
    assert row.status == "done"
