"""The staff UI under /staff: login, the day's appointments, problems, calendar (CONTRACT §5)."""

from __future__ import annotations

from flask import Flask

from clinic_bot.web.staff import (
    actions,
    auth,
    broadcasts,
    calendar,
    inbox,
    insights,
    operations,
    patients,
    security,
    views,
)
from clinic_bot.web.staff.blueprint import bp

# The modules whose pages make up the staff UI.
PAGE_MODULES = (auth, views, actions, inbox, patients, broadcasts, operations, insights, calendar)


def register(app: Flask) -> None:
    """Mount the staff UI with the app-wide protection its forms need (CSRF, cookies)."""
    security.init_app(app)
    app.register_blueprint(bp)
