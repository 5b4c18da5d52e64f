"""Chaos: hundreds of jobs of four roles while clients, supervisors, workers and the server die.

    .venv/bin/python bench/chaos.py [--jobs 500] [--seed N] [--procs 8] [--deadline 600]

It runs on a sandbox instance of its own (``chaos``, or the one ``PGBG_CHAOS_INSTANCE`` names:
it restarts that server; ``PGBG_SANDBOX_INSTANCE``, which a shell may export for the tests, is
not used), which it locks for the whole run (a second run on the same instance
stops at once, exit 2), in a fresh database with pg_background and pgbg installed
(bench/scratch.py, as ``pgbg init`` does), as four LOGIN roles given ``pgbg grant`` (``chaos_r4``
with ``--admin``). Every job inserts its own key into
``chaos_ran``, whose primary key makes a second run of a job fail with 23505. Jobs are quick
inserts, long ones (``pg_sleep``), failing ones (``1/0`` in the same statement or transaction
as the insert, so the insert rolls back), some with ``--timeout``, and procedures that first
commit an attempt row in ``chaos_attempt`` (so even a run that was rolled back or killed is
seen), launched with and without ``--wait``. Some are canceled (by their owner or by the
admin role; with and without ``--grace``), detached, waited for, and some ``launch --wait``
clients are SIGKILLed mid-wait. Meanwhile it SIGKILLs random ``pgbg`` client processes (its
own children, nothing else), terminates supervisors and job workers with
``pg_terminate_backend`` (never SIGKILL: a killed backend restarts the cluster), and restarts
the server once, about halfway through, right after a burst of three long jobs per role (two
may run at once: the third waits queued through the restart).

Then every role runs ``pgbg list`` and ``pgbg wait`` (after a restart a role's queued jobs
start at its next pgbg command) until every job is final, within the deadline, and it checks:
every job final; each final state explained by what happened (a cancel it was sent, a worker
or supervisor it lost, the restart, its own error, its timeout); no job ran twice (no key
twice, no 23505, at most one attempt and one ``running`` per job); what ``pgbg wait`` and
``launch --wait`` said equals what the registry says. It prints the counts per final state,
the duplicates (must be 0) and each check; the exit code is 1 when a check fails. The
database is dropped when every check passed and kept (its name printed) otherwise.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import fcntl
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import Role, sandbox, scratch_database, server_dsn, stop  # noqa: E402

INSTANCE = os.environ.get("PGBG_CHAOS_INSTANCE") or "chaos"  # never the tests' PGBG_SANDBOX_INSTANCE
ROLES = ("chaos_r1", "chaos_r2", "chaos_r3", "chaos_r4")
ADMIN = "chaos_r4"  # also granted pgbg_admin: cancels other roles' jobs
PASSWORD = "chaos-sandbox-secret"  # sandbox only: the server listens on 127.0.0.1
# Few enough slots that jobs wait their turn (queued): two at once per role, and 24
# max_worker_processes - 14 in reserve = 10 slots for pgbg, its four supervisors included.
SETTINGS = {"max_running_per_role": "2", "reserve_slots": "14"}
BURST = 90000  # numbers of the jobs launched in a burst just before the restart
FINAL = ("succeeded", "failed", "canceled", "timed_out", "lost", "detached")
ACTIVE = ("queued", "starting", "running")

SETUP_SQL = """
CREATE TABLE public.chaos_ran (
    job_key text PRIMARY KEY,
    role    name NOT NULL DEFAULT current_user,
    pid     integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE TABLE public.chaos_attempt (
    job_key text NOT NULL,
    role    name NOT NULL DEFAULT current_user,
    pid     integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
-- A job that commits its attempt first: a second run shows as a second attempt even when
-- the first one was rolled back or killed.
CREATE PROCEDURE public.chaos_job(k text, s double precision, fail boolean)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.chaos_attempt (job_key) VALUES (k);
    COMMIT;
    PERFORM pg_catalog.pg_sleep(s);
    INSERT INTO public.chaos_ran (job_key) VALUES (k);
    IF fail THEN
        PERFORM 1 / (pg_catalog.length(k) * 0);  -- 22012 after the insert: it rolls back
    END IF;
END
$$;
"""

# What each kind of job runs; {k} is its key (letters, digits, '-'), {s} its seconds of sleep.
KINDS: dict[str, str] = {
    "quick": "INSERT INTO public.chaos_ran (job_key) VALUES ('{k}')",
    "fail": ("WITH ins AS (INSERT INTO public.chaos_ran (job_key) VALUES ('{k}') RETURNING 1) "
             "SELECT 1 / (pg_catalog.count(*)::int - 1) FROM ins"),
    "long": "INSERT INTO public.chaos_ran (job_key) SELECT '{k}' FROM pg_catalog.pg_sleep({s})",
    "proc": "CALL public.chaos_job('{k}', {s}, false)",
    "procfail": "CALL public.chaos_job('{k}', {s}, true)",
}
FAILING = {"fail", "procfail"}
CANCELS = {"cancel", "cancel-grace", "cancel-nowait", "admin-cancel"}


# --------------------------------------------------------------------------------------
# The server


def sandbox_server() -> str:
    return os.environ.get("PGBG_SANDBOX_SERVER") or "pg18-bg20"  # scripts/sandbox.sh's default


def lock_path(instance: str) -> Path:
    """The file a run on this instance (of this sandbox server) locks."""
    return Path(tempfile.gettempdir()) / f"pgbg-chaos-{sandbox_server()}-{instance}.lock"


@contextmanager
def instance_lock(instance: str) -> Iterator[None]:
    """The sandbox instance locked for the whole run (flock on a file named after it, let go when
    the run ends, however it ends), or one line and exit 2 when another run holds it."""
    path = lock_path(instance)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a process"
            stop(f"sandbox instance {instance} ({sandbox_server()}) is in use by another chaos run ({holder}; "
                 f"lock {path}): wait for it to end, or run on another instance (PGBG_CHAOS_INSTANCE=NAME)")
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield


class Server:
    """The chaos instance and the run's database; DSNs are read afresh after a restart."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self.base = server_dsn()

    def refresh(self) -> None:
        self.base = server_dsn()  # the port may change across a restart

    def dsn(self, role: str | None = None, dbname: str | None = None) -> str:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(self.base)
        params["dbname"] = dbname or self.dbname
        if role:
            params["user"], params["password"] = role, PASSWORD
        return make_conninfo(**params)

    def sql(self, query: str, params: Any = None, *, dbname: str | None = None) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn(dbname=dbname), autocommit=True, row_factory=dict_row,
                             connect_timeout=5, application_name="chaos") as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def try_sql(self, query: str, params: Any = None) -> list[dict[str, Any]] | None:
        import psycopg

        try:
            return self.sql(query, params)
        except psycopg.Error:
            return None  # the server is restarting, or the connection was cut: next time


def drop_earlier(server: Server) -> None:
    """Earlier runs' databases (this instance is the chaos run's own)."""
    from psycopg import sql

    for row in server.sql("SELECT datname FROM pg_database WHERE datname LIKE 'chaos\\_%'", dbname="postgres"):
        server.sql(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(row["datname"])),
                   dbname="postgres")


