"""Webhook ingest benchmark (issue 2 "Measure"): clinic_bot against the thread-per-webhook baseline.

Runs gunicorn (`wsgi:app -w 2`) plus one `clinic-bot worker`, on SQLite and on PostgreSQL, and
`bench/baseline_app.py` under the same gunicorn settings, against a fake Whapi gateway served by
this process. Measures, for each:

1. acknowledged webhooks/s and ack latency p50/p99 at 32 connections; ack p99 at 4 connections
   (wrk, one distinct inbound text envelope per request);
2. the time until a burst of 300 greetings from 300 patients is fully answered at the gateway;
3. end-to-end reaction p50/p99 (webhook POST sent -> reply at the gateway) at 20 events/s.

Also the load generator's own ceiling against a trivial WSGI app. Prints a summary and writes
bench/results/webhook_ingest-<db>.json. Usage: python bench/webhook_ingest.py [--quick] [--db ...]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

from fake_gateway import FakeGateway  # noqa: E402
from loadgen import burst, envelope, paced  # noqa: E402

BENCH_DATE = "2026-11-24"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test_e"
SECRET = "bench-webhook-secret"
WEBHOOK_PATH = "/webhooks/whapi"
MENU_PATH = "/messages/interactive"  # clinic_bot answers a greeting with the buttons menu
TEXT_PATH = "/messages/text"  # the baseline answers with one text
PHONE_BASE = "49151"  # German mobile numbers: 49 151 + 8 digits
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets from the issue.
TARGET_ACK_RATIO = 2.0
TARGET_ACK_P99_C4_MS = 12.0
TARGET_E2E_P50_MS = 50.0

PROFILES = {
    "full": dict(
        warmup=3, duration=15, duration_c4=10, burst=300, e2e_events=200, rate=20.0, drain=600
    ),
    "quick": dict(
        warmup=1, duration=3, duration_c4=3, burst=300, e2e_events=40, rate=20.0, drain=180
    ),
}


# ---------------------------------------------------------------- processes


class Proc:
    """A subprocess in its own process group, logged to a file, stopped with its children."""

    live: list[Proc] = []

    def __init__(self, name: str, cmd: list[str], *, env: dict, cwd: Path, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Proc.live.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the process's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left after 10 s."""
        if self in Proc.live:
            Proc.live.remove(self)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # gunicorn's workers share the group; make sure none outlives its master.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def _stop_all() -> None:
    for proc in list(Proc.live):
        proc.stop()


atexit.register(_stop_all)


