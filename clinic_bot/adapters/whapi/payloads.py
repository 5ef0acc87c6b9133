"""Whapi webhook JSON: envelope validation, one inbox item per array entry, typed events.

Only this module (with the client and the sandbox) knows Whapi's JSON; see reference/whapi.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

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
STATUS_NAMES = {"failed", "pending", "sent", "delivered", "read", "played", "deleted"}
BUTTON_PREFIX = "ButtonsV3:"
LIST_PREFIX = "ListV3:"


class EnvelopeError(ValueError):
    """A webhook body that is not a valid Whapi envelope (answered 400, nothing stored)."""


class TooManyItems(EnvelopeError):
    """An envelope with more items than one POST may carry (answered 413, nothing stored)."""


class UnreadableItem(ValueError):
    """A stored item nothing can be made of: dead-lettered at once, with the reason, for staff."""


MAX_ITEMS = 1000  # per POST; Whapi batches a few, a flood of thousands is not a real envelope
MAX_DEPTH = 32  # Whapi's deepest item (a tap quoting a list) is under ten levels
# Bounds of the envelope's metadata, as stored (the inbox_event columns).
MAX_CHANNEL_ID = 100
MAX_EVENT_TYPE = 40
MAX_EVENT_METHOD = 20
MAX_KIND = 40
MAX_CHAT_ID = 100
# Single string items: `messages_removed_all` (a chat id) comes on messages.delete.
STRING_KEYS = ("messages_removed_all",)
_ODD_TEXT = re.compile("[\x00\ud800-\udfff]")


def clean_json(value, max_depth: int = MAX_DEPTH):
    """A copy of decoded JSON a database can store: NUL removed, lone surrogates replaced,
    non-finite numbers nulled; EnvelopeError when nested deeper than `max_depth`.

    Iterative, so a body nested a thousand deep cannot exhaust the stack here.
    """
    root: list = [None]
    stack = [(value, root, 0, 1)]
    while stack:
        item, parent, slot, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise EnvelopeError(f"the body is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                out: dict | list = {}
                for k, v in item.items():
                    key = _clean_text(k) if isinstance(k, str) else str(k)
                    out[key] = None
                    stack.append((v, out, key, depth + 1))
            else:
                out = [None] * len(item)
                for i, v in enumerate(item):
                    stack.append((v, out, i, depth + 1))
            parent[slot] = out
        elif isinstance(item, str):
            parent[slot] = _clean_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            parent[slot] = None
        else:
            parent[slot] = item
    return root[0]


def _clean_text(text: str) -> str:
    if not _ODD_TEXT.search(text):
        return text
    return _ODD_TEXT.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _bounded(value, limit: int) -> str | None:
    if value is None:
        return None
    return str(value)[:limit]


@dataclass(frozen=True)
class InboxItem:
    """One item of an envelope, ready to be stored as an inbox row."""

    dedupe_key: str
    kind: str
    event_type: str
    event_method: str
    channel_id: str | None
    payload: dict | str
    chat_id: str | None = None  # the chat it belongs to, so a chat's events are found by index


# Single objects that report a state, not a one-off event: the same content can come again
# later and mean something new (logged out, back in, logged out again), so their key includes
# the second they arrived. Handling them twice only sets the same state twice.
STATE_KEYS = ("health", "user", "qr")
MAX_KEY = 200


def _content_hash(kind: str, method: str, item) -> str:
    # ASCII escapes keep lone surrogates and other odd text hashable.
    canonical = json.dumps([kind, method, item], sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def bounded_key(key: str, prefix: str = "key") -> str:
    """`key` if a database can store it as is; else a hash of it (huge ids, NUL, surrogates)."""
    # isprintable() is False for NUL, control characters and lone surrogates.
    if len(key) <= MAX_KEY and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}:hashed:{digest}"


_safe_key = bounded_key


def scalar_text(value) -> str | None:
    """A string field's value: strings as they are, numbers as text, anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def _dedupe_key(kind: str, method: str, item, received_at: datetime | None = None) -> str:
    """The gateway's key for an item: the message id; status id + status; else a content hash."""
    if isinstance(item, dict):
        item_id = scalar_text(item.get("id"))
        if kind == "messages" and item_id:
            return _safe_key(f"msg:{item_id}", kind)
        if kind == "statuses" and item_id:
            return _safe_key(f"status:{item_id}:{scalar_text(item.get('status')) or ''}", kind)
        if kind == "calls" and item_id:
            return _safe_key(f"call:{item_id}:{scalar_text(item.get('status')) or ''}", kind)
    digest = _content_hash(kind, method, item)
    if kind in STATE_KEYS and received_at is not None:
        return f"{kind}:{digest[:40]}:{received_at.strftime('%Y%m%dT%H%M%S')}"
    return f"{kind[:MAX_KIND]}:{digest}"


