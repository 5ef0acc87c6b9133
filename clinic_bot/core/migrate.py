"""Apply Alembic migrations from any working directory."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from clinic_bot.settings import PROJECT_DIR


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the project's migrations/ folder and this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