def prepare_database(server: Server) -> None:
    """The run's tables and procedure, and pgbg's settings, in its scratch database (pg_background
    and pgbg installed there, the roles made and granted pgbg)."""
    from psycopg import sql

    # what pgbg recorded is what a production server would keep (fsync stays off: a sandbox)
    server.sql(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(server.dbname)))
    server.sql(SETUP_SQL)
    roles = sql.SQL(", ").join(sql.Identifier(r) for r in ROLES)
    server.sql(sql.SQL("GRANT SELECT, INSERT ON public.chaos_ran, public.chaos_attempt TO {}").format(roles))
    for k, v in SETTINGS.items():
        args = ["settings", k, v]
        res = subprocess.run([sys.executable, "-m", "pgbg_cli", *args], env=cli_env(server.dsn(ADMIN)),
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            sys.exit(f"chaos: pgbg {' '.join(args)} failed: {res.stderr.strip()}")


# --------------------------------------------------------------------------------------
# pgbg client processes


def cli_env(dsn: str) -> dict[str, str]:
    return dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200")


@dataclass
class Ran:
    """One pgbg process: its exit code (-9 when SIGKILLed), output, and whether chaos killed it."""

    code: int
    out: str
    err: str
    killed: bool


class Clients:
    """Runs pgbg processes, keeps the live ones so that chaos may SIGKILL them (only them)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.live: dict[int, tuple[subprocess.Popen[str], str]] = {}
        self.marked: set[int] = set()
        self.ran: collections.Counter[str] = collections.Counter()
        self.sigkilled: collections.Counter[str] = collections.Counter()

    def run(self, role: str, *args: str, timeout: float = 90, kill_after: float | None = None,
            ready: Callable[[], bool] | None = None) -> Ran:
        """pgbg as ``role``; with ``kill_after``, SIGKILLed that long after ``ready()`` first holds."""
        what = args[0] + (" --wait" if "--wait" in args else "")
        proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", *args], env=cli_env(self.server.dsn(role)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        with self.lock:
            self.live[proc.pid] = (proc, what)
            self.ran[what] += 1
        end = time.monotonic() + timeout
        armed = None
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    if kill_after is not None and armed is None and (ready is None or ready()):
                        armed = now
                    if armed is not None and now - armed >= kill_after or now > end:
                        self._kill(proc, what + " (planned)" if now <= end else what + " (hung)")
                        out, err = proc.communicate()
                        break
        finally:
            with self.lock:
                self.live.pop(proc.pid, None)
                killed = proc.pid in self.marked
                self.marked.discard(proc.pid)
        return Ran(proc.returncode, out, err, killed)

    def _kill(self, proc: subprocess.Popen[str], what: str) -> None:
        with self.lock:
            if proc.poll() is None:  # still ours and running: its pid cannot have been reused
                proc.send_signal(signal.SIGKILL)
                self.marked.add(proc.pid)
                self.sigkilled[what] += 1

    def kill_one(self, rng: random.Random) -> None:
        with self.lock:
            victims = list(self.live.values())
        if victims:
            proc, what = rng.choice(victims)
            self._kill(proc, what)

    def kill_all(self) -> None:
        with self.lock:
            victims = list(self.live.values())
        for proc, what in victims:
            self._kill(proc, what)


# --------------------------------------------------------------------------------------
# The plan


@dataclass
class Spec:
    n: int
    role: str
    kind: str
    sleep: float
    mode: str  # bg: launch, print the handle | wait: launch --wait | wait-kill: launch --wait, SIGKILLed
    action: str  # none | cancel | cancel-grace | cancel-nowait | admin-cancel | detach | wait
    timeout: str | None
    delay: float


@dataclass
class Record:
    """What the driver did for one key (one launch attempt), and what pgbg answered."""

    key: str
    spec: Spec
    launch: Ran | None = None
    handle: str | None = None
    actions: list[tuple[str, Ran]] = field(default_factory=list)


def plan(n: int, rng: random.Random) -> list[Spec]:
    specs = []
    for i in range(n):
        kind = rng.choices(list(KINDS), weights=[30, 15, 25, 20, 10])[0]
        sleep = round(rng.uniform(1.0, 8.0), 1) if kind in ("long", "proc", "procfail") else 0.0
        if kind == "proc" and rng.random() < 0.3:
            sleep = 0.0
        mode = rng.choices(["bg", "wait", "wait-kill"], weights=[75, 10, 15])[0]
        action = "none"
        if mode == "bg" and sleep > 0:  # long enough to be caught running
            action = rng.choices(["none", "cancel", "cancel-grace", "cancel-nowait", "admin-cancel", "detach", "wait"],
                                 weights=[30, 12, 12, 6, 8, 12, 8])[0]
        elif mode == "bg":
            action = rng.choices(["none", "cancel", "wait"], weights=[87, 5, 8])[0]
        if action in CANCELS or action == "detach":
            sleep = round(rng.uniform(4.0, 10.0), 1)  # caught while it runs (or waits its turn)
        timeout = None
        if sleep >= 2 and rng.random() < 0.35:
            timeout = rng.choice(["500ms", "1s", "1500ms", "30s"])
        specs.append(Spec(i, ROLES[i % len(ROLES)], kind, sleep, mode, action, timeout, round(rng.uniform(0, 2.0), 2)))
    rng.shuffle(specs)
    return specs


class Driver:
    """Launches the planned jobs from a few threads; a pool of others cancels, detaches, waits."""

    def __init__(self, clients: Clients, deadline: float) -> None:
        self.clients = clients
        self.deadline = deadline
        self.lock = threading.Lock()
        self.actions = concurrent.futures.ThreadPoolExecutor(max_workers=6)
        self.records: dict[str, Record] = {}
        self.launched = 0
        self.launch_errors: collections.Counter[str] = collections.Counter()

    def key(self, spec: Spec, attempt: int) -> str:
        return f"j{spec.n:05d}-{attempt}"

    def do(self, spec: Spec) -> None:
        for attempt in range(20):
            if time.monotonic() > self.deadline:
                return
            rec = Record(self.key(spec, attempt), spec)
            with self.lock:
                self.records[rec.key] = rec
            self.launch(rec)
            # pgbg killed, or cut off by the restart: the job may have been queued all the same
            rec.handle = rec.handle or self.find(rec.key)
            if rec.handle:
                break
            # no job: again under a new key (an attempt queued after all, late, is still a job
            # of its own, and is checked like the others)
            with self.lock:
                why = "SIGKILLed before the job was queued" if rec.launch.killed else (
                    first_line(rec.launch.err) or f"exit {rec.launch.code}")
                self.launch_errors[why] += 1
            time.sleep(0.3 + attempt * 0.3)
        if rec.handle and spec.action != "none":
            self.actions.submit(self.act_later, rec)

    def act_later(self, rec: Record) -> None:
        time.sleep(rec.spec.delay)
        if time.monotonic() < self.deadline + 30:
            try:
                self.act(rec)
            except Exception as exc:  # a pool thread's error would go unseen
                print(f"chaos: {rec.spec.action} of {rec.key} failed: {exc!r}", flush=True)

    def find(self, key: str) -> str | None:
        for _ in range(30):
            rows = self.clients.server.try_sql("SELECT id, cookie FROM pgbg.job WHERE label = %s", (f"chaos-{key}",))
            if rows is not None:
                return f"{rows[0]['id']}:{rows[0]['cookie']}" if rows else None
            time.sleep(1)  # the server is restarting
        return None

    def launch(self, rec: Record) -> None:
        spec = rec.spec
        sql = KINDS[spec.kind].format(k=rec.key, s=spec.sleep)
        args = ["launch", "--label", f"chaos-{rec.key}"]
        if spec.timeout:
            args += ["--timeout", spec.timeout]
        kill_after = None
        if spec.mode != "bg":
            args.append("--wait")
        if spec.mode == "wait-kill":  # mid-wait: once its job is in the registry
            kill_after = random.uniform(0.0, min(spec.sleep, 2.0) + 0.2)

        def queued() -> bool:
            return bool(self.clients.server.try_sql("SELECT 1 FROM pgbg.job WHERE label = %s", (f"chaos-{rec.key}",)))

        rec.launch = self.clients.run(spec.role, *args, sql, timeout=120, kill_after=kill_after, ready=queued)
        if spec.mode == "bg" and not rec.launch.killed and re.fullmatch(r"\d+:\d+", rec.launch.out.strip()):
            rec.handle = rec.launch.out.strip()
        with self.lock:
            self.launched += 1

    def act(self, rec: Record) -> None:
        spec, h = rec.spec, rec.handle
        assert h is not None
        if spec.action == "cancel":
            rec.actions.append(("cancel", self.clients.run(spec.role, "cancel", h)))
        elif spec.action == "cancel-grace":
            rec.actions.append(("cancel", self.clients.run(spec.role, "cancel", "--grace", "300ms", h)))
        elif spec.action == "cancel-nowait":
            rec.actions.append(("cancel", self.clients.run(spec.role, "cancel", "--no-wait", h)))
        elif spec.action == "admin-cancel":
            rec.actions.append(("cancel", self.clients.run(ADMIN, "cancel", h)))
        elif spec.action == "detach":
            for _ in range(5):  # a queued job has no worker to detach from yet (exit 2): again later
                ran = self.clients.run(spec.role, "detach", h)
                rec.actions.append(("detach", ran))
                if ran.code != 2:
                    break
                time.sleep(0.5)
        elif spec.action == "wait":
            rec.actions.append(("wait", self.clients.run(spec.role, "wait", "--timeout", "20s", "-F", "json", h)))


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:160] if text.strip() else ""


# --------------------------------------------------------------------------------------
# Chaos


class Chaos:
    """Kills, terminates and restarts, each from its own thread, until stopped."""

    def __init__(self, server: Server, clients: Clients, driver: Driver, restart_after: int, seed: int) -> None:
        self.server = server
        self.clients = clients
        self.driver = driver
        self.restart_after = restart_after
        self.seed = seed
        self.stop = threading.Event()
        self.up = threading.Event()
        self.up.set()
        self.workers_terminated: dict[int, Any] = {}  # job id -> server time
        self.supervisors_terminated: list[tuple[str, Any]] = []  # (role, server time)
        self.restart: dict[str, Any] = {}
        self.threads = [threading.Thread(target=self._loop, args=(fn, lo, hi, i), daemon=True)
                        for i, (fn, lo, hi) in enumerate([(self._kill_cli, 2.0, 4.0),
                                                          (self._terminate_supervisor, 4.0, 8.0),
                                                          (self._terminate_worker, 3.0, 7.0)])]
        self.threads.append(threading.Thread(target=self._restart_once, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _loop(self, fn: Callable[[random.Random], None], lo: float, hi: float, i: int) -> None:
        rng = random.Random(self.seed * 10 + i)
        while not self.stop.wait(rng.uniform(lo, hi)):
            if self.up.is_set():
                fn(rng)

    def _kill_cli(self, rng: random.Random) -> None:
        self.clients.kill_one(rng)

    def _terminate_supervisor(self, rng: random.Random) -> None:
        # pid chosen and signalled in one statement (SIGTERM: never SIGKILL a backend)
        rows = self.server.try_sql(
            "SELECT s.usename AS role, pg_catalog.pg_terminate_backend(s.pid) AS ok, "
            "pg_catalog.clock_timestamp() AS at FROM (SELECT pid, usename FROM pg_catalog.pg_stat_activity "
            "  WHERE datname = pg_catalog.current_database() AND backend_type = 'pg_background' "
            "    AND (application_name LIKE 'pg\\_background:pgbg:supervisor:%%' "
            "         OR query LIKE 'CALL pgbg.supervise()%%') "
            "  ORDER BY pg_catalog.random() LIMIT 1) s")
        for r in rows or []:
            if r["ok"]:
                self.supervisors_terminated.append((r["role"], r["at"]))

    def _terminate_worker(self, rng: random.Random) -> None:
        rows = self.server.try_sql(
            "SELECT w.job_id, pg_catalog.pg_terminate_backend(w.pid) AS ok, pg_catalog.clock_timestamp() AS at "
            "FROM (SELECT pid, pg_catalog.substring(application_name, '^pg_background:pgbg:([0-9]+):')::bigint "
            "        AS job_id FROM pg_catalog.pg_stat_activity "
            "  WHERE datname = pg_catalog.current_database() AND backend_type = 'pg_background' "
            "    AND application_name ~ '^pg_background:pgbg:[0-9]+:' "
            "  ORDER BY pg_catalog.random() LIMIT 1) w")
        for r in rows or []:
            if r["ok"]:
                self.workers_terminated.setdefault(r["job_id"], r["at"])

    def _restart_once(self) -> None:
        while not self.stop.wait(0.2):
            if self.driver.launched >= self.restart_after:
                break
        else:
            return
        # a burst first: three long jobs per role (two run at once), so some wait queued
        # through the restart and must start at their role's next pgbg command
        burst = [Spec(BURST + i, ROLES[i % len(ROLES)], "proc", 4.0, "bg", "none", None, 0.0) for i in range(12)]
        launchers = [threading.Thread(target=self.driver.do, args=(spec,)) for spec in burst]
        for t in launchers:
            t.start()
        for t in launchers:
            t.join()
        before = self.server.try_sql("SELECT pg_catalog.clock_timestamp() AS at, "
                                     "pg_catalog.count(*) FILTER (WHERE state = 'queued') AS queued, "
                                     "pg_catalog.count(*) FILTER (WHERE state = 'running') AS running FROM pgbg.job")
        self.up.clear()
        t0 = time.monotonic()
        try:
            sandbox("restart", fatal=False, timeout=180)
            self.server.refresh()
            after = self.server.sql("SELECT pg_catalog.pg_postmaster_start_time() AS at")[0]["at"]
        except Exception as exc:  # said; the check 'the server restarted once' then fails
            print(f"chaos: the restart failed: {exc}", flush=True)
            return
        finally:
            self.up.set()
        self.restart = {"before": before[0] if before else {}, "started": after,
                        "seconds": time.monotonic() - t0, "after_launches": self.driver.launched}
        seen = self.restart["before"]
        print(f"chaos: server restarted after {self.restart['after_launches']} launches, with "
              f"{seen.get('queued', '?')} jobs queued and {seen.get('running', '?')} running "
              f"({self.restart['seconds']:.1f} s down)", flush=True)


# --------------------------------------------------------------------------------------
# Settling and checking


JOBS_SQL = """
SELECT j.id, j.cookie, j.owner, j.label, j.state, j.reason, j.sqlstate, j.message, j.timeout_ms,
       j.cancel_requested_at, j.cancel_by, j.cancel_reason, j.detach_requested_at,
       j.queued_at, j.started_at, j.finished_at, j.worker_started,
       pg_catalog.substring(j.label, '^chaos-(.*)$') AS key,
       (SELECT pg_catalog.count(*) FROM pgbg.job_event e WHERE e.job_id = j.id AND e.to_state = 'running') AS runs
  FROM pgbg.job j ORDER BY j.id
"""


def settle(server: Server, clients: Clients, deadline: float) -> float:
    """Every role looks (pgbg list; pgbg wait on its jobs) until no job is live; seconds taken."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        rows = server.try_sql("SELECT owner, id, cookie FROM pgbg.job WHERE state = ANY(%s)", (list(ACTIVE),))
        if rows == []:
            return time.monotonic() - t0
        by_role: dict[str, list[str]] = collections.defaultdict(list)
        for r in rows or []:
            by_role[r["owner"]].append(f"{r['id']}:{r['cookie']}")
        left = max(1, int(min(30, deadline - time.monotonic())))
        threads = [threading.Thread(target=clients.run, args=(role, "list", "-F", "json", "-n", "1"))
                   for role in ROLES]
        threads += [threading.Thread(target=clients.run,
                                     args=(role, "wait", "--timeout", f"{left}s", "-F", "json", *hs),
                                     kwargs={"timeout": left + 60})
                    for role, hs in by_role.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.5)
    return time.monotonic() - t0


def quiet(server: Server, deadline: float) -> int:
    """Waits until no job worker of this database runs (detached ones end by themselves)."""
    while True:
        rows = server.try_sql("SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_stat_activity "
                              "WHERE datname = pg_catalog.current_database() AND backend_type = 'pg_background' "
                              "AND application_name ~ '^pg_background:pgbg:[0-9]+:'")
        n = rows[0]["n"] if rows else -1
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.5)


