"""Whapi webhook JSON: envelope validation, one inbox item per array entry, typed events.

Only this module (with the client and the sandbox) knows Whapi's JSON; see reference/whapi.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from marshmallow import INCLUDE, Schema, ValidationError, fields, validates_schema

from clinic_bot.domain import events as ev
from clinic_bot.domain.phones import InvalidPhone, is_person_chat, normalize_phone

# Envelope keys holding a list of items, and keys holding one object (OA24/OA25 WebhookPayload).
ARRAY_KEYS = (
    "messages",
    "messages_updates",
    "messages_removed",
    "statuses",
    "chats",
    "chats_updates",
    "chats_removed",
    "contacts",
    "contacts_updates",
    "groups",
    "groups_participants",
    "groups_updates",
    "presences",
    "labels",
    "labels_removed",
    "calls",
)
OBJECT_KEYS = ("health", "qr", "user", "errors")
ENVELOPE_META = ("event", "channel_id")

MEDIA_TYPES = {
    "image",
    "video",
    "gif",
    "short",
    "audio",
    "voice",
    "document",
    "documentWithCaption",
    "sticker",
}
IGNORED_MESSAGE_TYPES = {"system", "unknown", "story", "revoked", "e2e_notification"}
BUTTON_PREFIX = "ButtonsV3:"
LIST_PREFIX = "ListV3:"


class EnvelopeError(ValueError):
    """A webhook body that is not a valid Whapi envelope (answered 400, nothing stored)."""


class _EventMeta(Schema):
    type = fields.String(required=True)
    event = fields.String(required=True)


class _MessageItem(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    type = fields.String(required=True)
    chat_id = fields.String(required=True)
    from_me = fields.Boolean()
    timestamp = fields.Float(allow_none=True)
    source = fields.String(allow_none=True)


class _StatusItem(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    status = fields.String(required=True)


class _Envelope(Schema):
    class Meta:
        unknown = INCLUDE

    event = fields.Nested(_EventMeta, required=True)
    channel_id = fields.String(allow_none=True)

    @validates_schema
    def _items(self, data, **_kw):
        for key, value in data.items():
            if key in ENVELOPE_META:
                continue
            if key in ARRAY_KEYS and not isinstance(value, list):
                raise ValidationError(f"{key} must be a list", key)
            if key in OBJECT_KEYS and not isinstance(value, dict | list | type(None)):
                raise ValidationError(f"{key} must be an object", key)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if not isinstance(item, dict | str):
                        raise ValidationError(f"{key}[{i}] must be an object", key)
        for i, item in enumerate(data.get("messages") or []):
            errors = _MESSAGE_ITEM.validate(item) if isinstance(item, dict) else {"": "object"}
            if errors:
                raise ValidationError({f"messages[{i}]": errors})
        for i, item in enumerate(data.get("statuses") or []):
            errors = _STATUS_ITEM.validate(item) if isinstance(item, dict) else {"": "object"}
            if errors:
                raise ValidationError({f"statuses[{i}]": errors})


# Built once: constructing a schema deep-copies its fields, a cost on every webhook otherwise.
_MESSAGE_ITEM = _MessageItem()
_STATUS_ITEM = _StatusItem()
_ENVELOPE = _Envelope()


@dataclass(frozen=True)
class InboxItem:
    """One item of an envelope, ready to be stored as an inbox row."""

    dedupe_key: str
    kind: str
    event_type: str
    event_method: str
    channel_id: str | None
    payload: dict | str


# Single objects that report a state, not a one-off event: the same content can come again
# later and mean something new (logged out, back in, logged out again), so their key includes
# the second they arrived. Handling them twice only sets the same state twice.
STATE_KEYS = ("health", "user", "qr")
MAX_KEY = 200


def _content_hash(kind: str, method: str, item) -> str:
    # ASCII escapes keep lone surrogates and other odd text hashable.
    canonical = json.dumps([kind, method, item], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _safe_key(kind: str, key: str) -> str:
    """`key` if a database can store it as is; else a hash of it (huge ids, NUL, surrogates)."""
    # isprintable() is False for NUL, control characters and lone surrogates.
    if len(key) <= MAX_KEY and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:hashed:{digest}"


def _dedupe_key(kind: str, method: str, item, received_at: datetime | None = None) -> str:
    """The gateway's key for an item: the message id; status id + status; else a content hash."""
    if isinstance(item, dict):
        if kind == "messages":
            return _safe_key(kind, f"msg:{item['id']}")
        if kind == "statuses":
            return _safe_key(kind, f"status:{item['id']}:{item['status']}")
        if kind == "calls" and isinstance(item.get("id"), str):
            return _safe_key(kind, f"call:{item['id']}:{item.get('status', '')}")
    digest = _content_hash(kind, method, item)
    if kind in STATE_KEYS and received_at is not None:
        return f"{kind}:{digest[:40]}:{received_at.strftime('%Y%m%dT%H%M%S')}"
    return f"{kind}:{digest}"


