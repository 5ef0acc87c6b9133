"""Operations (admin only): dead letters (Retry/Dismiss), staff users, API tokens, feed, profile."""

from __future__ import annotations

import secrets

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from clinic_bot.core.runtime import get_runtime
from clinic_bot.models import ApiToken, StaffUser
from clinic_bot.operations import dead_letters
from clinic_bot.web.api.auth import TOKEN_ROLES, create_token
from clinic_bot.web.feeds import active_feeds
from clinic_bot.web.staff import audit
from clinic_bot.web.staff.auth import admin_required, end_sessions
from clinic_bot.web.staff.blueprint import bp

ROLES = ("reception", "admin")


def _back():
    target = request.form.get("back", "")
    if target.startswith("/staff") and not target.startswith("//"):
        return redirect(target)  # only back inside the staff UI, never to another site
    return redirect(url_for("staff.problems"))


@bp.post("/problems/events/<int:event_id>/<action>")
@admin_required
def dead_event(event_id: int, action: str):
    """Retry (back to the worker) or Dismiss (keep it, marked handled) a dead webhook event."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        ev = dead_letters.settle_event(s, event_id, action, now=rt.clock(), by=g.staff.email)
        if ev is None:
            flash("That event is not a dead letter any more.", "error")
            return _back()
        audit.record(s, f"dead_letter_{action}", f"inbox_event:{event_id}")
    rt.waker.wake()
    flash("Sent back to the worker." if action == "retry" else "Dismissed.")
    return _back()


@bp.post("/problems/messages/<int:message_id>/<action>")
@admin_required
def dead_message(message_id: int, action: str):
    """Retry (send again) or Dismiss (withdraw) a message that could not be sent."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        m = dead_letters.settle_message(s, message_id, action, now=rt.clock(), by=g.staff.email)
        if m is None:
            flash("That message is not a dead letter any more.", "error")
            return _back()
        audit.record(s, f"dead_letter_{action}", f"outbox_message:{message_id}")
    rt.waker.wake()
    flash("Queued to send again." if action == "retry" else "Dismissed.")
    return _back()


@bp.get("/admin")
@admin_required
def admin():
    """Staff users, API tokens, the calendar feed, and the clinic profile as loaded."""
    rt = get_runtime()
    with rt.db.ReadSession() as s:
        users = list(s.execute(select(StaffUser).order_by(StaffUser.email)).scalars())
        users = [
            {
                "id": u.id,
                "email": u.email,
                "role": u.role,
                "first_name": u.first_name or "",
                "disabled": u.disabled_at is not None,
            }
            for u in users
        ]
        tokens = [
            {
                "id": t.id,
                "name": t.name,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "role": t.role,
            }
            for t in s.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
        ]
        names = {p.id: p.name for p in rt.profile.practitioners}
        feeds = [
            {
                "id": f.id,
                "scope": names.get(f.practitioner_id, f.practitioner_id)
                if f.practitioner_id
                else "Whole clinic",
                "created_at": f.created_at,
                "created_by": f.created_by or "",
            }
            for f in active_feeds(s)
        ]
    feed = f"{rt.settings.public_url}/calendar/{rt.settings.calendar_feed_token}.ics"
    return render_template(
        "staff/admin.html",
        users=users,
        tokens=tokens,
        feed=feed,
        feeds=feeds,
        roles=ROLES,
        token_roles=TOKEN_ROLES,
        profile=rt.profile,
    )


def _shown_once(title: str, secret: str):
    return render_template("staff/shown_once.html", title=title, secret=secret)


@bp.post("/admin/users")
@admin_required
def add_user():
    """Add a staff login with a generated password (shown once, to be changed at first login)."""
    rt = get_runtime()
    email = request.form.get("email", "").strip().lower()[:200]
    role = request.form.get("role", "")
    first = request.form.get("first_name", "").strip()[:100]
    if "@" not in email or role not in ROLES:
        flash("Give an email address and a role.", "error")
        return redirect(url_for("staff.admin"))
    password = secrets.token_urlsafe(12)
    with rt.db.transaction() as s:
        if s.execute(select(StaffUser.id).where(func.lower(StaffUser.email) == email)).first():
            flash(f"{email} already has a login.", "error")
            return redirect(url_for("staff.admin"))
        s.add(
            StaffUser(
                email=email,
                role=role,
                first_name=first or None,
                password_hash=generate_password_hash(password),
                must_change_password=True,
                created_at=rt.clock(),
            )
        )
        audit.record(s, "staff_added", email, role=role)
    return _shown_once(f"Password for {email}", password)


@bp.post("/admin/users/<int:user_id>/<action>")
@admin_required
def user_action(user_id: int, action: str):
    """Disable, enable, reset the password of, or change the role of a staff login."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        u = s.get(StaffUser, user_id)
        if u is None or action not in ("disable", "enable", "reset", "role"):
            flash("No such user or action.", "error")
            return redirect(url_for("staff.admin"))
        if u.id == g.staff.id and action in ("disable", "role"):
            flash("You cannot disable yourself or change your own role.", "error")
            return redirect(url_for("staff.admin"))
        secret = None
        if action == "disable":
            u.disabled_at = rt.clock()
            end_sessions(s, u.id)
        elif action == "enable":
            u.disabled_at = None
        elif action == "reset":
            secret = secrets.token_urlsafe(12)
            u.password_hash = generate_password_hash(secret)
            u.must_change_password = True
            end_sessions(s, u.id)
        else:
            role = request.form.get("role", "")
            if role not in ROLES:
                flash("Unknown role.", "error")
                return redirect(url_for("staff.admin"))
            u.role = role
            end_sessions(s, u.id)
        audit.record(s, f"staff_{action}", u.email, role=u.role)
        email = u.email
    if secret:
        return _shown_once(f"New password for {email}", secret)
    flash("Done.")
    return redirect(url_for("staff.admin"))


@bp.post("/admin/tokens")
@admin_required
def add_token():
    """Create an API token with a role (admin or reception); shown once."""
    rt = get_runtime()
    name = request.form.get("name", "").strip()[:100]
    role = request.form.get("role", "admin")
    if not name or role not in TOKEN_ROLES:
        flash("Name the token (who or what uses it) and give it a role.", "error")
        return redirect(url_for("staff.admin"))
    with rt.db.transaction() as s:
        token = create_token(s, name, rt.clock(), role=role)
        audit.record(s, "api_token_created", name, role=role)
    return _shown_once(f"API token {name} ({role})", token)


@bp.post("/admin/tokens/<int:token_id>/revoke")
@admin_required
def revoke_token(token_id: int):
    """Revoke an API token: its callers are refused from now on."""
    rt = get_runtime()
    with rt.db.transaction() as s:
        t = s.get(ApiToken, token_id)
        if t is not None:
            audit.record(s, "api_token_revoked", t.name)
            s.delete(t)
    flash("Revoked.")
    return redirect(url_for("staff.admin"))
