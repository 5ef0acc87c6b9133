"""The outbox: messages enqueued in the caller's transaction, relayed to the gateway later.

Every send is a row with a unique idempotency key, so a retried event or a second worker can
never send the same message twice. `delivery.relay` sends the rows; status webhooks then move
a row forward only (`apply_status`), and our own echoes settle uncertain sends (`match_echo`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clinic_bot.adapters.whapi import bodies
from clinic_bot.adapters.whapi.bodies import Button, Row
from clinic_bot.core.db import insert_ignore
from clinic_bot.models import OutboxMessage, Patient
from clinic_bot.models.statuses import DELIVERY_RANK, DeliveryStatus

log = logging.getLogger(__name__)

# Delivery progress; a status webhook may only move a row to a higher rank.
STATUS_RANK = DELIVERY_RANK
TERMINAL = {DeliveryStatus.DEAD, DeliveryStatus.CANCELLED}
# Purposes that still reach an opted-out patient: only the confirmation of the opt-out itself.
OPT_OUT_SAFE = {"optout"}


MAX_KEY = 250  # the idempotency_key column holds 300


def bounded_key(key: str) -> str:
    """An idempotency key the column can hold whatever the ids in it: huge or odd ones hashed.

    Deterministic, so a retried event still finds the key it enqueued the first time.
    """
    if len(key) <= MAX_KEY and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key[:40]}…h:{digest}" if key[:40].isprintable() else f"h:{digest}"


def fingerprint(chat_id: str, text: str) -> str:
    """A hash of where a message goes and what it says, to match our echoes to outbox rows."""
    return hashlib.sha256(f"{chat_id}\n{' '.join(text.split())}".encode()).hexdigest()


def enqueue(
    session: Session,
    *,
    key: str,
    chat_id: str,
    endpoint: str,
    body: dict,
    now: datetime,
    patient: Patient | None = None,
    purpose: str = "reply",
    not_before: datetime | None = None,
) -> bool:
    """Add a message to send; False when `key` was enqueued before or the patient opted out."""
    if patient is not None and patient.opted_out and purpose not in OPT_OUT_SAFE:
        return False
    text = bodies.visible_text(endpoint, body)
    new = insert_ignore(
        session,
        OutboxMessage,
        [
            dict(
                idempotency_key=bounded_key(key),
                patient_id=patient.id if patient is not None else None,
                chat_id=chat_id,
                endpoint=endpoint,
                body=body,
                fingerprint=fingerprint(chat_id, text),
                purpose=purpose,
                status="pending",
                attempts=0,
                next_attempt_at=not_before or now,
                created_at=now,
                reactions=[],
            )
        ],
        key="idempotency_key",
    )
    return bool(new)


class Outbox:
    """Typed senders over `enqueue`: what the rest of the app calls instead of Whapi JSON."""

    def __init__(self, session: Session, now: datetime, key_prefix: str):
        self.session = session
        self.now = now
        self.key_prefix = key_prefix
        self.count = 0

    def _key(self, key: str | None) -> str:
        self.count += 1
        return key or f"{self.key_prefix}:{self.count}"

    def text(self, patient: Patient, text: str, *, key=None, purpose="reply", **kw) -> bool:
        """Queue a plain text to the patient."""
        return enqueue(
            self.session,
            key=self._key(key),
            chat_id=patient.chat_id,
            endpoint="messages/text",
            body=bodies.text_body(patient.chat_id, text),
            now=self.now,
            patient=patient,
            purpose=purpose,
            **kw,
        )

    def buttons(
        self, patient: Patient, text: str, buttons: list[Button], *, key=None, purpose="reply", **kw
    ) -> bool:
        """Queue a message with up to three quick-reply buttons."""
        footer = kw.pop("footer", "")
        header = kw.pop("header", "")
        return enqueue(
            self.session,
            key=self._key(key),
            chat_id=patient.chat_id,
            endpoint="messages/interactive",
            body=bodies.buttons_body(patient.chat_id, text, buttons, header=header, footer=footer),
            now=self.now,
            patient=patient,
            purpose=purpose,
            **kw,
        )

    def list(
        self,
        patient: Patient,
        text: str,
        label: str,
        sections: list[tuple[str, list[Row]]],
        *,
        key=None,
        purpose="reply",
        **kw,
    ) -> bool:
        """Queue a list message (at most ten rows)."""
        footer = kw.pop("footer", "")
        header = kw.pop("header", "")
        body = bodies.list_body(
            patient.chat_id, text, label, sections, header=header, footer=footer
        )
        return enqueue(
            self.session,
            key=self._key(key),
            chat_id=patient.chat_id,
            endpoint="messages/interactive",
            body=body,
            now=self.now,
            patient=patient,
            purpose=purpose,
            **kw,
        )

    def document(
        self,
        patient: Patient,
        content: bytes,
        filename: str,
        mime_type: str,
        caption: str = "",
        *,
        key=None,
        purpose="reply",
        **kw,
    ) -> bool:
        """Queue a document (an .ics invitation, say) sent inline."""
        return enqueue(
            self.session,
            key=self._key(key),
            chat_id=patient.chat_id,
            endpoint="messages/document",
            body=bodies.document_body(patient.chat_id, content, filename, mime_type, caption),
            now=self.now,
            patient=patient,
            purpose=purpose,
            **kw,
        )


def cancel_pending_on_opt_out(session: Session, patient: Patient, now: datetime) -> None:
    """Opt-out hook: void every unsent message to the patient except the opt-out's own answer."""
    cancel_pending_for(session, patient.id, "patient opted out")