def split_envelope(body, received_at: datetime | None = None) -> list[InboxItem]:
    """Validate a decoded webhook body and split it into inbox items; raise EnvelopeError."""
    if not isinstance(body, dict):
        raise EnvelopeError("the body must be a JSON object (a Whapi webhook envelope)")
    try:
        data = _ENVELOPE.load(body)
    except ValidationError as exc:
        raise EnvelopeError(f"not a Whapi webhook envelope: {exc.messages}") from None
    meta = data["event"]
    channel_id = data.get("channel_id")
    items: list[InboxItem] = []
    seen: set[str] = set()
    for key, value in data.items():
        if key in ENVELOPE_META or value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not isinstance(value, list | dict):
            continue  # an unknown scalar key carries no event
        for entry in entries:
            dedupe = _dedupe_key(key, meta["event"], entry, received_at)
            if dedupe in seen:
                continue
            seen.add(dedupe)
            items.append(InboxItem(dedupe, key, meta["type"], meta["event"], channel_id, entry))
    return items


# ---------------------------------------------------------------- parsing items into events


def _seconds(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _millis(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _strip(raw: str, prefix: str) -> str:
    return raw[len(prefix) :] if raw.startswith(prefix) else raw


def _text_of(msg: dict) -> str:
    """The visible text of an echo or message: text.body, link_preview.body or a caption."""
    for key in ("text", "link_preview"):
        part = msg.get(key)
        if isinstance(part, dict) and isinstance(part.get("body"), str):
            return part["body"]
    part = msg.get(msg.get("type", ""))
    if isinstance(part, dict):
        body = part.get("body")
        if isinstance(body, dict):
            return str(body.get("text", ""))
        if isinstance(body, str):
            return body
        if isinstance(part.get("caption"), str):
            return part["caption"]
    return ""


def parse_message(msg: dict) -> ev.Event:
    """A `messages[]` item as a typed event."""
    mid = msg["id"]
    mtype = msg.get("type", "")
    chat_id = msg.get("chat_id", "")
    if msg.get("from_me"):
        return ev.OwnEcho(mid, chat_id=chat_id, source=str(msg.get("source")), text=_text_of(msg))
    if mtype in IGNORED_MESSAGE_TYPES or msg.get("source") == "system":
        return ev.Ignored(mid, reason=f"system notice ({mtype})")
    if not is_person_chat(chat_id):
        return ev.Ignored(mid, reason=f"not a one-to-one chat ({chat_id})")
    try:
        phone = normalize_phone(chat_id)
    except InvalidPhone as exc:
        return ev.Ignored(mid, reason=str(exc))
    context = msg.get("context") if isinstance(msg.get("context"), dict) else {}
    base = dict(
        phone=phone,
        chat_id=chat_id,
        at=_seconds(msg.get("timestamp")),
        push_name=msg.get("from_name") or msg.get("chat_name"),
        quoted_id=context.get("quoted_id"),
    )
    if mtype in ("text", "link_preview"):
        return ev.TextReceived(mid, text=_text_of(msg), **base)
    if mtype == "reply" and isinstance(msg.get("reply"), dict):
        reply = msg["reply"]
        kind = reply.get("type")
        body = reply.get(kind) if isinstance(kind, str) else None
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            if kind == "buttons_reply":
                bid = _strip(body["id"], BUTTON_PREFIX)
                return ev.ButtonTapped(mid, button_id=bid, title=str(body.get("title", "")), **base)
            if kind == "list_reply":
                return ev.ListPicked(
                    mid,
                    row_id=_strip(body["id"], LIST_PREFIX),
                    title=str(body.get("title", "")),
                    description=str(body.get("description", "")),
                    **base,
                )
        return ev.OtherMessage(mid, message_type=f"reply:{kind}", **base)
    if mtype in MEDIA_TYPES:
        media = msg.get(mtype) if isinstance(msg.get(mtype), dict) else {}
        return ev.MediaReceived(
            mid,
            media_type=mtype,
            mime_type=media.get("mime_type"),
            caption=media.get("caption"),
            media_id=media.get("id"),
            **base,
        )
    if mtype in ("location", "live_location"):
        loc = msg.get(mtype) if isinstance(msg.get(mtype), dict) else {}
        return ev.LocationReceived(
            mid,
            latitude=loc.get("latitude"),
            longitude=loc.get("longitude"),
            address=loc.get("address"),
            **base,
        )
    if mtype in ("contact", "contact_list"):
        part = msg.get(mtype) if isinstance(msg.get(mtype), dict) else {}
        entries = part.get("list", [part]) if mtype == "contact_list" else [part]
        names = tuple(str(c.get("name", "")) for c in entries if isinstance(c, dict))
        return ev.ContactReceived(mid, names=names, **base)
    if mtype == "action" and isinstance(msg.get("action"), dict):
        action = msg["action"]
        if action.get("type") == "reaction":
            return ev.ReactionChanged(
                mid,
                target_id=str(action.get("target", "")),
                emoji=action["emoji"] if isinstance(action.get("emoji"), str) else "",
                **base,
            )
        return ev.Ignored(mid, reason=f"message action {action.get('type')}")
    return ev.OtherMessage(mid, message_type=mtype, **base)


def parse_item(kind: str, method: str, payload, event_id: str) -> ev.Event:
    """An inbox row's item as a typed event (never raises on odd but valid shapes)."""
    if kind == "messages" and isinstance(payload, dict):
        return parse_message(payload)
    if kind == "statuses" and isinstance(payload, dict):
        errors = payload.get("errors")
        return ev.StatusChanged(
            payload["id"],
            status=str(payload.get("status", "")),
            recipient=str(payload.get("recipient_id", "")),
            at=_seconds(payload.get("timestamp")),
            errors=tuple(errors) if isinstance(errors, list) else (),
        )
    if kind == "calls" and isinstance(payload, dict):
        try:
            phone = normalize_phone(str(payload.get("chat_id") or payload.get("from", "")))
        except InvalidPhone as exc:
            return ev.Ignored(event_id, reason=f"call: {exc}")
        return ev.CallReceived(
            str(payload.get("id", event_id)),
            phone=phone,
            status=str(payload.get("status", "")),
            video=bool(payload.get("video_call")),
            group_call=bool(payload.get("group_call")),
            at=_millis(payload.get("timestamp")),
        )
    if kind == "groups" and isinstance(payload, dict):
        return ev.GroupChanged(event_id, group_id=str(payload.get("id", "")), action=method)
    if kind == "groups_participants" and isinstance(payload, dict):
        parts = payload.get("participants") or []
        return ev.GroupChanged(
            event_id,
            group_id=str(payload.get("group_id", "")),
            action=str(payload.get("action", method)),
            participants=tuple(str(p) for p in parts if isinstance(p, str)),
        )
    if kind == "groups_updates" and isinstance(payload, dict):
        after = payload.get("after_update") if isinstance(payload.get("after_update"), dict) else {}
        return ev.GroupChanged(event_id, group_id=str(after.get("id", "")), action="updated")
    if kind in ("labels", "labels_removed"):
        label = payload if isinstance(payload, dict) else {"id": payload}
        return ev.LabelChanged(
            event_id,
            label_id=str(label.get("id", "")),
            name=str(label.get("name", "")),
            removed=kind == "labels_removed" or method == "delete",
        )
    if kind == "health" and isinstance(payload, dict):
        status = payload.get("status") if isinstance(payload.get("status"), dict) else {}
        return ev.ChannelChanged(
            event_id, status=str(status.get("text", "UNKNOWN")), detail=payload
        )
    if kind == "user" and isinstance(payload, dict):
        status = "LOGGED_OUT" if method == "delete" else "CONNECTED"
        return ev.ChannelChanged(event_id, status=status, detail=payload)
    if kind in ("chats", "chats_updates", "chats_removed"):
        chat = payload if isinstance(payload, dict) else {"id": payload}
        if kind == "chats_updates":
            chat = chat.get("after_update") if isinstance(chat.get("after_update"), dict) else chat
        return ev.ChatChanged(event_id, chat_id=str(chat.get("id", "")), action=f"{kind}.{method}")
    return ev.Ignored(event_id, reason=f"{kind}.{method} is recorded, not acted on")
