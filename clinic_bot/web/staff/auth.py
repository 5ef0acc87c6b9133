"""Staff login, logout and password changes, on server-side sessions; roles enforced here.

The signed cookie holds only a random session id; the `staff_session` row it names is the
session. Logout deletes the row (a replayed cookie is refused), so do a password change and
disabling the user (every row of that user), and an idle session expires.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import abort, g, redirect, render_template, request, session, url_for
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import StaffSession, StaffUser
from clinic_bot.web.staff import audit
from clinic_bot.web.staff import security as sec
from clinic_bot.web.staff.blueprint import bp

SESSION_KEY = "staff_sid"
PUBLIC_ENDPOINTS = {"staff.login"}
# Pages a user who must change the password may still open.
PASSWORD_ENDPOINTS = {"staff.password", "staff.logout"}
MIN_PASSWORD = 10
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
# Checked when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")


@dataclass(frozen=True)
class StaffIdentity:
    """Who is logged in, detached from any database session."""

    id: int
    email: str
    role: str
    first_name: str
    must_change_password: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def display_name(self) -> str:
        return self.first_name or self.email.split("@")[0].capitalize()


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _identity(user: StaffUser) -> StaffIdentity:
    return StaffIdentity(
        user.id, user.email, user.role, user.first_name or "", bool(user.must_change_password)
    )


def idle_limit() -> timedelta:
    """How long an unused session lives (STAFF_SESSION_IDLE_HOURS)."""
    return timedelta(hours=get_runtime().settings.staff_session_idle_hours)


def current_staff() -> StaffIdentity | None:
    """The logged-in staff member for this request (a live session row), or None."""
    sid = session.get(SESSION_KEY)
    if not isinstance(sid, str):
        return None
    rt = get_runtime()
    now = rt.clock()
    key = _hash(sid)
    with rt.db.ReadSession() as s:
        row = s.get(StaffSession, key)
        user = s.get(StaffUser, row.staff_user_id) if row is not None else None
        if row is None or user is None or user.disabled_at is not None:
            return None
        last_seen = row.last_seen_at
        who = _identity(user)
    if now - last_seen > idle_limit():
        with rt.db.transaction() as s:
            s.execute(delete(StaffSession).where(StaffSession.id_hash == key))
        return None
    if now - last_seen > TOUCH_EVERY:
        with rt.db.transaction() as s:
            row = s.get(StaffSession, key)
            if row is not None:
                row.last_seen_at = now
    return who


def end_sessions(s, user_id: int) -> None:
    """End every session of a user (password changed, user disabled)."""
    s.execute(delete(StaffSession).where(StaffSession.staff_user_id == user_id))


def _safe_next(target: str | None) -> str:
    """Only a path inside the staff UI: never an open redirect to another site."""
    if target and target.startswith("/staff") and not target.startswith("//"):
        return target
    return url_for("staff.day")


@bp.before_request
def require_login():
    """Every staff page but the login form needs a logged-in staff member."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    g.staff = current_staff()
    if g.staff is None:
        session.pop(SESSION_KEY, None)
        if request.headers.get("HX-Request"):
            return "", 401, {"HX-Redirect": url_for("staff.login")}
        return redirect(url_for("staff.login", next=request.full_path.rstrip("?")))
    if g.staff.must_change_password and request.endpoint not in PASSWORD_ENDPOINTS:
        return redirect(url_for("staff.password"))
    return None


@bp.after_request
def _headers(response):
    """Security headers on every staff page (see security.add_headers)."""
    https = get_runtime().settings.public_url.startswith("https://")
    return sec.add_headers(response, https=https)


def admin_required(view):
    """Admins only: a reception login gets 403 (the role is checked, not just the link hidden)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        staff = getattr(g, "staff", None)
        if staff is None or not staff.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _find_user(s, email: str) -> StaffUser | None:
    return s.execute(
        select(StaffUser).where(func.lower(StaffUser.email) == email.lower())
    ).scalar_one_or_none()


def _refuse(next_url: str, email: str, error: str, status: int, headers=None):
    page = render_template("staff/login.html", next_url=next_url, email=email, error=error)
    return page, status, headers or {}


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a right email and password start a staff session."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(next_url)
        return render_template("staff/login.html", next_url=next_url, email="")
    email = request.form.get("email", "").strip()[:200]
    password = request.form.get("password", "")
    rt = get_runtime()
    now = rt.clock()
    attempt = sec.Attempt(email.lower(), audit.client_address())
    with rt.db.transaction() as s:
        user = _find_user(s, email) if email else None
        trusted = sec.known_good(s, user.id if user else None, attempt.address, now)
        wait = sec.retry_after(s, attempt, now, trusted=trusted)
        if wait is not None:
            seconds = max(1, math.ceil(wait.total_seconds()))
            error = f"Too many failed attempts. Try again in {math.ceil(seconds / 60)} minute(s)."
            return _refuse(next_url, email, error, 429, {"Retry-After": str(seconds)})
        if user is None or not password:
            check_password_hash(_DUMMY_HASH, password)
            ok = False
        else:
            ok = check_password_hash(user.password_hash, password) and user.disabled_at is None
        if not ok:
            sec.record_failure(s, attempt, now)
            audit.record(s, "login_failed", email=email.lower())
            failed = True
        else:
            failed = False
            sec.record_success(s, attempt)
            sid = secrets.token_urlsafe(32)
            s.add(
                StaffSession(
                    id_hash=_hash(sid),
                    staff_user_id=user.id,
                    created_at=now,
                    last_seen_at=now,
                    address=attempt.address,
                )
            )
            audit.record(s, "login", staff=_identity(user))
    if failed:
        return _refuse(next_url, email, "Wrong email or password.", 401)
    session.clear()  # a fresh session on login: no fixation of a session set before it
    session[SESSION_KEY] = sid
    session.permanent = False
    return redirect(next_url)


@bp.post("/logout")
def logout():
    """End the staff session on the server too: the cookie is worthless afterwards."""
    sid = session.get(SESSION_KEY)
    if isinstance(sid, str):
        with get_runtime().db.transaction() as s:
            s.execute(delete(StaffSession).where(StaffSession.id_hash == _hash(sid)))
            audit.record(s, "logout")
    session.clear()
    return redirect(url_for("staff.login"))


@bp.route("/password", methods=["GET", "POST"])
def password():
    """Change one's own password; every other session of the user ends."""
    error = None
    if request.method == "POST":
        current = request.form.get("current_password", "")
        new = request.form.get("new_password", "")
        repeat = request.form.get("repeat_password", "")
        rt = get_runtime()
        with rt.db.transaction() as s:
            user = s.get(StaffUser, g.staff.id)
            if not check_password_hash(user.password_hash, current):
                error = "The current password is wrong."
            elif len(new) < MIN_PASSWORD:
                error = f"The new password needs at least {MIN_PASSWORD} characters."
            elif new != repeat:
                error = "The two new passwords differ."
            elif new == current:
                error = "Choose a password different from the current one."
            else:
                user.password_hash = generate_password_hash(new)
                user.must_change_password = False
                end_sessions(s, user.id)
                sid = secrets.token_urlsafe(32)
                s.add(
                    StaffSession(
                        id_hash=_hash(sid),
                        staff_user_id=user.id,
                        created_at=rt.clock(),
                        last_seen_at=rt.clock(),
                        address=audit.client_address(),
                    )
                )
                audit.record(s, "password_changed", user.email)
        if error is None:
            session.clear()
            session[SESSION_KEY] = sid
            return redirect(url_for("staff.day"))
    return render_template("staff/password.html", error=error), (400 if error else 200)
