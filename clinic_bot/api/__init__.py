"""The JSON API under /api/v1, authenticated by bearer tokens (CONTRACT §5)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import appointments, auth, broadcasts, calendar, openapi, patients  # noqa: E402,F401  (routes register on import)
