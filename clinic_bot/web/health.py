"""GET /healthz: database, worker heartbeat and WhatsApp channel state."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import GatewayState

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 with the state of each part; 503 when the database cannot be reached."""
    runtime = get_runtime()
    try:
        with runtime.db.ReadSession() as s:
            s.execute(text("SELECT 1"))
            worker = s.get(GatewayState, "worker")
            channel = s.get(GatewayState, "channel")
            worker_value = dict(worker.value) if worker else {"last_tick": None}
            channel_value = dict(channel.value) if channel else {"status": "unknown"}
    except SQLAlchemyError as exc:
        body = {"status": "error", "db": f"unreachable: {type(exc).__name__}"}
        return jsonify(body), 503
    body = {
        "status": "ok",
        "db": "ok",
        "worker": worker_value,
        "channel": channel_value,
        "gateway": "sandbox" if runtime.settings.sandbox else "whapi",
    }
    if channel_value.get("status") in ("LOGGED_OUT", "QR", "ERROR", "STOP"):
        body["status"] = "degraded"
        body["attention"] = "the clinic's WhatsApp phone is logged out: scan the QR code in Whapi"
    return jsonify(body), 200
