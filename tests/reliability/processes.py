"""Production-like processes for the attacks that kill them: the Procfile's `web` (gunicorn),
`clinic-bot worker`, the sandbox gateway in a process of its own, a sender that delivers
webhooks the way Whapi does (retrying), and a private PostgreSQL server to restart.

The gateway runs apart from the web on purpose: served by the web process it would die with
every web kill, so a web kill would also be a Whapi outage (sends refused, echoes and statuses
lost with its in-memory callback queues) and the figures would mix two faults. Apart, a web
kill is only a web kill, and its memory is sampled on its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import requests
from sqlalchemy import func, select

from clinic_bot.models import InboxEvent, OutboxMessage, SandboxMessage
from tests.conftest import WEBHOOK_SECRET
from tests.reliability.support import rss_kib

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the project's virtualenv, wherever it lives
GATEWAY_TOKEN = {"Authorization": "Bearer sandbox"}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_command(name: str) -> str:
    """One command of the Procfile, as Heroku reads it."""
    for line in (PROJECT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise KeyError(name)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until truthy (HTTP errors count as not yet); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (gunicorn's workers under its master)."""
    out: list[int] = []
    for path in glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in Path(path).read_text().split()]
    return out


class Proc:
    """One role (web, worker or gateway) as a process group to kill and restart."""

    def __init__(self, name: str, argv: list[str], env: dict, log: Path, ready=None):
        self.name, self.argv, self.env, self.log, self.ready = name, argv, env, log, ready
        self.popen: subprocess.Popen | None = None
        self.kills = 0

    def start(self, timeout: float = 60) -> Proc:
        """Start it and wait until it answers (when it has a readiness check)."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> Proc:
        """Start it without waiting."""
        self.popen = subprocess.Popen(
            self.argv,
            cwd=PROJECT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a kill takes its children too
        )
        return self

    def wait_ready(self, timeout: float = 60) -> Proc:
        """Wait until it answers its readiness check (if it has one)."""
        if self.ready is not None:
            deadline = time.monotonic() + timeout
            while not self._ready():
                if self.popen.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready within {timeout} s")
                time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            return bool(self.ready())
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group, as an OOM kill or a crashed dyno would."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.kills += 1

    def restart(self, timeout: float = 60) -> float:
        """Kill it, start it again; the seconds until it answered again."""
        t0 = time.monotonic()
        self.kill()
        self.start(timeout)
        return time.monotonic() - t0

    def terminate(self) -> None:
        """Send SIGTERM to the group, without waiting."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left after 20 s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def rss_mib(self) -> float:
        """Resident memory of the process and its children (gunicorn: master + workers)."""
        if self.popen is None or self.popen.poll() is not None:
            return 0.0
        pids = [self.popen.pid, *children(self.popen.pid)]
        return sum(rss_kib(p) for p in pids) / 1024


@dataclass
class Stack:
    """Gateway, web and worker processes on one database, with their URLs."""

    database_url: str
    clinic_config: Path
    tmp: Path
    extra_env: dict = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)

    def __post_init__(self):
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WHAPI_", "DATABASE_"))}
        base.update(
            PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            DATABASE_URL=self.database_url,
            WHAPI_WEBHOOK_SECRET=WEBHOOK_SECRET,
            SECRET_KEY="test-secret-key",
            CLINIC_CONFIG=str(self.clinic_config),
            WORKER_TICK_SECONDS="1",
            **self.extra_env,
        )
        http = requests.Session()
        self.web = Proc(
            "web",
            ["/bin/sh", "-c", f"exec {procfile_command('web')}"],
            {
                **base,
                "PORT": str(self.web_port),
                "WEB_CONCURRENCY": "2",
                "CLINIC_BOT_INSTANCE": str(self.tmp / "web-instance"),
                # The web never sends; its sandbox blueprints are unused here.
                "WHAPI_API_URL": f"{self.gateway_url}/sandbox/gateway",
            },
            self.tmp / "web.log",
            ready=lambda: http.get(f"{self.web_url}/healthz", timeout=2).status_code < 500,
        )
        self.worker = Proc(
            "worker",
            [str(BIN / "clinic-bot"), "worker"],
            {
                **base,
                "CLINIC_BOT_INSTANCE": str(self.tmp / "worker-instance"),
                "WHAPI_API_URL": f"{self.gateway_url}/sandbox/gateway",
            },
            self.tmp / "worker.log",
        )
        self.gateway = Proc(
            "gateway",
            [sys.executable, "-m", "tests.reliability.gateway_server", str(self.gateway_port)],
            {
                **base,
                "CLINIC_BOT_INSTANCE": str(self.tmp / "gateway-instance"),
                # Where the gateway posts echoes and statuses: the web, as Whapi would.
                "PUBLIC_URL": self.web_url,
            },
            self.tmp / "gateway.log",
            ready=lambda: (
                http.get(
                    f"{self.gateway_url}/sandbox/gateway/health", headers=GATEWAY_TOKEN, timeout=2
                ).status_code
                == 200
            ),
        )

    def start(self) -> Stack:
        """All three at once (they meet only through the database and HTTP retries)."""
        for proc in (self.gateway, self.web, self.worker):
            proc.spawn()
        self.gateway.wait_ready()
        self.web.wait_ready()
        return self

    def stop(self) -> None:
        """Stop every process (killed if it does not stop), all at once."""
        procs = (self.worker, self.web, self.gateway)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.stop()

    def logs(self) -> str:
        """The tail of each process's log, for a failing assertion."""
        return "\n".join(
            f"--- {p.name}\n{p.log.read_text(errors='replace')[-2000:]}"
            for p in (self.web, self.worker, self.gateway)
            if p.log.exists()
        )


