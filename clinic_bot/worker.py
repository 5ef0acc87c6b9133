"""The worker: claims inbox rows and handles them, relays the outbox, runs the periodic ticks.

A reactor thread wakes at once when a webhook is stored (see wakeup.py) and drains the inbox
and the outbox; APScheduler 3 runs the periodic ticks, each of which claims its rows, so two
workers (or a restart overlap) never do the same work twice.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from . import events as ev
from .db import claim, next_due
from .handlers import DISPATCH, HandlerContext, RetryLater, handle_ignored
from .models import GatewayState, InboxEvent
from .outbox import LEASE as OUTBOX_LEASE
from .outbox import Outbox, Relay
from .runtime import Runtime, Waker
from .wakeup import CrossProcessListener
from .whapi.payloads import parse_item

log = logging.getLogger(__name__)

MAX_EVENT_ATTEMPTS = 5
INBOX_LEASE = timedelta(minutes=2)
INBOX_BATCH = 50
RETRY_LATER_DELAY = timedelta(seconds=2)

# Periodic ticks other areas add (reminders, follow-ups, broadcasts): (id, function(runtime)).
TICKS: list[tuple[str, Callable[[Runtime], object]]] = []


def event_backoff(attempts: int) -> timedelta:
    """Delay before retrying a failed event: 2, 4, 8, 16 seconds…"""
    return timedelta(seconds=min(300, 2**attempts))


def process_inbox_row(runtime: Runtime, row_id: int) -> str | None:
    """Handle one claimed inbox row; its domain changes and outbox rows commit together."""
    now = runtime.clock()
    try:
        with runtime.db.transaction() as s:
            row = s.get(InboxEvent, row_id)
            if row is None or row.status != "processing":
                return None
            if row.attempts > MAX_EVENT_ATTEMPTS:
                # Every earlier claim died with its process: a poison event. Keep it for staff.
                row.status, row.processed_at = "dead", now
                row.last_error = f"the worker stopped while handling it {row.attempts - 1} times"
                return None
            event = parse_item(row.kind, row.event_method, row.payload, row.dedupe_key)
            handler = DISPATCH.get(type(event), handle_ignored)
            ctx = HandlerContext(
                session=s,
                runtime=runtime,
                now=now,
                inbox_id=row.id,
                received_at=row.received_at,
                outbox=Outbox(s, now, f"reply:{event.event_id}"),
            )
            outcome = handler(ctx, event)
            row.status = "ignored" if isinstance(event, ev.Ignored) else "done"
            row.outcome = (outcome or "")[:200]
            row.processed_at = now
            row.last_error = None
            return outcome
    except RetryLater as exc:
        _reschedule(runtime, row_id, str(exc), now + RETRY_LATER_DELAY, dead=False)
    except Exception as exc:
        log.exception("inbox event %s failed", row_id)
        _fail(runtime, row_id, exc, now)
    return None


def _fail(runtime: Runtime, row_id: int, exc: Exception, now) -> None:
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    with runtime.db.ReadSession() as s:
        attempts = s.get(InboxEvent, row_id).attempts
    dead = attempts >= MAX_EVENT_ATTEMPTS
    _reschedule(runtime, row_id, error, now + event_backoff(attempts), dead=dead)
    if dead:
        log.error("inbox event %s dead-lettered after %d attempts: %s", row_id, attempts, error)


def _reschedule(runtime: Runtime, row_id: int, error: str, when, *, dead: bool) -> None:
    with runtime.db.transaction() as s:
        row = s.get(InboxEvent, row_id)
        if row is None or row.status != "processing":
            return
        row.status = "dead" if dead else "pending"
        row.last_error = error[:4000]
        row.next_attempt_at = when


def lease_for(runtime: Runtime, default: timedelta) -> timedelta:
    """The claim lease: WORKER_LEASE_SECONDS when set, else the given default."""
    seconds = runtime.settings.worker_lease_seconds
    return timedelta(seconds=seconds) if seconds else default


def drain_inbox(runtime: Runtime, max_rounds: int = 1000, on_handled=None) -> int:
    """Claim and handle inbox rows until none is ready; returns how many were handled.

    `on_handled` runs after each row's transaction, so the relay can send its replies at once.
    """
    total = 0
    lease = lease_for(runtime, INBOX_LEASE)
    for _ in range(max_rounds):
        ids = claim(
            runtime.db,
            InboxEvent,
            now=runtime.clock(),
            lease=lease,
            limit=INBOX_BATCH,
            order_by=[InboxEvent.id],
        )
        if not ids:
            break
        for row_id in ids:
            process_inbox_row(runtime, row_id)
            if on_handled is not None:
                on_handled()
        total += len(ids)
    return total


def heartbeat(runtime: Runtime) -> None:
    """Record that the worker is alive, for /healthz."""
    now = runtime.clock()
    with runtime.db.transaction() as s:
        row = s.get(GatewayState, "worker")
        value = {"last_tick": now.isoformat()}
        if row is None:
            s.add(GatewayState(key="worker", value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now


class Worker:
    """The inbox and sender loops (threads) plus the APScheduler ticks."""

    def __init__(self, runtime: Runtime, *, blocking: bool = False):
        self.runtime = runtime
        self.relay = Relay(
            runtime.db, runtime.client, runtime.clock, lease=lease_for(runtime, OUTBOX_LEASE)
        )
        self.listener = CrossProcessListener(runtime.settings.database_url, runtime.waker)
        self.send_waker = Waker()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        tick = runtime.settings.worker_tick_seconds
        scheduler_cls = BlockingScheduler if blocking else BackgroundScheduler
        self.scheduler = scheduler_cls(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_job(self.tick, "interval", seconds=tick, id="core-tick")
        for job_id, fn in TICKS:
            self.scheduler.add_job(self._guarded(job_id, fn), "interval", seconds=tick, id=job_id)

    def _guarded(self, job_id: str, fn):
        def run():
            try:
                fn(self.runtime)
            except Exception:
                log.exception("tick %s failed", job_id)
            else:
                self.send_waker.wake()  # a tick may have queued sends

        return run

    def _until_due(self, due) -> float:
        """Seconds to sleep: the tick, or less when a retry falls due sooner."""
        timeout = self.runtime.settings.worker_tick_seconds
        if due is not None:
            timeout = min(timeout, max(0.01, (due - self.runtime.clock()).total_seconds()))
        return timeout

    def tick(self) -> None:
        """The periodic safety net: heartbeat, then nudge both loops (they do the draining)."""
        try:
            heartbeat(self.runtime)
        except Exception:
            log.exception("heartbeat failed")
        self.runtime.waker.wake()
        self.send_waker.wake()

    def _inbox_loop(self) -> None:
        """Handle new events as soon as a webhook stores them; wake the sender per event."""
        while not self._stop.is_set():
            try:
                drain_inbox(self.runtime, on_handled=self.send_waker.wake)
                timeout = self._until_due(next_due(self.runtime.db, InboxEvent))
            except Exception:
                log.exception("inbox round failed")
                timeout = 1.0
            self.runtime.waker.wait(timeout)

    def _send_loop(self) -> None:
        """Relay the outbox while the inbox loop goes on handling events (pipelined)."""
        while not self._stop.is_set():
            try:
                self.relay.drain()
                timeout = self._until_due(self.relay.next_due())
            except Exception:
                log.exception("send round failed")
                timeout = 1.0
            self.send_waker.wait(timeout)

    def start(self) -> None:
        """Start the reactor thread and (for a background worker) the scheduler."""
        heartbeat(self.runtime)
        self.listener.start()
        for name, target in (("inbox", self._inbox_loop), ("sender", self._send_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker started (tick every %ss)", self.runtime.settings.worker_tick_seconds)
        self.scheduler.start()  # blocks for a BlockingScheduler

    def stop(self) -> None:
        """Stop the ticks and the reactor; in-flight rows finish or their lease runs out."""
        self._stop.set()
        self.runtime.waker.wake()
        self.send_waker.wake()
        self.listener.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join(timeout=10)
        self.relay.close()