def _on_signal(signum, _frame):
    _stop_all()
    sys.exit(128 + signum)


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in a process group (from /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def own_seconds() -> float:
    """CPU seconds of this process (fake gateway and asyncio client) and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, procs: list[Proc], timeout: float = 60) -> None:
    """Wait until the server answers anything on `path`; fail early if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


def venv_bin(name: str) -> str:
    """A console script installed beside this Python (the project's virtualenv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} is not installed beside {sys.executable}; run `make` first")
    return str(path)


# The Procfile's web settings: 2 workers with 4 threads each, so a worker waiting on a commit's
# WAL flush (PostgreSQL) or the SQLite write lock does not leave its core idle.
WEB_THREADS = int(os.environ.get("BENCH_WEB_THREADS", "4"))


def gunicorn_cmd(app: str, port: int) -> list[str]:
    """The web command under test, the same for clinic_bot, the baseline and the trivial app."""
    cmd = [venv_bin("gunicorn"), app, "-w", "2", "--bind", f"127.0.0.1:{port}"]
    return cmd + ["--threads", str(WEB_THREADS)] if WEB_THREADS > 1 else cmd


# ---------------------------------------------------------------- the systems under test


class System:
    """One web app (and for clinic_bot its worker) under gunicorn, with the env it runs in."""

    def __init__(self, name: str, answer_path: str, workdir: Path):
        self.name = name
        self.answer_path = answer_path
        self.workdir = workdir
        self.port = free_port()
        self.procs: list[Proc] = []

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each of this system's process groups."""
        return {p.name: group_cpu_seconds(p.pid) for p in self.procs if p.alive()}

    def check_alive(self) -> None:
        """Fail loudly when a process of the system has died mid-run."""
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")

    def stop(self) -> None:
        """Stop every process of the system."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def base_env(gateway: FakeGateway, instance: Path) -> dict:
    """The environment every app process reads (CONTRACT section 2)."""
    env = dict(os.environ)
    env.update(
        CLINIC_BOT_INSTANCE=str(instance),
        SECRET_KEY="bench-secret-key",
        WHAPI_WEBHOOK_SECRET=SECRET,
        WHAPI_TOKEN="bench",
        WHAPI_API_URL=gateway.url,
        PYTHONUNBUFFERED="1",
    )
    for key in ("WHAPI_CHANNEL_ID", "CLINIC_CONFIG", "PORT", "PUBLIC_URL"):
        env.pop(key, None)
    return env


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema of the bench database (creating the database if new)."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(plain, autocommit=True)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        dbname = plain.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(plain.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        conn = psycopg.connect(plain, autocommit=True)
    with conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def start_clinic_bot(db: str, gateway: FakeGateway, workdir: Path, pg_url: str) -> System:
    """Fresh database, `clinic-bot db upgrade`, gunicorn wsgi:app -w 2 and one worker."""
    system = System(f"clinic_bot-{db}", MENU_PATH, workdir)
    instance = workdir / f"instance-{db}"
    instance.mkdir(parents=True, exist_ok=True)
    env = base_env(gateway, instance)
    if db == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{instance / 'bench.db'}"
    else:
        reset_postgres(pg_url)
        env["DATABASE_URL"] = pg_url
    subprocess.run(
        [venv_bin("clinic-bot"), "db", "upgrade"],
        env=env,
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    system.procs.append(
        Proc(
            f"web-{db}",
            gunicorn_cmd("wsgi:app", system.port),
            env=env,
            cwd=PROJECT_DIR,
            log_dir=workdir,
        )
    )
    system.procs.append(
        Proc(
            f"worker-{db}",
            [venv_bin("clinic-bot"), "worker"],
            env=env,
            cwd=PROJECT_DIR,
            log_dir=workdir,
        )
    )
    wait_http(system.port, "/healthz", system.procs)
    return system


def start_baseline(gateway: FakeGateway, workdir: Path) -> System:
    """bench/baseline_app.py under the same gunicorn settings."""
    system = System("baseline", TEXT_PATH, workdir)
    env = base_env(gateway, workdir / "instance-baseline")
    system.procs.append(
        Proc(
            "web-baseline",
            gunicorn_cmd("baseline_app:app", system.port),
            env=env,
            cwd=BENCH_DIR,
            log_dir=workdir,
        )
    )
    wait_http(system.port, "/", system.procs)
    return system


def start_trivial(workdir: Path) -> System:
    """bench/trivial_app.py under the same gunicorn settings (the generator's ceiling)."""
    system = System("trivial", TEXT_PATH, workdir)
    system.procs.append(
        Proc(
            "web-trivial",
            gunicorn_cmd("trivial_app:app", system.port),
            env=dict(os.environ),
            cwd=BENCH_DIR,
            log_dir=workdir,
        )
    )
    wait_http(system.port, "/", system.procs)
    return system


# ---------------------------------------------------------------- measurements


def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds, rounded for the report."""
    return None if seconds is None else round(seconds * 1000, 2)


def run_wrk(port: int, connections: int, seconds: float, phase: int, nonce: str) -> dict:
    """Steady load with wrk: distinct envelopes, `connections` open connections, 2 threads."""
    threads = min(2, connections)
    cmd = [
        shutil.which("wrk") or "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "webhook.lua"),
        f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
        "--",
        SECRET,
        f"{PHONE_BASE}{phase}",
        nonce,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[len("WRKJSON ") :])
    duration = raw["duration_us"] / 1e6
    acked = raw["requests"] - raw["status_errors"]
    return {
        "connections": connections,
        "threads": threads,
        "duration_s": round(duration, 3),
        "requests": raw["requests"],
        "acked": acked,
        "acks_per_s": round(acked / duration, 1),
        "errors": {k: raw[k] for k in raw if k.endswith("_errors")},
        "ack_p50_ms": round(raw["p50_us"] / 1000, 2),
        "ack_p90_ms": round(raw["p90_us"] / 1000, 2),
        "ack_p99_ms": round(raw["p99_us"] / 1000, 2),
        "ack_max_ms": round(raw["max_us"] / 1000, 2),
        "wrk_cpu_s": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
    }


def wait_answered(
    gateway: FakeGateway, path: str, prefix: str, expected: int, timeout: float
) -> tuple[int, float]:
    """Poll the fake gateway until `expected` chats under `prefix` were answered at `path`."""
    start = time.perf_counter()
    deadline = start + timeout
    got = gateway.count_answered(path, prefix)
    while got < expected and time.perf_counter() < deadline:
        time.sleep(0.02)
        got = gateway.count_answered(path, prefix)
    return got, time.perf_counter() - start


def steady_phase(system, gateway, phase, connections, seconds, nonce, drain_timeout) -> dict:
    """One wrk run, then the time until the worker has answered every acknowledged webhook."""
    cpu_before, t0 = system.cpu(), time.perf_counter()
    busy_before, own_before = machine_busy_seconds(), own_seconds()
    result = run_wrk(system.port, connections, seconds, phase, nonce)
    wrk_end = time.perf_counter()
    prefix = f"{PHONE_BASE}{phase}"
    answered, waited = wait_answered(
        gateway, system.answer_path, prefix, result["acked"], drain_timeout
    )
    cpu_after = system.cpu()
    busy = machine_busy_seconds() - busy_before
    system.check_alive()
    result["answered"] = answered
    result["all_answered"] = answered >= result["acked"]
    # The backlog the deferred work left behind, and the rate answers came out at end to end.
    result["drain_after_load_s"] = round(waited, 3)
    elapsed = wrk_end - t0 + waited
    result["answers_per_s"] = round(answered / max(1e-9, elapsed), 1)
    result["cpu_s"] = {k: round(cpu_after.get(k, 0) - v, 2) for k, v in cpu_before.items()}
    result["cpu_s"]["bench"] = round(own_seconds() - own_before, 2)
    result["cpu_s"]["wrk"] = result["wrk_cpu_s"]
    # What the machine spent beyond our processes: PostgreSQL, and other people's work.
    result["machine_busy_s"] = round(busy, 2)
    result["machine_busy_pct"] = round(100 * busy / (len(os.sched_getaffinity(0)) * elapsed), 1)
    result["other_cpu_s"] = round(busy - sum(result["cpu_s"].values()), 2)
    # CPU per webhook is steadier than throughput on a shared machine: report it too.
    result["cpu_ms_per_webhook"] = {
        k: round(v * 1000 / max(1, result["acked"]), 2)
        for k, v in result["cpu_s"].items()
        if k.startswith(("web-", "worker-"))
    }
    return result


def burst_phase(system, gateway, count, nonce, timeout) -> dict:
    """300 greetings from 300 patients at once: time until every one has its answer."""
    phones = [f"{PHONE_BASE}3{i:07d}" for i in range(count)]
    now = int(time.time())
    items = [
        (p, envelope(f"burst{nonce}.{i}-gBgTwl0rVw", p, "Hi", now)) for i, p in enumerate(phones)
    ]
    headers = {"X-Webhook-Token": SECRET}
    cpu_before = system.cpu()
    t0 = time.perf_counter()
    sent = burst("127.0.0.1", system.port, WEBHOOK_PATH, items, headers, concurrency=32)
    acked_at = max(s.ended for s in sent)
    chats = [f"{p}@s.whatsapp.net" for p in phones]
    deadline = t0 + timeout
    answered = gateway.answered(system.answer_path, chats)
    while len(answered) < count and time.perf_counter() < deadline:
        time.sleep(0.01)
        answered = gateway.answered(system.answer_path, chats)
    cpu_after = system.cpu()
    system.check_alive()
    last = max(answered.values()) if answered else None
    return {
        "events": count,
        "concurrency": 32,
        "acked": sum(1 for s in sent if s.status == 200),
        "all_acked_s": round(acked_at - t0, 3),
        "answered": len(answered),
        "all_answered": len(answered) == count,
        "all_answered_s": round(last - t0, 3) if last and len(answered) == count else None,
        "first_answered_s": round(min(answered.values()) - t0, 3) if answered else None,
        "half_answered_s": round(pct([a - t0 for a in answered.values()], 50), 3)
        if answered
        else None,
        "cpu_s": {k: round(cpu_after.get(k, 0) - v, 2) for k, v in cpu_before.items()},
    }


def e2e_phase(system, gateway, count, rate, nonce, timeout) -> dict:
    """Paced greetings from distinct patients: webhook POST sent -> reply at the gateway."""
    phones = [f"{PHONE_BASE}4{i:07d}" for i in range(count)]
    now = int(time.time())
    items = [
        (p, envelope(f"e2e{nonce}.{i}-gBgTwl0rVw", p, "Hello", now)) for i, p in enumerate(phones)
    ]
    sent = paced("127.0.0.1", system.port, WEBHOOK_PATH, items, {"X-Webhook-Token": SECRET}, rate)
    chats = {f"{s.key}@s.whatsapp.net": s for s in sent}
    deadline = time.perf_counter() + timeout
    answered = gateway.answered(system.answer_path, list(chats))
    while len(answered) < count and time.perf_counter() < deadline:
        time.sleep(0.02)
        answered = gateway.answered(system.answer_path, list(chats))
    system.check_alive()
    reaction = [answered[c] - s.started for c, s in chats.items() if c in answered]
    acks = [s.ended - s.started for s in sent if s.status == 200]
    return {
        "events": count,
        "rate_per_s": rate,
        "acked": len(acks),
        "answered": len(answered),
        "ack_p50_ms": ms(pct(acks, 50)),
        "ack_p99_ms": ms(pct(acks, 99)),
        "e2e_p50_ms": ms(pct(reaction, 50)),
        "e2e_p99_ms": ms(pct(reaction, 99)),
        "e2e_max_ms": ms(max(reaction) if reaction else None),
    }


def measure(system: System, gateway: FakeGateway, prof: dict, log) -> dict:
    """Phases 1-3 against one running system."""
    nonce = secrets.token_hex(3)
    out: dict = {"name": system.name}
    gateway.reset()  # phones repeat from one system to the next; only this system's sends count
    out["loadavg_before"] = loadavg()
    log(f"[{system.name}] warm-up {prof['warmup']} s at 32 connections")
    out["warmup"] = steady_phase(system, gateway, 0, 32, prof["warmup"], nonce, prof["drain"])
    log(f"[{system.name}] 32 connections for {prof['duration']} s")
    out["c32"] = steady_phase(system, gateway, 1, 32, prof["duration"], nonce, prof["drain"])
    log(
        f"  {out['c32']['acks_per_s']}/s acked, p50 {out['c32']['ack_p50_ms']} ms, "
        f"p99 {out['c32']['ack_p99_ms']} ms; answered {out['c32']['answered']} "
        f"({out['c32']['drain_after_load_s']} s after the load)"
    )
    log(f"[{system.name}] 4 connections for {prof['duration_c4']} s")
    out["c4"] = steady_phase(system, gateway, 2, 4, prof["duration_c4"], nonce, prof["drain"])
    log(f"  {out['c4']['acks_per_s']}/s acked, p99 {out['c4']['ack_p99_ms']} ms")
    log(f"[{system.name}] burst of {prof['burst']} greetings")
    out["burst"] = burst_phase(system, gateway, prof["burst"], nonce, prof["drain"])
    log(f"  all answered after {out['burst']['all_answered_s']} s")
    log(f"[{system.name}] {prof['e2e_events']} events at {prof['rate']}/s")
    out["e2e"] = e2e_phase(system, gateway, prof["e2e_events"], prof["rate"], nonce, 60)
    log(f"  reaction p50 {out['e2e']['e2e_p50_ms']} ms, p99 {out['e2e']['e2e_p99_ms']} ms")
    out["loadavg_after"] = loadavg()
    return out


def loadavg() -> list[str]:
    """The 1/5/15-minute load averages: other work on the machine skews every number."""
    return Path("/proc/loadavg").read_text().split()[:3]


def generator_ceiling(workdir: Path, prof: dict, log) -> dict:
    """wrk and the asyncio client against a trivial WSGI app under the same gunicorn settings."""
    system = start_trivial(workdir)
    try:
        log("[generator] wrk and the burst client against a trivial endpoint")
        run_wrk(system.port, 32, prof["warmup"], 0, "t")
        wrk = run_wrk(system.port, 32, prof["duration"], 0, "t")
        items = [
            (str(i), envelope(f"t{i}", f"{PHONE_BASE}90{i:06d}", "Hi", 0)) for i in range(2000)
        ]
        t0 = time.perf_counter()
        sent = burst("127.0.0.1", system.port, WEBHOOK_PATH, items, {}, concurrency=32)
        elapsed = time.perf_counter() - t0
    finally:
        system.stop()
    result = {
        "wrk_c32_requests_per_s": wrk["acks_per_s"],
        "wrk_c32_p99_ms": wrk["ack_p99_ms"],
        "wrk_cpu_s": wrk["wrk_cpu_s"],
        "wrk_duration_s": wrk["duration_s"],
        "burst_client_requests_per_s": round(sum(1 for s in sent if s.status == 200) / elapsed, 1),
    }
    log(
        f"  wrk {result['wrk_c32_requests_per_s']}/s, "
        f"burst client {result['burst_client_requests_per_s']}/s"
    )
    return result


# ---------------------------------------------------------------- report


def machine() -> dict:
    """The machine the numbers come from."""
    model = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        model = found.group(1).strip() if found else platform.processor()
    except OSError:
        model = platform.processor()
    mem_gib = None
    try:
        found = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_gib = round(int(found.group(1)) / 1024 / 1024, 1) if found else None
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gib": mem_gib,
        "python": platform.python_version(),
        "os": platform.platform(),
        "wrk": wrk_version.strip(),
        "loadavg_at_start": loadavg(),
    }


def ratio(a, b, digits=2):
    """a / b rounded, or None when either is missing."""
    if a is None or not b:
        return None
    return round(a / b, digits)


def compare(ours: dict, base: dict) -> tuple[dict, dict]:
    """Our/baseline ratios and the issue's targets."""
    ratios = {
        "acks_per_s_c32": ratio(ours["c32"]["acks_per_s"], base["c32"]["acks_per_s"]),
        "ack_p99_c32": ratio(ours["c32"]["ack_p99_ms"], base["c32"]["ack_p99_ms"]),
        "ack_p99_c4": ratio(ours["c4"]["ack_p99_ms"], base["c4"]["ack_p99_ms"]),
        "burst_all_answered": ratio(
            ours["burst"]["all_answered_s"], base["burst"]["all_answered_s"]
        ),
        "e2e_p50": ratio(ours["e2e"]["e2e_p50_ms"], base["e2e"]["e2e_p50_ms"]),
        "e2e_p99": ratio(ours["e2e"]["e2e_p99_ms"], base["e2e"]["e2e_p99_ms"]),
    }
    burst_ours, burst_base = ours["burst"]["all_answered_s"], base["burst"]["all_answered_s"]
    targets = {
        "acks_per_s_c32 >= 2x baseline": (ratios["acks_per_s_c32"] or 0) >= TARGET_ACK_RATIO,
        "ack p99 at 4 connections <= 12 ms": ours["c4"]["ack_p99_ms"] <= TARGET_ACK_P99_C4_MS,
        "burst answered no slower than baseline": burst_ours is not None
        and (burst_base is None or burst_ours <= burst_base),
        "e2e p50 <= 50 ms": (ours["e2e"]["e2e_p50_ms"] or 1e9) <= TARGET_E2E_P50_MS,
    }
    return ratios, targets


def _cpu(result: dict, role: str) -> float | None:
    """CPU ms per webhook of the process whose name starts with `role` in the 32-conn run."""
    per = result["c32"].get("cpu_ms_per_webhook", {})
    return next((v for k, v in per.items() if k.startswith(f"{role}-")), None)


def summary_lines(db: str, ours: dict, base: dict, ratios: dict, targets: dict) -> list[str]:
    """A plain-text table of one database's results against the baseline."""

    def row(label, key_fn, unit=""):
        a, b = key_fn(ours), key_fn(base)
        return f"  {label:<38} {a!s:>10}{unit:<3} {b!s:>10}{unit:<3}"

    lines = [
        f"== clinic_bot on {db} vs baseline ==",
        f"  {'':<38} {'clinic_bot':>13} {'baseline':>13}",
        row("acked webhooks/s at 32 connections", lambda r: r["c32"]["acks_per_s"]),
        row("ack p50 at 32 connections", lambda r: r["c32"]["ack_p50_ms"], " ms"),
        row("ack p99 at 32 connections", lambda r: r["c32"]["ack_p99_ms"], " ms"),
        row("ack p99 at 4 connections", lambda r: r["c4"]["ack_p99_ms"], " ms"),
        row("answers/s during the 32-conn run", lambda r: r["c32"]["answers_per_s"]),
        row("web CPU per webhook (32 conns)", lambda r: _cpu(r, "web"), " ms"),
        row("worker CPU per webhook (32 conns)", lambda r: _cpu(r, "worker"), " ms"),
        row("machine CPU busy (32 conns)", lambda r: r["c32"]["machine_busy_pct"], " %"),
        row("CPU s outside bench processes", lambda r: r["c32"]["other_cpu_s"], " s"),
        row("backlog drained after the load", lambda r: r["c32"]["drain_after_load_s"], " s"),
        row("burst of 300 fully answered", lambda r: r["burst"]["all_answered_s"], " s"),
        row("end-to-end p50 at 20/s", lambda r: r["e2e"]["e2e_p50_ms"], " ms"),
        row("end-to-end p99 at 20/s", lambda r: r["e2e"]["e2e_p99_ms"], " ms"),
        "  ratios (clinic_bot / baseline): " + ", ".join(f"{k} {v}" for k, v in ratios.items()),
    ]
    lines += [f"  [{'met' if ok else 'NOT met'}] {name}" for name, ok in targets.items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL),
        help="PostgreSQL database whose public schema the bench drops and recreates",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs and SQLite files"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is required (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    prof = PROFILES["quick" if args.quick else "full"]
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]

    def log(msg: str) -> None:
        print(msg, flush=True)

    info = machine()
    log(
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['ram_gib']} GiB, "
        f"Python {info['python']}, load {' '.join(info['loadavg_at_start'])}"
    )
    gateway = FakeGateway().start()
    workdir = Path(tempfile.mkdtemp(prefix="clinic-bench-"))
    results: dict[str, dict] = {}
    try:
        ceiling = generator_ceiling(workdir, prof, log)
        baseline = start_baseline(gateway, workdir)
        try:
            base = measure(baseline, gateway, prof, log)
        finally:
            baseline.stop()
        for db in dbs:
            system = start_clinic_bot(db, gateway, workdir, args.pg_url)
            try:
                results[db] = measure(system, gateway, prof, log)
            finally:
                system.stop()
    except Exception:
        print(f"benchmark failed; process logs are in {workdir}", file=sys.stderr)
        raise
    finally:
        _stop_all()
        gateway.stop()
    RESULTS_DIR.mkdir(exist_ok=True)
    print(
        f"\ngenerator ceiling against a trivial app under the same gunicorn: "
        f"wrk {ceiling['wrk_c32_requests_per_s']}/s at 32 connections, "
        f"burst client {ceiling['burst_client_requests_per_s']}/s"
    )
    for db, ours in results.items():
        ratios, targets = compare(ours, base)
        print("\n".join(["", *summary_lines(db, ours, base, ratios, targets)]))
        report = {
            "benchmark": "webhook_ingest",
            "date": BENCH_DATE,
            "run_on": date.today().isoformat(),
            "mode": "quick" if args.quick else "full",
            "db": db,
            "machine": info,
            "load": {
                "web": "gunicorn -w 2 (sync workers)",
                "worker": "one `clinic-bot worker` (clinic_bot only)",
                **prof,
            },
            "generator_ceiling": ceiling,
            "clinic_bot": ours,
            "baseline": base,
            "ratios": ratios,
            "targets_met": targets,
        }
        path = RESULTS_DIR / f"webhook_ingest-{db}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"  written: {path.relative_to(PROJECT_DIR)}")
    if args.keep_logs:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
