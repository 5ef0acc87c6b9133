"""The patient simulator: people and tests write, tap and react as patients (dev only).

Mounted at /sandbox with the sandbox gateway (sandbox/gateway.py) when WHAPI_TOKEN is unset.
Its API (/sandbox/api/patients/…) posts to our webhook, over real HTTP, exactly what Whapi
would for what the patient did; the page at /sandbox is a phone-like chat for several patients.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from flask import Blueprint, jsonify, render_template, request
from sqlalchemy import select

from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import SandboxMessage
from clinic_bot.sandbox.gateway import (
    CHANNEL_ID,
    DEFAULT_SETTINGS,
    RECENT_STATUSES,
    _set_state,
    _state,
    _timestamp,
    choices,
    new_message_id,
    post_to_webhook,
    record_status,
    status_payload,
)

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


def _out_message(message_id: str | None, phone: str, want: str, choice_id: str):
    """The interactive message a tap answers: by id, else the newest one offering `choice_id`."""
    with get_runtime().db.ReadSession() as s:
        stmt = select(SandboxMessage).where(
            SandboxMessage.phone == phone, SandboxMessage.direction == "out"
        )
        if message_id:
            return s.execute(stmt.where(SandboxMessage.message_id == message_id)).scalar()
        for msg in s.execute(stmt.order_by(SandboxMessage.id.desc()).limit(30)).scalars():
            if any(c["id"] == choice_id for c in choices(msg.payload, want)):
                return msg
    return None


def _patient_message(phone: str, data: dict, now: datetime) -> dict | str:
    """A Whapi `messages[]` item for what the simulated patient did, or an error text."""
    mid = new_message_id()
    base = {
        "id": mid,
        "from_me": False,
        "chat_id": f"{phone}@s.whatsapp.net",
        "timestamp": _timestamp(now),
        "source": "mobile",
        "from": phone,
        "from_name": data.get("name") or "Sandbox patient",
    }
    if "text" in data:
        text = str(data["text"])
        if re.search(r"https?://", text):
            return {**base, "type": "link_preview", "link_preview": {"body": text, "url": text}}
        return {**base, "type": "text", "text": {"body": text}}
    for want, reply_type, prefix in (
        ("button", "buttons_reply", "ButtonsV3:"),
        ("list", "list_reply", "ListV3:"),
    ):
        if want in data:
            tap = data[want] if isinstance(data[want], dict) else {"id": data[want]}
            choice_id = str(tap.get("id", ""))
            out = _out_message(tap.get("message_id"), phone, want, choice_id)
            choice = None
            if out is not None:
                choice = next((c for c in choices(out.payload, want) if c["id"] == choice_id), None)
            if choice is None and not tap.get("force"):
                return f"no {want} {choice_id!r} was offered to this patient"
            choice = choice or {"id": choice_id, "title": tap.get("title", choice_id)}
            reply = {"id": prefix + choice_id, "title": choice.get("title", "")}
            if want == "list":
                reply["description"] = choice.get("description", "")
            msg = {**base, "type": "reply", "reply": {"type": reply_type, reply_type: reply}}
            if out is not None:
                msg["context"] = {
                    "quoted_id": out.message_id,
                    "quoted_author": "49301234567",
                    "quoted_type": "hsm" if want == "button" else "list",
                    "quoted_content": out.payload,
                }
            return msg
    if "reaction" in data:
        r = data["reaction"]
        return {
            **base,
            "type": "action",
            "action": {
                "target": r.get("message_id"),
                "type": "reaction",
                "emoji": r.get("emoji", ""),
            },
        }
    if "location" in data:
        loc = data["location"] or {}
        return {
            **base,
            "type": "location",
            "location": {
                "latitude": loc.get("latitude", 52.52),
                "longitude": loc.get("longitude", 13.4),
            },
        }
    media = data.get("media")
    if media in ("image", "video", "audio", "voice", "document", "sticker", "gif"):
        mime = {"image": "image/jpeg", "voice": "audio/ogg; codecs=opus", "sticker": "image/webp"}
        return {
            **base,
            "type": media,
            media: {
                "id": secrets.token_hex(8),
                "mime_type": mime.get(media, "application/octet-stream"),
            },
        }
    return "say what the patient does: text, button, list, reaction, location, media or call"


@bp.post("/api/patients/<phone>/messages")
def patient_sends(phone: str):
    """The simulated patient writes, taps or reacts; the webhook is posted over real HTTP."""
    try:
        phone = normalize_phone(phone)
    except InvalidPhone as exc:
        return jsonify(error={"code": "invalid_phone", "message": str(exc)}), 400
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error={"code": "invalid_body", "message": "send a JSON object"}), 400
    rt = get_runtime()
    now = rt.clock()
    if "call" in data:
        call_id = secrets.token_hex(10).upper()
        payload = {
            "calls": [
                {
                    "id": call_id,
                    "from": f"{phone}@s.whatsapp.net",
                    "chat_id": f"{phone}@s.whatsapp.net",
                    "status": str(data["call"] or "missed"),
                    "timestamp": int(now.timestamp() * 1000),
                    "group_call": False,
                    "video_call": False,
                    "offline_call": False,
                }
            ],
            "event": {"type": "calls", "event": "post"},
            "channel_id": CHANNEL_ID,
        }
        return jsonify(message_id=call_id, webhook_status=post_to_webhook(payload)), 200
    message = _patient_message(phone, data, now)
    if isinstance(message, str):
        return jsonify(error={"code": "invalid_action", "message": message}), 400
    with rt.db.transaction() as s:
        s.add(
            SandboxMessage(
                message_id=message["id"],
                phone=phone,
                direction="in",
                kind=message["type"],
                payload=message,
                status="sent",
                created_at=now,
            )
        )
    payload = {
        "messages": [message],
        "event": {"type": "messages", "event": "post"},
        "channel_id": CHANNEL_ID,
    }
    return jsonify(message_id=message["id"], webhook_status=post_to_webhook(payload)), 200


def transcript_item(m: SandboxMessage) -> dict:
    """One chat message as the simulator and tests see it."""
    item = {
        "id": m.id,
        "message_id": m.message_id,
        "direction": m.direction,
        "kind": m.kind,
        "status": m.status,
        "at": m.created_at.isoformat(),
    }
    p = m.payload
    if m.direction == "out":
        if m.kind == "text":
            item["text"] = p.get("body", "")
        elif m.kind == "interactive":
            item["text"] = (p.get("body") or {}).get("text", "")
            item["buttons"] = choices(p, "button")
            lst = (p.get("action") or {}).get("list")
            if lst:
                item["list"] = lst
        elif m.kind == "document":
            item["text"] = p.get("caption", "")
            item["document"] = {"filename": p.get("filename"), "mime_type": p.get("mime_type")}
            item["media"] = p.get("media")
    else:
        if m.kind == "reply":
            reply = p.get("reply") or {}
            item["text"] = (reply.get(reply.get("type")) or {}).get("title", "")
        elif m.kind in ("text", "link_preview"):
            item["text"] = (p.get(m.kind) or {}).get("body", "")
        else:
            item["text"] = f"[{m.kind}]"
    return item


@bp.get("/api/patients/<phone>/messages")
def patient_transcript(phone: str):
    """The chat as the patient's phone shows it; `after` returns only newer messages."""
    try:
        phone = normalize_phone(phone)
    except InvalidPhone as exc:
        return jsonify(error={"code": "invalid_phone", "message": str(exc)}), 400
    after = request.args.get("after", default=0, type=int)
    with get_runtime().db.ReadSession() as s:
        rows = s.execute(
            select(SandboxMessage)
            .where(SandboxMessage.phone == phone, SandboxMessage.id > after)
            .order_by(SandboxMessage.id)
        ).scalars()
        messages = [transcript_item(m) for m in rows]
        # Ticks change after a message was first fetched: the newest ones' statuses ride along.
        recent = s.execute(
            select(SandboxMessage.id, SandboxMessage.status)
            .where(SandboxMessage.phone == phone, SandboxMessage.direction == "out")
            .order_by(SandboxMessage.id.desc())
            .limit(RECENT_STATUSES)
        ).all()
        return jsonify(messages=messages, statuses={str(i): st for i, st in recent})


