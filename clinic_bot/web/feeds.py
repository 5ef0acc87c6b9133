"""The .ics subscription feed: GET /calendar/<feed token>.ics (CONTRACT §5)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort

from clinic_bot.adapters.ical.export import export_calendar
from clinic_bot.core.runtime import get_runtime

bp = Blueprint("calendar_feed", __name__)


@bp.get("/calendar/<token>.ics")
def feed(token: str):
    """Every recent and future appointment; an unknown token is 404 (no hint that it exists)."""
    runtime = get_runtime()
    expected = runtime.settings.calendar_feed_token
    # Constant-time compare: the token is the only thing guarding the clinic's schedule.
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        abort(404)
    with runtime.db.ReadSession() as s:
        data = export_calendar(s, runtime.profile, now=runtime.clock())
    return Response(
        data,
        mimetype="text/calendar",
        headers={
            "Content-Disposition": 'inline; filename="appointments.ics"',
            "Cache-Control": "private, no-store",
        },
    )
