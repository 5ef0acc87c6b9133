"""The JSON API under /api/v1, authenticated by bearer tokens (CONTRACT §5)."""

from __future__ import annotations

from flask import Flask

from clinic_bot.web.api import admin, appointments, broadcasts, calendar, patients
from clinic_bot.web.api.base import make_api

# The blueprints that make up the API, in the order the OpenAPI document lists them.
BLUEPRINTS = (appointments.blp, patients.blp, broadcasts.blp, calendar.blp, admin.blp)


def register(app: Flask) -> None:
    """Mount every API blueprint and its part of the OpenAPI document (/api/v1/openapi.json)."""
    api = make_api(app)
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
