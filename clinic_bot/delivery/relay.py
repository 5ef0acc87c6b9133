"""The outbox relay: claims due rows, sends them through the gateway, retries and records.

Rows go out in per-chat order, a few chats at a time; timeouts, 5xx and 429 are retried with
jittered backoff, other 4xx dead-lettered with the gateway's body. Three things are the
channel's, not the message's, and are handled as such:
- 401 (the phone is logged out) and 404 "Channel not found" pause every send: nothing is
  dead-lettered, GET /health is polled with backoff, and sending resumes on AUTH (or when the
  `health`/`user` webhook says so). Reminders that became too late meanwhile are skipped.
- A send that may have gone out (timeout, a worker that died mid-send) is reconciled against
  Whapi's own list of the chat's messages (GET /messages/list/{ChatID}) before it is sent again.
- Proactive sends (reminders, follow-ups, broadcasts) share one pacer enforced at send time;
  replies to a patient who just wrote never wait for it.
Claims are short leases renewed by a heartbeat while the batch is in progress.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, exists, func, literal, select, update
from sqlalchemy.orm import aliased

from clinic_bot.adapters.whapi.client import SendResult
from clinic_bot.adapters.whapi.payloads import text_of
from clinic_bot.core.db import Database, UTCDateTime, claim, insert_ignore, next_due
from clinic_bot.delivery.channel import is_paused, mark_channel, read_channel
from clinic_bot.delivery.leases import LeaseKeeper
from clinic_bot.delivery.outbox import OPT_OUT_SAFE, fingerprint
from clinic_bot.models import Appointment, GatewayState, OutboxMessage, Patient
from clinic_bot.models.reminders import Reminder
from clinic_bot.models.statuses import UNSENT, DeliveryStatus

log = logging.getLogger(__name__)
# One line per send attempt, ids only (operators filter on this logger).
send_log = logging.getLogger("clinic_bot.sends")

# A gentle curve with many tries: 30% random faults settle within seconds, not minutes, while a
# gateway failing everything for ~8 minutes still dead-letters nothing.
MAX_SEND_ATTEMPTS = 20
BACKOFF_BASE = 1.0  # seconds
BACKOFF_CAP = 30.0
# Short, because a heartbeat renews it while the send is in progress: a dead worker's rows
# come back within seconds.
LEASE = timedelta(seconds=10)
PARK_EVERY = 1.0  # seconds between looks for sends a dead worker left in flight
# An uncertain send is looked up in Whapi's list this long after it became uncertain.
RECONCILE_GRACE = timedelta(seconds=2)
RECONCILE_WINDOW = timedelta(minutes=2)  # how far before the row's creation the lookup reaches
PROBE_FIRST = 1.0  # seconds before the first GET /health of a paused channel; doubles, capped
PROBE_CAP = 30.0
# Purposes the clinic starts on its own: they share the per-number pacer.
PROACTIVE = {"reminder", "followup", "post_visit", "broadcast"}
TOO_LATE_PURPOSES = ("reminder", "followup")
PACER_KEY = "pacer.proactive"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


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
        proactive_interval: timedelta = timedelta(0),
        broadcast_interval: timedelta = timedelta(0),
    ):
        self.db = db
        self.lease = lease
        self._parked_at = float("-inf")
        self.client = client
        self.clock = clock
        self.batch = batch
        self.proactive_interval = proactive_interval
        self.broadcast_interval = max(broadcast_interval, proactive_interval)
        self.concurrency = concurrency
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="relay")
        # Pipelined sending (the worker): rows in flight, renewed by one heartbeat thread, and
        # a callback when one finishes, so a stalled send never holds the others back.
        self.on_done = None
        self._inflight: set[int] = set()
        self._inflight_lock = threading.Lock()
        self._closed = threading.Event()
        self._keeper: threading.Thread | None = None
        self._paused: str | None = None
        self._probe_at = 0.0
        self._probe_delay = PROBE_FIRST
        self._check_late = True  # on the first round, and after every pause

    # ------------------------------------------------------------------ the channel

    def channel_paused(self) -> str | None:
        """The channel state that holds every send (e.g. "UNAUTHORIZED"), or None."""
        with self.db.ReadSession() as s:
            value = read_channel(s)
        status = str(value.get("status", "")) if is_paused(value) else None
        if status is None and self._paused is not None:
            self._resumed(f"the channel is {value.get('status', 'back')}")
        elif status is not None and self._paused is None:
            self._paused = status
            self._probe_at = time.monotonic() + PROBE_FIRST
            self._probe_delay = PROBE_FIRST
        return status

    def _pause(self, status: str, error: str | None) -> None:
        with self.db.transaction() as s:
            first = not is_paused(read_channel(s))
            mark_channel(s, status, self.clock(), error)
        if first:
            if status == "NOT_FOUND":
                log.error("Whapi answers 404 Channel not found: check WHAPI_TOKEN; sending stopped")
            else:
                log.error("the clinic's WhatsApp channel is not authorized; sending paused")
        if self._paused is None:
            self._probe_at = time.monotonic() + PROBE_FIRST
            self._probe_delay = PROBE_FIRST
        self._paused = status

    def _resumed(self, why: str) -> None:
        log.warning("WhatsApp channel usable again (%s); sending resumes", why)
        self._paused = None
        self._check_late = True

    def probe(self, force: bool = False) -> str | None:
        """Ask GET /health when due; resume on AUTH. Returns the pausing state, or None."""
        if not force and time.monotonic() < self._probe_at:
            return self._paused
        status, detail = self.client.health()
        now = self.clock()
        if status == "AUTH":
            with self.db.transaction() as s:
                mark_channel(s, "AUTH", now)
            self._resumed("GET /health says AUTH")
            return None
        if status in ("UNREACHABLE", "UNKNOWN"):
            status = self._paused or "UNAUTHORIZED"  # keep what we knew; try again later
        else:
            with self.db.transaction() as s:
                mark_channel(s, status, now, detail or None)
        self._paused = status
        self._probe_delay = min(PROBE_CAP, self._probe_delay * 2)
        self._probe_at = time.monotonic() + self._probe_delay
        return status

    def skip_too_late(self, now: datetime) -> int:
        """Withdraw unsent reminders whose appointment has started (sent now they would mislead)."""
        reason = "too late: the appointment had started before WhatsApp could send it"
        with self.db.transaction() as s:
            rows = s.execute(
                select(OutboxMessage.id, Reminder.id)
                .join(Reminder, Reminder.outbox_key == OutboxMessage.idempotency_key)
                .join(Appointment, Appointment.id == Reminder.appointment_id)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.purpose.in_(TOO_LATE_PURPOSES),
                    Appointment.starts_at <= now,
                )
            ).all()
            if not rows:
                return 0
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r[0] for r in rows]))
                .where(OutboxMessage.status == "pending")
                .values(status="cancelled", last_error=reason)
                .execution_options(synchronize_session=False)
            )
            s.execute(
                update(Reminder)
                .where(Reminder.id.in_([r[1] for r in rows]))
                .values(status="skipped", reason=reason)
                .execution_options(synchronize_session=False)
            )
        log.warning("%d reminders skipped: too late after the channel was down", len(rows))
        return len(rows)

    # ------------------------------------------------------------------ claiming and sending

    def park_abandoned(self, now: datetime) -> int:
        """Sends whose worker died mid-flight may have gone out: look them up before resending.

        Such a row is as uncertain as a timed-out send. It goes back to pending, due after a
        short grace; its next attempt first asks Whapi whether it went out (`_reconcile`).
        """
        with self.db.transaction() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending", OutboxMessage.locked_until < now)
                .values(
                    status="pending",
                    uncertain_since=func.coalesce(OutboxMessage.uncertain_since, now),
                    next_attempt_at=now + RECONCILE_GRACE,
                    last_error="the worker stopped while sending it; checking whether it went out",
                )
                .execution_options(synchronize_session=False)
            )
        return result.rowcount or 0

    def run_once(self, wait: bool = True) -> int:
        """Claim one batch and send it; returns how many rows were claimed.

        With `wait`, the batch is sent before this returns (tests, scripts). Without it (the
        worker), the sends go on in the pool and only free slots are claimed: one slow send
        (a 12 s stall) holds back its own chat only, never the whole batch.
        """
        if self.channel_paused() and self.probe():
            return 0
        now = self.clock()
        if self._check_late:
            self._check_late = False
            self.skip_too_late(now)
        # A dead worker's rows only need looking for now and then, not on every round.
        if time.monotonic() - self._parked_at >= PARK_EVERY:
            self._parked_at = time.monotonic()
            if self.park_abandoned(now):
                log.warning("sends abandoned by a stopped worker are checked with Whapi first")
        limit = self.batch
        if not wait:
            with self._inflight_lock:
                limit = min(limit, self.concurrency - len(self._inflight))
            if limit <= 0:
                return 0
        ids = claim(
            self.db,
            OutboxMessage,
            now=now,
            lease=self.lease,
            limit=limit,
            # A row left 'sending' by a dead worker comes back only through park_abandoned.
            ready=(OutboxMessage.status == "pending") & _ready_in_chat_order(),
            order_by=[OutboxMessage.id],
            claimed_status="sending",
        )
        if ids and wait:
            keeper = LeaseKeeper(
                self.db, OutboxMessage, ids, status="sending", lease=self.lease, clock=self.clock
            )
            with keeper:
                list(self.pool.map(self._deliver, self._load(ids)))
        elif ids:
            # Read before the rows count as in flight: if the database fails right here, rows
            # in flight would have their lease renewed forever without a send to finish them;
            # left out, their lease runs out and park_abandoned settles them.
            rows = self._load(ids)
            with self._inflight_lock:
                self._inflight.update(ids)
            self._start_keeper()
            for loaded in rows:
                future = self.pool.submit(self._deliver, loaded)
                future.add_done_callback(functools.partial(self._finished, loaded["id"]))
        return len(ids)

    def _finished(self, row_id: int, _future) -> None:
        with self._inflight_lock:
            self._inflight.discard(row_id)
        if self.on_done is not None:
            self.on_done()

    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._keep_leases, name="relay-lease", daemon=True
            )
            self._keeper.start()

    def _keep_leases(self) -> None:
        """Renew the lease of every row in flight, a third of a lease apart, until closed."""
        every = max(0.2, self.lease.total_seconds() / 3)
        while not self._closed.wait(every):
            with self._inflight_lock:
                ids = list(self._inflight)
            if not ids:
                continue
            try:
                LeaseKeeper(
                    self.db,
                    OutboxMessage,
                    ids,
                    status="sending",
                    lease=self.lease,
                    clock=self.clock,
                ).renew()
            except Exception:  # a missed renewal only shortens the lease
                log.warning("could not renew the leases of sends in flight", exc_info=True)

    def _load(self, ids: list[int]) -> list[dict]:
        """What each claimed row needs for its send, read in one query without a write lock."""
        with self.db.ReadSession() as s:
            rows = s.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.status,
                    OutboxMessage.endpoint,
                    OutboxMessage.body,
                    OutboxMessage.attempts,
                    OutboxMessage.purpose,
                    OutboxMessage.chat_id,
                    OutboxMessage.fingerprint,
                    OutboxMessage.created_at,
                    OutboxMessage.uncertain_since,
                    (Patient.opted_out & OutboxMessage.purpose.not_in(OPT_OUT_SAFE)).label("stop"),
                )
                .outerjoin(Patient, Patient.id == OutboxMessage.patient_id)
                .where(OutboxMessage.id.in_(ids))
                .order_by(OutboxMessage.id)
            ).all()
        return [r._asdict() for r in rows]

    def drain(self, max_rounds: int = 1000, wait: bool = True) -> int:
        """Send until nothing is ready (or, without `wait`, no slot is free); returns how many."""
        total = 0
        for _ in range(max_rounds):
            n = self.run_once(wait=wait)
            total += n
            if not n:
                break
        return total

    def _deliver(self, loaded: dict) -> None:
        try:
            self._deliver_one(loaded)
        except Exception:  # a bug in one row must not stop the relay
            log.exception("outbox row %s could not be delivered", loaded["id"])

    def _deliver_one(self, r: dict) -> None:
        row_id = r["id"]
        if r["status"] != "sending":
            return  # an echo already settled it
        if r["stop"]:
            with self.db.transaction() as s:
                row = s.get(OutboxMessage, row_id)
                if row is not None and row.status == "sending":
                    row.status, row.last_error = "cancelled", "patient opted out"
            return
        if self._paused:
            self._hold(row_id, "waiting: the WhatsApp channel is paused")
            return
        if r["uncertain_since"] is not None:
            outcome = self._reconcile(r)
            if outcome == "sent":
                return
            if outcome == "unknown":
                self.record(
                    row_id,
                    SendResult(False, retryable=True, uncertain=True, error="could not ask Whapi"),
                    r["attempts"],
                )
                return
        if r["purpose"] in PROACTIVE:
            wait_until = self._take_pacer_slot(r["purpose"])
            if wait_until is not None:
                self._hold(row_id, None, when=wait_until)
                return
        started = time.monotonic()
        result = self.client.send(r["endpoint"], r["body"])
        self.record(row_id, result, r["attempts"])
        outcome = "sent" if result.ok else "retry" if result.retryable else "refused"
        send_log.info(
            "send %s: %s",
            row_id,
            outcome,
            extra={
                "outbox_id": row_id,
                "message_id": result.message_id,
                "endpoint": r["endpoint"],
                "status_code": result.status_code,
                "outcome": outcome,
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    def _hold(self, row_id: int, why: str | None, when: datetime | None = None) -> None:
        """Put a claimed row back, unsent and without counting the attempt."""
        with self.db.transaction() as s:
            row = s.get(OutboxMessage, row_id)
            if row is None or row.status != "sending":
                return
            row.status = "pending"
            row.attempts = max(0, row.attempts - 1)
            row.next_attempt_at = when or self.clock()
            row.locked_until = None
            if why:
                row.last_error = why

    def _take_pacer_slot(self, purpose: str) -> datetime | None:
        """Take the per-number proactive slot now; None when taken, else when it frees up."""
        interval = self.broadcast_interval if purpose == "broadcast" else self.proactive_interval
        if interval <= timedelta(0):
            return None
        now = self.clock()
        with self.db.transaction() as s:
            insert_ignore(
                s,
                GatewayState,
                [dict(key=PACER_KEY, value={}, updated_at=EPOCH)],
                key="key",
                returning=None,
            )
            taken = s.execute(
                update(GatewayState)
                .where(GatewayState.key == PACER_KEY, GatewayState.updated_at <= now - interval)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken:
                return None
            last = s.execute(
                select(GatewayState.updated_at).where(GatewayState.key == PACER_KEY)
            ).scalar_one()
        return last + interval

    def _reconcile(self, r: dict) -> str:
        """Ask Whapi whether an uncertain send went out: "sent", "not_sent" or "unknown"."""
        since = (r["created_at"] or self.clock()) - RECONCILE_WINDOW
        listed = self.client.list_messages(r["chat_id"], int(since.timestamp()))
        if listed is None:
            return "unknown"
        candidates = [
            m["id"]
            for m in listed
            if m.get("from_me")
            and isinstance(m.get("id"), str)
            and fingerprint(r["chat_id"], text_of(m)) == r["fingerprint"]
        ]
        if not candidates:
            return "not_sent"
        with self.db.transaction() as s:
            known = set(
                s.execute(
                    select(OutboxMessage.provider_message_id).where(
                        OutboxMessage.provider_message_id.in_(candidates)
                    )
                ).scalars()
            )
            free = [c for c in candidates if c not in known]
            row = s.get(OutboxMessage, r["id"])
            if row is None or row.status != "sending":
                return "sent"  # an echo settled it meanwhile
            if not free:
                return "not_sent"  # every match is an earlier message with the same text
            row.provider_message_id = free[-1]  # the oldest (the list is newest first)
            row.status = DeliveryStatus.SENT
            row.sent_at = row.sent_at or self.clock()
            row.last_error = None
        log.info("outbox row %s settled against Whapi's message list: it had gone out", r["id"])
        return "sent"

    def record(self, row_id: int, result: SendResult, attempts: int) -> None:
        """Store what one send attempt gave: sent, a retry later, a pause, or a dead letter."""
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
        if result.channel:
            # Not this message's fault: every send would fail alike. Hold them all.
            status = "NOT_FOUND" if result.channel == "not_found" else "UNAUTHORIZED"
            self._pause(status, result.error)
            self._hold(row_id, f"waiting: {result.error}")
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
                delay = timedelta(seconds=backoff_delay(attempts))
                if result.uncertain:
                    delay = max(delay, RECONCILE_GRACE)  # let Whapi's list catch up first
                row.next_attempt_at = now + delay
                log.warning("send %s failed (%s); retry %d", row_id, result.error, attempts)
            else:
                row.status = "dead"
                row.failed_at = now
                log.error("send %s dead-lettered: %s", row_id, result.error)

    def next_due(self) -> datetime | None:
        """When the relay should look again: the earliest pending row, or the next probe."""
        if self._paused:
            return self.clock() + timedelta(seconds=max(0.05, self._probe_at - time.monotonic()))
        return next_due(self.db, OutboxMessage)

    def close(self) -> None:
        """Let sends in flight finish, then stop the pool and the lease heartbeat."""
        self.pool.shutdown(wait=True)
        self._closed.set()
