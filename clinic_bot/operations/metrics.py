"""Prometheus metrics read from the database at scrape time, so every process agrees.

Web and worker may run on different machines (Heroku dynos): counts of events and sends are
read from the inbox and outbox rows, which every process shares, instead of from one process's
memory. Gateway latency is measured by the worker (`gateway_timing`) and kept in a
`gateway_state` row for the same reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from sqlalchemy import func, select

from clinic_bot.models import GatewayState, InboxEvent, OutboxMessage, Reminder
from clinic_bot.operations.health import queue_stats

LATENCY_KEY = "metrics.gateway_latency"
# Seconds; Whapi answers in well under a second when healthy, a timeout is 15 s.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
CHANNEL_STATES = ("AUTH", "QR", "LAUNCH", "INIT", "LOGGED_OUT", "STOP", "ERROR", "unknown")
LAG_WINDOW = timedelta(hours=24)


class DatabaseCollector:
    """A prometheus_client collector: one consistent read of the shared state per scrape."""

    def __init__(self, runtime):
        self.runtime = runtime

    def describe(self):
        return []  # collected only on scrape; no registration-time query

    def collect(self):
        now = self.runtime.clock()
        with self.runtime.db.ReadSession() as s:
            yield from _event_metrics(s)
            yield from _send_metrics(s)
            yield from _queue_metrics(s, now)
            yield from _reminder_lag(s, now)
            yield from _state_metrics(s, now)


def _event_metrics(s):
    received = CounterMetricFamily(
        "clinic_bot_events_received", "Webhook items stored, by kind", labels=["kind"]
    )
    handled = CounterMetricFamily(
        "clinic_bot_events_handled", "Webhook items handled (done or ignored)", labels=["kind"]
    )
    failed = CounterMetricFamily(
        "clinic_bot_events_failed", "Webhook items dead-lettered", labels=["kind"]
    )
    totals: dict[str, dict[str, int]] = {}
    for kind, status, n in s.execute(
        select(InboxEvent.kind, InboxEvent.status, func.count()).group_by(
            InboxEvent.kind, InboxEvent.status
        )
    ):
        totals.setdefault(kind, {})[status] = n
    for kind, by_status in sorted(totals.items()):
        received.add_metric([kind], sum(by_status.values()))
        handled.add_metric([kind], by_status.get("done", 0) + by_status.get("ignored", 0))
        failed.add_metric([kind], by_status.get("dead", 0))
    yield from (received, handled, failed)


def _send_metrics(s):
    sends = CounterMetricFamily(
        "clinic_bot_sends", "Outbox messages by their current outcome", labels=["outcome"]
    )
    for status, n in s.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ):
        sends.add_metric([status], n)
    yield sends


def _queue_metrics(s, now: datetime):
    stats = queue_stats(s, now)
    backlog = GaugeMetricFamily(
        "clinic_bot_backlog", "Rows still to handle (inbox) or send (outbox)", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "clinic_bot_backlog_oldest_age_seconds",
        "Age of the oldest row still waiting (0 when none)",
        labels=["queue"],
    )
    dead = GaugeMetricFamily(
        "clinic_bot_dead_letters", "Rows given up on, kept for staff", labels=["queue"]
    )
    for queue in ("inbox", "outbox"):
        backlog.add_metric([queue], stats[queue]["backlog"])
        oldest.add_metric([queue], stats[queue]["oldest_age_seconds"] or 0.0)
        dead.add_metric([queue], stats["dead_letters"][queue])
    yield from (backlog, oldest, dead)


def _reminder_lag(s, now: datetime):
    rows = s.execute(
        select(Reminder.due_at, Reminder.sent_at).where(
            Reminder.status == "sent", Reminder.sent_at >= now - LAG_WINDOW
        )
    ).all()
    lags = [max(0.0, (sent - due).total_seconds()) for due, sent in rows if sent and due]
    lag = GaugeMetricFamily(
        "clinic_bot_reminder_lag_seconds",
        "Reminders sent in the last 24 hours: sent minus due",
        labels=["stat"],
    )
    lag.add_metric(["max"], max(lags, default=0.0))
    lag.add_metric(["avg"], sum(lags) / len(lags) if lags else 0.0)
    lag.add_metric(["count"], len(lags))
    yield lag


def _state_metrics(s, now: datetime):
    channel = s.get(GatewayState, "channel")
    current = (channel.value or {}).get("status", "unknown") if channel else "unknown"
    state = GaugeMetricFamily(
        "clinic_bot_channel_state", "1 for the WhatsApp channel's current state", labels=["state"]
    )
    for name in sorted({*CHANNEL_STATES, current}):
        state.add_metric([name], 1.0 if name == current else 0.0)
    yield state

    worker = s.get(GatewayState, "worker")
    beat = GaugeMetricFamily(
        "clinic_bot_worker_heartbeat_age_seconds", "Seconds since a worker last ticked"
    )
    last = (worker.value or {}).get("last_tick") if worker else None
    if last:
        beat.add_metric([], max(0.0, (now - datetime.fromisoformat(last)).total_seconds()))
        yield beat

    row = s.get(GatewayState, LATENCY_KEY)
    if row is not None and row.value.get("count"):
        value = row.value
        cumulative, buckets = 0, []
        for bound in LATENCY_BUCKETS:
            cumulative += int(value.get("buckets", {}).get(str(bound), 0))
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", int(value["count"])))
        yield HistogramMetricFamily(
            "clinic_bot_gateway_latency_seconds",
            "Time Whapi took to answer a send (measured by the workers)",
            buckets=buckets,
            sum_value=float(value.get("sum", 0.0)),
        )
