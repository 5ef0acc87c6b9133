"""The sandbox gateway: behaves like Whapi.Cloud for the sends we make, over real HTTP.

Mounted at /sandbox when WHAPI_TOKEN is unset. Its gateway half (/sandbox/gateway/…) answers
send calls with Whapi's bodies and errors, then posts back to our webhook what Whapi would:
the `from_me` echo, then statuses sent → delivered → read. Its patient half (/sandbox/api/…,
and the simulator page at /sandbox) lets a person or a test write and tap as a patient would.
Faults can be injected (error statuses, slow answers) to exercise retries.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import secrets
import threading
import time
from datetime import datetime

import requests
from flask import Blueprint, jsonify, render_template, request
from sqlalchemy import select

from clinic_bot.adapters.whapi import bodies as limits
from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import GatewayState, SandboxMessage

log = logging.getLogger(__name__)
bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

TO_PATTERN = re.compile(r"^[\d-]{9,31}(@[\w.]{1,})?$")
DEFAULT_SETTINGS = {"auto_read": True, "status_delay": 0.05}
CHANNEL_ID = "SANDBOX-CLINIC"
RECENT_STATUSES = 40  # how many of a chat's newest clinic messages report their tick per poll


def whapi_error(status: int, message: str, details: str = ""):
    """Whapi's error shape: {"error": {"code", "message", "details"}}."""
    body = {"error": {"code": status, "message": message}}
    if details:
        body["error"]["details"] = details
    return jsonify(body), status


def new_message_id() -> str:
    """An id shaped like Whapi's message ids."""
    return f"{secrets.token_urlsafe(16)}-gSandbox"


def _timestamp(dt: datetime) -> int:
    return int(dt.timestamp())


# ------------------------------------------------------------------ state kept in the database


def _state(key: str, default):
    with get_runtime().db.ReadSession() as s:
        row = s.get(GatewayState, key)
        return row.value if row is not None else default


def _set_state(key: str, value) -> None:
    rt = get_runtime()
    with rt.db.transaction() as s:
        GatewayState.put(s, key, value, rt.clock())


def _take_fault() -> dict | None:
    """Pop one injected fault, if any: {"status": 500} or {"delay": 20, "deliver": true}."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        row = s.get(GatewayState, "sandbox.faults")
        faults = list(row.value.get("items", [])) if row is not None else []
        if not faults:
            return None
        fault = dict(faults[0])
        remaining = int(fault.get("count", 1)) - 1
        if remaining > 0:
            faults[0] = {**fault, "count": remaining}
        else:
            faults.pop(0)
        row.value = {"items": faults}
        return fault


# ------------------------------------------------------------------ callbacks to our webhook


class _Callbacks:
    """Ordered queues of webhook POSTs the sandbox owes our app: one queue and thread per URL.

    Per URL, so an app that went away (a stopped test server) and is retried does not hold up
    the callbacks owed to one that is running.
    """

    def __init__(self):
        self.queues: dict[str, queue.Queue] = {}
        self.lock = threading.Lock()

    def put(self, url: str, secret: str, payload: dict, delay: float = 0.0, on_ok=None) -> None:
        with self.lock:
            q = self.queues.get(url)
            if q is None:
                q = self.queues[url] = queue.Queue()
                name = f"sandbox-cb-{len(self.queues)}"
                threading.Thread(target=self._run, args=(q,), name=name, daemon=True).start()
        # A delay counts from now, not from the previous callback: a burst of sends must not
        # pile their status delays up and hold back later echoes (Whapi echoes at once).
        q.put((url, secret, payload, time.monotonic() + delay, on_ok))

    def _run(self, q: queue.Queue) -> None:
        http = requests.Session()  # one per thread: Session is not thread-safe
        while True:
            url, secret, payload, due, on_ok = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            for attempt in range(5):  # like Whapi, retry until acknowledged with 200
                try:
                    resp = http.post(
                        url, json=payload, headers={"X-Webhook-Token": secret}, timeout=10
                    )
                    if resp.status_code == 200:
                        if on_ok is not None:
                            on_ok()
                        break
                except requests.RequestException:
                    pass
                except Exception:  # a failing on_ok must not stop the callback thread
                    log.exception("sandbox callback follow-up failed")
                    break
                time.sleep(0.2 * (attempt + 1))


CALLBACKS = _Callbacks()


def post_to_webhook(payload: dict) -> int:
    """POST a webhook to our app now, as Whapi would, and return the HTTP status."""
    rt = get_runtime()
    resp = requests.post(
        f"{rt.settings.public_url}/webhooks/whapi",
        json=payload,
        headers={"X-Webhook-Token": rt.settings.webhook_secret},
        timeout=10,
    )
    return resp.status_code


STATUS_RANK = {"pending": 1, "sent": 2, "delivered": 3, "read": 4, "played": 5}


def record_status(db, message_id: str, status: str) -> None:
    """Move the phone's tick for one clinic message forward (never back), as WhatsApp shows it."""
    with db.transaction() as s:
        row = s.execute(
            select(SandboxMessage).where(SandboxMessage.message_id == message_id)
        ).scalar()
        if row is not None and STATUS_RANK.get(status, 0) > STATUS_RANK.get(row.status, 0):
            row.status = status


