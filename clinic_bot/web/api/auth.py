"""Bearer tokens: created by the CLI, stored as SHA-256, checked before every API request."""

from __future__ import annotations

import hashlib
import secrets

from flask import g, request
from sqlalchemy import select

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import ApiToken
from clinic_bot.web.api.errors import api_error


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session, name: str, now) -> str:
    """Create and store a new API token; the plain token is returned once, never stored."""
    token = "cb_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token), created_at=now))
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
    return None
