"""Secrets and patient data stay out of logs and files: access logs redact path secrets and feed
tokens, SQL errors carry no parameters, and the SQLite database is readable by its owner only."""

from __future__ import annotations

import importlib.util
import logging
import stat
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import IntegrityError

from clinic_bot.bootstrap import build_runtime
from clinic_bot.models import Patient
from clinic_bot.operations.logging import Redactor, make_formatter, redact
from clinic_bot.settings import Settings
from tests.conftest import TEST_DATABASE_URL

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "line, secret",
    [
        ('"POST /webhooks/whapi/s3cr3t-path HTTP/1.1" 200', "s3cr3t-path"),
        ('"GET /calendar/feedtok123.ics HTTP/1.1" 200', "feedtok123"),
        ('"GET /calendar/feed.ics?token=abc123 HTTP/1.1" 200', "abc123"),
    ],
)
def test_access_log_lines_never_show_path_secrets_or_feed_tokens(line, secret):
    assert secret not in redact(line)
    assert "[" in redact(line)


def gunicorn_logger_class(monkeypatch, tmp_path):
    """The access logger `gunicorn.conf.py` installs, loaded as gunicorn loads the file."""
    # Set, so loading the config does not create a metrics folder for this process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("gunicorn_conf", PROJECT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.logger_class


def test_gunicorns_access_log_atoms_are_redacted(monkeypatch, tmp_path):
    logger_class = gunicorn_logger_class(monkeypatch, tmp_path)
    cfg = SimpleNamespace(
        errorlog="-",
        loglevel="info",
        accesslog=None,
        access_log_format="",
        syslog=False,
        logconfig=None,
        logconfig_dict={},
        logconfig_json=None,
        capture_output=False,
        disable_redirect_access_to_syslog=False,
        user=0,
        group=0,
        umask=0,
        syslog_addr=None,
        syslog_prefix=None,
        syslog_facility="user",
        dogstatsd_tags="",
        statsd_host=None,
    )
    logger = logger_class.__new__(logger_class)
    logger.cfg = cfg
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/webhooks/whapi/s3cr3t",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/webhooks/whapi/s3cr3t",
        "QUERY_STRING": "",
    }
    resp = SimpleNamespace(status="200 OK", sent=2, headers=[])
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(seconds=0))
    assert "s3cr3t" not in atoms["r"] and "s3cr3t" not in atoms["U"]


def test_the_development_servers_request_lines_are_redacted():
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '%s - - "%s" %s',
        ("127.0.0.1", "POST /webhooks/whapi/s3cr3t HTTP/1.1", 200),
        None,
    )
    Redactor().filter(record)
    assert "s3cr3t" not in record.getMessage()


def test_database_errors_are_logged_without_sql_parameters_or_row_values(runtime):
    with pytest.raises(IntegrityError) as caught, runtime.db.transaction() as s:
        s.add(Patient(phone="4915199999999"))
        s.add(Patient(phone="4915199999999"))
    assert "[parameters" not in str(caught.value) or "hidden" in str(caught.value)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_info = (type(caught.value), caught.value, caught.value.__traceback__)
    for fmt in ("text", "json"):
        # A fresh record each time: the filter formats and redacts the traceback in place.
        copy = logging.makeLogRecord(record.__dict__)
        Redactor().filter(copy)
        line = make_formatter(fmt).format(copy)
        assert "4915199999999" not in line
        assert "IntegrityError" in line  # the traceback itself is kept


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file")
def test_the_sqlite_database_and_instance_folder_are_private(tmp_path):
    instance = tmp_path / "inst"
    instance.mkdir(mode=0o755)
    settings = Settings.from_env(env={}, instance_path=instance)
    rt = build_runtime(settings)
    try:
        with rt.db.ReadSession() as s:
            s.connection()
        db_file = instance / "clinic.db"
        assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    finally:
        rt.db.dispose()
