"""The models and the migrations agree: on a database migrated from empty, Alembic's
autogenerate finds nothing to do; the newest migration goes down one step and up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from clinic_bot import models  # noqa: F401  (registers every table)
from clinic_bot.core.db import Base
from clinic_bot.core.migrate import alembic_config, upgrade
from clinic_bot.settings import normalize_database_url
from tests.conftest import TEST_DATABASE_URL


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
