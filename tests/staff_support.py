"""Helpers for the staff UI tests: users, logging in over real HTTP, posting forms with CSRF."""

from __future__ import annotations

import re

import requests
from werkzeug.security import generate_password_hash

from clinic_bot.models import StaffUser

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_user(runtime, email: str, role: str = "reception", **extra) -> str:
    """A staff login with PASSWORD; returns the email."""
    with runtime.db.transaction() as s:
        s.add(
            StaffUser(
                email=email,
                password_hash=generate_password_hash(extra.pop("password", PASSWORD)),
                role=role,
                created_at=runtime.clock(),
                **extra,
            )
        )
    return email


def csrf(http: requests.Session, url: str) -> str:
    """The CSRF token of the form on the page at `url`."""
    page = http.get(url)
    match = CSRF_FIELD.search(page.text)
    assert match, f"no csrf_token on {url} ({page.status_code})"
    return match.group(1)


def log_in(base: str, email: str, password: str = PASSWORD, http=None, headers=None):
    """Post the login form as a browser would; returns (session, response)."""
    http = http or requests.Session()
    token = csrf(http, f"{base}/staff/login")
    r = http.post(
        f"{base}/staff/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers=headers or {},
        allow_redirects=False,
    )
    return http, r


def post(http: requests.Session, base: str, path: str, data: dict | None = None, **kw):
    """Post a staff form with the session's CSRF token (taken from the day page's logout form)."""
    token = csrf(http, f"{base}/staff/")
    return http.post(f"{base}{path}", data={**(data or {}), "csrf_token": token}, **kw)


class Phone:
    """The sandbox patient's phone: act, wait until handled and sent, read what arrived."""

    def __init__(self, live, phone: str):
        self.live, self.phone, self.seen = live, phone, 0

    def act(self, **action) -> list[dict]:
        from sqlalchemy import func, select

        from clinic_bot.models import InboxEvent, OutboxMessage

        sent = self.live.patient(self.phone, **action)

        def handled():
            with self.live.runtime.db.Session() as s:
                status = s.execute(
                    select(InboxEvent.status).where(
                        InboxEvent.dedupe_key == f"msg:{sent['message_id']}"
                    )
                ).scalar()
                unsent = s.execute(
                    select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
                ).scalar()
            return status in ("done", "ignored", "dead") and not unsent

        self.live.wait_for(handled)
        return self.arrived()

    def arrived(self) -> list[dict]:
        out = [m for m in self.live.outgoing(self.phone) if m["id"] > self.seen]
        if out:
            self.seen = out[-1]["id"]
        return out

    def say(self, text: str) -> list[dict]:
        return self.act(text=text)

    def tap(self, title: str) -> list[dict]:
        """Tap the button (or list row) titled `title` on the newest interactive message."""
        for m in reversed(self.live.outgoing(self.phone)):
            options = m.get("buttons") or [
                r for sec in (m.get("list") or {}).get("sections", []) for r in sec["rows"]
            ]
            match = next((o for o in options if o["title"] == title), None)
            if match:
                kind = "list" if m.get("list") else "button"
                return self.act(**{kind: {"id": match["id"], "message_id": m["message_id"]}})
        raise AssertionError(f"no {title!r} to tap")