@bp.get("/api/patients")
def patients():
    """Every simulated patient with a chat."""
    with get_runtime().db.ReadSession() as s:
        phones = s.execute(select(SandboxMessage.phone).distinct()).scalars().all()
    return jsonify(patients=sorted(phones))


@bp.post("/api/statuses")
def send_status():
    """Post a status webhook (read, delivered, …) for one of the clinic's messages."""
    data = request.get_json(silent=True) or {}
    codes = {"failed": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4, "played": 5}
    status = data.get("status")
    if status not in codes or not isinstance(data.get("message_id"), str):
        return jsonify(error={"code": "invalid_body", "message": "message_id and status"}), 400
    with get_runtime().db.ReadSession() as s:
        msg = s.execute(
            select(SandboxMessage).where(SandboxMessage.message_id == data["message_id"])
        ).scalar()
    if msg is None:
        return jsonify(error={"code": "not_found", "message": "no such message"}), 404
    payload = status_payload(
        msg.message_id, msg.phone, status, codes[status], get_runtime().clock()
    )
    webhook_status = post_to_webhook(payload)
    if webhook_status == 200:
        record_status(get_runtime().db, msg.message_id, status)
    return jsonify(webhook_status=webhook_status)


@bp.route("/api/settings", methods=["GET", "PUT"])
def sandbox_settings():
    """Whether the simulated phones send read receipts, and how fast statuses follow."""
    current = dict(_state("sandbox.settings", DEFAULT_SETTINGS))
    if request.method == "PUT":
        data = request.get_json(silent=True) or {}
        current.update({k: v for k, v in data.items() if k in DEFAULT_SETTINGS})
        _set_state("sandbox.settings", current)
    return jsonify(current)


@bp.get("/")
def simulator():
    """The patient simulator page: a phone-like chat for several patients."""
    return render_template("sandbox.html")
