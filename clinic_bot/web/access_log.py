"""Access logs without secrets: the webhook's path secret and calendar feed tokens redacted.

The webhook can be authenticated by a secret in its path (`/webhooks/whapi/<secret>`, for
panels that cannot set headers) and the .ics feed by a token in its path; both would otherwise
be printed on every request by gunicorn's access log and Werkzeug's development server.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

REDACTED = "[redacted]"
_PATTERNS = (
    (re.compile(r"(/webhooks/whapi/)[^\s?\"]+"), rf"\1{REDACTED}"),
    (re.compile(r"(/calendar/)[^\s/?\"]+?(\.ics)"), rf"\1{REDACTED}\2"),
    (re.compile(r"((?:^|[?&])(?:token|secret|key)=)[^&\s\"]+", re.I), rf"\1{REDACTED}"),
    # PostgreSQL's error DETAIL repeats the row's values (a patient's phone, a message text).
    (re.compile(r"(Key \([^)]*\)=\().*?(\) already exists|\) is not present)"), rf"\1{REDACTED}\2"),
    (re.compile(r"(Failing row contains \().*(\))"), rf"\1{REDACTED}\2"),
)


def redact(text: str) -> str:
    """`text` with path secrets, feed tokens and token query values replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger with the request line, path, query and referer redacted."""

    def atoms(self, resp, req, environ, request_time):
        """The usual atoms, with the secret-bearing ones redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (Werkzeug's request lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, tracebacks included, goes through `redact`.

    It wraps the handler's own formatter (text or JSON lines), so the format is kept.
    """

    def __init__(self, fmt=None, datefmt=None, *, inner: logging.Formatter | None = None):
        super().__init__(fmt, datefmt)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return redact(text)


def install_log_redaction() -> None:
    """Redact every line the root logger's handlers write (database errors' DETAIL lines)."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(inner=handler.formatter))


def install_werkzeug_redaction() -> None:
    """Redact the development server's request log (`clinic-bot run`)."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
