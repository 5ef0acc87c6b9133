"""The models and the migrations agree: on a database migrated from empty, Alembic's
autogenerate finds nothing to do; the newest migration goes down one step and up again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from clinic_bot import models  # noqa: F401  (registers every table)
from clinic_bot.core.db import Base, UTCDateTime
from clinic_bot.core.migrate import alembic_config, upgrade
from clinic_bot.settings import normalize_database_url
from tests.conftest import TEST_DATABASE_URL

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# inbox_event as revision 0009 left it (before the chat_id column).
INBOX_0009 = sa.table(
    "inbox_event",
    *(sa.column(name, sa.String) for name in ("dedupe_key", "kind", "event_type", "event_method")),
    sa.column("payload", sa.JSON),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", UTCDateTime),
    sa.column("received_at", UTCDateTime),
)


@pytest.fixture
def empty_database(tmp_path):
    """An empty database: a new SQLite file, or a PostgreSQL schema of its own."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = normalize_database_url(TEST_DATABASE_URL)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS migrations_agree CASCADE"))
        conn.execute(text("CREATE SCHEMA migrations_agree"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3Dmigrations_agree"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS migrations_agree CASCADE"))
    engine.dispose()


def differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_autogenerate_finds_no_difference_after_upgrading_from_empty(empty_database):
    upgrade(empty_database)
    assert differences(empty_database) == []
    assert tables(empty_database) >= {t.name for t in Base.metadata.sorted_tables}


def test_the_newest_migration_goes_down_one_step_and_up_again(empty_database):
    script = ScriptDirectory.from_config(alembic_config(empty_database))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    upgrade(empty_database)
    assert current(empty_database) == head
    command.downgrade(alembic_config(empty_database), "-1")
    assert current(empty_database) == previous
    assert differences(empty_database) != []  # the models are ahead again
    upgrade(empty_database)
    assert current(empty_database) == head
    assert differences(empty_database) == []


def test_the_chat_id_of_stored_inbox_events_is_filled_in_from_their_payloads(empty_database):
    upgrade(empty_database, "0009")
    engine = create_engine(empty_database)
    events = [
        ("msg:a", "messages", {"id": "a", "chat_id": "4915111111111@s.whatsapp.net"}),
        ("msg:b", "messages", {"id": "b", "from": "4915122222222"}),  # no chat_id: the sender
        ("status:c:read", "statuses", {"id": "c", "recipient_id": "4915133333333@s.whatsapp.net"}),
        ("labels:d", "labels", {"id": "d", "name": "VIP"}),
        ("msg:e", "messages", {"id": "e", "chat_id": "x" * 500}),  # no chat id is that long
    ]
    try:
        with engine.begin() as conn:
            conn.execute(
                INBOX_0009.insert(),
                [
                    dict(
                        dedupe_key=key,
                        kind=kind,
                        event_type="",
                        event_method="",
                        payload=payload,
                        status="done",
                        attempts=0,
                        next_attempt_at=AT,
                        received_at=AT,
                    )
                    for key, kind, payload in events
                ],
            )
        upgrade(empty_database)
        with engine.connect() as conn:
            found = dict(conn.execute(text("SELECT dedupe_key, chat_id FROM inbox_event")).all())
    finally:
        engine.dispose()
    assert found == {
        "msg:a": "4915111111111@s.whatsapp.net",
        "msg:b": "4915122222222@s.whatsapp.net",
        "status:c:read": "4915133333333@s.whatsapp.net",
        "labels:d": None,
        "msg:e": None,
    }


def test_api_tokens_made_before_roles_keep_calling_every_route_as_admin_tokens(empty_database):
    upgrade(empty_database, "0009")
    engine = create_engine(empty_database)
    tokens = sa.table(
        "api_token",
        sa.column("name", sa.String),
        sa.column("token_hash", sa.String),
        sa.column("created_at", UTCDateTime),
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                tokens.insert(), [{"name": "lab", "token_hash": "a" * 64, "created_at": AT}]
            )
        upgrade(empty_database)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, role, last_used_at FROM api_token")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("lab", "admin", None)]
