"""CSRF for every browser form, cookie hardening, security headers and the login throttle.

The throttle lives in the database (table `login_failure`), so every gunicorn process sees the
same counts and a restart forgets nothing. Three keys per attempt:

- account + address: few tries (a typo-prone receptionist, or a guesser on one address);
- account alone: more tries, then a short cool-down after each further failure, so spraying
  from many addresses cannot reset it; an address this account logged in from before (a
  known-good device) is not held back by it;
- address alone: many tries (a whole clinic may share one router).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from clinic_bot.models import AuditEntry, LoginFailure

csrf = CSRFProtect()

# Machine endpoints authenticate with a secret or a bearer token, never with the session cookie,
# so a forged cross-site request gains nothing there; CSRF tokens would only break their callers.
CSRF_EXEMPT_BLUEPRINTS = ("inbox", "api", "sandbox", "sandbox_gateway", "health")
# The JSON API has one blueprint per module, each named api_<module>.
CSRF_EXEMPT_PREFIXES = ("api_",)

WINDOW = timedelta(minutes=15)
PAIR_LIMIT = 5  # failures per account and address in the window
ACCOUNT_LIMIT = 20  # failures per account, from anywhere, before the cool-down applies
ACCOUNT_COOLDOWN = timedelta(minutes=1)  # wait after each further failure on the account
ADDRESS_LIMIT = 100  # failures per address, whatever the account
KNOWN_GOOD_DAYS = 90

# No inline script or style anywhere in the staff UI: everything comes from /static.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)


def init_app(app: Flask) -> None:
    """Protect every cookie-authenticated form of the app with Flask-WTF's CSRF tokens."""
    # A token lives as long as the browser session: reception leaves pages open all day.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    # Checked in our own hook below, so exemptions go by blueprint name, whatever registers when.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    csrf.init_app(app)

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


def add_headers(response, *, https: bool):
    """The staff UI's security headers; patient data is never kept in a browser cache."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    h["Cache-Control"] = "no-store"
    h["Pragma"] = "no-cache"
    if https:
        h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


@dataclass(frozen=True)
class Attempt:
    """Who tries to log in as whom, from where."""

    email: str
    address: str

    @property
    def pair(self) -> str:
        return f"pair:{self.email}|{self.address}"[:300]

    @property
    def account(self) -> str:
        return f"acct:{self.email}"[:300]

    @property
    def addr(self) -> str:
        return f"addr:{self.address}"[:300]


def _failures(session: Session, key: str, since: datetime) -> tuple[int, datetime | None]:
    n, last = session.execute(
        select(func.count(), func.max(LoginFailure.at)).where(
            LoginFailure.key == key, LoginFailure.at > since
        )
    ).one()
    return n, last


def _nth_latest(session: Session, key: str, since: datetime, n: int) -> datetime:
    rows = session.execute(
        select(LoginFailure.at)
        .where(LoginFailure.key == key, LoginFailure.at > since)
        .order_by(LoginFailure.at.desc())
        .limit(n)
    ).scalars()
    return list(rows)[-1]


def known_good(session: Session, user_id: int | None, address: str, now: datetime) -> bool:
    """True when this account logged in successfully from this address recently."""
    if user_id is None:
        return False
    return (
        session.execute(
            select(AuditEntry.id)
            .where(
                AuditEntry.staff_user_id == user_id,
                AuditEntry.action == "login",
                AuditEntry.address == address,
                AuditEntry.at > now - timedelta(days=KNOWN_GOOD_DAYS),
            )
            .limit(1)
        ).first()
        is not None
    )


def retry_after(
    session: Session, attempt: Attempt, now: datetime, *, trusted: bool
) -> timedelta | None:
    """How long this attempt must wait before a password is even checked; None: go ahead."""
    since = now - WINDOW
    waits = []
    n, _ = _failures(session, attempt.pair, since)
    if n >= PAIR_LIMIT:
        waits.append(_nth_latest(session, attempt.pair, since, PAIR_LIMIT) + WINDOW - now)
    n, _ = _failures(session, attempt.addr, since)
    if n >= ADDRESS_LIMIT:
        waits.append(_nth_latest(session, attempt.addr, since, ADDRESS_LIMIT) + WINDOW - now)
    if not trusted:
        n, last = _failures(session, attempt.account, since)
        if n >= ACCOUNT_LIMIT and last is not None and last + ACCOUNT_COOLDOWN > now:
            waits.append(last + ACCOUNT_COOLDOWN - now)
    waits = [w for w in waits if w > timedelta(0)]
    return max(waits) if waits else None


def record_failure(session: Session, attempt: Attempt, now: datetime) -> None:
    """Count one failed password check under all three keys; forget what left the window."""
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
    session.add_all(
        LoginFailure(key=k, at=now) for k in (attempt.pair, attempt.account, attempt.addr)
    )


def record_success(session: Session, attempt: Attempt) -> None:
    """A right password clears this account+address count only: the account's count stays."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == attempt.pair))
