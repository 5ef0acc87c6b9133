"""The `clinic-bot` command group (CONTRACT §4)."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading

import click
from sqlalchemy import delete, select
from werkzeug.security import generate_password_hash

from clinic_bot.adapters.ical.export import export_calendar
from clinic_bot.adapters.ical.importer import MAX_IMPORT_BYTES, CalendarRefused
from clinic_bot.adapters.whapi.settings import register_webhook
from clinic_bot.app import create_app
from clinic_bot.bootstrap import build_runtime, ensure_profile
from clinic_bot.core.migrate import upgrade
from clinic_bot.core.runtime import Runtime
from clinic_bot.domain.profile import ProfileError
from clinic_bot.models import ApiToken, StaffSession, StaffUser
from clinic_bot.operations.logging import configure_logging, log_format
from clinic_bot.settings import Settings, SettingsError
from clinic_bot.web.api.auth import TOKEN_ROLES, create_token
from clinic_bot.web.calendar_sync import run_import
from clinic_bot.worker import Worker

log = logging.getLogger("clinic_bot")


def _settings(**overrides) -> Settings:
    """The settings for a command; a configuration that cannot run stops it with the reason."""
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _runtime(settings: Settings | None = None) -> Runtime:
    """The runtime for a command; a bad clinic profile stops it with the key named."""
    try:
        return build_runtime(settings or _settings())
    except ProfileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _upgrade(settings: Settings) -> None:

    upgrade(settings.database_url)


@click.group()
def main() -> None:
    """clinic_bot: WhatsApp appointments for one clinic."""
    # One redacting handler: no secrets, phones or message texts in the log (database
    # errors' DETAIL lines and tracebacks included).
    configure_logging(log_format())
    # Every tick would log two lines at INFO; keep the log for what matters.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # One line per request would bury the log under the simulator's polling.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="default: $PORT or 5000")
def run(host: str, port: int | None) -> None:
    """Web and worker in one process (SQLite and the sandbox gateway by default)."""
    from werkzeug.serving import make_server

    settings = _settings()
    if port is not None and port != settings.port:
        settings = _settings(port=port, public_url=f"http://127.0.0.1:{port}")
        if settings.sandbox:
            settings.whapi_api_url = f"{settings.public_url}/sandbox/gateway"
    if ensure_profile(settings):
        click.echo(f"Wrote the example clinic profile to {settings.clinic_config}")
    _upgrade(settings)
    runtime = _runtime(settings)
    admin = _ensure_admin(runtime)
    app = create_app(runtime)
    server = make_server(host, settings.port, app, threaded=True)
    worker = Worker(runtime)
    worker.start()
    base = f"http://{host}:{settings.port}"
    click.echo(f"clinic_bot is running for {runtime.profile.name}")
    click.echo(f"  Staff UI:           {base}/staff/")
    if settings.sandbox:
        click.echo(f"  Patient simulator:  {base}/sandbox/   (sandbox gateway: no WHAPI_TOKEN set)")
    click.echo(f"  Health:             {base}/healthz")
    if admin:
        click.echo(f"  Admin login created: {admin[0]} / {admin[1]}  (shown once; change it)")
    sys.stdout.flush()

    stopping = threading.Event()

    def _stop(*_):
        # shutdown() waits for serve_forever() to return, which runs on this very thread:
        # call it from another one, or the signal handler would wait for itself forever.
        if not stopping.is_set():
            stopping.set()
            click.echo("clinic_bot is stopping…", err=True)
            threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Requests in progress finish before the process exits (server_close joins their threads).
    server.daemon_threads = False
    try:
        server.serve_forever()
    finally:
        server.server_close()
        worker.stop()
        click.echo("clinic_bot stopped", err=True)


def _ensure_admin(runtime: Runtime) -> tuple[str, str] | None:
    """Create the first admin login when there is none; return (email, password) once."""

    with runtime.db.transaction() as s:
        if s.execute(select(StaffUser.id).limit(1)).first():
            return None
        password = secrets.token_urlsafe(12)
        email = "admin@clinic.local"
        s.add(
            StaffUser(
                email=email,
                password_hash=generate_password_hash(password),
                role="admin",
                created_at=runtime.clock(),
                # Printed on a console once: it must be replaced at the first login.
                must_change_password=True,
            )
        )
    return email, password


def _lower_priority(increment: int) -> None:
    """Let webhook acknowledgements come first when web and worker share a machine's cores.

    Whapi retries an unanswered webhook, so acks are the latency that matters; replies can trail
    a burst by a moment. On hosts where the worker has its own machine (Heroku dynos) it is moot.
    """
    if increment > 0:
        try:
            os.nice(increment)
        except OSError:
            log.warning("could not lower the worker's CPU priority")


@main.command()
def worker() -> None:
    """Worker only: inbox, outbox and the periodic ticks (production `worker` process)."""

    # No signal handler: one runs on the main thread between any two bytecodes, possibly
    # inside a lock that stopping the scheduler needs (APScheduler holds its executor's lock
    # while it submits a tick), which hung SIGTERM now and then. Blocked before any thread
    # starts (threads inherit the mask), the signals wait for sigwait below instead.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    runtime = _runtime()
    _lower_priority(int(os.environ.get("WORKER_NICE", "10")))
    w = Worker(runtime)
    w.start()
    received = signal.sigwait(stop_signals)
    log.info("worker stopping (%s)", signal.Signals(received).name)
    w.stop()
    log.info("worker stopped")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations."""
    settings = _settings()
    _upgrade(settings)
    click.echo("database is up to date")


