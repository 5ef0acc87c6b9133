"""A separate `clinic-bot worker` is woken by the web process as soon as a webhook is stored
(PostgreSQL: NOTIFY/LISTEN; SQLite: the signal file), not at its next tick."""

from __future__ import annotations

import signal

from tests.integration.test_worker_reliability import (
    envelope,
    sent_count,
    start_worker,
    text_message,
    worker_env,
)


def test_a_separate_worker_answers_webhooks_without_waiting_for_its_tick(live_server, tmp_path):
    live = live_server
    env = worker_env(live, tmp_path)
    env["WORKER_TICK_SECONDS"] = "3600"  # only the wake-up can make it answer in this test
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        # Wait until its LISTEN (or file watch) is up: the first webhook is answered.
        first = envelope(text_message("wake-0", "4915100000100"))
        assert live.post_webhook(first).status_code == 200
        live.wait_for(lambda: sent_count(live.runtime) >= 1, timeout=60)
        # Then a burst, one webhook at a time, each answered by a woken worker.
        for n in range(1, 11):
            msg = text_message(f"wake-{n}", f"49151000001{n:02d}")
            assert live.post_webhook(envelope(msg)).status_code == 200
        live.wait_for(lambda: sent_count(live.runtime) >= 11, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    assert sent_count(live.runtime) == 11
