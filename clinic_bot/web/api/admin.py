"""/api/v1 admin routes: what the staff UI's admin pages show and do, for admin tokens only.

Dead letters with Retry and Dismiss (the operations page), the audit log, staff logins and API
tokens (read only: logins and tokens are made with the CLI or on the admin page). A reception
token gets 403 on every one of them. Every list is paginated, newest first.
"""

from __future__ import annotations

from flask import g
from sqlalchemy import select

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import ApiToken, StaffUser
from clinic_bot.operations import dead_letters
from clinic_bot.web.api.base import ID, Blueprint
from clinic_bot.web.api.errors import fail
from clinic_bot.web.api.schemas import (
    ApiTokenPageSchema,
    AuditPageSchema,
    AuditQuerySchema,
    DeadEventPageSchema,
    DeadEventSchema,
    DeadMessagePageSchema,
    DeadMessageSchema,
    ErrorSchema,
    PageQuerySchema,
    StaffUserPageSchema,
)
from clinic_bot.web.staff import audit, queries

blp = Blueprint(
    "api_admin",
    __name__,
    admin_only=True,
    description="Admin only: dead letters, the audit log, staff logins, API tokens",
)

ACTION = f"<any({', '.join(dead_letters.ACTIONS)}):action>"


def _page(page: queries.Page, items: list) -> dict:
    return {"items": items, "page": page.number, "pages": page.pages, "total": page.total}


def _who() -> str:
    """How an API caller appears in the audit log and in a dismissed row's note."""
    return f"api token {g.get('api_token_name') or '?'}"


def _event(ev) -> dict:
    return {
        "id": ev.id,
        "kind": ev.kind,
        "status": ev.status,
        "attempts": ev.attempts,
        "last_error": ev.last_error,
        "received_at": ev.received_at,
    }


def _message(m) -> dict:
    return {
        "id": m.id,
        "chat_id": m.chat_id,
        "purpose": m.purpose,
        "status": m.status,
        "attempts": m.attempts,
        "last_error": m.last_error,
        "text": queries.outbox_preview(m),
        "created_at": m.created_at,
    }


@blp.route("/dead-letters/events", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, DeadEventPageSchema, description="one page of dead events, newest first")
def list_dead_events(q):
    """Webhook events the worker gave up on"""
    with get_runtime().db.ReadSession() as s:
        page = queries.dead_inbox_events(s, q["page"])
        return _page(page, [_event(e) for e in page.items])


@blp.route(f"/dead-letters/events/<{ID}:event_id>/{ACTION}", methods=["POST"])
@blp.response(200, DeadEventSchema, description="the event after Retry or Dismiss")
@blp.alt_response(404, schema=ErrorSchema, description="no dead event with that id")
def settle_dead_event(event_id: int, action: str):
    """Retry (back to the worker) or Dismiss a dead event"""
    return _settle(dead_letters.settle_event, "inbox_event", event_id, action, _event,
                   f"no dead event {event_id}")  # fmt: skip


@blp.route("/dead-letters/messages", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, DeadMessagePageSchema, description="one page of unsent messages, newest first")
def list_dead_messages(q):
    """Messages that could not be sent"""
    with get_runtime().db.ReadSession() as s:
        page = queries.dead_outbox_messages(s, q["page"])
        return _page(page, [_message(m) for m in page.items])


@blp.route(f"/dead-letters/messages/<{ID}:message_id>/{ACTION}", methods=["POST"])
@blp.response(200, DeadMessageSchema, description="the message after Retry or Dismiss")
@blp.alt_response(404, schema=ErrorSchema, description="no undeliverable message with that id")
def settle_dead_message(message_id: int, action: str):
    """Retry (send again) or Dismiss (withdraw) a message that could not be sent"""
    return _settle(dead_letters.settle_message, "outbox_message", message_id, action, _message,
                   f"no undeliverable message {message_id}")  # fmt: skip


def _settle(settle, table: str, row_id: int, action: str, shape, missing: str) -> dict:
    """Retry or Dismiss one dead letter through the page's own code, audited; 404 if none."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        row = settle(s, row_id, action, now=rt.clock(), by=_who())
        if row is None:
            fail(404, "not_found", missing)
        audit.record(s, f"dead_letter_{action}", f"{table}:{row_id}", email=_who())
        out = shape(row)
    rt.waker.wake()
    return out


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema, description="one page of the audit log, newest first")
def list_audit(q):
    """The audit log"""
    stmt = queries.audit_entries(
        who=q.get("who", ""), action=q.get("action", ""), since=q.get("since")
    )
    with get_runtime().db.ReadSession() as s:
        page = queries.paginate(s, stmt, q["page"])
        items = [
            {
                "id": e.id,
                "at": e.at,
                "who": e.staff_email,
                "action": e.action,
                "target": e.target,
                "detail": e.detail or {},
                "address": e.address,
            }
            for e in page.items
        ]
    return _page(page, items)


@blp.route("/staff-users", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, StaffUserPageSchema, description="staff logins by email")
def list_staff_users(q):
    """Staff logins"""
    with get_runtime().db.ReadSession() as s:
        page = queries.paginate(s, select(StaffUser).order_by(StaffUser.email), q["page"])
        items = [
            {
                "id": u.id,
                "email": u.email,
                "first_name": u.first_name,
                "role": u.role,
                "disabled": u.disabled_at is not None,
                "created_at": u.created_at,
            }
            for u in page.items
        ]
    return _page(page, items)


@blp.route("/api-tokens", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, ApiTokenPageSchema, description="API tokens, oldest first")
def list_api_tokens(q):
    """API tokens (names, roles, last use; never the tokens)"""
    with get_runtime().db.ReadSession() as s:
        page = queries.paginate(s, select(ApiToken).order_by(ApiToken.id), q["page"])
        items = [
            {
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
            }
            for t in page.items
        ]
    return _page(page, items)
