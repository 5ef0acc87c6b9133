"""The webhook: authenticate, bound, validate, store one inbox row per item, answer 200.

Nothing else happens on this path: no business logic and no outbound HTTP (DESIGN §2.3).
Hostile input never gets a 500 and never a retry-forever: a body that is not an envelope is a
400, an envelope of over 1,000 items a 413; odd text (NUL, lone surrogates, non-finite numbers)
is stored sanitized; a lock or pool timeout is a 503 (Whapi retries); an item the database
still refuses is stored as a dead-letter placeholder, for staff, and the POST is answered 200.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import sqlite3

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from clinic_bot.adapters.whapi.payloads import (
    EnvelopeError,
    InboxItem,
    TooManyItems,
    clean_json,
    split_envelope,
)
from clinic_bot.core.db import insert_ignore
from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import InboxEvent

log = logging.getLogger(__name__)
bp = Blueprint("inbox", __name__)

# Errors that say the database is away or busy, not that this body is bad: Whapi should retry.
TRANSIENT = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    sqlite3.OperationalError,
)
PREVIEW = 2000  # characters of an unstorable item kept for staff


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


def _finite(text: str):
    """JSON numbers too big for a float (1e999) are no number at all: stored as null."""
    value = float(text)
    return value if math.isfinite(value) else None


def decode_body(raw: bytes):
    """Decode a webhook body; raise EnvelopeError for anything that is not storable JSON."""
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=lambda _name: None)
    except RecursionError:
        raise EnvelopeError("the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("the body is not JSON") from None
    return clean_json(body)


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
        body = decode_body(raw)
    except EnvelopeError as exc:
        return _error(400, "invalid_json", str(exc))
    now = runtime.clock()
    try:
        items = split_envelope(body, now)
    except TooManyItems as exc:
        return _error(413, "too_many_items", str(exc))
    except EnvelopeError as exc:
        return _error(400, "invalid_envelope", str(exc))
    expected = runtime.settings.channel_id
    # Whapi's samples of some event kinds carry no channel_id; only a different one is refused.
    if expected and body.get("channel_id") not in (None, expected):
        return _error(403, "wrong_channel", "this webhook is for another Whapi channel")
    rows = [_row(i, now) for i in items]
    try:
        with runtime.db.transaction() as s:
            stored = insert_ignore(s, InboxEvent, rows, key="dedupe_key")
        rejected = 0
    except TRANSIENT:
        log.warning("could not store a webhook (database busy or away); Whapi will retry")
        return _error(503, "unavailable", "the database cannot take the event now; retry")
    except (DBAPIError, SQLAlchemyError, ValueError, TypeError, UnicodeError):
        # Something in this body the database refuses: store item by item, so one bad item
        # costs only itself, and answer 200 so Whapi does not retry the poison forever.
        log.warning("a webhook item could not be stored as sent; storing items one by one")
        try:
            stored, rejected = _store_each(runtime, rows, now)
        except TRANSIENT:
            return _error(503, "unavailable", "the database cannot take the event now; retry")
    if stored:
        runtime.waker.wake()
        runtime.announcer.announce()
    answer = dict(ok=True, received=len(rows), stored=len(stored))
    if rejected:
        answer["rejected"] = rejected  # kept as dead-letter previews for staff
    return jsonify(answer), 200


def _row(item: InboxItem, now) -> dict:
    return dict(
        dedupe_key=item.dedupe_key,
        kind=item.kind,
        event_type=item.event_type,
        event_method=item.event_method,
        channel_id=item.channel_id,
        chat_id=item.chat_id,
        payload=item.payload,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        received_at=now,
    )


def _store_each(runtime, rows: list[dict], now) -> tuple[list, int]:
    """Store rows one at a time; a refused one becomes a dead placeholder row for staff."""
    stored: list = []
    rejected = 0
    for row in rows:
        try:
            with runtime.db.transaction() as s:
                stored += insert_ignore(s, InboxEvent, [row], key="dedupe_key")
            continue
        except TRANSIENT:
            raise
        except (DBAPIError, SQLAlchemyError, ValueError, TypeError, UnicodeError) as exc:
            reason = f"{type(exc).__name__}: the database refused this item"
        rejected += 1
        preview = json.dumps(row["payload"], ensure_ascii=True, default=str)[:PREVIEW]
        placeholder = {
            **row,
            "payload": {"unstorable": True, "preview": preview},
            "status": "dead",
            "last_error": f"could not be stored as received ({reason}); kept as a preview",
            "processed_at": now,
        }
        try:
            with runtime.db.transaction() as s:
                insert_ignore(s, InboxEvent, [placeholder], key="dedupe_key", returning=None)
        except TRANSIENT:
            raise
        except (DBAPIError, SQLAlchemyError, ValueError, TypeError, UnicodeError):
            log.error("a webhook item (%s) could not be stored even as a preview", row["kind"])
    return stored, rejected
