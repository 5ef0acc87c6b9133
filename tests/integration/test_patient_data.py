"""Data-subject requests from the command line: export shows the patient's data; erase is
refused while an appointment is ahead, and with --force leaves no trace of them in any table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from clinic_bot.core.db import Base
from clinic_bot.models import Appointment, AuditEntry, Patient
from clinic_bot.models.conversation import StaffAlert, WaitlistEntry, WaitlistOffer
from clinic_bot.web.api.auth import create_token
from tests.conftest import WEBHOOK_SECRET

PHONE, OTHER = "4915112345678", "4915187654321"
NAME = "Ana Quixotic"
WORDS = "please note my private allergy to penicillin"


def cli(live, *args: str) -> subprocess.CompletedProcess:
    s = live.runtime.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
    env.update(
        DATABASE_URL=s.database_url,
        CLINIC_BOT_INSTANCE=str(s.instance_path),
        CLINIC_CONFIG=str(s.clinic_config),
        SECRET_KEY="test-secret-key",
        WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    script = Path(sys.executable).with_name("clinic-bot")
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)


def everything(runtime) -> str:
    """Every value of every row of every table, as one string."""
    parts = []
    with runtime.db.Session() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                parts.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(parts)


@pytest.fixture
def chatted(live):
    """Two patients who wrote; the first also has an appointment booked over the API."""
    live.patient(PHONE, text=WORDS, name=NAME)
    live.patient(OTHER, text="hello from the other patient", name="Bo Control")
    live.wait_for(lambda: live.outgoing(PHONE) and live.outgoing(OTHER))
    with live.runtime.db.transaction() as s:
        token = create_token(s, "tests", datetime.now(UTC))
    starts = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    r = live.http.post(
        f"{live.base_url}/api/v1/appointments",
        json={
            "patient": {"phone": "+" + PHONE, "name": NAME},
            "starts_at": starts.isoformat(),
            "duration_minutes": 20,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    live.settle()
    return live


def test_export_prints_the_patients_messages_and_appointments(chatted):
    done = cli(chatted, "patient", "export", "+" + PHONE)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["patient"]["phone"] == PHONE and data["patient"]["name"] == NAME
    assert len(data["appointments"]) == 1
    assert any(m["payload"].get("text", {}).get("body") == WORDS for m in data["messages_received"])
    assert data["messages_sent"]
    assert "hello from the other patient" not in done.stdout


def test_erase_is_refused_while_an_appointment_is_ahead(chatted):
    done = cli(chatted, "patient", "erase", PHONE)
    assert done.returncode == 2
    assert "cancel it first or erase with --force" in done.stderr
    assert PHONE in everything(chatted.runtime)


def test_forced_erase_leaves_no_patient_text_in_any_table(chatted):
    before = everything(chatted.runtime)
    assert PHONE in before and NAME in before and WORDS in before
    done = cli(chatted, "patient", "erase", "--force", PHONE)
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)["erased"]
    assert erased["patients"] == 1 and erased["appointments"] == 1 and erased["inbox_events"] >= 1

    after = everything(chatted.runtime)
    for trace in (PHONE, NAME, "Quixotic", WORDS):
        assert trace not in after, trace
    assert OTHER in after and "hello from the other patient" in after  # others untouched
    with chatted.runtime.db.Session() as s:
        (audit,) = s.scalars(select(AuditEntry).where(AuditEntry.action == "patient_erase"))
        assert audit.detail["forced"] is True and audit.detail["appointments"] == 1
        assert audit.target.startswith("patient:")


def test_unknown_and_invalid_phones_are_clear_errors(live_server):
    unknown = cli(live_server, "patient", "erase", "+4915100000000")
    assert unknown.returncode == 2 and "no patient with this phone number" in unknown.stderr
    invalid = cli(live_server, "patient", "export", "not-a-phone")
    assert invalid.returncode == 2 and "is not a phone number" in invalid.stderr


def test_export_shows_and_erase_removes_the_patients_alerts_and_waitlist_places(chatted):
    """A patient who was running late and waited for a freed slot: exported, then erased."""
    rt = chatted.runtime
    now = datetime.now(UTC)
    with rt.db.transaction() as s:
        patient = s.scalars(select(Patient).where(Patient.phone == PHONE)).one()
        visit = s.scalars(select(Appointment).where(Appointment.patient_id == patient.id)).one()
        s.add(StaffAlert(patient_id=patient.id, appointment_id=visit.id, kind="running_late"))
        entry = WaitlistEntry(
            patient_id=patient.id,
            service_id="checkup",
            first_day=now.date(),
            last_day=now.date() + timedelta(days=7),
        )
        s.add(entry)
        s.flush()
        s.add(
            WaitlistOffer(
                entry_id=entry.id,
                patient_id=patient.id,
                slot_at=now + timedelta(days=1),
                practitioner_id="dr-lee",
                expires_at=now + timedelta(hours=1),
            )
        )
    exported = json.loads(cli(chatted, "patient", "export", PHONE).stdout)
    assert [a["kind"] for a in exported["staff_alerts"]] == ["running_late"]
    assert [w["service_id"] for w in exported["waitlist"]] == ["checkup"]
    done = cli(chatted, "patient", "erase", "--force", PHONE)
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)["erased"]
    assert (erased["staff_alerts"], erased["waitlist_entries"], erased["waitlist_offers"]) == (
        1,
        1,
        1,
    )
    with rt.db.Session() as s:
        for model in (StaffAlert, WaitlistEntry, WaitlistOffer):
            assert s.scalars(select(model)).first() is None, model.__name__
