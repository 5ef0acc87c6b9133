"""The sandbox gateway: behaves like Whapi.Cloud for the calls we make, over real HTTP.

Mounted at /sandbox/gateway when WHAPI_TOKEN is unset; as strict as Whapi per its published
request schemas (Whapi-Cloud's MCP manifest and OpenAPI): it refuses what Whapi refuses, with
Whapi's error shape, and answers 401 without a token. Accepted sends are posted back to our
webhook as Whapi would: the `from_me` echo, then statuses sent → delivered → read.
`GET /messages/list/{ChatID}` lists what was sent, so lost answers can be settled.
Test affordances under /sandbox/api: faults (error statuses, stalls whose send did or did not
go out) and the channel's state (a logged-out phone: 401 on sends and a `health` webhook, then
recovery; a wrong token: 404 "Channel not found"). The patient half is sandbox/simulator.py.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import queue
import random
import re
import secrets
import threading
import time
import zlib
from datetime import datetime

import requests
from flask import Blueprint, jsonify, request
from sqlalchemy import select

from clinic_bot.adapters.whapi import bodies as limits
from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import GatewayState, SandboxMessage

log = logging.getLogger(__name__)
bp = Blueprint("sandbox_gateway", __name__, url_prefix="/sandbox")

TO_PATTERN = re.compile(r"^[\d-]{9,31}(@[\w.]{1,})?$")
MESSAGE_ID_PATTERN = re.compile(
    r"^[A-Za-z0-9._]{4,30}-[A-Za-z0-9._]{4,14}(-[A-Za-z0-9._]{4,10})?(-[A-Za-z0-9._]{2,10})?$"
)
DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[^;,]*)*;base64,[A-Za-z0-9+/=\s]+$")
# The channel's state, as the sandbox plays it: "auth", "logged_out" or "wrong_token".
CHANNEL_STATES = ("auth", "logged_out", "wrong_token")
WEBHOOK_EVENT_TYPES = {
    "messages",
    "statuses",
    "chats",
    "contacts",
    "groups",
    "presences",
    "calls",
    "channel",
    "users",
    "labels",
    "service",
}
WEBHOOK_METHODS = {"post", "put", "delete", "patch"}
AUTO_DOWNLOAD = {"image", "audio", "voice", "video", "document", "sticker"}
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
    return f"{secrets.token_hex(11)}-gSandbox"


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


CALLBACK_LANES = 4  # parallel callback threads per URL; one chat always rides the same lane


def _chat_of(payload: dict) -> str:
    for key, field in (("messages", "chat_id"), ("statuses", "recipient_id")):
        items = payload.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return str(items[0].get(field, ""))
    return ""


class _Callbacks:
    """Ordered queues of webhook POSTs the sandbox owes our app: a few lanes per URL.

    Per URL, so an app that went away (a stopped test server) and is retried does not hold up
    the callbacks owed to one that is running; per chat within a URL (a chat keeps its lane),
    so one chat's echo still comes before its statuses while busy chats do not queue behind one
    thread (a soak at 140 callbacks a second outran a single one).
    """

    def __init__(self):
        self.queues: dict[tuple[str, int], queue.Queue] = {}
        self.lock = threading.Lock()
        # Bumped by `forget`: callbacks queued under an older epoch of a URL are dropped.
        self.epochs: dict[str, int] = {}

    def put(self, url: str, secret: str, payload: dict, delay: float = 0.0, on_ok=None) -> None:
        lane = (url, zlib.crc32(_chat_of(payload).encode()) % CALLBACK_LANES)
        with self.lock:
            q = self.queues.get(lane)
            if q is None:
                q = self.queues[lane] = queue.Queue()
                name = f"sandbox-cb-{len(self.queues)}"
                threading.Thread(target=self._run, args=(q,), name=name, daemon=True).start()
            epoch = self.epochs.get(url, 0)
        # A delay counts from now, not from the previous callback: a burst of sends must not
        # pile their status delays up and hold back later echoes (Whapi echoes at once).
        q.put((url, epoch, secret, payload, time.monotonic() + delay, on_ok))

    def forget(self, url: str) -> None:
        """Drop what is still owed to `url`: its app stopped, and another app may later listen
        on the same address (a test server on a reused port) and must not get them."""
        with self.lock:
            self.epochs[url] = self.epochs.get(url, 0) + 1

    def _current(self, url: str, epoch: int) -> bool:
        with self.lock:
            return self.epochs.get(url, 0) == epoch

    def _run(self, q: queue.Queue) -> None:
        http = requests.Session()  # one per thread: Session is not thread-safe
        while True:
            url, epoch, secret, payload, due, on_ok = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            for attempt in range(5):  # like Whapi, retry until acknowledged with 200
                if not self._current(url, epoch):
                    break
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


# ------------------------------------------------------------------ the channel's state


def channel_state() -> str:
    """How the sandbox plays the channel now: "auth", "logged_out" or "wrong_token"."""
    return str(_state("sandbox.channel", {"state": "auth"}).get("state", "auth"))


def _channel_refusal():
    """Whapi's answer when the channel cannot serve a call at all, or None."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return whapi_error(401, "Unauthorized", "send Authorization: Bearer <token>")
    if channel_state() == "wrong_token":
        return whapi_error(404, "Channel not found")
    return None


