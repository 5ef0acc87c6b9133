"""A patient chatting through the handler layer (no HTTP), with what the bot sent each turn.

Used by the machine tests and the scripted corpus; the transport is covered over real HTTP
in test_conversation_flows.py. Each `send` runs the real handler in one transaction, as the
worker does, and returns the outbox rows it queued, simplified for assertions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sqlalchemy import select

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain import events as ev
from clinic_bot.models import OutboxMessage, Patient
from clinic_bot.reactions.context import HandlerContext
from clinic_bot.reactions.conversation import words
from clinic_bot.reactions.messages import handle_patient_message

_ids = itertools.count(1)


@dataclass
class Sent:
    """One message the bot queued: its kind, visible text and choices as (id, title)."""

    kind: str  # text | buttons | list | document
    text: str
    choices: list[tuple[str, str]] = field(default_factory=list)
    body: dict = field(default_factory=dict)
    purpose: str = "reply"

    @property
    def titles(self) -> list[str]:
        return [title for _, title in self.choices]


def simplify(row: OutboxMessage) -> Sent:
    """An outbox row as a patient would see it."""
    body = row.body
    if row.endpoint == "messages/text":
        return Sent("text", body["body"], body=body, purpose=row.purpose)
    if row.endpoint == "messages/document":
        return Sent("document", body.get("caption", ""), body=body, purpose=row.purpose)
    action = body.get("action", {})
    if body.get("type") == "list":
        rows = [r for sec in action["list"]["sections"] for r in sec["rows"]]
        choices = [(r["id"], r["title"]) for r in rows]
        return Sent("list", body["body"]["text"], choices, body, row.purpose)
    choices = [(b["id"], b["title"]) for b in action.get("buttons", [])]
    return Sent("buttons", body["body"]["text"], choices, body, row.purpose)


class Chat:
    """One patient's side of the chat, driven through `handle_patient_message`."""

    def __init__(self, runtime, phone: str = "4915112345678", name: str = "Ana Test"):
        self.runtime = runtime
        self.phone = phone
        self.push_name = name
        self.seen = 0
        self.history: list[Sent] = []
        self.last_outcome = ""

    # ------------------------------------------------------------------ sending

    def _deliver(self, event: ev.PatientMessage) -> list[Sent]:
        now = self.runtime.clock()
        with self.runtime.db.transaction() as s:
            ctx = HandlerContext(
                session=s,
                runtime=self.runtime,
                now=now,
                inbox_id=0,
                received_at=now,
                outbox=Outbox(s, now, f"reply:{event.event_id}"),
            )
            self.last_outcome = handle_patient_message(ctx, event)
        return self.new_messages()

    def _base(self) -> dict:
        return dict(
            event_id=f"in-{next(_ids)}",
            phone=self.phone,
            chat_id=f"{self.phone}@s.whatsapp.net",
            at=self.runtime.clock(),
            push_name=self.push_name,
        )

    def text(self, text: str) -> list[Sent]:
        return self._deliver(ev.TextReceived(**self._base(), text=text))

    def media(self, media_type: str = "voice") -> list[Sent]:
        return self._deliver(ev.MediaReceived(**self._base(), media_type=media_type))

    def location(self) -> list[Sent]:
        return self._deliver(ev.LocationReceived(**self._base(), latitude=52.5, longitude=13.4))

    def other(self, message_type: str = "poll") -> list[Sent]:
        return self._deliver(ev.OtherMessage(**self._base(), message_type=message_type))

    def tap_id(self, tap_id: str, title: str = "") -> list[Sent]:
        """Tap a button with this id (whatever message it is on)."""
        return self._deliver(ev.ButtonTapped(**self._base(), button_id=tap_id, title=title))

    def pick_id(self, row_id: str, title: str = "") -> list[Sent]:
        """Pick a list row with this id."""
        return self._deliver(ev.ListPicked(**self._base(), row_id=row_id, title=title))

    def choose(self, which: str | int, message: Sent | None = None) -> list[Sent]:
        """Tap the button or list row titled `which` (or the n-th, 1-based) on the newest
        interactive message, or on `message`."""
        message = message or self.last_interactive()
        choice_id, title = self.find(message, which)
        if message.kind == "list":
            return self.pick_id(choice_id, title)
        return self.tap_id(choice_id, title)

    @staticmethod
    def find(message: Sent, which: str | int) -> tuple[str, str]:
        if isinstance(which, int):
            return message.choices[which - 1]
        wanted = words.normalize(which)
        for choice_id, title in message.choices:
            if words.normalize(title) == wanted:
                return choice_id, title
        raise AssertionError(f"no choice {which!r} in {message.titles}")

    # ------------------------------------------------------------------ reading

    def new_messages(self) -> list[Sent]:
        with self.runtime.db.Session() as s:
            rows = (
                s.execute(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.chat_id == f"{self.phone}@s.whatsapp.net",
                        OutboxMessage.id > self.seen,
                    )
                    .order_by(OutboxMessage.id)
                )
                .scalars()
                .all()
            )
        if rows:
            self.seen = rows[-1].id
        sent = [simplify(r) for r in rows]
        self.history.extend(sent)
        return sent

    def last_interactive(self) -> Sent:
        for message in reversed(self.history):
            if message.kind in ("buttons", "list"):
                return message
        raise AssertionError("no interactive message was sent")

    def patient(self) -> Patient:
        with self.runtime.db.Session() as s:
            return s.execute(select(Patient).where(Patient.phone == self.phone)).scalar_one()

    def patient_or_none(self, session) -> Patient | None:
        return session.execute(select(Patient).where(Patient.phone == self.phone)).scalar()

    def patient_state(self) -> tuple[str, list]:
        """(state, typed options of the current prompt), before the patient's next message."""
        with self.runtime.db.Session() as s:
            p = self.patient_or_none(s)
            if p is None:
                return "idle", []
            return p.state, list((p.state_data or {}).get("opts") or [])
