"""Retention: content older than the profile's period goes, metadata and newer content stay,
the tick runs once a day and says what it removed."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import AuditEntry, InboxEvent, OutboxMessage, Patient
from clinic_bot.operations.retention import DEFAULT_KEEP, retention_period
from clinic_bot.schedules.retention import run_daily
from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_webhook_intake import envelope, message

OLD_PHONE, NEW_PHONE = "4915112345678", "4915187654321"


def write(client, mid: str, text: str, phone: str) -> None:
    r = client.post(
        "/webhooks/whapi",
        json=envelope(message(mid, text, phone=phone)),
        headers={"X-Webhook-Token": WEBHOOK_SECRET},
    )
    assert r.status_code == 200


def mark_sent(runtime) -> None:
    with runtime.db.transaction() as s:
        for row in s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")):
            row.status = "delivered"


def answers(runtime, phone: str) -> dict:
    with runtime.db.Session() as s:
        return s.scalars(select(Patient).where(Patient.phone == phone)).one().intake


def test_retention_removes_only_content_older_than_the_period(client, runtime, clock):
    write(client, "old-1", "my old private words", OLD_PHONE)
    drain_inbox(runtime)
    mark_sent(runtime)
    with runtime.db.transaction() as s:
        s.scalars(select(Patient)).one().intake = {"allergies": "old answer"}
    old_outbox = 0
    with runtime.db.Session() as s:
        old_outbox = len(s.scalars(select(OutboxMessage)).all())
    assert old_outbox >= 1

    clock.advance(days=181)
    write(client, "new-1", "my new private words", NEW_PHONE)
    drain_inbox(runtime)  # its replies stay pending: unsent content is never removed
    with runtime.db.transaction() as s:
        s.scalars(select(Patient).where(Patient.phone == NEW_PHONE)).one().intake = {
            "allergies": "new answer"
        }

    report = run_daily(runtime)
    assert report["inbox_payloads"] == 1
    assert report["outbox_bodies"] == old_outbox
    assert report["intake_answers"] == 1

    with runtime.db.Session() as s:
        rows = {
            r.received_at < clock() - timedelta(days=1): r for r in s.scalars(select(InboxEvent))
        }
        old, new = rows[True], rows[False]
        assert old.payload == {} and old.kind == "messages" and old.status == "done"
        assert old.outcome  # what the handler did stays for audit
        assert new.payload["text"]["body"] == "my new private words"
        bodies = [
            (m.created_at < clock() - timedelta(days=1), m)
            for m in s.scalars(select(OutboxMessage))
        ]
        assert all(m.body == {} and m.status == "delivered" for aged, m in bodies if aged)
        assert all(m.body and m.status == "pending" for aged, m in bodies if not aged)
        (audit,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "retention")).all()
        assert audit.detail["inbox_payloads"] == 1
        everything = json.dumps([o.payload for o in s.scalars(select(InboxEvent))])
        assert "old private words" not in everything
    assert answers(runtime, OLD_PHONE) == {}
    assert answers(runtime, NEW_PHONE) == {"allergies": "new answer"}


def test_the_tick_runs_once_a_day(client, runtime, clock):
    assert run_daily(runtime) is not None
    clock.advance(hours=23)
    assert run_daily(runtime) is None
    clock.advance(hours=2)
    again = run_daily(runtime)
    assert again is not None and again["inbox_payloads"] == 0


def test_the_period_comes_from_the_profile(runtime, client, clock):
    assert retention_period(runtime.profile) == DEFAULT_KEEP == timedelta(days=180)
    runtime.profile.retention_keep = timedelta(days=30)
    write(client, "m-1", "words", OLD_PHONE)
    drain_inbox(runtime)
    clock.advance(days=31)
    assert run_daily(runtime)["inbox_payloads"] == 1