@main.group("api-token")
def api_token() -> None:
    """API bearer tokens."""


@api_token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(TOKEN_ROLES),
    default="admin",
    show_default=True,
    help="reception tokens are refused (403) on the admin routes",
)
def api_token_create(name: str, role: str) -> None:
    """Print a new API bearer token as the last line of stdout."""

    runtime = _runtime()
    with runtime.db.transaction() as s:
        token = create_token(s, name, runtime.clock(), role=role)
    click.echo(f"API token {name!r} ({role}) created; it is shown only now:", err=True)
    click.echo(token)


@api_token.command("revoke")
@click.argument("name")
def api_token_revoke(name: str) -> None:
    """Revoke every API token with this name: their callers are refused from now on."""

    runtime = _runtime()
    with runtime.db.transaction() as s:
        n = s.execute(delete(ApiToken).where(ApiToken.name == name)).rowcount
    if not n:
        click.echo(f"error: no API token named {name!r}", err=True)
        sys.exit(2)
    click.echo(f"revoked {n} API token(s) named {name!r}")


@main.group()
def calendar() -> None:
    """Calendar files: import .ics into appointments, export appointments as .ics."""


@calendar.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="report what would change; change nothing")
@click.option("--mode", type=click.Choice(["merge", "full"]), default="merge", show_default=True)
@click.option("--source", default=None, help="default: the calendar's X-WR-CALNAME, else PRODID")
@click.option("--practitioner", "practitioner_id", default=None, help="assign every event to")
@click.option(
    "--max-size",
    type=int,
    default=MAX_IMPORT_BYTES,
    show_default=True,
    help="refuse larger files (bytes); the API's limit by default",
)
def calendar_import(
    file: str,
    dry_run: bool,
    mode: str,
    source: str | None,
    practitioner_id: str | None,
    max_size: int,
) -> None:
    """Import an .ics file; only the JSON report goes to stdout (exit 2: file refused)."""
    import json

    try:
        with open(file, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        click.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        sys.exit(2)
    runtime = _runtime()

    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            click.echo(f"imported {done}/{total}", err=True)

    try:
        report = run_import(
            runtime,
            raw,
            mode=mode,
            source=source,
            practitioner_id=practitioner_id,
            dry_run=dry_run,
            max_bytes=max_size,
            progress=progress,
        )
    except CalendarRefused as exc:
        click.echo(f"error: {file} refused: {exc.reason}", err=True)
        sys.exit(2)
    for line in report["warnings"]:
        click.echo(f"warning: {line.get('uid') or file}: {line['reason']}", err=True)
    click.echo(json.dumps(report, ensure_ascii=False))


@calendar.command("export")
@click.option("-o", "--output", default=None, help="file to write (default: stdout)")
@click.option("--practitioner", "practitioner_id", default=None, help="only this practitioner")
def calendar_export(output: str | None, practitioner_id: str | None) -> None:
    """Write the clinic's recent and future appointments as an .ics calendar."""

    runtime = _runtime()
    if practitioner_id is not None and runtime.profile.practitioner(practitioner_id) is None:
        click.echo(f"error: unknown practitioner {practitioner_id!r}", err=True)
        sys.exit(2)
    with runtime.db.ReadSession() as s:
        data = export_calendar(
            s, runtime.profile, practitioner_id=practitioner_id, now=runtime.clock()
        )
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with open(output, "wb") as fh:
            fh.write(data)
        click.echo(f"wrote {output}", err=True)


@calendar.command("feed-url")
def calendar_feed_url() -> None:
    """Print the subscription feed URL (keep it secret: it shows every appointment)."""
    runtime = _runtime()
    click.echo(f"{runtime.settings.public_url}/calendar/{runtime.settings.calendar_feed_token}.ics")


@main.group()
def staff() -> None:
    """Staff logins."""


@staff.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "reception"]), required=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def staff_add(email: str, role: str, password_stdin: bool) -> None:
    """Create a staff login (a generated password is printed when none is given)."""

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            click.echo("error: the password must have at least 8 characters", err=True)
            sys.exit(2)
    else:
        password = secrets.token_urlsafe(12)
    runtime = _runtime()
    with runtime.db.transaction() as s:
        if s.execute(select(StaffUser).where(StaffUser.email == email.lower())).first():
            click.echo(f"error: {email} already has a login", err=True)
            sys.exit(2)
        s.add(
            StaffUser(
                email=email.lower(),
                password_hash=generate_password_hash(password),
                role=role,
                created_at=runtime.clock(),
                # A generated password was printed on a console: replaced at the first login.
                must_change_password=not password_stdin,
            )
        )
    click.echo(f"created {role} login {email.lower()}")
    if not password_stdin:
        click.echo(f"password: {password}")