def _event_meta(body: dict) -> tuple[str, str]:
    """(type, method) of the envelope; Whapi's schema names the second `method`, its
    examples and real captures `event`: both are accepted."""
    meta = body.get("event")
    if not isinstance(meta, dict):
        raise EnvelopeError("not a Whapi webhook envelope: `event` must be an object")
    etype = meta.get("type")
    method = meta.get("event", meta.get("method"))
    if not isinstance(etype, str) or not etype:
        raise EnvelopeError("not a Whapi webhook envelope: event.type must be a string")
    if not isinstance(method, str) or not method:
        raise EnvelopeError("not a Whapi webhook envelope: event.event (or .method) is missing")
    return etype[:MAX_EVENT_TYPE], method[:MAX_EVENT_METHOD]


def item_chat_id(kind: str, item) -> str | None:
    """The chat an item belongs to: its `chat_id` (a message's sender when it has none), a
    status's `recipient_id`; None when it names none or one too long to be a chat id."""
    if not isinstance(item, dict):
        return None
    chat = scalar_text(item.get("chat_id"))
    if not chat and kind == "statuses":
        chat = scalar_text(item.get("recipient_id"))
    if not chat and kind == "messages":
        # The same fallback the message parser uses (coerce_message).
        sender = scalar_text(item.get("from"))
        chat = f"{sender}@s.whatsapp.net" if sender and sender.isdigit() else None
    if not chat or len(chat) > MAX_CHAT_ID:
        return None
    return chat


def split_envelope(body, received_at: datetime | None = None) -> list[InboxItem]:
    """Validate a decoded webhook body and split it into inbox items; raise EnvelopeError.

    Only the envelope itself can be refused. An odd item inside a valid envelope is stored
    all the same (its handler coerces what it can, or dead-letters it for staff), because a
    refusal would make Whapi retry the whole POST, patient messages beside it included.
    """
    if not isinstance(body, dict):
        raise EnvelopeError("the body must be a JSON object (a Whapi webhook envelope)")
    etype, method = _event_meta(body)
    channel_id = body.get("channel_id")
    if channel_id is not None and not isinstance(channel_id, str):
        raise EnvelopeError("not a Whapi webhook envelope: channel_id must be a string")
    channel_id = _bounded(channel_id, MAX_CHANNEL_ID)
    for key, value in body.items():
        if key in ARRAY_KEYS and not isinstance(value, list | type(None)):
            raise EnvelopeError(f"not a Whapi webhook envelope: {key} must be a list")
        if key in OBJECT_KEYS and not isinstance(value, dict | list | type(None)):
            raise EnvelopeError(f"not a Whapi webhook envelope: {key} must be an object")
    count = sum(len(v) if isinstance(v, list) else 1 for k, v in body.items() if k != "event")
    if count > MAX_ITEMS:
        raise TooManyItems(f"{count} items in one POST; at most {MAX_ITEMS} are taken")
    items: list[InboxItem] = []
    seen: set[str] = set()
    for key, value in body.items():
        if key in ENVELOPE_META or value is None:
            continue
        if isinstance(value, str) and key in STRING_KEYS:
            entries = [value]
        elif isinstance(value, list | dict):
            entries = value if isinstance(value, list) else [value]
        else:
            continue  # an unknown scalar key carries no event
        kind = key[:MAX_KIND]
        for entry in entries:
            dedupe = _dedupe_key(kind, method, entry, received_at)
            if dedupe in seen:
                continue
            seen.add(dedupe)
            chat = item_chat_id(kind, entry)
            items.append(InboxItem(dedupe, kind, etype, method, channel_id, entry, chat))
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


