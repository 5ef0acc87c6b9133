"""The backup and restore commands docs/operations.md gives work: a restored copy has the rows
and the schema version of the original (SQLite `.backup`/`.restore`, pg_dump/pg_restore)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from clinic_bot.models import Patient
from tests.conftest import TEST_DATABASE_URL


def add_patient(runtime, phone: str) -> None:
    with runtime.db.transaction() as s:
        s.add(Patient(phone=phone, name="Backup Test", created_at=datetime.now(UTC)))


def restored_state(url: str) -> tuple[list[str], str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            phones = list(conn.execute(select(Patient.phone)).scalars())
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return phones, version
    finally:
        engine.dispose()


@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="the SQLite commands")
@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command is not installed")
def test_sqlite_backup_and_restore(runtime, tmp_path):
    add_patient(runtime, "4915112345678")
    source = make_url(runtime.settings.database_url).database
    backup, restored = tmp_path / "clinic-backup.db", tmp_path / "restored.db"
    # The commands of docs/operations.md, word for word (safe while the app runs).
    subprocess.run(["sqlite3", source, f".backup '{backup}'"], check=True, timeout=60)
    subprocess.run(["sqlite3", str(restored), f".restore '{backup}'"], check=True, timeout=60)
    phones, version = restored_state(f"sqlite:///{restored}")
    assert phones == ["4915112345678"]
    assert version == restored_state(runtime.settings.database_url)[1]


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="needs TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.skipif(shutil.which("pg_restore") is None, reason="pg_dump/pg_restore not installed")
def test_postgresql_dump_and_restore_into_a_new_database(runtime, tmp_path):
    add_patient(runtime, "4915112345678")
    source = make_url(TEST_DATABASE_URL).set(drivername="postgresql")
    target_name = f"{source.database}_restore_{uuid.uuid4().hex[:6]}"
    target = source.set(database=target_name)
    plain = source.render_as_string(hide_password=False)
    dump = tmp_path / "clinic.dump"
    admin = create_engine(source.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{target_name}"'))
    try:
        subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", plain],
            check=True,
            timeout=120,
        )
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--clean",
                "--if-exists",
                f"--dbname={target.render_as_string(hide_password=False)}",
                str(dump),
            ],
            check=True,
            timeout=120,
        )
        phones, version = restored_state(
            target.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        )
        assert phones == ["4915112345678"]
        assert version == restored_state(runtime.settings.database_url)[1]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target_name}" WITH (FORCE)'))
        admin.dispose()
