"""The staff UI under /staff: login, the day's appointments, problems, calendar (CONTRACT §5)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("staff", __name__, url_prefix="/staff")

from . import auth, views  # noqa: E402,F401  (routes register on import)
from .security import init_app  # noqa: E402

# Registering the staff UI brings the app-wide protection its forms need (CSRF, cookies).
bp.record_once(lambda state: init_app(state.app))
