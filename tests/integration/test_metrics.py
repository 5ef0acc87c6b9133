"""GET /metrics over real HTTP: hidden without a token, 401 without the bearer, Prometheus text
that counts handled webhooks, sends, gateway latency and the backlog; /healthz's queue figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.models import InboxEvent
from clinic_bot.operations.gateway_timing import flush_latency
from clinic_bot.operations.health import health_extras
from tests.integration.test_webhook_intake import envelope, message

TOKEN = "metrics-test-token"


@pytest.fixture
def scraped(live_server, app):
    """A function that scrapes /metrics with the token and parses it into families."""
    app.config["METRICS_TOKEN"] = TOKEN

    def scrape() -> dict:
        r = requests.get(
            f"{live_server.base_url}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(r.text)}

    return scrape


def value(families: dict, name: str, sample: str | None = None, **labels) -> float:
    family = families[name]
    matches = [
        s.value
        for s in family.samples
        if (sample is None or s.name == sample)
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (name, labels, family.samples)
    return matches[0]


def test_metrics_is_a_404_while_no_token_is_configured(live_server, app):
    app.config["METRICS_TOKEN"] = None
    assert requests.get(f"{live_server.base_url}/metrics", timeout=5).status_code == 404


def test_metrics_wants_the_bearer_token(live_server, app):
    app.config["METRICS_TOKEN"] = TOKEN
    url = f"{live_server.base_url}/metrics"
    assert requests.get(url, timeout=5).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_handled_webhook_its_reply_and_the_gateway_latency_are_counted(live_server, scraped):
    before = scraped()
    assert (
        "clinic_bot_events_handled" not in before or not before["clinic_bot_events_handled"].samples
    )
    assert live_server.post_webhook(envelope(message("metrics-1"))).status_code == 200
    waiting = scraped()
    assert value(waiting, "clinic_bot_backlog", queue="inbox") == 1
    assert value(waiting, "clinic_bot_events_received", kind="messages") == 1
    assert value(waiting, "clinic_bot_events_handled", kind="messages") == 0

    runtime = live_server.runtime
    drain_inbox(runtime)
    handled = scraped()
    assert value(handled, "clinic_bot_events_handled", kind="messages") == 1
    assert value(handled, "clinic_bot_events_failed", kind="messages") == 0
    assert value(handled, "clinic_bot_backlog", queue="inbox") == 0
    assert value(handled, "clinic_bot_backlog", queue="outbox") >= 1  # the menu, not yet sent

    relay = Relay(runtime.db, runtime.client, runtime.clock)
    try:
        relay.drain()
    finally:
        relay.close()
    assert flush_latency(runtime) >= 1
    after = scraped()
    assert value(after, "clinic_bot_backlog", queue="outbox") == 0
    assert value(after, "clinic_bot_sends", outcome="sent") >= 1
    sends = value(after, "clinic_bot_sends", outcome="sent")
    latency = after["clinic_bot_gateway_latency_seconds"]
    count = [s.value for s in latency.samples if s.name.endswith("_count")]
    assert count == [sends]
    webhooks = value(
        after, "clinic_bot_webhook_requests", "clinic_bot_webhook_requests_total", status="200"
    )
    assert webhooks >= 1
    assert value(after, "clinic_bot_dead_letters", queue="inbox") == 0


def test_dead_letters_and_channel_state_show(live_server, scraped):
    runtime = live_server.runtime
    live_server.post_webhook(envelope(message("metrics-dead")))
    with runtime.db.transaction() as s:
        row = s.query(InboxEvent).one()
        row.status, row.last_error = "dead", "boom"
    families = scraped()
    assert value(families, "clinic_bot_dead_letters", queue="inbox") == 1
    assert value(families, "clinic_bot_events_failed", kind="messages") == 1
    assert value(families, "clinic_bot_channel_state", state="unknown") == 1
    assert value(families, "clinic_bot_channel_state", state="AUTH") == 0


def test_healthz_figures_count_backlog_and_dead_letters(live_server):
    runtime = live_server.runtime
    live_server.post_webhook(envelope(message("h-1"), message("h-2")))
    with runtime.db.transaction() as s:
        (dead,) = [r for r in s.query(InboxEvent) if r.payload["id"] == "h-2"]
        dead.status = "dead"
    with runtime.db.ReadSession() as s:
        extras = health_extras(s, runtime.clock() + timedelta(seconds=1))
    assert extras == {
        "backlog": {"inbox": 1, "outbox": 0},
        "dead_letters": {"inbox": 1, "outbox": 0},
    }
