"""Foundation tables: inbox, outbox, patients, reactions, gateway state, logins and tokens."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clinic_bot.core.db import Base, UTCDateTime


def utcnow() -> datetime:
    """Wall-clock now in UTC (column defaults only; business logic uses the injected clock)."""
    return datetime.now(UTC)


class InboxEvent(Base):
    """One item of one webhook POST, stored before we answer 200; the worker handles it later."""

    __tablename__ = "inbox_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The gateway's key for this item: message id; status id + status; a content hash otherwise.
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(40))  # the envelope's array key: messages, statuses…
    event_type: Mapped[str] = mapped_column(String(40), default="")
    event_method: Mapped[str] = mapped_column(String(20), default="")
    channel_id: Mapped[str | None] = mapped_column(String(100))
    # The chat the item belongs to (set at intake), so one chat's events are read by index.
    chat_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSON)
    # pending -> processing -> done | ignored | dead
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(200))  # what the handler did, for staff
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_inbox_ready", "status", "next_attempt_at"),
        # Patient messages are claimed before bulk events (intake.inbox_loop.claim_fairly).
        Index("ix_inbox_kind_ready", "status", "kind", "next_attempt_at"),
        # A conversation's timeline: its newest events first (web.staff.queries.timeline).
        Index("ix_inbox_chat", "chat_id", "id"),
    )


class Patient(Base):
    """A person who writes to the clinic, keyed by E.164 digits (no plus sign)."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    push_name: Mapped[str | None] = mapped_column(String(200))  # WhatsApp profile name
    language: Mapped[str | None] = mapped_column(String(10))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opt_out_message_id: Mapped[str | None] = mapped_column(String(200))
    opted_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opt_in_message_id: Mapped[str | None] = mapped_column(String(200))
    # Conversation state machine (see clinic_bot.reactions.conversation).
    state: Mapped[str] = mapped_column(String(40), default="idle")
    state_data: Mapped[dict] = mapped_column(JSON, default=dict)
    prompt_seq: Mapped[int] = mapped_column(Integer, default=0)
    intake: Mapped[dict] = mapped_column(JSON, default=dict)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_inbound_message_id: Mapped[str | None] = mapped_column(String(200))
    handoff_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last time reception wrote or acted in the handoff: its idle expiry counts from here.
    handoff_staff_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    @property
    def chat_id(self) -> str:
        return f"{self.phone}@s.whatsapp.net"


class OutboxMessage(Base):
    """A message to send through the gateway; written in the transaction that decided it."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    chat_id: Mapped[str] = mapped_column(String(100))
    endpoint: Mapped[str] = mapped_column(String(40))  # messages/text, messages/interactive, …
    body: Mapped[dict] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(64))  # hash of chat + visible text (echoes)
    purpose: Mapped[str] = mapped_column(String(40), default="reply")
    # pending -> sending -> sent -> delivered -> read -> played; failed (gateway); dead (we gave up)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    uncertain_since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a send timed out
    provider_message_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reactions: Mapped[list] = mapped_column(JSON, default=list)

    __table_args__ = (
        Index("ix_outbox_ready", "status", "next_attempt_at"),
        Index("ix_outbox_chat", "chat_id", "status"),
    )


class Reaction(Base):
    """An emoji reaction a patient put on (or took off) one of the chat's messages."""

    __tablename__ = "reaction"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)  # the reaction's own id
    target_message_id: Mapped[str] = mapped_column(String(200), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    emoji: Mapped[str] = mapped_column(String(40), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewayState(Base):
    """Small key/value facts about the outside world: channel status, worker heartbeat."""

    __tablename__ = "gateway_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    def put(cls, session, key: str, value: dict, now: datetime) -> GatewayState:
        """Set the fact `key` to `value` (insert or update) in the caller's transaction."""
        row = session.get(cls, key)
        if row is None:
            row = cls(key=key, value=value, updated_at=now)
            session.add(row)
        else:
            row.value, row.updated_at = value, now
        return row


class StaffUser(Base):
    """A reception or admin login for the staff UI."""

    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))  # admin | reception
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Shown to patients when the profile signs staff replies ("— Ana").
    first_name: Mapped[str | None] = mapped_column(String(100))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it last authenticated a request, to the minute (written at most once a minute).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # admin: every API route; reception: all but the admin ones (dead letters, audit, logins).
    role: Mapped[str] = mapped_column(String(20), default="admin", server_default="admin")