@dataclass
class Check:
    name: str
    bad: list[str]

    @property
    def ok(self) -> bool:
        return not self.bad


SLACK = datetime.timedelta(seconds=2)


def explain_lost(job: dict[str, Any], chaos: Chaos) -> str | None:
    """Why a lost job is lost, from what chaos did; None when nothing explains it."""
    reason = job["reason"] or ""
    restarted = chaos.restart.get("started")
    if "restarted" in reason:
        begun = job["worker_started"] or job["started_at"] or job["queued_at"]
        return "server restart" if restarted and begun < restarted else None
    if "supervisor exited" in reason or reason.startswith("orphaned"):
        # (a supervisor signalled a moment before a job was queued may still have claimed it)
        hit = any(role == job["owner"] and job["queued_at"] - SLACK <= at <= job["finished_at"]
                  for role, at in chaos.supervisors_terminated)
        by_restart = restarted is not None and job["queued_at"] < restarted <= job["finished_at"]
        return "supervisor terminated" if hit or by_restart else None
    if "unusable handle" in reason:
        return "pg_background 2.0.3 handle race"
    return None


def check(jobs: list[dict[str, Any]], ran: dict[str, dict[str, Any]], attempts: collections.Counter[str],
          records: dict[str, Record], chaos: Chaos, cli_states: dict[str, str], workers_left: int,
          planned: int) -> list[Check]:
    restarted = chaos.restart.get("started")
    by_key: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for j in jobs:
        by_key[j["key"]].append(j)

    def ids(rows: Iterable[dict[str, Any]], why: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
        return [f"{j['id']}:{j['cookie']} {j['label']} {j['state']}" + (f": {why(j)}" if why else "") for j in rows]

    checks = [
        Check(f"at least {planned} jobs", [] if len(jobs) >= planned else [f"only {len(jobs)} jobs"]),
        Check("the server restarted once, mid-run", [] if restarted else ["no restart"]),
        Check("every job final (none queued, starting or running)",
              ids([j for j in jobs if j["state"] not in FINAL])),
        Check("no job worker left running", [] if workers_left == 0 else [f"{workers_left} workers still run"]),
        Check("every job's label names a key the driver launched",
              ids([j for j in jobs if j["key"] not in records])),
        Check("no key ran without a job", [k for k in ran if k not in by_key]),
        Check("no key submitted twice", [f"{k}: {len(v)} jobs" for k, v in by_key.items() if len(v) > 1]),
        Check("no job ran as another role", ids([j for j in jobs if j["key"] in ran and ran[j["key"]]["role"]
                                                != j["owner"]])),
        Check("no job entered running twice", ids([j for j in jobs if j["runs"] > 1], lambda j: f"{j['runs']} runs")),
        Check("no procedure job attempted twice", [f"{k}: {n} attempts" for k, n in attempts.items() if n > 1]),
        Check("no 23505 (a second insert of a key)", ids([j for j in jobs if j["sqlstate"] == "23505"])),
    ]

    def kind(j: dict[str, Any]) -> str:
        return records[j["key"]].spec.kind if j["key"] in records else "?"

    def sent(j: dict[str, Any], what: str) -> bool:
        rec = records.get(j["key"])
        return bool(rec) and any(a == what for a, _ in rec.actions)

    succeeded = [j for j in jobs if j["state"] == "succeeded"]
    checks.append(Check("succeeded: its key inserted exactly once, no error, not a failing kind",
                        ids([j for j in succeeded if j["key"] not in ran or j["sqlstate"] or kind(j) in FAILING])))
    checks.append(Check("succeeded: no reason, or 'finished before the cancel took effect' after a cancel",
                        ids([j for j in succeeded if j["reason"] and not (
                            j["reason"] == "finished before the cancel took effect" and j["cancel_requested_at"])],
                            lambda j: j["reason"])))

    def failed_ok(j: dict[str, Any]) -> bool:
        if not j["sqlstate"] or not j["message"]:
            return False
        if j["sqlstate"] == "22012":
            return kind(j) in FAILING and j["key"] not in ran
        if j["sqlstate"] in ("57P01", "57014"):
            # terminated: by chaos, or by the restart's shutdown (pg_background's worker turns
            # SIGTERM into a query cancel: 57014)
            return j["id"] in chaos.workers_terminated or (
                restarted is not None and (j["started_at"] or j["queued_at"]) < restarted)
        return False

    checks.append(Check("failed: its own 1/0 (insert rolled back) or a worker chaos terminated",
                        ids([j for j in jobs if j["state"] == "failed" and not failed_ok(j)],
                            lambda j: f"[{j['sqlstate']}] {j['message']}")))
    checks.append(Check("canceled: a cancel was sent for it, and the reason says by whom or why",
                        ids([j for j in jobs if j["state"] == "canceled" and not (
                            j["cancel_requested_at"] and j["reason"] and (sent(j, "cancel"))
                            and j["cancel_by"] in (j["owner"], ADMIN))],
                            lambda j: f"{j['cancel_by']}: {j['reason']}")))
    checks.append(Check("timed_out: launched with --timeout and ran at least that long",
                        ids([j for j in jobs if j["state"] == "timed_out" and not (
                            j["timeout_ms"] and j["reason"] and "timeout" in j["reason"] and j["started_at"]
                            and (j["finished_at"] - j["started_at"]).total_seconds() * 1000 >= j["timeout_ms"] - 50)],
                            lambda j: j["reason"])))
    checks.append(Check("lost: the reason names what chaos did (restart, supervisor terminated)",
                        ids([j for j in jobs if j["state"] == "lost" and not explain_lost(j, chaos)],
                            lambda j: j["reason"])))
    checks.append(Check("detached: a detach was sent for it",
                        ids([j for j in jobs if j["state"] == "detached" and not (
                            j["detach_requested_at"] and sent(j, "detach") and j["reason"])])))
    checks.append(Check("no key of a failing job (its insert rolls back), nor of one that never started",
                        ids([j for j in jobs if j["key"] in ran and (
                            kind(j) in FAILING or j["started_at"] is None and j["worker_started"] is None)])))
    # what the CLI said against the registry
    final = {f"{j['id']}:{j['cookie']}": j["state"] for j in jobs}
    checks.append(Check("pgbg wait (end of run) says what the registry says",
                        [f"{h}: wait said {s}, registry {final.get(h)}" for h, s in cli_states.items()
                         if final.get(h) != s]))
    told = []
    by_label = {j["label"]: j for j in jobs}
    for rec in records.values():
        job = by_label.get(f"chaos-{rec.key}")
        said: list[tuple[str, Ran]] = [("wait", r) for a, r in rec.actions if a == "wait"]
        if rec.spec.mode != "bg" and rec.launch is not None:
            said.append(("launch --wait", rec.launch))
        for what, r in said:
            if r.killed or r.code not in (0, 1) or job is None:
                continue
            if (r.code == 0) != (job["state"] == "succeeded"):
                told.append(f"{job['id']} {job['label']}: {what} exit {r.code}, state {job['state']}")
    checks.append(Check("launch --wait and wait exit 0 exactly when the job succeeded", told))
    return checks


def duplicates(jobs: list[dict[str, Any]], attempts: collections.Counter[str]) -> int:
    """Second runs of a job, by any sign: a 23505, a second attempt, a second 'running'."""
    dup = {j["key"] for j in jobs if j["sqlstate"] == "23505" or j["runs"] > 1}
    dup |= {k for k, n in attempts.items() if n > 1}
    seen: collections.Counter[str] = collections.Counter(j["key"] for j in jobs)
    dup |= {k for k, n in seen.items() if n > 1}
    return len(dup)


def reason_shape(reason: str | None) -> str:
    if not reason:
        return "-"
    return re.sub(r"\d+", "N", reason)[:110]


# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs to launch (default 500)")
    parser.add_argument("--seed", type=int, default=None, help="the plan's and chaos's random seed")
    parser.add_argument("--procs", type=int, default=8, help="launching client threads (default 8)")
    parser.add_argument("--deadline", type=float, default=600,
                        help="hard limit on the whole run, seconds (launches stop at 4/5 of it)")
    parser.add_argument("--keep", action="store_true", help="keep the database even when every check passed")
    opts = parser.parse_args()
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 20)
    random.seed(seed)
    t_start = time.monotonic()
    os.environ["PGBG_SANDBOX_INSTANCE"] = INSTANCE  # scripts/sandbox.sh's, here and in bench/scratch.py
    with instance_lock(INSTANCE):
        sandbox("start", timeout=180)
        server = Server("postgres")
        drop_earlier(server)
        roles = [Role(r, password=PASSWORD, admin=r == ADMIN) for r in ROLES]
        with scratch_database("chaos", roles=roles) as scratch:
            scratch.keep = True  # until every check has passed
            server.dbname = scratch.name
            prepare_database(server)
            failed = run(opts, seed, t_start, server)
            scratch.keep = bool(failed) or opts.keep
    if failed or opts.keep:
        print(f"chaos: {len(failed)} checks failed; database {server.dbname} kept on instance {INSTANCE}")
        return 1 if failed else 0
    print("chaos: every check passed")
    return 0


