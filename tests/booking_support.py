"""Helpers shared by the booking tests: profiles built from the shipped example, patients."""

from __future__ import annotations

import copy
import tomllib
from datetime import datetime

from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.domain.profile import Profile, parse_profile
from clinic_bot.settings import EXAMPLE_PROFILE

with EXAMPLE_PROFILE.open("rb") as _fh:
    EXAMPLE = tomllib.load(_fh)


def make_profile(
    *,
    clinic: dict | None = None,
    booking: dict | None = None,
    services: list[dict] | None = None,
    practitioners: list[dict] | None = None,
    closures: list | None = None,
) -> Profile:
    """The example profile with some tables replaced or merged."""
    data = copy.deepcopy(EXAMPLE)
    data["clinic"].update(clinic or {})
    data["booking"].update(booking or {})
    if services is not None:
        data["services"] = services
    if practitioners is not None:
        data["practitioners"] = practitioners
    if closures is not None:
        data["booking"]["closures"] = closures
    return parse_profile(data)


def patient(session, phone: str, now: datetime, name: str | None = None):
    """A stored patient (created on first use, as the webhook handler does)."""
    p = get_or_create_patient(session, phone, now)
    if name:
        p.name = name
    session.flush()
    return p