def patient_message(phone: str, text: str = "hi") -> dict:
    """A Whapi `messages` webhook for a patient writing `text` (a fresh message id)."""
    return {
        "messages": [
            {
                "id": f"{secrets.token_hex(11)}-gPatient",
                "from_me": False,
                "type": "text",
                "chat_id": f"{phone}@s.whatsapp.net",
                "timestamp": int(time.time()),
                "source": "mobile",
                "from": phone,
                "from_name": "Patient",
                "text": {"body": text},
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "SANDBOX-CLINIC",
    }


@dataclass
class Delivery:
    """One webhook as the sender delivered it: every attempt's answer and when it ended."""

    phone: str
    first_try: float  # time.time()
    # (time.time(), a status code, "refused", "broken" or "timeout") per attempt
    answers: list = field(default_factory=list)
    done: float | None = None
    status: int | None = None


class WhapiSender:
    """Delivers webhooks as Whapi does: a POST per event, retried with backoff on a connection
    error, a timeout or a 5xx until acknowledged (a 4xx is final), several in parallel."""

    def __init__(
        self,
        url: str,
        *,
        threads: int = 16,
        timeout: float = 10,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        give_up: float = 300,
    ):
        self.url = f"{url}/webhooks/whapi"
        self.timeout, self.backoff, self.max_backoff = timeout, backoff, max_backoff
        self.give_up = give_up
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="whapi-sender")
        self.local = threading.local()
        self.deliveries: list[Delivery] = []
        self.futures = []

    def send(self, phone: str, payload: dict) -> Delivery:
        """Queue one webhook; returns its record at once."""
        d = Delivery(phone, time.time())
        self.deliveries.append(d)
        self.futures.append(self.pool.submit(self._deliver, d, payload))
        return d

    def _deliver(self, d: Delivery, payload: dict) -> None:
        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = requests.Session()
        delay = self.backoff
        while True:
            try:
                r = http.post(
                    self.url,
                    json=payload,
                    headers={"X-Webhook-Token": WEBHOOK_SECRET},
                    timeout=self.timeout,
                )
                d.answers.append((time.time(), r.status_code))
                if r.status_code < 500:
                    d.status, d.done = r.status_code, time.time()
                    return
            except requests.Timeout:
                d.answers.append((time.time(), "timeout"))
            except requests.ConnectionError:
                d.answers.append((time.time(), "refused"))
                http.close()  # a half-dead pooled connection: start afresh
            except requests.RequestException:  # cut mid-answer (the web died while answering)
                d.answers.append((time.time(), "broken"))
                http.close()
            if time.time() - d.first_try > self.give_up:
                return
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def wait(self, timeout: float = 600) -> None:
        """Wait until every queued webhook was acknowledged or given up."""
        for f in self.futures:
            f.result(timeout=timeout)

    def close(self) -> None:
        """Stop the sender's threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def answers(self) -> Counter:
        """How often each answer was seen, over every attempt."""
        return Counter(str(a) for d in self.deliveries for _, a in d.answers)

    def five_xx(self) -> int:
        """Attempts answered with a 5xx."""
        return sum(
            1 for d in self.deliveries for _, a in d.answers if isinstance(a, int) and a >= 500
        )

    def not_acknowledged(self) -> int:
        """Webhooks never acknowledged with a 2xx/4xx (the sender gave up)."""
        return sum(1 for d in self.deliveries if d.status is None)


def patient_outcome(db, patients: list[str]) -> dict:
    """Per patient: answered or not, and sends beyond one answer (duplicates)."""
    with db.Session() as s:
        sends = dict(
            s.execute(
                select(SandboxMessage.phone, func.count())
                .where(SandboxMessage.direction == "out", SandboxMessage.phone.in_(patients))
                .group_by(SandboxMessage.phone)
            ).all()
        )
        rows = dict(
            s.execute(
                select(OutboxMessage.chat_id, func.count())
                .where(OutboxMessage.purpose == "reply")
                .group_by(OutboxMessage.chat_id)
            ).all()
        )
        unsent = s.execute(
            select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
        ).scalar_one()
        # What a stuck send looks like, for the failure message.
        stuck = [
            f"{r.status} attempts={r.attempts} due={r.next_attempt_at} lease={r.locked_until} "
            f"error={r.last_error}"
            for r in s.execute(
                select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending")))
            ).scalars()
        ][:5]
        inbox_open = s.execute(
            select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
        ).scalar_one()
        dead = s.execute(select(func.count()).where(InboxEvent.status == "dead")).scalar_one()
        dead += s.execute(
            select(func.count()).where(OutboxMessage.status.in_(("dead", "failed")))
        ).scalar_one()
    per_patient = [sends.get(p, 0) for p in patients]
    answered = [n for n in per_patient if n]
    # One "hi" from a new patient always gets the same answer: the most common number of sends.
    size = Counter(answered).most_common(1)[0][0] if answered else 0
    reply_rows = [rows.get(f"{p}@s.whatsapp.net", 0) for p in patients]
    return {
        "answered": len(answered),
        "lost": len(patients) - len(answered),
        "answer_size": size,
        # A patient answered twice for one message: more sends than one answer has …
        "duplicated": sum(max(0, n - size) for n in per_patient),
        # … or more sends than reply rows (one send per outbox row).
        "sends_beyond_rows": sum(
            max(0, n - r) for n, r in zip(per_patient, reply_rows, strict=True)
        ),
        "unsent": unsent,
        "inbox_open": inbox_open,
        "dead_letters": dead,
        "stuck_sends": stuck,
    }


def first_answers(db, patients: list[str]) -> dict[str, float]:
    """When each patient's first answer reached the gateway (time.time())."""
    with db.Session() as s:
        rows = s.execute(
            select(SandboxMessage.phone, func.min(SandboxMessage.created_at))
            .where(SandboxMessage.direction == "out", SandboxMessage.phone.in_(patients))
            .group_by(SandboxMessage.phone)
        ).all()
    return {phone: at.timestamp() for phone, at in rows}


def all_answered(db, patients: list[str]) -> bool:
    """Every patient answered and nothing left in flight."""
    o = patient_outcome(db, patients)
    return o["answered"] == len(patients) and o["unsent"] == 0 and o["inbox_open"] == 0


# ------------------------------------------------------------------ a private PostgreSQL


def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL's server is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for folder in sorted(glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    return None


def postgres_skip_reason() -> str | None:
    """Why a private PostgreSQL cannot be started here, or None."""
    if postgres_bin() is None:
        return "initdb is not installed (PostgreSQL's server binaries are needed)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
        if not shutil.which("runuser"):
            return "running as root without runuser to run initdb as postgres"
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, sockets in its own folder, to restart."""

    def __init__(self):
        self.bin = postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="clinic-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log = self.dir / "server.log"
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def _run(self, *argv: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:2])} failed: {done.stderr}{self.tail()}")

    def tail(self) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _options(self) -> str:
        # fsync off: a test cluster on a shared disk; an immediate stop still replays its WAL.
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )

    def init(self) -> PrivatePostgres:
        """initdb and start it (databases are created by the tests)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        self.start()
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back, disconnect; `immediate`: abort, crash recovery)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str) -> None:
        """`pg_ctl restart -m MODE`, back when it accepts connections again."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-m", mode, "-w", "-t", "60", "restart")  # fmt: skip

    def destroy(self) -> None:
        """Stop it (if running) and remove its folder."""
        with contextlib.suppress(AssertionError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