def run(opts: argparse.Namespace, seed: int, t_start: float, server: Server) -> list[Check]:
    """The run, in its prepared database: the failed checks."""
    deadline = t_start + opts.deadline
    clients = Clients(server)

    def give_up() -> None:
        clients.kill_all()
        print(f"chaos: hard deadline passed; giving up (database {server.dbname} kept)", flush=True)
        os._exit(3)

    # the last resort: whatever hangs, the run ends (its children killed) at the deadline
    watchdog = threading.Timer(deadline - time.monotonic(), give_up)
    watchdog.daemon = True
    watchdog.start()
    version = server.sql("SELECT pg_catalog.current_setting('server_version') AS v, "
                         "(SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_background') AS e")[0]
    print(f"chaos: seed {seed}, {opts.jobs} jobs, roles {', '.join(ROLES)} ({ADMIN} admin), {opts.procs} clients, "
          f"{', '.join(f'{k} {v}' for k, v in SETTINGS.items())}; instance {INSTANCE}, database {server.dbname}, "
          f"PostgreSQL {version['v']}, pg_background {version['e']}",
          flush=True)

    driver = Driver(clients, t_start + opts.deadline * 0.8)
    chaos = Chaos(server, clients, driver, restart_after=int(opts.jobs * 0.45), seed=seed)
    specs = plan(opts.jobs, random.Random(seed))
    todo = list(specs)
    todo_lock = threading.Lock()

    def launcher() -> None:
        while True:
            with todo_lock:
                if not todo:
                    return
                spec = todo.pop()
            driver.do(spec)

    chaos.start()
    threads = [threading.Thread(target=launcher, daemon=True) for _ in range(opts.procs)]
    for t in threads:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            print(f"chaos: {time.monotonic() - t_start:5.0f}s launched {driver.launched}, "
                  f"SIGKILLed {sum(clients.sigkilled.values())} clients, "
                  f"terminated {len(chaos.supervisors_terminated)} supervisors and "
                  f"{len(chaos.workers_terminated)} workers", flush=True)
    driver.actions.shutdown(wait=True)
    chaos.finish()
    t_launched = time.monotonic() - t_start
    if not chaos.restart:
        print("chaos: the launches ended before the restart: restarting now", flush=True)
        sandbox("restart", timeout=180)
        server.refresh()
        chaos.restart = {"started": server.sql("SELECT pg_catalog.pg_postmaster_start_time() AS at")[0]["at"],
                         "after_launches": driver.launched, "seconds": 0.0}

    settle_s = settle(server, clients, deadline - 50)
    workers_left = quiet(server, deadline - 40)
    # the CLI's view at the end, one pgbg wait per role over all of its jobs
    jobs = server.sql(JOBS_SQL)
    cli_states: dict[str, str] = {}

    def wait_all(role: str) -> None:
        hs = [f"{j['id']}:{j['cookie']}" for j in jobs if j["owner"] == role]
        r = clients.run(role, "wait", "--timeout", "5s", "-F", "json", *hs, timeout=25)
        try:
            cli_states.update({x["handle"]: x["state"] for x in json.loads(r.out)})
        except ValueError:
            cli_states[f"({role})"] = f"exit {r.code}: {first_line(r.err)}"

    waits = [threading.Thread(target=wait_all, args=(role,)) for role in ROLES if any(j["owner"] == role for j in jobs)]
    for t in waits:
        t.start()
    for t in waits:
        t.join()
    jobs = server.sql(JOBS_SQL)
    ran = {r["job_key"]: r for r in server.sql("SELECT job_key, role FROM public.chaos_ran")}
    attempts = collections.Counter({r["job_key"]: r["n"] for r in server.sql(
        "SELECT job_key, pg_catalog.count(*) AS n FROM public.chaos_attempt GROUP BY job_key")})
    checks = check(jobs, ran, attempts, driver.records, chaos, cli_states, workers_left, opts.jobs)
    checks.append(Check("no pgbg process hung past its timeout",
                        [f"{k}: {v}" for k, v in clients.sigkilled.items() if k.endswith("(hung)")]))
    dups = duplicates(jobs, attempts)

    states = collections.Counter(j["state"] for j in jobs)
    print()
    print(f"jobs                 {len(jobs)}   (launch attempts {len(driver.records)}, "
          f"refused {sum(driver.launch_errors.values())})")
    for s in FINAL + ACTIVE:
        if states[s] or s in FINAL:
            print(f"  {s:<18} {states[s]}")
    print(f"duplicates           {dups}")
    print(f"keys in chaos_ran    {len(ran)}   (procedure attempts {sum(attempts.values())})")
    print(f"chaos                {sum(clients.sigkilled.values())} pgbg processes SIGKILLed "
          f"({', '.join(f'{k} {v}' for k, v in sorted(clients.sigkilled.items()))}); "
          f"{len(chaos.supervisors_terminated)} supervisors and {len(chaos.workers_terminated)} job workers "
          f"terminated; 1 server restart after {chaos.restart.get('after_launches')} launches")
    print(f"pgbg processes run   {sum(clients.ran.values())}   "
          f"({', '.join(f'{k} {v}' for k, v in sorted(clients.ran.items()))})")
    print(f"time                 {time.monotonic() - t_start:.0f} s: launches {t_launched:.0f} s, "
          f"then every job final in {settle_s:.1f} s")
    if driver.launch_errors:
        print("launches refused (tried again under a new key):")
        for msg, n in driver.launch_errors.most_common(6):
            print(f"  {n:4d}  {msg}")
    print("what the driver did, and how those jobs ended:")
    by_label = {j["label"]: j for j in jobs}
    did: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for rec in driver.records.values():
        job = by_label.get(f"chaos-{rec.key}")
        if job is None:
            continue
        did[f"{rec.spec.kind} job"][job["state"]] += 1
        if rec.spec.timeout:
            did[f"--timeout {rec.spec.timeout}"][job["state"]] += 1
        if rec.spec.mode != "bg":
            did[f"launch --wait{', SIGKILLed' if rec.launch and rec.launch.killed else ''}"][job["state"]] += 1
        if rec.spec.action != "none":
            did[rec.spec.action][job["state"]] += 1
        if job["id"] in chaos.workers_terminated:
            did["worker terminated"][job["state"]] += 1
    for what, ended in sorted(did.items()):
        print(f"  {sum(ended.values()):4d}  {what:<22} " + ", ".join(f"{k} {v}" for k, v in ended.most_common()))
    codes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for rec in driver.records.values():
        for what, r in ([("launch" + (" --wait" if rec.spec.mode != "bg" else ""), rec.launch)] if rec.launch else []) \
                + rec.actions:
            codes[what]["SIGKILLed" if r.killed else f"exit {r.code}"] += 1
    print("pgbg exit codes:      " + "; ".join(
        f"{what}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for what, c in sorted(codes.items())))
    errors = collections.Counter(
        f"{what}: {first_line(r.err)}" for rec in driver.records.values()
        for what, r in rec.actions + ([("launch --wait", rec.launch)] if rec.launch and rec.spec.mode != "bg" else [])
        if r.code not in (0, 1) and not r.killed)
    for msg, n in errors.most_common(5):
        print(f"  {n:4d}  {msg}")
    print("final states and reasons:")
    shapes = collections.Counter((j["state"], j["sqlstate"] or "", reason_shape(j["reason"])) for j in jobs)
    for (state, code, why), n in sorted(shapes.items()):
        print(f"  {n:4d}  {state:<10} {code:<6} {why}")
    print("checks:")
    for c in checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}")
        for line in c.bad[:8]:
            print(f"          {line}")
        if len(c.bad) > 8:
            print(f"          ... and {len(c.bad) - 8} more")
    return [c for c in checks if not c.ok]


if __name__ == "__main__":
    sys.exit(main())
