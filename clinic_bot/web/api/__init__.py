"""The JSON API under /api/v1, authenticated by bearer tokens (CONTRACT §5)."""

from __future__ import annotations

from flask import Flask

from clinic_bot.web.api import appointments, auth, broadcasts, calendar, openapi, patients
from clinic_bot.web.api.blueprint import bp

# The modules whose routes make up the API, in the order the OpenAPI document lists them.
ROUTE_MODULES = (auth, appointments, patients, broadcasts, calendar, openapi)


def register(app: Flask) -> None:
    """Mount the API (every module in ROUTE_MODULES) on the app."""
    app.register_blueprint(bp)