def _queue_echo_and_statuses(message: dict, phone: str) -> None:
    rt = get_runtime()
    settings = _state("sandbox.settings", DEFAULT_SETTINGS)
    delay = float(settings.get("status_delay", 0.05))
    url = f"{rt.settings.public_url}/webhooks/whapi"
    secret = rt.settings.webhook_secret
    echo = {
        "messages": [{**message, "status": "pending"}],
        "event": {"type": "messages", "event": "post"},
        "channel_id": CHANNEL_ID,
    }
    CALLBACKS.put(url, secret, echo)
    steps = [("sent", 2), ("delivered", 3)]
    if settings.get("auto_read", True):
        steps.append(("read", 4))
    for status, code in steps:
        payload = status_payload(message["id"], phone, status, code, rt.clock())
        on_ok = functools.partial(record_status, rt.db, message["id"], status)
        CALLBACKS.put(url, secret, payload, delay, on_ok)


def status_payload(message_id: str, phone: str, status: str, code: int, at: datetime) -> dict:
    """A Whapi `statuses` webhook for one message."""
    return {
        "statuses": [
            {
                "id": message_id,
                "code": code,
                "status": status,
                "recipient_id": f"{phone}@s.whatsapp.net",
                "timestamp": str(_timestamp(at)),
            }
        ],
        "event": {"type": "statuses", "event": "post"},
        "channel_id": CHANNEL_ID,
    }


# ------------------------------------------------------------------ gateway: Whapi's send API


def _check_interactive(body: dict) -> str | None:
    """Why Whapi would refuse this interactive body, or None."""
    action = body.get("action")
    if not isinstance(action, dict):
        return "action is required"
    kind = body.get("type", "button")
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= limits.MAX_BUTTONS:
            return "action.buttons must hold 1 to 3 buttons"
        for b in buttons:
            if not isinstance(b, dict) or b.get("type") not in (
                "quick_reply",
                "call",
                "url",
                "copy",
            ):
                return "each button needs type quick_reply|call|url|copy (not Meta's 'reply')"
            title = b.get("title")
            if not isinstance(title, str) or not title or len(title) > limits.BUTTON_TITLE:
                return f"button title must be 1 to {limits.BUTTON_TITLE} characters"
            if b["type"] == "quick_reply" and not isinstance(b.get("id"), str):
                return "a quick_reply button needs an id"
        return None
    if kind == "list":
        lst = action.get("list")
        if not isinstance(lst, dict):
            return "action.list is required (not Meta's action.button + action.sections)"
        label, sections = lst.get("label"), lst.get("sections")
        if not isinstance(label, str) or not label or len(label) > limits.LIST_LABEL:
            return f"action.list.label must be 1 to {limits.LIST_LABEL} characters"
        if not isinstance(sections, list) or not sections:
            return "action.list.sections must not be empty"
        total = 0
        for sec in sections:
            rows = sec.get("rows") if isinstance(sec, dict) else None
            if not isinstance(rows, list) or not rows:
                return "every section needs rows"
            for r in rows:
                total += 1
                if not isinstance(r, dict) or not isinstance(r.get("id"), str):
                    return "every row needs an id"
                title = r.get("title")
                if not isinstance(title, str) or not title or len(title) > limits.ROW_TITLE:
                    return f"row title must be 1 to {limits.ROW_TITLE} characters"
                if len(str(r.get("description", ""))) > limits.ROW_DESCRIPTION:
                    return f"row description must be at most {limits.ROW_DESCRIPTION} characters"
        if total > limits.MAX_LIST_ROWS:
            return f"a list holds at most {limits.MAX_LIST_ROWS} rows"
        return None
    return f"unsupported interactive type {kind!r}"