def text_of(msg: dict) -> str:
    """The visible text of an echo or message: text.body, link_preview.body or a caption."""
    for key in ("text", "link_preview"):
        part = msg.get(key)
        if isinstance(part, dict) and isinstance(part.get("body"), str):
            return part["body"]
    part = msg.get(msg.get("type", "")) if isinstance(msg.get("type"), str) else None
    if isinstance(part, dict):
        body = part.get("body")
        if isinstance(body, dict):
            return str(body.get("text", ""))
        if isinstance(body, str):
            return body
        if isinstance(part.get("caption"), str):
            return part["caption"]
    return ""


_text_of = text_of
MAX_ID = 200  # ids are stored in columns of this size (patients, reactions, outbox keys)
MAX_NAME = 200
MAX_TEXT = 4096  # WhatsApp's own limit for a text message


def bounded_id(value) -> str | None:
    """An id as a bounded, printable string (a hash of it when it is huge or odd)."""
    text = scalar_text(value)
    if not text:
        return None
    return bounded_key(text, "id")


def _text_value(value) -> str | None:
    """Coerce what Whapi documents as {"body": str} (a bare string, a list of strings…)."""
    if isinstance(value, dict):
        value = value.get("body")
    if isinstance(value, list):
        value = " ".join(t for t in (scalar_text(v) for v in value) if t)
    text = scalar_text(value)
    return text[:MAX_TEXT] if text is not None else None


def coerce_message(msg: dict, fallback_id: str) -> dict:
    """A `messages[]` item with its fields coerced to the published schema, or dropped.

    A patient message with one odd field (a non-dict `text`, a list where a string belongs,
    a 10 KB id) must still get its answer: fields are made the documented type when that is
    unambiguous, dropped otherwise, and ids are bounded.
    """
    out = dict(msg)
    out["id"] = bounded_id(msg.get("id")) or fallback_id
    mtype = scalar_text(msg.get("type"))
    text = _text_value(msg.get("text"))
    if text is not None:
        out["text"] = {"body": text}
    elif "text" in out:
        del out["text"]
    if not mtype:
        mtype = "text" if text is not None else "unknown"
    out["type"] = mtype[:40]
    chat_id = scalar_text(msg.get("chat_id"))
    if not chat_id:
        sender = scalar_text(msg.get("from"))
        chat_id = f"{sender}@s.whatsapp.net" if sender and sender.isdigit() else ""
    out["chat_id"] = chat_id
    from_me = msg.get("from_me")
    out["from_me"] = from_me is True or (isinstance(from_me, str) and from_me.lower() == "true")
    for key in ("from_name", "chat_name", "source"):
        value = scalar_text(msg.get(key))
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value[:MAX_NAME]
    if not isinstance(msg.get("context"), dict):
        out.pop("context", None)
    return out


