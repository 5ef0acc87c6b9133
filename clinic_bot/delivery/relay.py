"""The outbox relay: claims due rows, sends them through the gateway, retries and records.

Rows go out in per-chat order, a few chats at a time; timeouts, 5xx and 429 are retried with
jittered backoff, other 4xx dead-lettered with the gateway's body; a send that may have gone out
(timeout, a worker that died mid-send) waits for its echo before it is tried again.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, literal, select, update
from sqlalchemy.orm import aliased

from clinic_bot.adapters.whapi.client import SendResult
from clinic_bot.core.db import Database, UTCDateTime, claim, next_due
from clinic_bot.delivery.outbox import OPT_OUT_SAFE
from clinic_bot.models import InboxEvent, OutboxMessage, Patient
from clinic_bot.models.statuses import UNSENT, DeliveryStatus

log = logging.getLogger(__name__)
# One line per send attempt, ids only (operators filter on this logger).
send_log = logging.getLogger("clinic_bot.sends")

MAX_SEND_ATTEMPTS = 10
BACKOFF_BASE = 2.0  # seconds; long enough for a timed-out send's echo to arrive first
BACKOFF_CAP = 600.0
LEASE = timedelta(seconds=90)
PARK_EVERY = 1.0  # seconds between looks for sends a dead worker left in flight


def backoff_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter on the upper half: base·2^(n-1), capped."""
    rng = rng or random
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


def _ready_in_chat_order():
    """A row is ready only when no earlier row to the same chat is still unsent."""
    earlier = aliased(OutboxMessage)
    return ~exists().where(
        and_(
            earlier.chat_id == OutboxMessage.chat_id,
            earlier.id < OutboxMessage.id,
            earlier.status.in_(UNSENT),
        )
    )


def _echoes_caught_up():
    """An uncertain send (timed out, or left in flight by a dead worker) may have gone out.

    It is retried only once every message webhook that arrived before it fell due has been
    handled: Whapi's `from_me` echo of the first attempt may be among them, and settles it.
    """
    return OutboxMessage.uncertain_since.is_(None) | ~exists().where(
        InboxEvent.kind == "messages",
        InboxEvent.status.in_(("pending", "processing")),
        InboxEvent.received_at <= OutboxMessage.next_attempt_at,
    )


