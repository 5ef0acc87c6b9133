"""JSON log lines: one object per line, ids of the handled event, never a phone or a text."""

from __future__ import annotations

import io
import json
import logging

import pytest

from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.operations.logging import Redactor, log_format, make_formatter, redact
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_webhook_intake import envelope, message

PHONE = "4915112345678"


@pytest.fixture
def json_lines():
    """Capture the root logger's lines as our JSON handler writes them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(make_formatter("json"))
    handler.addFilter(Redactor())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_handled_event_logs_its_ids_outcome_and_latency_only(client, runtime, json_lines):
    r = client.post(
        "/webhooks/whapi",
        json=envelope(message("log-1", "my secret symptoms", phone=PHONE)),
        headers={"X-Webhook-Token": WEBHOOK_SECRET, "X-Request-ID": "rid-123"},
    )
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "rid-123"
    drain_inbox(runtime)
    records = json_lines()
    (event,) = [r for r in records if r.get("event") == "TextReceived"]
    assert event["message_id"] == "log-1" and event["inbox_id"] == 1
    assert isinstance(event["patient_id"], int)
    assert event["outcome"] and event["latency_ms"] >= 0 and event["level"] == "INFO"
    raw = json.dumps(records)
    assert PHONE not in raw and "secret symptoms" not in raw


def test_a_careless_log_call_is_redacted(json_lines):
    logging.getLogger("clinic_bot.somewhere").warning(
        "sending to %s via /webhooks/whapi/%s and /calendar/%s.ics",
        f"+{PHONE}",
        "the-secret",
        "the-token",
    )
    (line,) = json_lines()
    assert line["message"] == (
        "sending to [phone] via /webhooks/whapi/[secret] and /calendar/[token].ics"
    )
    assert line["logger"] == "clinic_bot.somewhere" and line["level"] == "WARNING"


def test_redact_masks_chat_ids_but_keeps_small_numbers():
    assert (
        redact(f"chat {PHONE}@s.whatsapp.net row 42 in 1500ms") == "chat [phone] row 42 in 1500ms"
    )


def test_the_log_format_follows_the_contract():
    assert log_format({}) == "text"
    assert log_format({"WHAPI_TOKEN": "t"}) == "json"
    assert log_format({"WHAPI_TOKEN": "t", "LOG_FORMAT": "text"}) == "text"
    assert log_format({"LOG_FORMAT": "JSON"}) == "json"
