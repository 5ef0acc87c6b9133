"""The audit log: one append-only row per staff action, written in the action's transaction."""

from __future__ import annotations

from flask import g, request
from sqlalchemy.orm import Session

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import AuditEntry


def client_address() -> str:
    """The client's address as the app sees it (X-Forwarded-For only behind a trusted proxy)."""
    return (request.remote_addr or "")[:64]


def record(session: Session, action: str, target: str = "", *, staff=None, **detail) -> None:
    """Add an audit row (who, what, when, from where) to the caller's transaction."""
    who = staff if staff is not None else getattr(g, "staff", None)
    session.add(
        AuditEntry(
            at=get_runtime().clock(),
            staff_user_id=who.id if who is not None else None,
            staff_email=(who.email if who is not None else detail.pop("email", ""))[:200],
            action=action[:60],
            target=str(target)[:200],
            detail=detail,
            address=client_address(),
        )
    )
