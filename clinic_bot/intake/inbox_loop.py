"""Event IN, second half: claim stored inbox rows and hand each to the reaction for its type.

Each row's domain changes and outbox rows commit in one transaction; a failure is retried with
backoff (2, 4, 8, 16 s) and dead-lettered with its error after 5 attempts, kept for staff. An
item nothing can be made of is dead-lettered at once, naming the patient when one is known.
Patient messages, taps and calls are claimed before bulk status/chat/label events, so a flood
of low-value events never delays a reply; claims are short leases renewed while in progress.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from clinic_bot.adapters.whapi.payloads import UnreadableItem, parse_item
from clinic_bot.core.db import claim
from clinic_bot.core.runtime import Runtime
from clinic_bot.delivery.leases import LeaseKeeper
from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import events as ev
from clinic_bot.models import GatewayState, InboxEvent
from clinic_bot.models.statuses import InboxStatus
from clinic_bot.reactions.context import HandlerContext, RetryLater

log = logging.getLogger(__name__)

MAX_EVENT_ATTEMPTS = 5
INBOX_LEASE = timedelta(seconds=10)  # renewed by a heartbeat while the batch is handled
# Claimed first: what a patient is waiting on, and the channel's own state.
URGENT_KINDS = ("messages", "calls", "health", "user")
INBOX_BATCH = 50
RETRY_LATER_DELAY = timedelta(seconds=2)
# The database went away or timed out mid-event (a restart, a failover, a lock wait): the event
# is not at fault, so the try does not count towards dead-lettering it.
DATABASE_RETRY_DELAY = timedelta(seconds=2)


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
            handler = runtime.registry.handler_for(type(event))
            ctx = HandlerContext(
                session=s,
                runtime=runtime,
                now=now,
                inbox_id=row.id,
                received_at=row.received_at,
                outbox=Outbox(s, now, f"reply:{event.event_id}"),
            )
            if handler is None:
                outcome, ignored = f"no reaction installed for {type(event).__name__}", True
            else:
                outcome, ignored = handler(ctx, event), isinstance(event, ev.Ignored)
            row.status = "ignored" if ignored else "done"
            row.outcome = (outcome or "")[:200]
            row.processed_at = now
            row.last_error = None
            return outcome
    except RetryLater as exc:
        _reschedule(runtime, row_id, str(exc), now + RETRY_LATER_DELAY, dead=False)
    except UnreadableItem as exc:
        _unreadable(runtime, row_id, str(exc))
    except DBAPIError as exc:
        if not _database_unavailable(exc):
            _count_failure(runtime, row_id, exc, now)
            return None
        cause = type(exc.orig or exc).__name__
        log.warning("inbox event %s: the database failed (%s); retried, not counted", row_id, cause)
        _retry_uncounted(runtime, row_id, now + DATABASE_RETRY_DELAY)
    except Exception as exc:
        _count_failure(runtime, row_id, exc, now)
    return None


def _count_failure(runtime: Runtime, row_id: int, exc: Exception, now) -> None:
    """Log an event's failure and count it: retried with backoff, dead-lettered at the cap."""
    log.exception("inbox event %s failed", row_id)
    _fail(runtime, row_id, exc, now)


def _database_unavailable(exc: DBAPIError) -> bool:
    """True for a lost connection, a timeout or a lock wait: nothing the event itself caused."""
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)


def _retry_uncounted(runtime: Runtime, row_id: int, when) -> None:
    """Hand the row back without holding this try against it; if even that fails, its lease
    running out hands it back (the database is still away)."""
    try:
        with runtime.db.transaction() as s:
            row = s.get(InboxEvent, row_id)
            if row is None or row.status != "processing":
                return
            row.status = "pending"
            row.attempts = max(0, (row.attempts or 0) - 1)
            row.next_attempt_at = when
            row.last_error = "the database was unavailable; retried"
    except SQLAlchemyError:
        log.warning("inbox event %s: could not hand it back yet; its lease will", row_id)


def _sender_of(payload) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in ("from", "chat_id"):
        value = payload.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            digits = "".join(ch for ch in str(value).split("@")[0] if ch.isdigit())
            if 7 <= len(digits) <= 15:
                return f"+{digits}"
    return None


def _unreadable(runtime: Runtime, row_id: int, reason: str) -> None:
    """Dead-letter an item nothing can be made of at once: retrying cannot help it."""
    with runtime.db.transaction() as s:
        row = s.get(InboxEvent, row_id)
        if row is None or row.status != "processing":
            return
        who = _sender_of(row.payload)
        row.status = "dead"
        row.processed_at = runtime.clock()
        row.last_error = (
            f"could not understand a message from {who}: {reason}; answer the patient by hand"
            if who
            else f"could not understand this item: {reason}"
        )[:4000]
    log.warning("inbox event %s could not be understood; kept for staff", row_id)


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


def drain_inbox(runtime: Runtime, max_rounds: int = 1000, on_handled=None, stopping=None) -> int:
    """Claim and handle inbox rows until none is ready; returns how many were handled.

    `on_handled` runs after each row's transaction, so the relay can send its replies at once.
    When `stopping()` turns true (the process is shutting down), the row in hand is finished and
    the rest of the claimed batch is handed back at once instead of waiting for its lease.
    """
    total = 0
    lease = lease_for(runtime, INBOX_LEASE)
    for _ in range(max_rounds):
        ids = claim_fairly(runtime, lease)
        if not ids:
            break
        keeper = LeaseKeeper(
            runtime.db, InboxEvent, ids, status="processing", lease=lease, clock=runtime.clock
        )
        with keeper:
            for i, row_id in enumerate(ids):
                if stopping is not None and stopping():
                    release_claims(runtime, ids[i:])
                    return total + i
                process_inbox_row(runtime, row_id)
                if on_handled is not None:
                    on_handled()
        total += len(ids)
    return total


def claim_fairly(runtime: Runtime, lease: timedelta) -> list[int]:
    """Claim the next batch: patient messages, taps and calls first, then everything else."""
    for ready in (InboxEvent.kind.in_(URGENT_KINDS), None):
        ids = claim(
            runtime.db,
            InboxEvent,
            now=runtime.clock(),
            lease=lease,
            limit=INBOX_BATCH,
            ready=ready,
            order_by=[InboxEvent.id],
        )
        if ids:
            return ids
    return []


def release_claims(runtime: Runtime, ids: list[int]) -> None:
    """Hand claimed, unhandled rows back to pending so another worker takes them now."""
    with runtime.db.transaction() as s:
        s.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(ids), InboxEvent.status == InboxStatus.PROCESSING)
            # The claim counted an attempt that never ran: give it back.
            .values(
                status=InboxStatus.PENDING,
                locked_until=None,
                attempts=InboxEvent.attempts - 1,
            )
            .execution_options(synchronize_session=False)
        )


def heartbeat(runtime: Runtime) -> None:
    """Record that the worker is alive, for /healthz."""
    now = runtime.clock()
    with runtime.db.transaction() as s:
        GatewayState.put(s, "worker", {"last_tick": now.isoformat()}, now)