def _read_new_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 10:
            click.echo("error: the password must have at least 10 characters", err=True)
            sys.exit(2)
        return password
    return secrets.token_urlsafe(12)


@staff.command("passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="read the new password from standard input")
def staff_passwd(email: str, password_stdin: bool) -> None:
    """Set a new password (generated unless given); the user's sessions end."""

    password = _read_new_password(password_stdin)
    runtime = _runtime()
    with runtime.db.transaction() as s:
        user = s.execute(
            select(StaffUser).where(StaffUser.email == email.lower())
        ).scalar_one_or_none()
        if user is None:
            click.echo(f"error: no login {email}", err=True)
            sys.exit(2)
        user.password_hash = generate_password_hash(password)
        # A generated password travelled over a console: it must be changed at the next login.
        user.must_change_password = not password_stdin
        s.execute(delete(StaffSession).where(StaffSession.staff_user_id == user.id))
    click.echo(f"password changed for {email.lower()}; its sessions are ended")
    if not password_stdin:
        click.echo(f"password: {password}")


@staff.command("disable")
@click.argument("email")
def staff_disable(email: str) -> None:
    """Disable a login: it cannot log in and its sessions end at once."""

    runtime = _runtime()
    with runtime.db.transaction() as s:
        user = s.execute(
            select(StaffUser).where(StaffUser.email == email.lower())
        ).scalar_one_or_none()
        if user is None:
            click.echo(f"error: no login {email}", err=True)
            sys.exit(2)
        user.disabled_at = runtime.clock()
        s.execute(delete(StaffSession).where(StaffSession.staff_user_id == user.id))
    click.echo(f"disabled {email.lower()}; its sessions are ended")


@main.group()
def webhook() -> None:
    """The Whapi webhook registration."""


@webhook.command("register")
@click.argument("public_url")
def webhook_register(public_url: str) -> None:
    """Point the Whapi channel's webhook (with its secret header) at PUBLIC_URL."""

    runtime = _runtime()
    try:
        url = register_webhook(runtime.client, public_url, runtime.settings.webhook_secret)
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"webhook registered: {url}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
@click.option("--url", "public_url", default=None, help="this app's public URL (round trip)")
def doctor(as_json: bool, public_url: str | None) -> None:
    """Check configuration, database, Whapi, webhook, worker, clock and disk; exit 1 on a ✗."""
    import json

    from clinic_bot.operations.doctor import run_doctor

    report = run_doctor(public_url=public_url or os.environ.get("PUBLIC_URL"))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for check in report.checks:
            click.echo(check.line())
        click.echo("all checks passed" if report.ok else "some checks failed: see the fixes above")
    sys.exit(0 if report.ok else 1)


@main.group()
def patient() -> None:
    """Data-subject requests: export or erase everything about one patient."""


@patient.command("export")
@click.argument("phone")
@click.option("-o", "--output", default=None, help="file to write (default: stdout)")
def patient_export(phone: str, output: str | None) -> None:
    """Print everything stored about the patient with PHONE as JSON."""
    import json

    from clinic_bot.domain.phones import InvalidPhone
    from clinic_bot.models import AuditEntry
    from clinic_bot.operations.patient_data import PatientDataError, export_patient, subject_hash

    runtime = _runtime()
    try:
        with runtime.db.transaction() as s:
            data = export_patient(s, phone)
            s.add(
                AuditEntry(
                    at=runtime.clock(),
                    action="patient_export",
                    target=subject_hash(data["patient"]["phone"], runtime.settings.secret_key),
                    detail={"appointments": len(data["appointments"])},
                )
            )
    except (InvalidPhone, PatientDataError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output in (None, "-"):
        click.echo(text)
    else:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"wrote {output}", err=True)


@patient.command("erase")
@click.argument("phone")
@click.option("--force", is_flag=True, help="erase even with an appointment still ahead")
def patient_erase(phone: str, force: bool) -> None:
    """Remove everything about the patient with PHONE; one audit entry (no phone) stays."""
    import json

    from clinic_bot.domain.phones import InvalidPhone
    from clinic_bot.operations.patient_data import PatientDataError, erase_patient

    runtime = _runtime()
    try:
        with runtime.db.transaction() as s:
            counts = erase_patient(
                s, phone, runtime.clock(), key=runtime.settings.secret_key, force=force
            )
    except (InvalidPhone, PatientDataError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps({"erased": counts}))


@main.group()
def retention() -> None:
    """Message bodies, payloads and intake answers past the profile's retention period."""


@retention.command("run")
def retention_run() -> None:
    """Remove old content now (the worker does it daily) and print what was removed."""
    import json

    from clinic_bot.operations.retention import apply_retention, describe, retention_period

    runtime = _runtime()
    with runtime.db.transaction() as s:
        report = apply_retention(s, runtime.clock(), retention_period(runtime.profile))
    click.echo(describe(report), err=True)
    click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
