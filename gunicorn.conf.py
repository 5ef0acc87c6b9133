"""gunicorn settings for the `web` process: `gunicorn -c gunicorn.conf.py wsgi:app`.

Everything is read from the environment, so Heroku, Dokku, Render, Fly, a container and a
systemd unit all start the web the same way. The access log never prints a secret that
travels in a URL (the path-form webhook secret, the calendar feed token) nor a phone number.
"""

import os
import shutil
import sys
import tempfile

from gunicorn.glogging import Logger

from clinic_bot.operations.logging import log_format, make_formatter, redact

# WEB_BIND (e.g. 127.0.0.1:8000 behind a local TLS proxy) wins over all interfaces on $PORT.
bind = os.environ.get("WEB_BIND") or f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
# A request that takes 30 s is stuck (the webhook answers in milliseconds).
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
# Heroku sends SIGKILL 30 s after SIGTERM: finish in-flight requests well before that.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Heroku's router, Dokku's nginx and Fly's proxy all say X-Forwarded-*; the app trusts one hop.
forwarded_allow_ips = "*"
accesslog = "-"
errorlog = "-"

if log_format() == "json":
    access_log_format = (
        '{"logger": "access", "time": "%(t)s", "request_id": "%({x-request-id}o)s", '
        '"method": "%(m)s", "path": "%(U)s", "status": %(s)s, "bytes": "%(b)s", '
        '"ms": %(M)s, "agent": "%(a)s"}'
    )
else:
    access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


class RedactingLogger(Logger):
    """gunicorn's logger, with secrets in URLs and phone numbers masked in every access line."""

    def setup(self, cfg):
        super().setup(cfg)
        if log_format() == "json":  # gunicorn's own lines (boot, signals) as JSON objects too
            for handler in self.error_log.handlers:
                handler.setFormatter(make_formatter("json"))

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: redact(v) if isinstance(v, str) else v for k, v in atoms.items()}


logger_class = RedactingLogger

# Metrics from every gunicorn worker process are summed through files in this folder.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before any worker imports prometheus_client; forked workers inherit it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clinic-bot-metrics-")


def on_starting(server):
    """Stop at once, with the reason, when production secrets are missing; fresh metrics."""
    from clinic_bot.settings import SettingsError, check_production_secrets

    try:
        check_production_secrets(dict(os.environ))
    except SettingsError as exc:
        print(f"clinic_bot: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    """A worker process that ended keeps its counters, but not its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
