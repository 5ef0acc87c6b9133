"""CSRF protection for every browser form, session cookie hardening, and a login throttle."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

csrf = CSRFProtect()

# Machine endpoints authenticate with a secret or a bearer token, never with the session cookie,
# so a forged cross-site request gains nothing there; CSRF tokens would only break their callers.
CSRF_EXEMPT_BLUEPRINTS = ("inbox", "api", "sandbox", "sandbox_gateway", "health")
# The JSON API has one blueprint per module, each named api_<module>.
CSRF_EXEMPT_PREFIXES = ("api_",)


def init_app(app: Flask) -> None:
    """Protect every cookie-authenticated form of the app with Flask-WTF's CSRF tokens."""
    # A token lives as long as the browser session: reception leaves pages open all day.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    # Checked in our own hook below, so exemptions go by blueprint name, whatever registers when.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    csrf.init_app(app)
    app.extensions["staff_login_throttle"] = LoginThrottle()

    @app.before_request
    def _csrf_protect():
        if not app.config.get("WTF_CSRF_ENABLED", True) or request.endpoint is None:
            return
        if request.blueprint in CSRF_EXEMPT_BLUEPRINTS:
            return
        if request.blueprint and request.blueprint.startswith(CSRF_EXEMPT_PREFIXES):
            return
        csrf.protect()

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return render_template("staff/csrf_error.html", reason=exc.description), 400


class LoginThrottle:
    """Counts failed logins per key (an email, a client address) in a sliding window, in memory.

    Failures only: a receptionist who logs in correctly never uses up attempts. Each key has its
    own limit (an address may be a whole clinic behind one router). The clock is passed in, so
    tests move time instead of sleeping.
    """

    def __init__(self, window: timedelta = timedelta(minutes=15)):
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def retry_after(self, limits: dict[str, int], now: datetime) -> timedelta | None:
        """How long until these keys ({key: limit}) may try again; None when they may now."""
        with self._lock:
            waits = []
            for key, limit in limits.items():
                times = self._prune(key, now)
                if len(times) >= limit:
                    waits.append(times[-limit] + self.window - now)
            return max(waits) if waits else None

    def failed(self, keys, now: datetime) -> None:
        """Record one failed attempt for every key."""
        with self._lock:
            if len(self._failures) > 10_000:  # bound memory under a spray of addresses
                self._failures.clear()
            for key in keys:
                self._prune(key, now).append(now)

    def succeeded(self, keys) -> None:
        """Forget the failures of these keys."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _prune(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