def cancel_pending_for(session: Session, patient_id: int, reason: str) -> int:
    """Void every unsent message to a patient (opt-out); returns how many."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.patient_id == patient_id,
            OutboxMessage.status == "pending",
            OutboxMessage.purpose.not_in(OPT_OUT_SAFE),
        )
        .values(status="cancelled", last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def apply_status(session: Session, provider_id: str, status: str, at: datetime) -> str:
    """Move the row with `provider_id` forward to `status` (never back); returns the outcome."""
    row = session.execute(
        select(OutboxMessage).where(OutboxMessage.provider_message_id == provider_id)
    ).scalar_one_or_none()
    if row is None:
        return "unknown"
    if status == "failed":
        if STATUS_RANK.get(row.status, -1) < STATUS_RANK["delivered"]:
            row.status, row.failed_at = "failed", at
            return "failed"
        return "stale"
    rank = STATUS_RANK.get(status)
    if rank is None:
        return "ignored"
    if row.status in TERMINAL | {"failed"} or STATUS_RANK.get(row.status, -1) >= rank:
        return "stale"
    row.status = status
    if rank >= STATUS_RANK["sent"]:
        row.sent_at = row.sent_at or at
    if rank >= STATUS_RANK["delivered"]:
        row.delivered_at = row.delivered_at or at
    if rank >= STATUS_RANK["read"]:
        row.read_at = row.read_at or at
    return status


def match_echo(session: Session, provider_id: str, chat_id: str, text: str) -> str:
    """Tie our own echoed message to its outbox row (settles timed-out sends); returns outcome."""
    row = session.execute(
        select(OutboxMessage).where(OutboxMessage.provider_message_id == provider_id)
    ).scalar_one_or_none()
    if row is not None:
        return "known"
    fp = fingerprint(chat_id, text)
    row = session.execute(
        select(OutboxMessage)
        .where(
            OutboxMessage.fingerprint == fp,
            OutboxMessage.provider_message_id.is_(None),
            (OutboxMessage.status == "sending")
            | ((OutboxMessage.status == "pending") & OutboxMessage.uncertain_since.is_not(None)),
        )
        .order_by(OutboxMessage.id)
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        return "unmatched"  # staff typing on the clinic phone, or a send from elsewhere
    row.provider_message_id = provider_id
    if STATUS_RANK.get(row.status, -1) < STATUS_RANK["sent"]:
        row.status = "sent"
    return "matched"
