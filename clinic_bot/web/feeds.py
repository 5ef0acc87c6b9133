"""The .ics subscription feeds: GET /calendar/<feed token>.ics (CONTRACT §5).

Two kinds of token: CALENDAR_FEED_TOKEN (the whole clinic, from the environment) and tokens
made on the staff calendar page, for the whole clinic or one practitioner. Only a token's
SHA-256 is stored; rotating one revokes the old link at once (404 from the next request on).
Answers carry ETag and Last-Modified, and a conditional GET of an unchanged feed is a 304
worked out from one aggregate query, without rendering anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from flask import Blueprint, Response, abort, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_bot.adapters.ical.export import export_calendar, export_fingerprint
from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import CalendarFeed

bp = Blueprint("calendar_feed", __name__)

# The last body served per (feed scope, ETag): an unchanged feed is not rendered again.
_BODY_CACHE: dict[tuple, bytes] = {}


def token_hash(token: str) -> str:
    """What is stored for a feed token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_feed(session: Session, practitioner_id: str | None, staff: str | None, now) -> str:
    """A new feed link token (shown once); practitioner None = the whole clinic."""
    token = secrets.token_urlsafe(32)
    session.add(
        CalendarFeed(
            token_hash=token_hash(token),
            practitioner_id=practitioner_id,
            created_by=staff,
            created_at=now,
        )
    )
    session.flush()
    return token


def active_feeds(session: Session) -> list[CalendarFeed]:
    """The feed links that still work, oldest first (the calendar and operations pages)."""
    return list(
        session.execute(
            select(CalendarFeed)
            .where(CalendarFeed.revoked_at.is_(None))
            .order_by(CalendarFeed.created_at, CalendarFeed.id)
        ).scalars()
    )


def rotate_feed(session: Session, feed_id: int, staff: str | None, now) -> str | None:
    """Revoke a feed's token and make a new one for the same scope; None for an unknown feed."""
    feed = session.get(CalendarFeed, feed_id)
    if feed is None or feed.revoked_at is not None:
        return None
    feed.revoked_at = now
    return create_feed(session, feed.practitioner_id, staff, now)


def revoke_feed(session: Session, feed_id: int, now) -> bool:
    """Revoke a feed's token; False when it was unknown or already revoked."""
    feed = session.get(CalendarFeed, feed_id)
    if feed is None or feed.revoked_at is not None:
        return False
    feed.revoked_at = now
    return True


def _scope(session: Session, token: str) -> tuple[bool, str | None]:
    """(known, practitioner id) for a token from the URL."""
    expected = get_runtime().settings.calendar_feed_token
    # Constant-time compare: the token is the only thing guarding the clinic's schedule.
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return True, None
    row = session.execute(
        select(CalendarFeed.practitioner_id).where(
            CalendarFeed.token_hash == token_hash(token), CalendarFeed.revoked_at.is_(None)
        )
    ).first()
    return (True, row[0]) if row is not None else (False, None)


def _not_modified(etag: str, last: datetime | None) -> bool:
    match = request.headers.get("If-None-Match")
    if match is not None:
        return any(tag.strip() in (etag, "*") for tag in match.split(","))
    since = request.headers.get("If-Modified-Since")
    if since and last is not None:
        try:
            return last.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


@bp.get("/calendar/<token>.ics")
def feed(token: str):
    """The feed's appointments; an unknown or revoked token is 404 (no hint that it exists)."""
    runtime = get_runtime()
    now = runtime.clock()
    with runtime.db.ReadSession() as s:
        known, practitioner_id = _scope(s, token)
        if not known:
            abort(404)
        seed, last = export_fingerprint(s, practitioner_id, now=now)
        profile = runtime.profile
        scope = f"{seed}|{practitioner_id}|{id(profile)}"
        etag = '"' + hashlib.sha256(scope.encode()).hexdigest()[:32] + '"'
        headers = {
            "ETag": etag,
            "Cache-Control": "private, no-cache",
            "Content-Disposition": 'inline; filename="appointments.ics"',
        }
        if last is not None:
            headers["Last-Modified"] = format_datetime(last, usegmt=True)
        if _not_modified(etag, last):
            return Response(status=304, headers=headers)
        key = (practitioner_id, etag)
        data = _BODY_CACHE.get(key)
        if data is None:
            data = export_calendar(s, profile, practitioner_id, now=now)
            for old in [k for k in _BODY_CACHE if k[0] == practitioner_id]:
                del _BODY_CACHE[old]  # one body per scope: older ones are stale
            _BODY_CACHE[key] = data
    return Response(data, mimetype="text/calendar", headers=headers)