def health_payload(state: str) -> dict:
    """A Whapi `health` webhook (channel.post) for the channel's state."""
    code, text = (4, "AUTH") if state == "auth" else (3, "QR")
    return {
        "health": {
            "start_at": 0,
            "uptime": 1,
            "status": {"code": code, "text": text},
            "version": "sandbox",
        },
        "event": {"type": "channel", "event": "post"},
        "channel_id": CHANNEL_ID,
    }


@bp.route("/api/fault-rate", methods=["GET", "PUT"])
def fault_rate():
    """Random faults on sends: {"rate": 0.3, "kinds": ["500", "429", "reset", "stall"]}."""
    if request.method == "PUT":
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not 0 <= float(data.get("rate", -1)) <= 1:
            return jsonify(error={"code": "invalid_body", "message": "rate from 0 to 1"}), 400
        _set_state("sandbox.fault_rate", data)
    return jsonify(_state("sandbox.fault_rate", {}))


@bp.route("/api/channel", methods=["GET", "PUT"])
def channel():
    """Play the channel: {"state": "logged_out"} (401 on sends, a QR `health` webhook),
    {"state": "auth"} (recovery, an AUTH `health` webhook), {"state": "wrong_token"} (404)."""
    if request.method == "PUT":
        data = request.get_json(silent=True)
        state = data.get("state") if isinstance(data, dict) else None
        if state not in CHANNEL_STATES:
            message = f"state must be one of {', '.join(CHANNEL_STATES)}"
            return jsonify(error={"code": "invalid_body", "message": message}), 400
        before = channel_state()
        _set_state("sandbox.channel", {"state": state})
        notify = data.get("webhook", True) and state != "wrong_token" and state != before
        if notify:
            rt = get_runtime()
            url = f"{rt.settings.public_url}/webhooks/whapi"
            CALLBACKS.put(url, rt.settings.webhook_secret, health_payload(state))
    return jsonify(state=channel_state())


# ------------------------------------------------------------------ gateway: Whapi's send API


def _text_field(body: dict, key: str, required: bool = False) -> str | None:
    """Why an optional {"text": str} part (header, body, footer) is wrong, or None."""
    part = body.get(key)
    if part is None:
        return f"{key} is required" if required else None
    if not isinstance(part, dict) or not isinstance(part.get("text"), str):
        return f"{key} must be an object with a text string"
    if required and not part["text"].strip():
        return f"{key}.text must not be empty"
    return None


def _check_common(body: dict) -> str | None:
    """The fields every send schema shares: to, quoted, edit, typing_time."""
    to = body.get("to")
    if not isinstance(to, str) or not TO_PATTERN.match(to):
        return "to: not a valid chat id"
    for key in ("quoted", "edit"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, str) or not MESSAGE_ID_PATTERN.match(value)
        ):
            return f"{key}: not a message id"
    typing = body.get("typing_time")
    if typing is not None and (
        isinstance(typing, bool) or not isinstance(typing, int | float) or not 0 <= typing <= 60
    ):
        return "typing_time must be a number from 0 to 60"
    return None


def _check_interactive(body: dict) -> str | None:
    """Why Whapi would refuse this interactive body, or None."""
    action = body.get("action")
    if not isinstance(action, dict):
        return "action is required"
    for key, required in (("header", False), ("body", True), ("footer", False)):
        problem = _text_field(body, key, required)
        if problem:
            return problem
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
            if not isinstance(b.get("id"), str) or not b["id"]:
                return "every button needs an id"
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


def _check_media(body: dict) -> str | None:
    """A document's `media` must be a URL or a base64 data URI; the rest strings if given."""
    media = body.get("media")
    if not isinstance(media, str) or not media:
        return "media is required"
    if not (media.startswith(("http://", "https://")) or DATA_URI.match(media)):
        return "media must be a URL or a base64 data URI"
    for key in ("mime_type", "caption", "filename"):
        if key in body and not isinstance(body[key], str):
            return f"{key} must be a string"
    return None


def _media_size(media: str) -> int:
    if media.startswith("data:"):
        try:
            return len(base64.b64decode(media.split(",", 1)[1], validate=False))
        except (ValueError, IndexError):
            return 0
    return 0


