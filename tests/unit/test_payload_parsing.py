"""Whapi webhook bodies (literal samples from the reference and realistic variants, kept as JSON
files in tests/payloads/) become the right typed events, first in the parser, then over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from clinic_bot.adapters.whapi.payloads import parse_item, split_envelope
from clinic_bot.domain import events as ev
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent, OutboxMessage
from tests.conftest import payloads_dir

INDIA = "919984351847"
AUSTRALIA = "61371989950"

# file -> (event class, fields the parsed event must have)
EXPECTED: dict[str, tuple[type, dict]] = {
    "message_text": (
        ev.TextReceived,
        dict(
            event_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw",
            phone=INDIA,
            chat_id=f"{INDIA}@s.whatsapp.net",
            text="Hello world",
            push_name="Gerald",
            at=datetime(2024, 4, 13, 8, 0, 45, tzinfo=UTC),
        ),
    ),
    "message_link_preview": (
        ev.TextReceived,
        dict(text="Is this you? https://sunrise-clinic.example/hours", phone=INDIA),
    ),
    "message_text_emoji_rtl": (ev.TextReceived, dict(text="مرحبا، أريد موعدا 🙏🏽👨‍👩‍👧")),
    "message_media_image": (
        ev.MediaReceived,
        dict(
            media_type="image",
            mime_type="image/jpeg",
            caption="my rash",
            media_id="image-9f8e7d6c5b4a-3a2b1c",
        ),
    ),
    "message_media_video": (ev.MediaReceived, dict(media_type="video", mime_type="video/mp4")),
    "message_media_gif": (ev.MediaReceived, dict(media_type="gif")),
    "message_media_short": (ev.MediaReceived, dict(media_type="short")),
    "message_media_audio": (ev.MediaReceived, dict(media_type="audio", mime_type="audio/mpeg")),
    "message_media_voice": (
        ev.MediaReceived,
        dict(media_type="voice", mime_type="audio/ogg; codecs=opus"),
    ),
    "message_media_document": (
        ev.MediaReceived,
        dict(media_type="document", caption="This is text with file"),
    ),
    "message_media_sticker": (ev.MediaReceived, dict(media_type="sticker")),
    "message_location": (
        ev.LocationReceived,
        dict(latitude=52.5200066, longitude=13.404954, address="Lindenstr. 1, Berlin"),
    ),
    "message_live_location": (ev.LocationReceived, dict(latitude=52.52, longitude=13.40)),
    "message_contact": (ev.ContactReceived, dict(names=("Ana García",))),
    "message_contact_list": (ev.ContactReceived, dict(names=("Ana", "Ben"))),
    "message_button_tap": (
        ev.ButtonTapped,
        dict(
            event_id="g0jEG0ZsSobn4yNGGU3TAg-gDYOS60TLw",
            button_id="randomId1",
            title="Button1",
            quoted_id="yqKj.Z7XWg0g1lA-wD8Sij1GoQ",
            phone=AUSTRALIA,
            push_name="Jonathan",
        ),
    ),
    "message_list_pick": (
        ev.ListPicked,
        dict(
            row_id="r2",
            title="Cheeseburger",
            description="A cheeseburger is …",
            quoted_id="yqKj.LIST0g1lA-wD8Sij1GoQ",
        ),
    ),
    "message_reaction_add": (
        ev.ReactionChanged,
        dict(target_id="yqJRppZk7BI-wNoTwl0rVw", emoji="👍", phone=INDIA),
    ),
    "message_reaction_remove": (
        ev.ReactionChanged,
        dict(target_id="yqJRppZk7BI-wNoTwl0rVw", emoji=""),
    ),
    "message_action_edit": (ev.Ignored, dict(reason="message action edit")),
    "message_poll": (ev.OtherMessage, dict(message_type="poll")),
    "message_own_echo": (
        ev.OwnEcho,
        dict(event_id="yqJRppZk7BI-wNoTwl0rVw", source="api", text="Hello from API"),
    ),
    "message_operator_echo": (
        ev.OwnEcho,
        dict(source="mobile", text="Hi Gerald, reception here"),
    ),
    "message_system_unknown": (ev.Ignored, dict(reason="system notice (unknown)")),
    "message_system": (ev.Ignored, dict(reason="system notice (system)")),
    "message_in_group": (ev.Ignored, dict()),
    "message_from_not_a_phone": (ev.Ignored, dict()),
    "messages_updates": (ev.Ignored, dict()),
    "messages_removed": (ev.Ignored, dict()),
    "status_delivered": (
        ev.StatusChanged,
        dict(
            event_id="YhNqCveDWW90_t8lzrW25w-wO4Twl0rVw",
            status="delivered",
            recipient=f"{INDIA}@s.whatsapp.net",
            at=datetime(2024, 4, 13, 8, 2, 58, tzinfo=UTC),
        ),
    ),
    "status_read": (ev.StatusChanged, dict(status="read")),
    "status_failed": (
        ev.StatusChanged,
        dict(status="failed", errors=({"code": 470, "message": "Re-engagement message"},)),
    ),
    "chats": (ev.ChatChanged, dict(chat_id=f"{INDIA}@s.whatsapp.net", action="chats.post")),
    "chats_removed": (ev.ChatChanged, dict(action="chats_removed.delete")),
    "chats_updates": (
        ev.ChatChanged,
        dict(chat_id=f"{INDIA}@s.whatsapp.net", action="chats_updates.patch"),
    ),
    "groups": (ev.GroupChanged, dict(group_id="120363025246125888@g.us", action="post")),
    "groups_participants": (
        ev.GroupChanged,
        dict(group_id="120363025246125888@g.us", action="add", participants=("61280155346",)),
    ),
    "calls_missed": (
        ev.CallReceived,
        dict(
            event_id="ED3D8F7C8B0A1D2E3F4A5B6C7D8E9F00",
            phone=INDIA,
            status="missed",
            video=False,
            at=datetime(2024, 4, 22, 13, 27, 33, tzinfo=UTC),  # milliseconds, not seconds
        ),
    ),
    "calls_ringing": (ev.CallReceived, dict(status="ringing", video=True)),
    "labels": (ev.LabelChanged, dict(label_id="3", name="VIP", removed=False)),
    "labels_removed": (ev.LabelChanged, dict(label_id="3", removed=True)),
    "health_qr": (ev.ChannelChanged, dict(status="QR")),
    "health_auth": (ev.ChannelChanged, dict(status="AUTH")),
    "user_connected": (ev.ChannelChanged, dict(status="CONNECTED")),
    "user_logged_out": (ev.ChannelChanged, dict(status="LOGGED_OUT")),
    "presences": (ev.Ignored, dict()),
    "unknown_array_key": (ev.Ignored, dict(reason="snapshots.post is recorded, not acted on")),
}

# Kinds the worker answers with at least one message (the menu, or the missed-call text + menu).
ANSWERED = {
    "message_text",
    "message_link_preview",
    "message_text_emoji_rtl",
    "message_media_image",
    "message_media_video",
    "message_media_gif",
    "message_media_short",
    "message_media_audio",
    "message_media_voice",
    "message_media_document",
    "message_media_sticker",
    "message_location",
    "message_live_location",
    "message_contact",
    "message_contact_list",
    "message_button_tap",
    "message_list_pick",
    "message_poll",
    "calls_missed",
}


def load(name: str) -> dict:
    """One stored webhook body."""
    return json.loads((payloads_dir() / f"{name}.json").read_text(encoding="utf-8"))


def parse_all(body: dict) -> list[ev.Event]:
    """What the worker would see for each item of a body."""
    return [
        parse_item(i.kind, i.event_method, i.payload, i.dedupe_key) for i in split_envelope(body)
    ]


def test_every_payload_file_has_an_expectation():
    files = {p.stem for p in payloads_dir().glob("*.json")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_stored_payload_parses_into_its_typed_event(name):
    cls, fields = EXPECTED[name]
    events = parse_all(load(name))
    assert len(events) == 1
    event = events[0]
    assert type(event) is cls
    for field, value in fields.items():
        assert getattr(event, field) == value, field


def test_a_button_id_keeps_an_unknown_prefix_so_it_stays_visible():
    body = load("message_button_tap")
    body["messages"][0]["reply"]["buttons_reply"]["id"] = "Other:xyz"
    (event,) = parse_all(body)
    assert isinstance(event, ev.ButtonTapped)
    assert event.button_id == "Other:xyz"


def test_a_status_and_a_message_with_the_same_id_get_different_keys():
    msg = load("message_text")
    status = load("status_delivered")
    status["statuses"][0]["id"] = msg["messages"][0]["id"]
    (a,) = split_envelope(msg)
    (b,) = split_envelope(status)
    assert a.dedupe_key != b.dedupe_key


def test_the_same_message_twice_in_one_body_is_one_item():
    body = load("message_text")
    body["messages"] = body["messages"] * 2
    assert len(split_envelope(body)) == 1


def test_a_logout_after_a_login_after_a_logout_is_three_items():
    out, back = load("user_logged_out"), load("user_connected")
    t = [datetime(2026, 11, 24, 9, 0, s, tzinfo=UTC) for s in (0, 30, 59)]
    keys = {
        split_envelope(out, t[0])[0].dedupe_key,
        split_envelope(back, t[1])[0].dedupe_key,
        split_envelope(out, t[2])[0].dedupe_key,
    }
    assert len(keys) == 3


def test_a_reaction_whose_emoji_is_not_text_reads_as_removed():
    body = load("message_reaction_add")
    body["messages"][0]["action"]["emoji"] = {"odd": True}
    (event,) = parse_all(body)
    assert isinstance(event, ev.ReactionChanged)
    assert event.emoji == ""


OK = ("done", "ignored")


def _stored_rows(runtime) -> list[InboxEvent]:
    with runtime.db.Session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())


def test_every_stored_payload_is_accepted_over_http_and_handled_without_error(live_server, clock):
    """All files posted to the real webhook; the worker handles each; none ends dead."""
    for name in sorted(EXPECTED):
        r = live_server.post_webhook(load(name))
        assert r.status_code == 200, (name, r.text)
        assert r.json()["received"] == 1, name
    drain_inbox(live_server.runtime)
    # Statuses of messages we never sent wait a little for the send to be recorded, then settle.
    clock.advance(minutes=5)
    drain_inbox(live_server.runtime)
    rows = _stored_rows(live_server.runtime)
    # The two statuses share an id but differ in status; every file is one stored row.
    assert len(rows) == len(EXPECTED)
    unhandled = [(r.dedupe_key, r.status, r.last_error) for r in rows if r.status not in OK]
    assert unhandled == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_payload_over_http_is_answered_only_when_a_patient_needs_an_answer(
    live_server, clock, name
):
    r = live_server.post_webhook(load(name))
    assert r.status_code == 200
    drain_inbox(live_server.runtime)
    clock.advance(minutes=5)
    drain_inbox(live_server.runtime)
    (row,) = _stored_rows(live_server.runtime)
    assert row.status in ("done", "ignored"), row.last_error
    cls, _ = EXPECTED[name]
    assert row.status == ("ignored" if cls is ev.Ignored else "done")
    with live_server.runtime.db.Session() as s:
        queued = s.execute(select(OutboxMessage)).scalars().all()
    if name in ANSWERED:
        assert queued, f"{name} got no answer"
        assert any(m.endpoint == "messages/interactive" for m in queued), "no menu buttons"
    else:
        assert queued == [], f"{name} should not be answered"
