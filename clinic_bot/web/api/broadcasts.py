"""/api/v1/broadcasts: create a paced broadcast, follow its progress, pause, resume, cancel."""

from __future__ import annotations

from flask import g, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate

from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain import broadcasts
from clinic_bot.models.broadcasts import Broadcast
from clinic_bot.web.api.auth import api_error
from clinic_bot.web.api.blueprint import bp
from clinic_bot.web.api.openapi import document, error_response


class BroadcastCreateSchema(Schema):
    """A text and its audience: listed phones, every opted-in patient and/or a day's patients."""

    text = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    patient_phones = fields.List(fields.String(), load_default=list)
    all_opted_in = fields.Boolean(load_default=False)
    appointments_on = fields.Date(load_default=None)  # a clinic-local day


class BroadcastSchema(Schema):
    """Progress: CONTRACT §5's id/status/total/sent/failed/skipped, plus what is still due."""

    id = fields.Integer()
    status = fields.String()
    total = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    skipped = fields.Integer()
    queued = fields.Integer()
    pending = fields.Integer()
    cancelled = fields.Integer()
    reason = fields.String(allow_none=True)
    audience = fields.String()
    created_at = fields.String()


CONTROLS = ("pause", "resume", "cancel")


def _error(exc: broadcasts.BroadcastError):
    return api_error(409 if exc.code == "conflict" else 400, exc.code, str(exc))


@bp.post("/broadcasts")
def create_broadcast():
    """Start a broadcast; opted-out recipients are counted as skipped and never sent to."""
    runtime = get_runtime()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return api_error(400, "invalid_json", "send a JSON object")
    try:
        data = BroadcastCreateSchema().load(body)
    except ValidationError as exc:
        return api_error(400, "invalid_request", str(exc.messages))
    audience = broadcasts.Audience(
        phones=data["patient_phones"],
        all_opted_in=data["all_opted_in"],
        appointments_on=data["appointments_on"],
    )
    try:
        with runtime.db.transaction() as s:
            b = broadcasts.create(
                s,
                runtime.profile,
                text=data["text"],
                audience=audience,
                now=runtime.clock(),
                created_by=g.get("api_token_name"),
            )
            out = {"id": b.id, "status": b.status, "total": b.total}
    except broadcasts.BroadcastError as exc:
        return _error(exc)
    runtime.waker.wake()
    return jsonify(out), 201


@bp.get("/broadcasts/<int:broadcast_id>")
def get_broadcast(broadcast_id: int):
    """A broadcast's progress."""
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            return api_error(404, "not_found", f"no broadcast {broadcast_id}")
        return jsonify(broadcasts.progress(s, b))


@bp.post("/broadcasts/<int:broadcast_id>/<action>")
def control_broadcast(broadcast_id: int, action: str):
    """Pause, resume or cancel a broadcast; answers with its progress."""
    if action not in CONTROLS:
        return api_error(404, "not_found", f"no action {action!r}; use {', '.join(CONTROLS)}")
    runtime = get_runtime()
    now = runtime.clock()
    who = g.get("api_token_name") or "the API"
    try:
        with runtime.db.transaction() as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None:
                return api_error(404, "not_found", f"no broadcast {broadcast_id}")
            if action == "pause":
                broadcasts.pause(s, b, f"paused by {who}", now)
            elif action == "resume":
                broadcasts.resume(s, b, now)
            else:
                broadcasts.cancel(s, b, f"cancelled by {who}", now)
            s.flush()
            out = broadcasts.progress(s, b)
    except broadcasts.BroadcastError as exc:
        return _error(exc)
    return jsonify(out)


document(
    "/broadcasts",
    {
        "post": {
            "summary": "Start a paced broadcast",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": "BroadcastCreate"}},
            },
            "responses": {
                "201": {"description": "created: {id, status, total}"},
                "400": error_response("invalid body or phone"),
            },
        }
    },
    schemas={"BroadcastCreate": BroadcastCreateSchema, "Broadcast": BroadcastSchema},
)
document(
    "/broadcasts/{broadcast_id}",
    {
        "get": {
            "summary": "A broadcast's progress",
            "responses": {
                "200": {
                    "description": "progress",
                    "content": {"application/json": {"schema": "Broadcast"}},
                },
                "404": error_response("unknown broadcast"),
            },
        }
    },
    parameters=[
        {"name": "broadcast_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ],
)
document(
    "/broadcasts/{broadcast_id}/{action}",
    {
        "post": {
            "summary": "Pause, resume or cancel a broadcast",
            "responses": {
                "200": {
                    "description": "progress",
                    "content": {"application/json": {"schema": "Broadcast"}},
                },
                "404": error_response("unknown broadcast or action"),
                "409": error_response("not possible in the broadcast's status"),
            },
        }
    },
    parameters=[
        {"name": "broadcast_id", "in": "path", "required": True, "schema": {"type": "integer"}},
        {
            "name": "action",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": list(CONTROLS)},
        },
    ],
)
