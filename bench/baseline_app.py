"""The baseline: the minimal webhook handler integration guides show, for comparison.

Parse the JSON, start a thread that POSTs a text reply with `requests`, answer 200. Nothing is
stored, so a crash or a restart loses the reply; this is what the clinic_bot inbox replaces.
"""

from __future__ import annotations

import contextlib
import os
import threading

import requests
from flask import Flask, request

GATEWAY = os.environ.get("WHAPI_API_URL", "http://127.0.0.1:9")
TOKEN = os.environ.get("WHAPI_TOKEN", "bench")
SECRET = os.environ.get("WHAPI_WEBHOOK_SECRET", "")

app = Flask(__name__)


def _reply(chat_id: str, text: str) -> None:
    """Send one text reply (the guides' `requests.post`, a new connection each time)."""
    with contextlib.suppress(requests.RequestException):  # the guides log and drop it
        requests.post(
            f"{GATEWAY}/messages/text",
            json={"to": chat_id, "body": text},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=15,
        )


@app.post("/webhooks/whapi")
def webhook():
    """Answer every inbound text from a patient with a thread that sends the reply."""
    if SECRET and request.headers.get("X-Webhook-Token") != SECRET:
        return "unauthorized", 401
    body = request.get_json(silent=True) or {}
    for msg in body.get("messages") or []:
        if msg.get("from_me") or msg.get("type") != "text":
            continue
        text = "Welcome! Reply 1 to book, 2 for your appointments, 3 for reception."
        threading.Thread(target=_reply, args=(msg["chat_id"], text), daemon=True).start()
    return "ok", 200
