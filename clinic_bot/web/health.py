"""GET /healthz: database, worker heartbeat and WhatsApp channel state."""

from __future__ import annotations

from datetime import tzinfo

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from clinic_bot.core.runtime import get_runtime
from clinic_bot.delivery.channel import channel_state
from clinic_bot.models import GatewayState
from clinic_bot.operations.health import health_extras

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 with the state of each part; 503 when the database cannot be reached."""
    runtime = get_runtime()
    try:
        with runtime.db.ReadSession() as s:
            s.execute(text("SELECT 1"))
            worker = s.get(GatewayState, "worker")
            worker_value = dict(worker.value) if worker else {"last_tick": None}
            zone = getattr(runtime.profile, "timezone", None)
            channel_value = channel_state(s, zone if isinstance(zone, tzinfo) else None)
            extras = health_extras(s, runtime.clock())
    except SQLAlchemyError as exc:
        body = {"status": "error", "db": f"unreachable: {type(exc).__name__}"}
        return jsonify(body), 503
    body = {
        "status": "ok",
        "db": "ok",
        "worker": worker_value,
        "channel": channel_value,
        "gateway": "sandbox" if runtime.settings.sandbox else "whapi",
        **extras,  # backlog and dead-letter counts
    }
    if not channel_value["connected"]:
        # "WhatsApp disconnected since 08:12, 14 messages waiting", and what to do about it.
        body["status"] = "degraded"
        body["attention"] = f"{channel_value['message']}: {channel_value['hint']}"
    return jsonify(body), 200
