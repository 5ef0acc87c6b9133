"""/api/v1/broadcasts: create a paced broadcast, follow its progress, pause, resume, cancel."""

from __future__ import annotations

from flask import g

from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain import broadcasts
from clinic_bot.models.broadcasts import Broadcast
from clinic_bot.web.api.base import ID, Blueprint
from clinic_bot.web.api.errors import fail
from clinic_bot.web.api.schemas import (
    PHONE_EXAMPLE,
    BroadcastCreatedSchema,
    BroadcastCreateSchema,
    BroadcastSchema,
    ErrorSchema,
)

blp = Blueprint("api_broadcasts", __name__, description="Paced broadcasts to many patients")

CONTROLS = ("pause", "resume", "cancel")
CREATE_EXAMPLE = {
    "text": "The clinic is closed on Friday, December 4.",
    "patient_phones": [PHONE_EXAMPLE],
}


def _fail(exc: broadcasts.BroadcastError):
    fail(409 if exc.code == "conflict" else 400, exc.code, str(exc))


@blp.route("/broadcasts", methods=["POST"])
@blp.arguments(BroadcastCreateSchema, example=CREATE_EXAMPLE)
@blp.response(201, BroadcastCreatedSchema, description="created")
def create_broadcast(data):
    """Start a paced broadcast

    Opted-out recipients are counted as skipped and never sent to.
    """
    runtime = get_runtime()
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
        _fail(exc)
    runtime.waker.wake()
    return out


@blp.route(f"/broadcasts/<{ID}:broadcast_id>", methods=["GET"])
@blp.response(200, BroadcastSchema, description="progress")
@blp.alt_response(404, schema=ErrorSchema, description="no such broadcast")
def get_broadcast(broadcast_id: int):
    """A broadcast's progress"""
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        b = s.get(Broadcast, broadcast_id)
        if b is None:
            fail(404, "not_found", f"no broadcast {broadcast_id}")
        return broadcasts.progress(s, b)


@blp.route(f"/broadcasts/<{ID}:broadcast_id>/<any({', '.join(CONTROLS)}):action>", methods=["POST"])
@blp.response(200, BroadcastSchema, description="progress")
@blp.alt_response(404, schema=ErrorSchema, description="no such broadcast")
@blp.alt_response(409, schema=ErrorSchema, description="not possible in the broadcast's status")
def control_broadcast(broadcast_id: int, action: str):
    """Pause, resume or cancel a broadcast"""
    runtime = get_runtime()
    now = runtime.clock()
    who = g.get("api_token_name") or "the API"
    try:
        with runtime.db.transaction() as s:
            b = s.get(Broadcast, broadcast_id)
            if b is None:
                fail(404, "not_found", f"no broadcast {broadcast_id}")
            if action == "pause":
                broadcasts.pause(s, b, f"paused by {who}", now)
            elif action == "resume":
                broadcasts.resume(s, b, now)
            else:
                broadcasts.cancel(s, b, f"cancelled by {who}", now)
            s.flush()
            out = broadcasts.progress(s, b)
    except broadcasts.BroadcastError as exc:
        _fail(exc)
    return out
