"""clinic_bot: a WhatsApp appointment assistant for one clinic, through Whapi.Cloud."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings
from .runtime import Runtime

MAX_WEBHOOK_BYTES = 1024 * 1024


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> Flask:
    """Build the web app: webhook intake, health, JSON API, staff UI and (unset token) sandbox."""
    if runtime is None:
        runtime = Runtime.build(settings or Settings.from_env())
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
    if not runtime.settings.sandbox:
        # Heroku's router terminates TLS and says so in X-Forwarded-Proto / -For (one hop).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    app.extensions["clinic_bot"] = runtime
    register_blueprints(app, runtime)
    register_errorhandlers(app)
    configure_logging()
    return app


def register_blueprints(app: Flask, runtime: Runtime) -> None:
    from .api import bp as api_bp
    from .calendar.feed import bp as calendar_feed_bp
    from .health import bp as health_bp
    from .inbox import bp as inbox_bp
    from .staff import bp as staff_bp

    app.register_blueprint(inbox_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(calendar_feed_bp)
    if runtime.settings.sandbox:
        from .whapi.sandbox import bp as sandbox_bp

        app.register_blueprint(sandbox_bp)


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


def configure_logging() -> None:
    """Plain, timestamped log lines on stderr (Heroku collects them)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
