"""Log lines for operators: JSON in production, text locally; never a phone number or a text.

`configure_logging()` installs one stderr handler on the root logger (LOG_FORMAT, CONTRACT §2).
Every record passes `Redactor`, a last line of defence that masks digit runs shaped like phone
numbers and the secret path parts of URLs, so a careless `log.info(...)` cannot leak them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# 8+ digits, optionally with a plus or a WhatsApp suffix: every E.164 number and chat id.
PHONE_RE = re.compile(r"\+?(?<![\w-])\d{8,15}(?:@[\w.]+)?(?![\w-])")
# Credentials that travel in URLs (the path-form webhook secret, the calendar feed token, a
# token in a query string) and the row values PostgreSQL repeats in an error's DETAIL line (a
# patient's phone, a message text). Phones go last: the others may contain digit runs.
_PATTERNS = (
    (re.compile(r"(/webhooks/whapi/)[^\s\"'?/]+"), r"\1[secret]"),
    (re.compile(r"(/calendar/)[^\s\"'?/]+(\.ics)"), r"\1[token]\2"),
    (re.compile(r"((?:^|[?&])(?:token|secret|key)=)[^&\s\"']+", re.I), r"\1[redacted]"),
    (re.compile(r"(Key \([^)]*\)=\().*?(\) already exists|\) is not present)"), r"\1[redacted]\2"),
    (re.compile(r"(Failing row contains \().*(\))"), r"\1[redacted]\2"),
    (PHONE_RE, "[phone]"),
)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
_EXCEPTION_FORMATTER = logging.Formatter()


def redact(text: str) -> str:
    """Mask phone numbers, URL secrets and database row values in one string."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """Rewrite each record (message, string extras, traceback) with `redact`; add the request id.

    The one redaction every log line passes, whatever its format: installed on the root
    handler by `configure_logging`; gunicorn's access lines use `redact` on their atoms.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the line
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key in EVENT_FIELDS and isinstance(value, str):
                setattr(record, key, redact(value))
        # A database error's traceback repeats its DETAIL: format it here, redacted, and hand
        # the formatters the text only (both the text and the JSON formatter use exc_text).
        if record.exc_info:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if getattr(record, "request_id", None) is None:
            rid = request_id_var.get()
            if rid:
                record.request_id = rid
        return True


# Structured fields our own log lines carry (ids and outcomes, never content).
EVENT_FIELDS = (
    "event",
    "inbox_id",
    "message_id",
    "patient_id",
    "outbox_id",
    "handler",
    "outcome",
    "endpoint",
    "status_code",
    "latency_ms",
    "kind",
    "request_id",
)


def log_format(env: dict | None = None) -> str:
    """`json` or `text`: LOG_FORMAT, else json when a real WHAPI_TOKEN is set (CONTRACT §2)."""
    env = os.environ if env is None else env
    chosen = (env.get("LOG_FORMAT") or "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    return "json" if env.get("WHAPI_TOKEN") else "text"


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for `json` (one object per line) or `text`."""
    if fmt == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            json_ensure_ascii=False,
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(fmt: str | None = None, stream=None, level: int = logging.INFO) -> None:
    """One redacting stderr handler on the root logger, in the chosen format (idempotent)."""
    fmt = fmt or log_format()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_clinic_bot", False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler._clinic_bot = True
        root.addHandler(handler)
    handler.setFormatter(make_formatter(fmt))
    if not any(isinstance(f, Redactor) for f in handler.filters):
        handler.addFilter(Redactor())
    root.setLevel(level)


def install_request_ids(app) -> None:
    """Give each request an id (Heroku's X-Request-ID, else a new one) for its log lines."""
    from flask import g, request

    @app.before_request
    def _request_id():
        given = request.headers.get("X-Request-ID", "")
        rid = given if re.fullmatch(r"[\w.:-]{1,200}", given) else uuid.uuid4().hex
        g.request_id = rid
        g.request_token = request_id_var.set(rid)

    @app.after_request
    def _echo_request_id(response):
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.teardown_request
    def _forget_request_id(_exc):
        token = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)


event_log = logging.getLogger("clinic_bot.events")


def logged_handler(handler):
    """Wrap a reaction so each handled event logs one line of ids, outcome and latency."""
    from sqlalchemy import select

    from clinic_bot.models import Patient

    name = f"{handler.__module__}.{getattr(handler, '__qualname__', handler)}"

    def run(ctx, event):
        started = time.monotonic()
        outcome, level = "error", logging.WARNING
        try:
            result = handler(ctx, event)
            outcome, level = (result or "done"), logging.INFO
            return result
        except Exception as exc:
            outcome = f"{type(exc).__name__}"
            raise
        finally:
            patient_id = None
            phone = getattr(event, "phone", None)
            if phone:
                try:
                    patient_id = ctx.session.execute(
                        select(Patient.id).where(Patient.phone == phone)
                    ).scalar()
                except Exception:  # the transaction may be broken; the line still goes out
                    patient_id = None
            event_log.log(
                level,
                "event %s handled: %s",
                type(event).__name__,
                outcome,
                extra={
                    "event": type(event).__name__,
                    "inbox_id": ctx.inbox_id,
                    "message_id": event.event_id,
                    "patient_id": patient_id,
                    "handler": name,
                    "outcome": str(outcome)[:200],
                    "latency_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )

    run.__wrapped__ = handler
    run.__qualname__ = getattr(handler, "__qualname__", "handler")
    run.__module__ = handler.__module__
    return run


def log_every_handler(registry) -> None:
    """Wrap every installed reaction with `logged_handler` (bootstrap calls this last)."""
    for event_type, handler in list(registry.handlers.items()):
        if not hasattr(handler, "__wrapped__"):
            registry.handlers[event_type] = logged_handler(handler)
