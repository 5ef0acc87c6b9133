"""clinic_bot: a WhatsApp appointment assistant for one clinic, through Whapi.Cloud."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from clinic_bot.bootstrap import build_runtime
from clinic_bot.core.runtime import EXTENSION_KEY, Runtime
from clinic_bot.intake import webhook
from clinic_bot.operations.logging import configure_logging, install_request_ids, log_format
from clinic_bot.sandbox import gateway as sandbox_gateway
from clinic_bot.sandbox import simulator as sandbox_simulator
from clinic_bot.settings import Settings
from clinic_bot.web import api, feeds, health, metrics, staff

MAX_WEBHOOK_BYTES = 1024 * 1024


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> Flask:
    """Build the web app: webhook intake, health, JSON API, staff UI and (unset token) sandbox."""
    if not logging.getLogger().handlers:  # gunicorn's workers: our handler, our format
        configure_logging(log_format())
    if runtime is None:
        runtime = build_runtime(settings or Settings.from_env())
    app = Flask(__name__, instance_path=str(runtime.settings.instance_path))
    app.config.update(
        SECRET_KEY=runtime.settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_WEBHOOK_BYTES,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # A real Whapi channel needs a public HTTPS URL, so staff logins then travel over HTTPS
        # only; the sandbox on a laptop is plain http://127.0.0.1.
        SESSION_COOKIE_SECURE=not runtime.settings.sandbox
        or runtime.settings.public_url.startswith("https://"),
    )
    hops = runtime.settings.trust_proxy_hops
    if hops > 0:
        # Only behind a configured proxy (Heroku's router: one hop) are X-Forwarded-For / -Proto
        # believed; otherwise any client could pick the address the login throttle counts.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.extensions[EXTENSION_KEY] = runtime
    register_blueprints(app, runtime)
    register_errorhandlers(app)
    install_request_ids(app)
    return app


def register_blueprints(app: Flask, runtime: Runtime) -> None:
    """Mount every HTTP surface; the sandbox only when no real Whapi token is set."""
    app.register_blueprint(webhook.bp)
    app.register_blueprint(health.bp)
    api.register(app)
    staff.register(app)
    app.register_blueprint(feeds.bp)
    metrics.register(app)
    if runtime.settings.sandbox:
        app.register_blueprint(sandbox_gateway.bp)
        app.register_blueprint(sandbox_simulator.bp)


def _wants_json() -> bool:
    path = request.path
    return path.startswith(("/api/", "/webhooks/", "/sandbox/gateway", "/sandbox/api", "/healthz"))


def register_errorhandlers(app: Flask) -> None:
    """JSON errors for machine endpoints, in the CONTRACT's {"error": {code, message}} shape."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not _wants_json():
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error on %s", request.path)
        body = {"error": {"code": "internal_error", "message": "unexpected error; it is logged"}}
        return jsonify(body), 500
