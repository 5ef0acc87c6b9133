"""The webhook over real HTTP: authentication, bounds, envelope checks, duplicates and batches."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from sqlalchemy import func, select

from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent, OutboxMessage, Patient
from tests.conftest import WEBHOOK_SECRET, payloads_dir

PHONE = "4915112345678"
MSG = {"type": "messages", "event": "post"}


def message(mid: str, text: str = "hi", phone: str = PHONE, **extra) -> dict:
    """One inbound text as Whapi posts it."""
    item = {
        "id": mid,
        "from_me": False,
        "type": "text",
        "chat_id": f"{phone}@s.whatsapp.net",
        "timestamp": 1795500000,
        "source": "mobile",
        "text": {"body": text},
        "from": phone,
        "from_name": "Ana",
    }
    item.update(extra)
    return item


def envelope(*items: dict, key: str = "messages", event=MSG, channel: str | None = "CH-1"):
    body = {key: list(items), "event": event}
    if channel is not None:
        body["channel_id"] = channel
    return body


def inbox_rows(runtime) -> list[InboxEvent]:
    with runtime.db.Session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())


def count(runtime, model) -> int:
    with runtime.db.Session() as s:
        return s.execute(select(func.count()).select_from(model)).scalar()


def handle_and_send(live) -> None:
    """What the worker does, driven by hand: handle every event, then send every reply."""
    drain_inbox(live.runtime)
    relay = Relay(live.runtime.db, live.runtime.client, live.runtime.clock)
    try:
        relay.drain()
    finally:
        relay.close()


def menus(live, phone: str = PHONE) -> list[dict]:
    return [m for m in live.outgoing(phone) if m.get("buttons")]


# ------------------------------------------------------------------ duplicates and batches


def test_a_webhook_delivered_three_times_in_a_row_gives_one_row_and_one_reply(live):
    body = envelope(message("dup-seq-1"))
    answers = [live.post_webhook(body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["stored"] for a in answers] == [1, 0, 0]
    live.wait_for(lambda: menus(live))
    live.settle()
    assert len(inbox_rows(live.runtime)) >= 1
    assert [r.dedupe_key for r in inbox_rows(live.runtime)].count("msg:dup-seq-1") == 1
    assert len(live.outgoing(PHONE)) == 1


def test_a_webhook_delivered_three_times_at_once_gives_one_row_and_one_reply(live):
    body = envelope(message("dup-conc-1"))
    barrier = threading.Barrier(3)
    codes: list[int] = []

    def deliver():
        http = requests.Session()  # one connection per thread, as Whapi's retries would be
        barrier.wait()
        r = http.post(
            f"{live.base_url}/webhooks/whapi",
            json=body,
            headers={"X-Webhook-Token": WEBHOOK_SECRET},
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200, 200, 200]
    live.wait_for(lambda: menus(live))
    live.settle()
    keys = [r.dedupe_key for r in inbox_rows(live.runtime)]
    assert keys.count("msg:dup-conc-1") == 1
    assert len(live.outgoing(PHONE)) == 1


def test_a_batch_of_five_messages_in_one_post_gives_five_replies(live):
    phones = [f"49151123456{n:02d}" for n in range(5)]
    body = envelope(*(message(f"batch-{n}", "hello", phone=p) for n, p in enumerate(phones)))
    r = live.post_webhook(body)
    assert r.status_code == 200
    assert r.json() == {"ok": True, "received": 5, "stored": 5}
    for phone in phones:
        live.wait_for(lambda phone=phone: menus(live, phone))
    live.settle()
    assert [len(live.outgoing(p)) for p in phones] == [1, 1, 1, 1, 1]


def test_five_messages_from_one_patient_in_one_post_are_each_handled(live_server):
    body = envelope(*(message(f"same-{n}", f"message {n}") for n in range(5)))
    assert live_server.post_webhook(body).status_code == 200
    handle_and_send(live_server)
    rows = {r.dedupe_key: r for r in inbox_rows(live_server.runtime)}
    assert [rows[f"msg:same-{n}"].status for n in range(5)] == ["done"] * 5
    # Later messages find the patient mid-flow (the conversation decides those answers).
    assert menus(live_server)


def test_a_status_whose_id_equals_a_message_id_is_stored_beside_the_message(live_server):
    shared = "same-id-XYZ"
    status = {
        "statuses": [
            {
                "id": shared,
                "code": 4,
                "status": "read",
                "recipient_id": f"{PHONE}@s.whatsapp.net",
                "timestamp": "1795500001",
            }
        ],
        "event": {"type": "statuses", "event": "post"},
    }
    assert live_server.post_webhook(envelope(message(shared))).json()["stored"] == 1
    assert live_server.post_webhook(status).json()["stored"] == 1
    kinds = sorted(r.kind for r in inbox_rows(live_server.runtime))
    assert kinds == ["messages", "statuses"]
    drain_inbox(live_server.runtime)
    outcomes = {r.kind: (r.status, r.outcome) for r in inbox_rows(live_server.runtime)}
    assert outcomes["messages"][0] == "done"
    assert outcomes["statuses"] == ("done", "status of an inbound message")


def test_each_stored_event_records_the_chat_it_belongs_to(live_server):
    status = {
        "statuses": [{"id": "st-1", "status": "read", "recipient_id": f"{PHONE}@s.whatsapp.net"}],
        "event": {"type": "statuses", "event": "post"},
    }
    no_chat = message("m-2", phone="4915199999999")
    del no_chat["chat_id"]  # some senders give only `from`
    live_server.post_webhook(envelope(message("m-1"), no_chat))
    live_server.post_webhook(status)
    live_server.post_webhook(envelope({"id": "l-1", "name": "VIP"}, key="labels"))
    chats = {r.dedupe_key: r.chat_id for r in inbox_rows(live_server.runtime)}
    assert chats["msg:m-1"] == f"{PHONE}@s.whatsapp.net"
    assert chats["msg:m-2"] == "4915199999999@s.whatsapp.net"
    assert chats["status:st-1:read"] == f"{PHONE}@s.whatsapp.net"
    assert [c for k, c in chats.items() if k.startswith("labels")] == [None]


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("secret", ["wrong", "", None, WEBHOOK_SECRET + "x", "ünïcödé"])
def test_a_wrong_or_missing_secret_header_is_401_and_nothing_is_stored(live_server, secret):
    r = live_server.post_webhook(envelope(message("auth-1")), secret=secret)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert count(live_server.runtime, InboxEvent) == 0


def test_the_secret_in_the_path_is_accepted(live_server):
    r = live_server.http.post(
        f"{live_server.base_url}/webhooks/whapi/{WEBHOOK_SECRET}", json=envelope(message("p-1"))
    )
    assert r.status_code == 200
    assert [row.dedupe_key for row in inbox_rows(live_server.runtime)] == ["msg:p-1"]


@pytest.mark.parametrize("path_secret", ["wrong", WEBHOOK_SECRET[:-1], f"{WEBHOOK_SECRET}/x"])
def test_a_wrong_secret_in_the_path_is_401_and_nothing_is_stored(live_server, path_secret):
    r = live_server.http.post(
        f"{live_server.base_url}/webhooks/whapi/{path_secret}", json=envelope(message("p-2"))
    )
    assert r.status_code == 401
    assert count(live_server.runtime, InboxEvent) == 0


def test_a_right_header_does_not_rescue_a_wrong_path_secret(live_server):
    r = live_server.http.post(
        f"{live_server.base_url}/webhooks/whapi/wrong",
        json=envelope(message("p-3")),
        headers={"X-Webhook-Token": WEBHOOK_SECRET},
    )
    assert r.status_code == 401
    assert count(live_server.runtime, InboxEvent) == 0


def test_a_webhook_for_another_channel_is_refused_and_nothing_is_stored(live_server):
    live_server.runtime.settings.channel_id = "CH-1"
    r = live_server.post_webhook(envelope(message("ch-1"), channel="CH-OTHER"))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "wrong_channel"
    assert count(live_server.runtime, InboxEvent) == 0
    assert live_server.post_webhook(envelope(message("ch-2"), channel="CH-1")).status_code == 200
    assert [row.dedupe_key for row in inbox_rows(live_server.runtime)] == ["msg:ch-2"]


def test_a_webhook_without_a_channel_id_is_accepted_when_a_channel_is_expected(live_server):
    live_server.runtime.settings.channel_id = "CH-1"
    r = live_server.post_webhook(envelope(message("ch-3"), channel=None))
    assert r.status_code == 200
    assert count(live_server.runtime, InboxEvent) == 1


# ------------------------------------------------------------------ bad input


def post_raw(live, data: bytes, content_type: str = "application/json") -> requests.Response:
    return live.http.post(
        f"{live.base_url}/webhooks/whapi",
        data=data,
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": content_type},
    )


@pytest.mark.parametrize(
    "raw",
    [b"not json at all", b'{"messages": [', b"\xff\xfe\x00garbage", b"", b"<xml/>"],
    ids=["text", "truncated", "binary", "empty", "xml"],
)
def test_a_body_that_is_not_json_is_400_and_nothing_is_stored(live_server, raw):
    r = post_raw(live_server, raw)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"
    assert count(live_server.runtime, InboxEvent) == 0


@pytest.mark.parametrize(
    "body",
    [
        [envelope(message("arr-1"))],
        [],
        "a string",
        42,
        None,
        {"messages": [message("no-event-1")], "channel_id": "CH-1"},
        {"messages": [message("bad-event-1")], "event": "messages.post"},
        {"messages": [message("bad-event-2")], "event": {"type": "messages"}},
        {"messages": {"id": "not-a-list"}, "event": MSG},
        {"health": "QR", "event": {"type": "channel", "event": "post"}},
        {"messages": [message("ch-type")], "event": MSG, "channel_id": 7},
    ],
    ids=[
        "array",
        "empty-array",
        "string",
        "number",
        "null",
        "missing-event",
        "event-not-object",
        "event-without-method",
        "messages-not-list",
        "health-string",
        "channel-number",
    ],
)
def test_a_body_that_is_not_a_whapi_envelope_is_400_and_nothing_is_stored(live_server, body):
    r = post_raw(live_server, json.dumps(body).encode())
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_envelope"
    assert r.json()["error"]["message"]
    assert count(live_server.runtime, InboxEvent) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"messages": ["just a string"], "event": MSG},
        {"messages": [42], "event": MSG},
        {"messages": [{"type": "text", "chat_id": f"{PHONE}@s.whatsapp.net"}], "event": MSG},
        {"messages": [message(12345)], "event": MSG},
        {"messages": [message("ts-1", timestamp="yesterday")], "event": MSG},
        {"statuses": [{"id": "s-1"}], "event": {"type": "statuses", "event": "post"}},
        {"statuses": [{"id": "s-2", "status": 3}], "event": {"type": "statuses", "event": "post"}},
    ],
    ids=[
        "message-string",
        "message-number",
        "message-without-id",
        "message-id-number",
        "timestamp-text",
        "status-without-status",
        "status-number",
    ],
)
def test_an_odd_item_in_a_valid_envelope_is_stored_and_settled_so_whapi_stops_retrying(
    live_server, body
):
    # Whapi retries anything but a 200: refusing the POST would retry the poison for days.
    r = post_raw(live_server, json.dumps(body).encode())
    assert r.status_code == 200
    assert count(live_server.runtime, InboxEvent) == 1
    drain_inbox(live_server.runtime)
    (row,) = inbox_rows(live_server.runtime)
    assert row.status in ("done", "ignored", "dead")
    if row.status == "dead":
        assert row.last_error.startswith("could not understand")
        assert row.attempts == 1  # dead-lettered at once, not retried five times


def test_a_body_over_one_mebibyte_is_413_and_nothing_is_stored(live_server):
    big = envelope(message("big-1", "x" * (2 * 1024 * 1024)))
    r = live_server.post_webhook(big)
    assert r.status_code == 413
    assert r.json()["error"]["code"]
    assert count(live_server.runtime, InboxEvent) == 0


def test_a_chunked_body_over_one_mebibyte_is_413_and_nothing_is_stored(live_server):
    raw = json.dumps(envelope(message("chunked-1", "z" * (2 * 1024 * 1024)))).encode()

    def chunks():  # no Content-Length: the size is only known while reading
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i : i + 64 * 1024]

    r = live_server.http.post(
        f"{live_server.base_url}/webhooks/whapi",
        data=chunks(),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert count(live_server.runtime, InboxEvent) == 0


def test_a_chunked_body_under_the_limit_is_accepted(live_server):
    raw = json.dumps(envelope(message("chunked-2", "w" * (1024 * 1024 - 1000)))).encode()
    r = live_server.http.post(
        f"{live_server.base_url}/webhooks/whapi",
        data=iter([raw[: len(raw) // 2], raw[len(raw) // 2 :]]),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert count(live_server.runtime, InboxEvent) == 1


def test_a_body_just_under_one_mebibyte_is_accepted(live_server):
    body = envelope(message("almost-big", "y" * (1024 * 1024 - 1000)))
    assert live_server.post_webhook(body).status_code == 200
    assert count(live_server.runtime, InboxEvent) == 1


def test_an_unknown_array_key_is_stored_acknowledged_and_ignored(live_server):
    body = json.loads((payloads_dir() / "unknown_array_key.json").read_text())
    r = live_server.post_webhook(body)
    assert r.status_code == 200
    assert r.json()["stored"] == 1
    drain_inbox(live_server.runtime)
    (row,) = inbox_rows(live_server.runtime)
    assert (row.kind, row.status) == ("snapshots", "ignored")
    assert count(live_server.runtime, OutboxMessage) == 0


@pytest.mark.parametrize("key", ["messages", "statuses", "calls", "labels", "groups", "chats"])
def test_an_envelope_with_an_empty_array_is_200_and_stores_nothing(live_server, key):
    r = live_server.post_webhook(envelope(key=key))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "received": 0, "stored": 0}
    assert count(live_server.runtime, InboxEvent) == 0


@pytest.mark.parametrize(
    "mid",
    ["x" * 1000, "nul\x00inside", "surrogate\ud800id", "tab\tand\nnewline"],
    ids=["huge", "nul", "surrogate", "control"],
)
def test_a_message_id_a_database_cannot_index_is_still_stored_once(live_server, mid):
    body = envelope(message(mid))
    raw = json.dumps(body).encode()  # ASCII escapes: the lone surrogate survives the trip
    first = post_raw(live_server, raw)
    again = post_raw(live_server, raw)
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["stored"], again.json()["stored"]) == (1, 0)
    assert count(live_server.runtime, InboxEvent) == 1


# ------------------------------------------------------------------ what gets answered


def test_a_tap_on_a_button_we_never_sent_gets_an_answer(live_server):
    tap = message("tap-unknown-1", type="reply")
    del tap["text"]
    tap["reply"] = {
        "type": "buttons_reply",
        "buttons_reply": {"id": "ButtonsV3:no-such-button", "title": "Old button"},
    }
    tap["context"] = {"quoted_id": "never-sent-by-us", "quoted_type": "hsm"}
    pick = message("pick-unknown-1", type="reply")
    del pick["text"]
    pick["reply"] = {"type": "list_reply", "list_reply": {"id": "ListV3:nope", "title": "Nope"}}
    assert live_server.post_webhook(envelope(tap, pick)).status_code == 200
    handle_and_send(live_server)
    rows = {r.dedupe_key: r for r in inbox_rows(live_server.runtime)}
    for key in ("msg:tap-unknown-1", "msg:pick-unknown-1"):
        assert rows[key].status == "done", rows[key].last_error
    assert len(live_server.outgoing(PHONE)) >= 2


def test_emoji_and_right_to_left_text_are_stored_intact_and_answered(live_server):
    text = "שלום 👋🏽 مرحبا — ¿cita? 👨‍👩‍👧‍👦"
    assert live_server.post_webhook(envelope(message("rtl-1", text))).status_code == 200
    (row,) = inbox_rows(live_server.runtime)
    assert row.payload["text"]["body"] == text
    handle_and_send(live_server)
    assert menus(live_server)


def test_a_sender_that_is_not_a_phone_is_ignored_with_a_reason_and_work_goes_on(live_server):
    odd = [
        message("odd-1", chat_id="12@s.whatsapp.net", **{"from": "12"}),
        message("odd-2", chat_id="status@broadcast", **{"from": "status"}),
        message("odd-3", chat_id="120363025246125888@g.us"),
        message("odd-4", chat_id="abc@s.whatsapp.net", **{"from": "abc"}),
    ]
    good = message("after-odd")
    assert live_server.post_webhook(envelope(*odd, good)).status_code == 200
    handle_and_send(live_server)
    rows = {r.dedupe_key: r for r in inbox_rows(live_server.runtime)}
    for n in range(1, 5):
        row = rows[f"msg:odd-{n}"]
        assert row.status == "ignored"
        assert row.outcome.startswith("ignored: ")
    assert rows["msg:after-odd"].status == "done"
    assert len(menus(live_server)) == 1
    with live_server.runtime.db.Session() as s:
        assert s.execute(select(Patient.phone)).scalars().all() == [PHONE]


def test_our_own_messages_coming_back_are_never_answered(live_server):
    echoes = [
        message("echo-api", "Hello from API", from_me=True, source="api", status="pending"),
        message("echo-phone", "reception here", from_me=True, source="mobile", status="sent"),
        message("echo-stop", "STOP", from_me=True, source="mobile"),
    ]
    assert live_server.post_webhook(envelope(*echoes)).status_code == 200
    handle_and_send(live_server)
    rows = inbox_rows(live_server.runtime)
    assert [r.status for r in rows] == ["done", "done", "done"]
    assert all(r.outcome.startswith("own message") for r in rows)
    assert count(live_server.runtime, OutboxMessage) == 0
    assert count(live_server.runtime, Patient) == 0


# ------------------------------------------------------------------ the database is away


@pytest.fixture
def unreachable(tmp_path):
    """The app with a database that cannot be opened (its folder does not exist)."""
    from clinic_bot.app import create_app
    from clinic_bot.bootstrap import build_runtime
    from clinic_bot.settings import Settings

    settings = Settings.from_env(
        env={
            "DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'dir' / 'clinic.db'}",
            "WHAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SECRET_KEY": "k",
        },
        instance_path=tmp_path / "instance",
    )
    runtime = build_runtime(settings)
    yield create_app(runtime).test_client()
    runtime.db.dispose()


def test_a_webhook_the_database_cannot_take_is_503_so_whapi_retries(unreachable):
    r = unreachable.post(
        "/webhooks/whapi",
        json=envelope(message("db-down-1")),
        headers={"X-Webhook-Token": WEBHOOK_SECRET},
    )
    assert r.status_code == 503
    assert r.json["error"]["code"] == "unavailable"


def test_healthz_is_503_when_the_database_is_unreachable(unreachable):
    r = unreachable.get("/healthz")
    assert r.status_code == 503
    assert r.json["db"].startswith("unreachable")
