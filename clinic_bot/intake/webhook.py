"""The webhook: authenticate, bound, validate, store one inbox row per item, answer 200.

Nothing else happens on this path: no business logic and no outbound HTTP (DESIGN §2.3).
"""

from __future__ import annotations

import hmac
import json
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from clinic_bot.adapters.whapi.payloads import EnvelopeError, split_envelope
from clinic_bot.core.db import insert_ignore
from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import InboxEvent

log = logging.getLogger(__name__)
bp = Blueprint("inbox", __name__)


def _error(status: int, code: str, message: str):
    return jsonify(error={"code": code, "message": message}), status


def _authorized(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _truncated(raw: bytes) -> bool:
    """True when a chunked body (no Content-Length) went on past the limit.

    Werkzeug cuts such a body at MAX_CONTENT_LENGTH without an error; one more byte left in
    the server's input means it was cut.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or not limit or len(raw) < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))


@bp.post("/webhooks/whapi")
@bp.post("/webhooks/whapi/<path:secret>")
def whapi_webhook(secret: str | None = None):
    """Store every item of a Whapi webhook POST; duplicates and unknown kinds are fine."""
    runtime = get_runtime()
    given = secret if secret is not None else request.headers.get("X-Webhook-Token", "")
    if not _authorized(given, runtime.settings.webhook_secret):
        return _error(401, "unauthorized", "missing or wrong webhook secret")
    raw = request.get_data(cache=False)  # MAX_CONTENT_LENGTH turns an oversize body into 413
    if _truncated(raw):
        return _error(413, "request_entity_too_large", "the body is over the size limit")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_json", "the body is not JSON")
    now = runtime.clock()
    try:
        items = split_envelope(body, now)
    except EnvelopeError as exc:
        return _error(400, "invalid_envelope", str(exc))
    expected = runtime.settings.channel_id
    # Whapi's samples of some event kinds carry no channel_id; only a different one is refused.
    if expected and body.get("channel_id") not in (None, expected):
        return _error(403, "wrong_channel", "this webhook is for another Whapi channel")
    rows = [
        dict(
            dedupe_key=i.dedupe_key,
            kind=i.kind,
            event_type=i.event_type,
            event_method=i.event_method,
            channel_id=i.channel_id,
            payload=i.payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            received_at=now,
        )
        for i in items
    ]
    try:
        with runtime.db.transaction() as s:
            stored = insert_ignore(s, InboxEvent, rows, key="dedupe_key")
    except (DBAPIError, PoolTimeout):
        log.exception("could not store a webhook; Whapi will retry")
        return _error(503, "unavailable", "the database cannot take the event now; retry")
    if stored:
        runtime.waker.wake()
        runtime.announcer.announce()
    return jsonify(ok=True, received=len(rows), stored=len(stored)), 200