def _random_fault() -> dict | None:
    """A fault drawn at the configured rate (attack tests): 500, 429, a reset or a stall."""
    spec = _state("sandbox.fault_rate", {})
    rate = float(spec.get("rate", 0) or 0)
    if rate <= 0 or random.random() >= rate:
        return None
    kind = random.choice(spec.get("kinds") or ["500", "429", "reset", "stall"])
    if kind == "stall":
        return {"delay": float(spec.get("stall", 12)), "deliver": random.random() < 0.5}
    if kind == "reset":
        return {"reset": True}
    return {"status": int(kind)}


def _reset_connection():
    """Drop the TCP connection without an answer, as a network reset would."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(2)
    return whapi_error(500, "connection reset")  # only seen when the socket could not be cut


def _gateway_send(kind: str):
    refused = _channel_refusal()
    if refused:
        return refused
    if channel_state() == "logged_out":
        return whapi_error(401, "Need channel authorization for send message")
    fault = _take_fault() or _random_fault()
    if fault and fault.get("reset"):
        return _reset_connection()
    if fault and fault.get("status"):
        return whapi_error(int(fault["status"]), fault.get("message", "Injected fault"))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        if fault and fault.get("delay"):
            time.sleep(float(fault["delay"]))
        return whapi_error(400, "Wrong request parameters", "the body must be a JSON object")
    problem = _check_common(body)
    if not problem and kind == "text":
        text = body.get("body")
        if not isinstance(text, str) or not text.strip() or len(text) > limits.TEXT_BODY:
            problem = "body is required"
    elif not problem and kind == "interactive":
        problem = _check_interactive(body)
    elif not problem and kind == "document":
        problem = _check_media(body)
    if problem:
        return whapi_error(400, "Wrong request parameters", problem)
    try:
        phone = normalize_phone(body["to"])
    except InvalidPhone:
        return whapi_error(400, "Wrong request parameters", "to: not a phone")
    if fault and fault.get("delay") and not fault.get("deliver"):
        # A stall whose send never went out: the caller times out, nothing was sent.
        time.sleep(float(fault["delay"]))
        return whapi_error(504, "Gateway timeout")
    rt = get_runtime()
    now = rt.clock()
    message = _sent_message(kind, body, phone, now)
    with rt.db.transaction() as s:
        s.add(
            SandboxMessage(
                message_id=message["id"],
                phone=phone,
                direction="out",
                kind=message["type"],
                payload=body,
                status="sent",
                created_at=now,
            )
        )
    _queue_echo_and_statuses(message, phone)
    if fault and fault.get("delay"):
        # Sent at once, as Whapi does, but the answer is late: the caller may give up on it.
        time.sleep(float(fault["delay"]))
    return jsonify({"sent": True, "message": message}), 200


def _sent_message(kind: str, body: dict, phone: str, now: datetime) -> dict:
    """The Message Whapi answers (and echoes) for an accepted send."""
    content = {k: v for k, v in body.items() if k not in ("to", "type")}
    if kind == "interactive":
        msg_type = "interactive"
        content = {"type": body.get("type", "button"), **content}
    else:
        msg_type = kind
    if kind == "document":
        content = {
            "id": secrets.token_hex(16),
            "mime_type": body.get("mime_type", "application/octet-stream"),
            "file_size": _media_size(body["media"]),
            "filename": body.get("filename", ""),
            "caption": body.get("caption", ""),
        }
    message = {
        "id": new_message_id(),
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
    return message


@bp.post("/gateway/messages/text")
def gateway_text():
    return _gateway_send("text")


@bp.post("/gateway/messages/interactive")
def gateway_interactive():
    return _gateway_send("interactive")


@bp.post("/gateway/messages/document")
def gateway_document():
    return _gateway_send("document")


def listed_message(m: SandboxMessage) -> dict:
    """A sent message as GET /messages/list shows it."""
    p = m.payload or {}
    item = {
        "id": m.message_id,
        "from_me": m.direction == "out",
        "type": m.kind,
        "chat_id": f"{m.phone}@s.whatsapp.net",
        "timestamp": _timestamp(m.created_at),
        "source": "api" if m.direction == "out" else "mobile",
    }
    if m.direction != "out":
        return {**p, **item}
    if m.kind == "text":
        item["text"] = {"body": p.get("body", "")}
    elif m.kind == "interactive":
        item["interactive"] = {k: v for k, v in p.items() if k != "to"}
    elif m.kind == "document":
        item["document"] = {"caption": p.get("caption", ""), "filename": p.get("filename", "")}
    return item


@bp.get("/gateway/messages/list/<chat_id>")
def gateway_list_messages(chat_id: str):
    """The chat's messages, newest first (Whapi's getMessagesByChatID)."""
    refused = _channel_refusal()
    if refused:
        return refused
    try:
        phone = normalize_phone(chat_id)
    except InvalidPhone:
        return whapi_error(400, "Wrong request parameters", "ChatID: not a chat id")
    args = request.args
    try:
        count = int(args.get("count", 100))
        offset = int(args.get("offset", 0))
        time_from = float(args["time_from"]) if "time_from" in args else None
    except ValueError:
        return whapi_error(400, "Wrong request parameters", "count, offset, time_from: numbers")
    if not 1 <= count <= 500 or offset < 0:
        return whapi_error(400, "Wrong request parameters", "count 1..500, offset >= 0")
    with get_runtime().db.ReadSession() as s:
        stmt = select(SandboxMessage).where(SandboxMessage.phone == phone)
        if args.get("from_me") == "true":
            stmt = stmt.where(SandboxMessage.direction == "out")
        rows = list(s.execute(stmt.order_by(SandboxMessage.id.desc())).scalars())
    items = [listed_message(m) for m in rows]
    if time_from is not None:
        items = [m for m in items if m["timestamp"] >= time_from]
    if args.get("sort") == "asc":
        items.reverse()
    page = items[offset : offset + count]
    return jsonify(messages=page, count=len(page), total=len(items), offset=offset)


@bp.get("/gateway/health")
def gateway_health():
    refused = _channel_refusal()
    if refused:
        return refused
    body = health_payload(channel_state())["health"]
    return jsonify({"channel_id": CHANNEL_ID, **body})


@bp.get("/gateway/settings")
def gateway_settings():
    refused = _channel_refusal()
    if refused:
        return refused
    return jsonify(_state("sandbox.whapi_settings", {"webhooks": []}))


def _number_in(body: dict, key: str, low: float, high: float) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        return f"{key} must be a number from {low:g} to {high:g}"
    return None


def _check_settings(body: dict) -> str | None:
    """Why Whapi would refuse this PATCH /settings body (updateChannelSettings), or None."""
    for key, low, high in (
        ("callback_backoff_delay_ms", 3000, 15000),
        ("max_callback_backoff_delay_ms", 600000, 3600000),
    ):
        problem = _number_in(body, key, low, high)
        if problem:
            return problem
    for key in ("callback_persist", "pdo_sync"):
        if key in body and not isinstance(body[key], bool):
            return f"{key} must be a boolean"
    media = body.get("media")
    if media is not None:
        auto = media.get("auto_download", []) if isinstance(media, dict) else None
        if not isinstance(auto, list) or any(a not in AUTO_DOWNLOAD for a in auto):
            return f"media.auto_download items must be among {', '.join(sorted(AUTO_DOWNLOAD))}"
    hooks = body.get("webhooks")
    if hooks is None:
        return None
    if not isinstance(hooks, list):
        return "webhooks must be an array"
    for i, hook in enumerate(hooks):
        where = f"webhooks[{i}]"
        if not isinstance(hook, dict) or not isinstance(hook.get("url"), str) or not hook["url"]:
            return f"{where}.url is required"
        if hook.get("mode", "body") not in ("body", "path", "method"):
            return f"{where}.mode must be body, path or method"
        headers = hook.get("headers", {})
        if not isinstance(headers, dict) or len(headers) > 5:
            return f"{where}.headers: an object of at most 5 headers"
        if any(not isinstance(v, str) for v in headers.values()):
            return f"{where}.headers values must be strings"
        problem = _number_in(hook, "webhook_max_age_seconds", 15, 172800)
        if problem:
            return f"{where}.{problem}"
        events = hook.get("events", [])
        if not isinstance(events, list):
            return f"{where}.events must be an array"
        for e in events:
            if not isinstance(e, dict) or e.get("type") not in WEBHOOK_EVENT_TYPES:
                return (
                    f"{where}.events: unknown type {e.get('type') if isinstance(e, dict) else e!r}"
                )
            if e.get("method") not in WEBHOOK_METHODS:
                return f"{where}.events: method must be post, put, delete or patch"
    return None


@bp.patch("/gateway/settings")
def gateway_patch_settings():
    refused = _channel_refusal()
    if refused:
        return refused
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return whapi_error(400, "Wrong request parameters", "the body must be a JSON object")
    problem = _check_settings(body)
    if problem:
        return whapi_error(400, "Wrong request parameters", problem)
    current = dict(_state("sandbox.whapi_settings", {"webhooks": []}))
    current.update(body)  # like Whapi: absent fields unchanged, `webhooks` replaced whole
    _set_state("sandbox.whapi_settings", current)
    return jsonify(current)


def choices(payload: dict, want: str) -> list[dict]:
    """The buttons or list rows an interactive message offered."""
    action = payload.get("action") or {}
    if want == "button":
        return [{"id": b.get("id"), "title": b.get("title")} for b in action.get("buttons") or []]
    out = []
    for sec in (action.get("list") or {}).get("sections") or []:
        out.extend(sec.get("rows") or [])
    return out


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
