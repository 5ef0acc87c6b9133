"""The worker: claims inbox rows and handles them, relays the outbox, runs the periodic ticks.

A reactor thread wakes at once when a webhook is stored (see wakeup.py) and drains the inbox
and the outbox; APScheduler 3 runs the periodic ticks, each of which claims its rows, so two
workers (or a restart overlap) never do the same work twice.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from clinic_bot.core.db import next_due
from clinic_bot.core.runtime import Runtime
from clinic_bot.core.wakeup import CrossProcessListener, Waker
from clinic_bot.delivery.relay import LEASE as OUTBOX_LEASE
from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox, heartbeat, lease_for
from clinic_bot.models import InboxEvent

log = logging.getLogger(__name__)


class Worker:
    """The inbox and sender loops (threads) plus the APScheduler ticks."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.relay = Relay(
            runtime.db,
            runtime.client,
            runtime.clock,
            lease=lease_for(runtime, OUTBOX_LEASE),
            # One pacer for every proactive send from the clinic's number (reminders,
            # follow-ups, broadcasts); broadcasts keep their own, longer, minimum too.
            proactive_interval=timedelta(seconds=runtime.settings.proactive_min_interval),
            broadcast_interval=getattr(runtime.profile, "broadcast_min_interval", timedelta(0)),
        )
        self.listener = CrossProcessListener(runtime.settings.database_url, runtime.waker)
        self.send_waker = Waker()
        self.relay.on_done = self.send_waker.wake  # a finished send frees a slot
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.warm_up_threads: list[threading.Thread] = []
        tick = runtime.settings.worker_tick_seconds
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_job(self.tick, "interval", seconds=tick, id="core-tick")
        for job_id, fn in runtime.registry.ticks:
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
                drain_inbox(
                    self.runtime, on_handled=self.send_waker.wake, stopping=self._stop.is_set
                )
                timeout = self._until_due(next_due(self.runtime.db, InboxEvent))
            except Exception:
                log.exception("inbox round failed")
                timeout = 1.0
            self.runtime.waker.wait(timeout)

    def _send_loop(self) -> None:
        """Relay the outbox while the inbox loop goes on handling events (pipelined)."""
        while not self._stop.is_set():
            try:
                self.relay.drain(wait=False)
                timeout = self._until_due(self.relay.next_due())
            except Exception:
                log.exception("send round failed")
                timeout = 1.0
            self.send_waker.wait(timeout)

    def start(self) -> None:
        """Start the inbox and sender threads and the scheduler; returns at once."""
        heartbeat(self.runtime)
        self.listener.start()
        for name, target in (("inbox", self._inbox_loop), ("sender", self._send_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker started (tick every %ss)", self.runtime.settings.worker_tick_seconds)
        self.scheduler.start()
        self.start_warm_ups()

    def start_warm_ups(self) -> None:
        """Run the registry's warm-ups, each on its own daemon thread: start does not wait."""
        for name, fn in self.runtime.registry.warm_ups:
            thread = threading.Thread(
                target=self._warm_up, args=(name, fn), name=f"warm-up-{name}", daemon=True
            )
            thread.start()
            self.warm_up_threads.append(thread)

    def _warm_up(self, name: str, fn) -> None:
        started = time.monotonic()
        try:
            fn(self.runtime)
        except Exception:
            # A failed warm-up only means the first use loads lazily, as it would anyway.
            log.exception("warm-up %s failed", name)
        else:
            log.info("warm-up %s done in %.2fs", name, time.monotonic() - started)

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
