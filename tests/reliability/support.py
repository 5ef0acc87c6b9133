"""Helpers shared by the attack tests: drive the sandbox's channel and faults, count outcomes."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from clinic_bot.delivery.outbox import Outbox
from clinic_bot.domain.patients import get_or_create_patient
from clinic_bot.models import InboxEvent, OutboxMessage, SandboxMessage
from clinic_bot.models.statuses import GONE_OUT

TOKEN = {"Authorization": "Bearer sandbox"}


def set_channel(live, state: str, webhook: bool = True) -> None:
    """Play the clinic's phone: "logged_out", "auth" or "wrong_token"."""
    r = live.http.put(
        f"{live.base_url}/sandbox/api/channel", json={"state": state, "webhook": webhook}
    )
    assert r.status_code == 200, r.text


def queue_texts(
    runtime, phone: str, texts: list[str], purpose: str = "reply", tag: str = ""
) -> None:
    """Queue texts to one patient, as a handler or a tick would."""
    with runtime.db.transaction() as s:
        patient = get_or_create_patient(s, phone, runtime.clock())
        box = Outbox(s, runtime.clock(), f"test:{phone}:{purpose}{tag}")
        for text in texts:
            box.text(patient, text, purpose=purpose)


def statuses(runtime) -> dict[str, int]:
    """How many outbox rows are in each status."""
    with runtime.db.Session() as s:
        rows = s.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    return {status: n for status, n in rows}


def sent_texts(runtime, phone: str | None = None) -> list[str]:
    """Texts the sandbox gateway accepted (what the patients' phones show), in order."""
    with runtime.db.Session() as s:
        stmt = select(SandboxMessage).where(SandboxMessage.direction == "out")
        if phone:
            stmt = stmt.where(SandboxMessage.phone == phone)
        rows = s.execute(stmt.order_by(SandboxMessage.id)).scalars()
        return [
            r.payload.get("body")
            if isinstance(r.payload.get("body"), str)
            else (r.payload.get("body") or {}).get("text", "")
            for r in rows
        ]


def inbox(runtime) -> list[InboxEvent]:
    """Every inbox row, oldest first."""
    with runtime.db.Session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())


def env_int(name: str, default: int) -> int:
    """An integer from the environment (attack sizes), else the default."""
    return int(os.environ.get(name) or default)


def record(attack: str, database: str | None = None, **figures) -> None:
    """Append one attack's figures to the report file (and print them)."""
    database = database or ("PostgreSQL" if os.environ.get("TEST_DATABASE_URL") else "SQLite")
    entry = {
        "attack": attack,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {database}",
        **figures,
    }
    print(json.dumps(entry))
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def rss_kib(pid: int) -> int:
    """Resident memory of one process, in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def counts(runtime) -> dict:
    """Outcome figures: patients answered, duplicates (sends beyond one per outbox row), …"""
    with runtime.db.Session() as s:
        out = s.execute(
            select(SandboxMessage.phone, func.count())
            .where(SandboxMessage.direction == "out")
            .group_by(SandboxMessage.phone)
        ).all()
        gone = s.execute(
            select(func.count()).where(OutboxMessage.status.in_(GONE_OUT))
        ).scalar_one()
        unsent = s.execute(
            select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
        ).scalar_one()
        dead_out = s.execute(
            select(func.count()).where(OutboxMessage.status.in_(("dead", "failed")))
        ).scalar_one()
        inbox_open = s.execute(
            select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
        ).scalar_one()
        inbox_dead = s.execute(select(func.count()).where(InboxEvent.status == "dead")).scalar_one()
    sent = sum(n for _, n in out)
    return {
        "answered_patients": len(out),
        "gateway_sends": sent,
        "duplicates": max(0, sent - gone),
        "unsent": unsent,
        "dead_letters": dead_out + inbox_dead,
        "inbox_open": inbox_open,
    }


def phones(n: int, base: int = 4915100000000) -> list[str]:
    """N distinct patient numbers."""
    return [str(base + i) for i in range(n)]
