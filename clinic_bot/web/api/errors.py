"""The API's error answers: CONTRACT §5's {"error": {"code", "message"}} for every 4xx."""

from __future__ import annotations

from flask import jsonify
from flask_smorest import abort
from werkzeug.exceptions import HTTPException


def api_error(status: int, code: str, message: str):
    """The CONTRACT's error shape, as a response a view or hook can return."""
    return jsonify(error={"code": code, "message": message}), status


def fail(status: int, code: str, message: str):
    """Stop the request with the CONTRACT's error shape (raises)."""
    abort(status, code=code, message=message)


def flatten(messages, prefix: str = "") -> str:
    """marshmallow's nested messages as one readable line: 'patient.phone: ...; starts_at: ...'."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            parts.append(flatten(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        text = " ".join(str(m) if not isinstance(m, dict | list) else flatten(m) for m in messages)
        return f"{prefix}: {text}" if prefix else text
    return f"{prefix}: {messages}" if prefix else str(messages)


def _field_messages(messages) -> dict:
    """webargs keys messages by location ({"json": {...}}); one location is all a route reads."""
    if isinstance(messages, dict) and len(messages) == 1:
        (inner,) = messages.values()
        if isinstance(inner, dict):
            return inner
    return messages if isinstance(messages, dict) else {"_schema": messages}


def handle_http_exception(exc: HTTPException):
    """Every HTTP error raised inside an API route, in the CONTRACT's shape.

    Validation errors carry their per-field messages under `error.fields` as well.
    """
    data = getattr(exc, "data", None) or {}
    error: dict = {"code": data.get("code") or default_code(exc), "message": ""}
    messages = data.get("messages")
    if messages:
        fields = _field_messages(messages)
        error["code"] = data.get("code") or "invalid_request"
        error["message"] = data.get("message") or flatten(fields)
        error["fields"] = fields
    else:
        error["message"] = data.get("message") or exc.description or exc.name
    headers = data.get("headers") or {}
    return jsonify(error=error), exc.code, headers


def default_code(exc: HTTPException) -> str:
    """`not_found`, `request_entity_too_large`, ...: the status name in snake case."""
    return (exc.name or "error").lower().replace(" ", "_")
