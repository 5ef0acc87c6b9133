"""Bearer tokens: created by the CLI, stored as SHA-256, checked before every API request.

A token's last use is recorded to the minute: at most one write per token per minute, so a
busy integration does not turn every read into a write (and, on SQLite, a write lock).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from flask import g, request
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import ApiToken
from clinic_bot.web.api.errors import api_error

log = logging.getLogger(__name__)
LAST_USED_EVERY = timedelta(minutes=1)
TOKEN_ROLES = ("admin", "reception")  # the staff roles; admin is what tokens had before roles


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session, name: str, now, role: str = "admin") -> str:
    """Create and store a new API token; the plain token is returned once, never stored."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"a token's role is one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    token = "cb_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token), created_at=now, role=role))
    return token


def require_token():
    """Before every API route: 401 in the CONTRACT's shape without a known bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return api_error(401, "unauthorized", "send Authorization: Bearer <token>")
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        row = s.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()))
        ).scalar_one_or_none()
    if row is None:
        return api_error(401, "unauthorized", "unknown API token")
    g.api_token_name = row.name
    g.api_token_role = row.role
    now = runtime.clock()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        record_use(runtime, row.id, now)
    return None


def record_use(runtime, token_id: int, now: datetime) -> None:
    """Set the token's last use to `now` unless another request did within the last minute."""
    try:
        with runtime.db.transaction() as s:
            # Compare-and-set: of two processes seeing the same stale value, only one writes.
            s.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == token_id,
                    or_(
                        ApiToken.last_used_at.is_(None),
                        ApiToken.last_used_at <= now - LAST_USED_EVERY,
                    ),
                )
                .values(last_used_at=now)
            )
    except SQLAlchemyError:
        # Only a figure for the admin page: a busy database must not refuse the request.
        log.warning("could not record an API token's last use", exc_info=True)


def require_admin():
    """Before an admin-only API route: 403 for a token that is not an admin token."""
    if g.get("api_token_role") != "admin":
        return api_error(403, "forbidden", "this route needs an admin API token")
    return None
