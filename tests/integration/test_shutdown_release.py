"""A worker that is told to stop finishes the event in hand and hands the rest of its batch back."""

from __future__ import annotations

from sqlalchemy import select

from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent
from tests.integration.test_worker_reliability import envelope, text_message


def test_stopping_mid_batch_hands_the_unhandled_rows_back_at_once(live_server):
    for i in range(5):
        body = envelope(text_message(f"wamid-stop-{i}", f"4915100000{i:03d}", "hi"))
        assert live_server.post_webhook(body).status_code == 200
    handled = []

    def stopping() -> bool:
        return len(handled) >= 2

    n = drain_inbox(live_server.runtime, on_handled=lambda: handled.append(1), stopping=stopping)
    assert n == 2
    with live_server.runtime.db.Session() as s:
        rows = s.execute(select(InboxEvent.status, InboxEvent.attempts, InboxEvent.locked_until))
        by_status = sorted((status, attempts, locked) for status, attempts, locked in rows)
    assert [r[0] for r in by_status].count("done") == 2
    handed_back = [r for r in by_status if r[0] == "pending"]
    assert len(handed_back) == 3
    assert all(attempts == 0 and locked is None for _, attempts, locked in handed_back)
    # Another worker picks them up right away, not after a lease.
    assert drain_inbox(live_server.runtime) == 3
