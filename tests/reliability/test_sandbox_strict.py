"""The sandbox gateway refuses what Whapi refuses, with Whapi's error shape, so tests against it
do not overstate what works live."""

from __future__ import annotations

import base64

import pytest

from tests.reliability.support import TOKEN, set_channel

TO = "4915112345678@s.whatsapp.net"


def call(live, method: str, path: str, body=None, headers=TOKEN):
    return live.http.request(
        method, f"{live.base_url}/sandbox/gateway/{path}", json=body, headers=headers
    )


def assert_whapi_error(r, status: int):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["message"]


BUTTON = {"type": "quick_reply", "title": "Yes", "id": "yes"}


@pytest.mark.parametrize(
    "path, body",
    [
        ("messages/interactive", {"to": TO, "type": "button", "action": {"buttons": [BUTTON]}}),
        (
            "messages/interactive",
            {
                "to": TO,
                "body": {"text": "Pick"},
                "action": {"buttons": [{"type": "quick_reply", "title": "Yes"}]},
            },
        ),
        ("messages/interactive", {"to": TO, "body": "Pick", "action": {"buttons": [BUTTON]}}),
        ("messages/document", {"to": TO, "media": "just some words"}),
        ("messages/text", {"to": TO, "body": "hi", "typing_time": 99}),
        ("messages/text", {"to": TO, "body": "hi", "quoted": "not an id"}),
        ("messages/text", {"to": "123", "body": "hi"}),
    ],
    ids=["no-body", "button-no-id", "body-not-object", "media-words", "typing", "quoted", "to"],
)
def test_bodies_whapi_refuses_are_refused_with_whapis_error(live_server, path, body):
    assert_whapi_error(call(live_server, "POST", path, body), 400)


def test_no_token_is_a_401_on_every_endpoint(live_server):
    for method, path in [
        ("POST", "messages/text"),
        ("GET", "health"),
        ("GET", "settings"),
        ("PATCH", "settings"),
        ("GET", f"messages/list/{TO}"),
    ]:
        assert_whapi_error(call(live_server, method, path, {}, headers={}), 401)


@pytest.mark.parametrize(
    "body",
    [
        {"webhooks": [{"mode": "body"}]},
        {
            "webhooks": [
                {"url": "https://x.example/h", "events": [{"type": "message", "method": "post"}]}
            ]
        },
        {"webhooks": [{"url": "https://x.example/h", "webhook_max_age_seconds": 5}]},
        {"webhooks": [{"url": "https://x.example/h", "headers": {f"H{n}": "v" for n in range(6)}}]},
        {"callback_backoff_delay_ms": 100},
        {"media": {"auto_download": ["pdf"]}},
        ["not", "an", "object"],
    ],
)
def test_invalid_settings_are_refused(live_server, body):
    assert_whapi_error(call(live_server, "PATCH", "settings", body), 400)


def test_a_logged_out_channel_answers_401_on_sends_and_qr_on_health(live_server):
    set_channel(live_server, "logged_out", webhook=False)
    r = call(live_server, "POST", "messages/text", {"to": TO, "body": "hi"})
    assert_whapi_error(r, 401)
    assert call(live_server, "GET", "health").json()["status"]["text"] == "QR"
    set_channel(live_server, "auth", webhook=False)
    assert call(live_server, "POST", "messages/text", {"to": TO, "body": "hi"}).status_code == 200


def test_a_wrong_token_is_whapis_404_channel_not_found(live_server):
    set_channel(live_server, "wrong_token")
    r = call(live_server, "GET", "health")
    assert_whapi_error(r, 404)
    assert r.json()["error"]["message"] == "Channel not found"


def test_a_document_is_echoed_with_an_id_and_its_file_size(live_server):
    content = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    media = "data:text/calendar;name=visit.ics;base64," + base64.b64encode(content).decode()
    body = {"to": TO, "media": media, "filename": "visit.ics", "mime_type": "text/calendar"}
    r = call(live_server, "POST", "messages/document", body)
    assert r.status_code == 200
    document = r.json()["message"]["document"]
    assert document["id"] and document["file_size"] == len(content)


def test_the_message_list_shows_what_was_sent_newest_first(live_server):
    for text in ("first", "second"):
        assert (
            call(live_server, "POST", "messages/text", {"to": TO, "body": text}).status_code == 200
        )
    listed = call(live_server, "GET", f"messages/list/{TO}").json()["messages"]
    assert [m["text"]["body"] for m in listed] == ["second", "first"]
    assert all(m["from_me"] for m in listed)
