"""Helpers shared by the attack tests: drive the sandbox's channel and faults, count outcomes."""

from __future__ import annotations

from sqlalchemy import func, select

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import InboxEvent, OutboxMessage, SandboxMessage

TOKEN = {"Authorization": "Bearer sandbox"}


def set_channel(live, state: str, webhook: bool = True) -> None:
    """Play the clinic's phone: "logged_out", "auth" or "wrong_token"."""
    r = live.http.put(
        f"{live.base_url}/sandbox/api/channel", json={"state": state, "webhook": webhook}
    )
    assert r.status_code == 200, r.text


def queue_texts(
    runtime, phone: str, texts: list[str], purpose: str = "reply", tag: str = ""
) -> None:
    """Queue texts to one patient, as a handler or a tick would."""
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, phone, runtime.clock())
        box = Outbox(s, runtime.clock(), f"test:{phone}:{purpose}{tag}")
        for text in texts:
            box.text(patient, text, purpose=purpose)


def statuses(runtime) -> dict[str, int]:
    """How many outbox rows are in each status."""
    with runtime.db.Session() as s:
        rows = s.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    return {status: n for status, n in rows}


def sent_texts(runtime, phone: str | None = None) -> list[str]:
    """Texts the sandbox gateway accepted (what the patients' phones show), in order."""
    with runtime.db.Session() as s:
        stmt = select(SandboxMessage).where(SandboxMessage.direction == "out")
        if phone:
            stmt = stmt.where(SandboxMessage.phone == phone)
        rows = s.execute(stmt.order_by(SandboxMessage.id)).scalars()
        return [
            r.payload.get("body")
            if isinstance(r.payload.get("body"), str)
            else (r.payload.get("body") or {}).get("text", "")
            for r in rows
        ]


def inbox(runtime) -> list[InboxEvent]:
    with runtime.db.Session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())