class Relay:
    """Claims outbox rows and hands them to the gateway client, a few chats at a time."""

    def __init__(
        self,
        db: Database,
        client,
        clock,
        *,
        concurrency: int = 8,
        batch: int = 50,
        lease: timedelta = LEASE,
    ):
        self.db = db
        self.lease = lease
        self._parked_at = float("-inf")
        self.client = client
        self.clock = clock
        self.batch = batch
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="relay")

    def park_abandoned(self, now: datetime) -> int:
        """Sends whose worker died mid-flight may have gone out: wait for their echo first.

        Such a row is as uncertain as a timed-out send. It goes back to pending for one lease,
        long enough for Whapi's `from_me` echo to settle it (see `match_echo`); only a row no
        echo claimed is sent again.
        """
        with self.db.transaction() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending", OutboxMessage.locked_until < now)
                .values(
                    status="pending",
                    uncertain_since=func.coalesce(OutboxMessage.uncertain_since, now),
                    next_attempt_at=now + self.lease,
                    last_error="the worker stopped while sending it; waiting for its echo",
                )
                .execution_options(synchronize_session=False)
            )
        return result.rowcount or 0

    def run_once(self) -> int:
        """Claim one batch and send it; returns how many rows were claimed."""
        # A dead worker's rows only need looking for now and then, not on every round.
        if time.monotonic() - self._parked_at >= PARK_EVERY:
            self._parked_at = time.monotonic()
            if self.park_abandoned(self.clock()):
                log.warning("sends abandoned by a stopped worker wait for their echo first")
        ids = claim(
            self.db,
            OutboxMessage,
            now=self.clock(),
            lease=self.lease,
            limit=self.batch,
            # A row left 'sending' by a dead worker comes back only through park_abandoned.
            ready=(OutboxMessage.status == "pending")
            & _ready_in_chat_order()
            & _echoes_caught_up(),
            order_by=[OutboxMessage.id],
            claimed_status="sending",
        )
        if ids:
            list(self.pool.map(self._deliver, self._load(ids)))
        return len(ids)

    def _load(self, ids: list[int]) -> list[tuple]:
        """What each claimed row needs for its send, read in one query without a write lock."""
        with self.db.ReadSession() as s:
            rows = s.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.status,
                    OutboxMessage.endpoint,
                    OutboxMessage.body,
                    OutboxMessage.attempts,
                    (Patient.opted_out & OutboxMessage.purpose.not_in(OPT_OUT_SAFE)).label("stop"),
                )
                .outerjoin(Patient, Patient.id == OutboxMessage.patient_id)
                .where(OutboxMessage.id.in_(ids))
                .order_by(OutboxMessage.id)
            ).all()
        return [tuple(r) for r in rows]

    def drain(self, max_rounds: int = 1000) -> int:
        """Send until nothing is ready; returns how many rows were handled."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if not n:
                break
        return total

    def _deliver(self, loaded: tuple) -> None:
        try:
            self._deliver_one(*loaded)
        except Exception:  # a bug in one row must not stop the relay
            log.exception("outbox row %s could not be delivered", loaded[0])

    def _deliver_one(self, row_id, status, endpoint, body, attempts, opted_out) -> None:
        if status != "sending":
            return  # an echo already settled it
        if opted_out:
            with self.db.transaction() as s:
                row = s.get(OutboxMessage, row_id)
                if row is not None and row.status == "sending":
                    row.status, row.last_error = "cancelled", "patient opted out"
            return
        started = time.monotonic()
        result = self.client.send(endpoint, body)
        self.record(row_id, result, attempts)
        send_log.info(
            "send %s: %s",
            row_id,
            "sent" if result.ok else "retry" if result.retryable else "refused",
            extra={
                "outbox_id": row_id,
                "message_id": result.message_id,
                "endpoint": endpoint,
                "status_code": result.status_code,
                "outcome": "sent" if result.ok else "retry" if result.retryable else "refused",
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    def record(self, row_id: int, result: SendResult, attempts: int) -> None:
        """Store what one send attempt gave: sent, a retry later, or a dead letter."""
        now = self.clock()
        if result.ok:
            # The common case in one statement: an echo or a status may have got here first,
            # so keep what they recorded and only move the status forward.
            with self.db.transaction() as s:
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row_id)
                    .values(
                        provider_message_id=func.coalesce(
                            OutboxMessage.provider_message_id, result.message_id
                        ),
                        status=case(
                            (OutboxMessage.status.in_(UNSENT), DeliveryStatus.SENT),
                            else_=OutboxMessage.status,
                        ),
                        sent_at=func.coalesce(OutboxMessage.sent_at, literal(now, UTCDateTime())),
                        last_error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
            return
        with self.db.transaction() as s:
            row = s.get(OutboxMessage, row_id)
            if row is None or row.status != "sending":
                return  # settled meanwhile by an echo or a status webhook
            row.last_error = result.error
            if result.uncertain:
                row.uncertain_since = row.uncertain_since or now
            if result.retryable and attempts < MAX_SEND_ATTEMPTS:
                row.status = "pending"
                row.next_attempt_at = now + timedelta(seconds=backoff_delay(attempts))
                log.warning("send %s failed (%s); retry %d", row_id, result.error, attempts)
            else:
                row.status = "dead"
                row.failed_at = now
                log.error("send %s dead-lettered: %s", row_id, result.error)

    def next_due(self) -> datetime | None:
        """When the earliest pending row becomes due (for the sender loop's sleep)."""
        return next_due(self.db, OutboxMessage)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
