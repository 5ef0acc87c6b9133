"""The /staff blueprint the staff UI modules add their pages to."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("staff", __name__, url_prefix="/staff")
