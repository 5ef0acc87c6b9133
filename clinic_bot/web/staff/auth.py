"""Staff login and logout: a session cookie after a password check against StaffUser."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import StaffUser
from clinic_bot.web.staff.blueprint import bp

SESSION_KEY = "staff_user_id"
EMAIL_LIMIT = 5  # failed logins per email per window
CLIENT_LIMIT = 20  # per client address: many staff may share one address
PUBLIC_ENDPOINTS = {"staff.login"}
# Checked when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")


@dataclass(frozen=True)
class StaffIdentity:
    """Who is logged in, detached from any database session."""

    id: int
    email: str
    role: str


def current_staff() -> StaffIdentity | None:
    """The logged-in staff member for this request, or None."""
    user_id = session.get(SESSION_KEY)
    if not isinstance(user_id, int):
        return None
    with get_runtime().db.ReadSession() as s:
        user = s.get(StaffUser, user_id)
        return StaffIdentity(user.id, user.email, user.role) if user else None


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
        return redirect(url_for("staff.login", next=request.full_path.rstrip("?")))
    return None


def _check(email: str, password: str) -> StaffIdentity | None:
    with get_runtime().db.ReadSession() as s:
        user = s.execute(
            select(StaffUser).where(func.lower(StaffUser.email) == email.lower())
        ).scalar_one_or_none()
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        if not check_password_hash(user.password_hash, password):
            return None
        return StaffIdentity(user.id, user.email, user.role)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a right email and password start a staff session."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(next_url)
        return render_template("staff/login.html", next_url=next_url, email="")
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    limits = {f"email:{email.lower()}": EMAIL_LIMIT, f"client:{request.remote_addr}": CLIENT_LIMIT}
    throttle = current_app.extensions["staff_login_throttle"]
    now = get_runtime().clock()
    wait = throttle.retry_after(limits, now)
    if wait is not None:
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        error = f"Too many failed attempts. Try again in {minutes} minute(s)."
        page = render_template("staff/login.html", next_url=next_url, email=email, error=error)
        return page, 429, {"Retry-After": str(max(1, math.ceil(wait.total_seconds())))}
    user = _check(email, password) if email and password else None
    if user is None:
        throttle.failed(limits, now)
        error = "Wrong email or password."
        page = render_template("staff/login.html", next_url=next_url, email=email, error=error)
        return page, 401
    throttle.succeeded([f"email:{email.lower()}"])
    session.clear()  # a fresh session on login: no fixation of a session set before it
    session[SESSION_KEY] = user.id
    return redirect(next_url)


@bp.post("/logout")
def logout():
    """End the staff session."""
    session.clear()
    return redirect(url_for("staff.login"))