def parse_message(msg: dict, fallback_id: str = "") -> ev.Event:
    """A `messages[]` item as a typed event."""
    msg = coerce_message(msg, fallback_id)
    mid = msg["id"]
    if not mid:
        raise UnreadableItem("a message without an id")
    mtype = msg["type"]
    chat_id = msg["chat_id"]
    if msg.get("from_me"):
        return ev.OwnEcho(mid, chat_id=chat_id, source=str(msg.get("source")), text=text_of(msg))
    if mtype in IGNORED_MESSAGE_TYPES or msg.get("source") == "system":
        return ev.Ignored(mid, reason=f"system notice ({mtype})")
    if mtype == "call":
        # The calls webhook answers a missed call; its chat notice must not answer it twice.
        return ev.Ignored(mid, reason="call notice (the calls event answers it)")
    if not chat_id:
        raise UnreadableItem("a patient message without a usable chat_id or from")
    if not is_person_chat(chat_id):
        return ev.Ignored(mid, reason=f"not a one-to-one chat ({chat_id[:60]})")
    try:
        phone = normalize_phone(chat_id)
    except InvalidPhone as exc:
        return ev.Ignored(mid, reason=str(exc)[:150])
    context = msg.get("context") if isinstance(msg.get("context"), dict) else {}
    base = dict(
        phone=phone,
        chat_id=chat_id,
        at=_seconds(msg.get("timestamp")),
        push_name=msg.get("from_name") or msg.get("chat_name"),
        quoted_id=bounded_id(context.get("quoted_id")),
    )
    if mtype in ("text", "link_preview"):
        return ev.TextReceived(mid, text=text_of(msg)[:MAX_TEXT], **base)
    if mtype == "reply" and isinstance(msg.get("reply"), dict):
        reply = msg["reply"]
        kind = reply.get("type")
        body = reply.get(kind) if isinstance(kind, str) else None
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            if kind == "buttons_reply":
                bid = _strip(body["id"], BUTTON_PREFIX)[:MAX_ID]
                title = str(body.get("title", ""))[:MAX_NAME]
                return ev.ButtonTapped(mid, button_id=bid, title=title, **base)
            if kind == "list_reply":
                return ev.ListPicked(
                    mid,
                    row_id=_strip(body["id"], LIST_PREFIX)[:MAX_ID],
                    title=str(body.get("title", ""))[:MAX_NAME],
                    description=str(body.get("description", ""))[:MAX_NAME],
                    **base,
                )
        return ev.OtherMessage(mid, message_type=f"reply:{kind}", **base)
    if mtype in MEDIA_TYPES:
        media = msg.get(mtype) if isinstance(msg.get(mtype), dict) else {}
        if mtype == "documentWithCaption" and not media and isinstance(msg.get("document"), dict):
            media = msg["document"]
        return ev.MediaReceived(
            mid,
            media_type=mtype,
            mime_type=_bounded(scalar_text(media.get("mime_type")), MAX_NAME),
            caption=_bounded(scalar_text(media.get("caption")), MAX_TEXT),
            media_id=bounded_id(media.get("id")),
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
                target_id=bounded_id(action.get("target")) or "",
                emoji=action["emoji"] if isinstance(action.get("emoji"), str) else "",
                **base,
            )
        return ev.Ignored(mid, reason=f"message action {str(action.get('type'))[:40]}")
    # poll, order, product, event, … : not acted on, answered with the menu by the reaction.
    return ev.OtherMessage(mid, message_type=mtype, **base)


def parse_item(kind: str, method: str, payload, event_id: str) -> ev.Event:
    """An inbox row's item as a typed event (never raises on odd but valid shapes)."""
    if kind == "messages":
        if not isinstance(payload, dict):
            kind_name = type(payload).__name__
            raise UnreadableItem(f"a messages item that is not an object ({kind_name})")
        return parse_message(payload, event_id)
    if kind == "messages_removed_all":
        return ev.Ignored(event_id, reason="all messages of a chat were deleted (recorded)")
    if kind == "statuses" and isinstance(payload, dict):
        errors = payload.get("errors")
        status_id = bounded_id(payload.get("id"))
        if not status_id:
            return ev.Ignored(event_id, reason="a status without a message id")
        if payload.get("status") not in STATUS_NAMES:
            return ev.Ignored(event_id, reason="a status without a known status name")
        return ev.StatusChanged(
            status_id,
            status=str(scalar_text(payload.get("status")) or "")[:20],
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
            bounded_id(payload.get("id")) or event_id,
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