def _gateway_send(kind: str):
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return whapi_error(401, "Unauthorized", "send Authorization: Bearer <token>")
    fault = _take_fault()
    if fault and fault.get("delay"):
        time.sleep(float(fault["delay"]))
        if not fault.get("deliver"):
            return whapi_error(504, "Gateway timeout")
    if fault and fault.get("status"):
        return whapi_error(int(fault["status"]), fault.get("message", "Injected fault"))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return whapi_error(400, "Wrong request parameters", "the body must be a JSON object")
    to = body.get("to")
    if not isinstance(to, str) or not TO_PATTERN.match(to):
        return whapi_error(400, "Wrong request parameters", "to: not a valid chat id")
    if kind == "text":
        text = body.get("body")
        if not isinstance(text, str) or not text.strip() or len(text) > limits.TEXT_BODY:
            return whapi_error(400, "Wrong request parameters", "body is required")
    elif kind == "interactive":
        problem = _check_interactive(body)
        if problem:
            return whapi_error(400, "Wrong request parameters", problem)
    elif kind == "document" and (not isinstance(body.get("media"), str) or not body["media"]):
        return whapi_error(400, "Wrong request parameters", "media is required")
    try:
        phone = normalize_phone(to)
    except InvalidPhone:
        return whapi_error(400, "Wrong request parameters", "to: not a phone")
    rt = get_runtime()
    now = rt.clock()
    mid = new_message_id()
    content = {k: v for k, v in body.items() if k not in ("to", "type")}
    if kind == "interactive":
        msg_type = "interactive"
        content = {"type": body.get("type", "button"), **content}
    else:
        msg_type = kind
    message = {
        "id": mid,
        "from_me": True,
        "type": msg_type,
        "chat_id": f"{phone}@s.whatsapp.net",
        "timestamp": _timestamp(now),
        "source": "api",
        "status": "pending",
        msg_type: content,
        "from": "49301234567",
    }
    if kind == "text":
        message["text"] = {"body": body["body"]}
    with rt.db.transaction() as s:
        s.add(
            SandboxMessage(
                message_id=mid,
                phone=phone,
                direction="out",
                kind=msg_type,
                payload=body,
                status="sent",
                created_at=now,
            )
        )
    _queue_echo_and_statuses(message, phone)
    return jsonify({"sent": True, "message": message}), 200


@bp.post("/gateway/messages/text")
def gateway_text():
    return _gateway_send("text")


@bp.post("/gateway/messages/interactive")
def gateway_interactive():
    return _gateway_send("interactive")


@bp.post("/gateway/messages/document")
def gateway_document():
    return _gateway_send("document")


@bp.get("/gateway/health")
def gateway_health():
    return jsonify(
        {
            "channel_id": CHANNEL_ID,
            "start_at": 0,
            "uptime": 1,
            "status": {"code": 4, "text": "AUTH"},
            "version": "sandbox",
        }
    )


@bp.get("/gateway/settings")
def gateway_settings():
    return jsonify(_state("sandbox.whapi_settings", {"webhooks": []}))


@bp.patch("/gateway/settings")
def gateway_patch_settings():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return whapi_error(400, "Wrong request parameters", "the body must be a JSON object")
    current = dict(_state("sandbox.whapi_settings", {"webhooks": []}))
    current.update(body)  # like Whapi: absent fields unchanged, `webhooks` replaced whole
    _set_state("sandbox.whapi_settings", current)
    return jsonify(current)


# ------------------------------------------------------------------ patient side


def _out_message(message_id: str | None, phone: str, want: str, choice_id: str):
    """The interactive message a tap answers: by id, else the newest one offering `choice_id`."""
    with get_runtime().db.ReadSession() as s:
        stmt = select(SandboxMessage).where(
            SandboxMessage.phone == phone, SandboxMessage.direction == "out"
        )
        if message_id:
            return s.execute(stmt.where(SandboxMessage.message_id == message_id)).scalar()
        for msg in s.execute(stmt.order_by(SandboxMessage.id.desc()).limit(30)).scalars():
            if any(c["id"] == choice_id for c in _choices(msg.payload, want)):
                return msg
    return None


def _choices(payload: dict, want: str) -> list[dict]:
    action = payload.get("action") or {}
    if want == "button":
        return [{"id": b.get("id"), "title": b.get("title")} for b in action.get("buttons") or []]
    out = []
    for sec in (action.get("list") or {}).get("sections") or []:
        out.extend(sec.get("rows") or [])
    return out


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
                choice = next(
                    (c for c in _choices(out.payload, want) if c["id"] == choice_id), None
                )
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
            item["buttons"] = _choices(p, "button")
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


@bp.route("/api/faults", methods=["GET", "POST", "DELETE"])
def faults():
    """Queue gateway faults: {"status": 500, "count": 2} or {"delay": 20, "deliver": true}."""
    if request.method == "DELETE":
        _set_state("sandbox.faults", {"items": []})
    elif request.method == "POST":
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not (data.get("status") or data.get("delay")):
            return jsonify(error={"code": "invalid_body", "message": "status or delay"}), 400
        items = list(_state("sandbox.faults", {"items": []}).get("items", []))
        items.append(data)
        _set_state("sandbox.faults", {"items": items})
    return jsonify(_state("sandbox.faults", {"items": []}))


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
