"""GET /metrics: Prometheus text format behind a bearer token (METRICS_TOKEN, CONTRACT §2/§5).

Unset token: 404, as if there were no such page. Under gunicorn the per-process counters
(webhook requests) live in PROMETHEUS_MULTIPROC_DIR, which gunicorn.conf.py sets up; the
queue and event figures are read from the database, which every process shares.
"""

from __future__ import annotations

import hmac
import logging
import os

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from clinic_bot.core.runtime import get_runtime
from clinic_bot.operations.metrics import DatabaseCollector

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

WEBHOOK_REQUESTS = Counter(
    "clinic_bot_webhook_requests",
    "Webhook POSTs answered by this web server, by HTTP status",
    ["status"],
)


def register(app) -> None:
    """Mount /metrics and count webhook answers; the token is read from the environment."""
    app.config.setdefault("METRICS_TOKEN", os.environ.get("METRICS_TOKEN") or None)
    app.register_blueprint(bp)

    @app.after_request
    def _count_webhooks(response):
        if request.path.startswith("/webhooks/whapi") and request.method == "POST":
            try:
                WEBHOOK_REQUESTS.labels(status=str(response.status_code)).inc()
            except OSError:  # a missing PROMETHEUS_MULTIPROC_DIR must never fail a webhook
                log.warning("could not count a webhook answer: no metrics folder")
        return response


def _process_metrics() -> bytes:
    """This server's own counters: all gunicorn workers' when multi-process mode is on."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.path.isdir(folder):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(PROCESS_REGISTRY)


@bp.get("/metrics")
def metrics():
    """The metrics, for a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response(
            "a bearer token is required\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
        )
    shared = CollectorRegistry(auto_describe=False)
    shared.register(DatabaseCollector(get_runtime()))
    body = _process_metrics() + generate_latest(shared)
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST})
