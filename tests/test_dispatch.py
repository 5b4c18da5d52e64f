"""No job waits forever: who starts a queued job when no worker slot is free at launch.

Without the dispatcher, `pgbg launch` tries for --start-timeout, then exits 75 when nothing
will start the job, and list, show and capacity say why and what fixes it. With it (pg_cron
running `SELECT pgbg.dispatch()` as each role), the job starts within seconds of a slot
freeing, with no further pgbg command from anyone. The server-restart cases are in
tests/test_dispatch_restart.py (they restart a server of their own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import extnames
import psycopg
import pytest
from conftest import ROOT, Result, fresh_database, job_row, retry, sql_runner
from psycopg.rows import dict_row

# within this long of a slot freeing, the dispatcher (every 5 s) has started the job
DEADLINE_S = 25


class Fillers:
    """Every free worker slot of the server taken by a sleeping pg_background worker of the
    superuser (until pg_background refuses the next with 53000)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        self.conn.execute("SET pg_background.max_workers = 1000")
        self.pids: list[int] = []
        self.launch = extnames.fn(dsn, "launch")
        # supervisors of earlier tests leave within supervisor_idle_ms, each freeing a slot
        # that would then be free for the test: first let them go
        retry(lambda: not self.conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_background' "
            "AND query = 'CALL pgbg.supervise()'").fetchall(), "no supervisor is alive", timeout=60)
        self.refill()
        assert self.pids, "no slot was free to fill"

    def refill(self) -> int:
        """Take any slot that freed meanwhile (another test's worker that ended); how many."""
        taken = 0
        while True:
            try:
                self.pids.append(self.conn.execute(f"SELECT pid FROM {self.launch}('SELECT pg_sleep(600)')")
                                 .fetchone()["pid"])
                taken += 1
            except psycopg.errors.InsufficientResources:
                return taken

    def look(self, run: Callable[[], Result]) -> Result:
        """``run()`` while every slot is taken: again if a slot freed meanwhile (a worker of an
        earlier test that ended), which ``run()`` may have seen free."""
        for _ in range(10):
            self.refill()
            res = run()
            if not self.refill():
                return res
        raise AssertionError("worker slots kept freeing")

    def free(self) -> float:
        """Stop them (SIGTERM, to verified pg_background workers), wait until they are gone; when."""
        self.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE pid = ANY(%s) AND backend_type = 'pg_background'", (self.pids,))
        retry(lambda: not self.conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)",
                                            (self.pids,)).fetchall(), "the fillers are gone", timeout=30)
        return time.monotonic()


@contextmanager
def slots_filled(dsn: str) -> Iterator[Fillers]:
    fillers = Fillers(dsn)
    try:
        yield fillers
    finally:
        fillers.free()
        fillers.conn.close()


def _proc(*args: str, dsn: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True, capture_output=True,
                          timeout=timeout)


def _state(sql_admin: Any, handle: str) -> str:
    return job_row(sql_admin, handle)["state"]


@pytest.fixture(scope="module")
def test_db(server_dsn) -> Iterator[dict[str, str]]:
    """A database of this module's own: no supervisor, waiter or queued job of another module's
    tests can start (or be) pgbg_app's supervisor here."""
    with fresh_database(server_dsn, "pgbg_dispatch") as dsns:
        yield dsns


@pytest.fixture
def sql_admin(test_db):
    with sql_runner(test_db["admin"]) as run:
        yield run


def _no_supervisor(sql_admin: Any, role: str = "pgbg_app") -> None:
    """The role's supervisor (idle, left by an earlier test) stopped: nothing runs for it."""
    sql_admin("SELECT pg_terminate_backend(pgbg.supervisor_pid(%s))", (role,))
    retry(lambda: sql_admin("SELECT pgbg.supervisor_pid(%s) IS NULL AS gone", (role,))[0]["gone"],
          "no supervisor", timeout=20)


@pytest.fixture
def no_dispatcher(test_db, sql_admin):
    """The dispatcher off in the test database (as another test may have left it), and no
    supervisor of pgbg_app alive."""
    sql_admin("DELETE FROM pgbg.meta WHERE key LIKE 'dispatch:%%'")
    _no_supervisor(sql_admin)


@pytest.fixture
def cron(server_dsn) -> str:
    """pg_cron's database; skipped where the server has no pg_cron (the 1.8 servers)."""
    with sql_runner(server_dsn) as run:
        db = run("SELECT current_setting('cron.database_name', true) AS db")[0]["db"]
    if not db:
        pytest.skip("needs pg_cron loaded (shared_preload_libraries); this server has none")
    return db


@pytest.fixture
def cron_sql(server_dsn, cron):
    from conftest import _with_db

    with sql_runner(_with_db(server_dsn, cron)) as run:
        yield run


@pytest.fixture
def dispatcher(test_db, cli, cron, cron_sql):
    """The dispatcher on for pgbg_app in the test database; off (and unscheduled) afterwards."""
    res = cli("dispatch", "enable", "pgbg_app", dsn=test_db["admin"])
    assert res.exit_code == 0, res
    try:
        yield
    finally:
        res = cli("dispatch", "disable", dsn=test_db["admin"])
        assert res.exit_code == 0, res
        assert not cron_sql("SELECT 1 FROM cron.job WHERE database = %s", (test_db["name"],))


# --- without a dispatcher ------------------------------------------------------------------

def test_launch_with_no_slot_exits_75_and_every_view_says_why(test_db, cli, sql_admin, no_dispatcher):
    with slots_filled(test_db["admin"]) as fillers:
        started = time.monotonic()
        res = cli("launch", "--start-timeout", "1s", "SELECT 42", dsn=test_db["app"])
        assert time.monotonic() - started < 30
        assert res.exit_code == 75, res
        handle = res.stdout.strip()
        assert _state(sql_admin, handle) == "queued"
        assert res.stderr.count("\n") == 1
        assert res.stderr.startswith(f"pgbg: job {handle} is queued, but nothing will start it: no supervisor of "
                                     "pgbg_app runs and no worker slot is free for one (")
        assert "free slots or raise max_worker_processes, then pgbg list as pgbg_app starts it; or an admin " \
               "runs pgbg dispatch enable (pg_cron)" in res.stderr

        why = "no supervisor of pgbg_app runs and no worker slot is free for one"
        res = fillers.look(lambda: cli("list", "-F", "json", dsn=test_db["admin"]))
        assert res.exit_code == 0, res
        [row] = [r for r in json.loads(res.stdout) if r["handle"] == handle]
        assert row["state"] == "queued" and row["reason"].startswith(f"waiting: {why}")
        assert f"queued job of pgbg_app waits: {why}" in res.stderr
        # show tries to start it: no slot
        res = fillers.look(lambda: cli("show", "-F", "json", handle, dsn=test_db["app"]))
        assert json.loads(res.stdout)["reason"].startswith(f"waiting: {why}")
        res = fillers.look(lambda: cli("capacity", dsn=test_db["app"]))
        assert f"queued job of pgbg_app waits: {why}" in res.stderr
        fillers.free()
    # the slots are free, and nothing starts the job, as launch said
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert _state(sql_admin, handle) == "queued"
        time.sleep(0.2)
    res = cli("list", "-F", "json", dsn=test_db["admin"])  # an admin's look starts no one's supervisor
    assert "no supervisor of pgbg_app runs: pgbg list (or show, wait) as pgbg_app starts it" in res.stderr
    res = cli("wait", "--timeout", "60s", handle, dsn=test_db["app"])  # the role's own command does
    assert res.exit_code == 0, res


def test_launch_starts_the_job_when_a_slot_frees_within_start_timeout(test_db, sql_admin, no_dispatcher):
    with slots_filled(test_db["admin"]) as fillers:
        import os

        env = dict(os.environ, PGBG_DSN=test_db["app"], PYTHONPATH=str(ROOT), NO_COLOR="1")
        proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", "launch", "-l", "patient", "--start-timeout",
                                 "60s", "SELECT 1"], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            retry(lambda: sql_admin("SELECT 1 FROM pgbg.job WHERE label = 'patient'"), "the job is queued", 30)
            fillers.free()
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    retry(lambda: _state(sql_admin, out.strip()) == "succeeded", "the job ran", DEADLINE_S)


def test_a_session_that_borrows_the_role_exits_75(test_db, cli, sql_admin, no_dispatcher):
    res = cli("launch", "--start-timeout", "0", "SELECT 1", dsn=test_db["admin"] + " options='-c role=pgbg_app'")
    assert res.exit_code == 75, res
    handle = res.stdout.strip()
    assert job_row(sql_admin, handle)["owner"] == "pgbg_app"
    assert f"pgbg: job {handle} is queued, but nothing will start it: this session is postgres acting as " \
           "pgbg_app, and only a session of pgbg_app itself starts pgbg_app's supervisor" in res.stderr
    res = cli("cancel", handle, dsn=test_db["app"])
    assert res.exit_code == 0 and _state(sql_admin, handle) == "canceled"


def test_start_timeout_is_checked(cli, test_db):
    res = cli("launch", "--start-timeout", "2h", "SELECT 1", dsn=test_db["app"])
    assert res.exit_code == 2 and "invalid --start-timeout '2h'" in res.stderr


# --- with the dispatcher (pg_cron) ---------------------------------------------------------

def test_the_dispatcher_starts_the_job_once_a_slot_frees(test_db, cli, sql_admin, dispatcher):
    with slots_filled(test_db["admin"]) as fillers:
        res = cli("launch", "SELECT 7", dsn=test_db["app"])
        assert res.exit_code == 0, res
        handle = res.stdout.strip()
        assert res.stderr == (f"pgbg: job {handle} is queued: no worker slot is free for pgbg_app's supervisor ("
                              f"{res.stderr.split('supervisor (')[1].split(')')[0]}): the dispatcher starts it once "
                              "one frees (to hurry, free slots or raise max_worker_processes)\n")
        fillers.refill()
        res = cli("list", "-F", "json", dsn=test_db["admin"])
        assert "the dispatcher starts it once one frees" in res.stderr
        freed = fillers.free()
    # no pgbg command from here on: only the superuser reads the registry
    retry(lambda: _state(sql_admin, handle) == "succeeded", "the dispatcher started the job", DEADLINE_S)
    assert time.monotonic() - freed < DEADLINE_S


def test_the_dispatcher_runs_as_the_role(test_db, cli, sql_admin, dispatcher, cron_sql):
    [job] = cron_sql("SELECT * FROM cron.job WHERE database = %s", (test_db["name"],))
    assert (job["username"], job["command"], job["schedule"]) == ("pgbg_app", "SELECT pgbg.dispatch()", "5 seconds")
    _no_supervisor(sql_admin)
    res = cli("launch", "--start-timeout", "0", "SELECT 1", dsn=test_db["admin"] + " options='-c role=pgbg_app'")
    assert res.exit_code == 0, res  # borrowed, but the dispatcher will start it
    retry(lambda: _state(sql_admin, res.stdout.strip()) == "succeeded", "the dispatcher started it", DEADLINE_S)
    # whose session started the supervisor: the job's worker and the supervisor are pgbg_app's own
    sup = retry(lambda: sql_admin("SELECT a.usename FROM pgbg.supervisors() s JOIN pg_stat_activity a "
                                  "ON a.pid = s.pid WHERE s.role = 'pgbg_app'"), "a supervisor", 10)
    assert sup == [{"usename": "pgbg_app"}]
    runs = cron_sql("SELECT d.username, d.status FROM cron.job_run_details d WHERE d.jobid = %s", (job["jobid"],))
    assert runs and {r["username"] for r in runs} == {"pgbg_app"}


def test_enable_schedules_with_parameters_not_text(test_db, cli, sql_admin, cron, cron_sql, server_dsn):
    odd = "pgbg o'dd \"role\"; --"
    with sql_runner(server_dsn) as run:
        run("DROP ROLE IF EXISTS " + psycopg.sql.Identifier(odd).as_string(None))
        run(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(odd)))
    try:
        assert cli("grant", odd, dsn=test_db["admin"]).exit_code == 0
        res = cli("dispatch", "enable", odd, dsn=test_db["admin"])
        assert res.exit_code == 0, res
        [job] = cron_sql("SELECT * FROM cron.job WHERE database = %s", (test_db["name"],))
        assert (job["username"], job["command"], job["jobname"]) == (
            odd, "SELECT pgbg.dispatch()", f"pgbg-dispatch {test_db['name']}")
        res = cli("dispatch", "status", "-F", "json", dsn=test_db["admin"])
        [row] = [r for r in json.loads(res.stdout) if r["role"] == odd]
        assert row["on"] is True and row["cron_job"] == job["jobid"]
        res = cli("dispatch", "disable", odd, dsn=test_db["admin"])
        assert res.exit_code == 0 and res.stderr == f"pgbg: the dispatcher is off for {odd}\n"
        assert not cron_sql("SELECT 1 FROM cron.job WHERE database = %s", (test_db["name"],))
        assert not sql_admin("SELECT 1 FROM pgbg.meta WHERE key LIKE 'dispatch:%%'")
    finally:
        cli("dispatch", "disable", dsn=test_db["admin"])
        cli("revoke", odd, dsn=test_db["admin"])
        with sql_runner(server_dsn) as run:
            run("DROP ROLE IF EXISTS " + psycopg.sql.Identifier(odd).as_string(None))


def test_pg_crons_database_is_reached_on_the_server_pgbg_reached(test_db, cron):
    """A host list could lead the connection to pg_cron's database to another host of the list
    than the one pgbg reached (another server, with load_balance_hosts or after a failover)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pgbg_cli import db, dispatch

    port = conninfo_to_dict(test_db["admin"])["port"]
    # the list's first host answers now; pgbg's connection had reached the second one
    listed = make_conninfo(test_db["admin"], host="localhost,127.0.0.1", port=f"{port},{port}")
    with db.connection(test_db["admin"]) as conn:
        assert conn.info.host == "127.0.0.1"
        cron_conn = dispatch._cron_conn(conn, listed, cron)
        try:
            assert (cron_conn.info.host, cron_conn.info.port, cron_conn.info.dbname) == ("127.0.0.1", int(port), cron)
        finally:
            cron_conn.close()


def test_only_a_superuser_enables_it(test_db, cli, cron):
    res = cli("dispatch", "enable", dsn=test_db["boss"])  # a pgbg admin, not a superuser
    assert res.exit_code == 3
    assert res.stderr == ("pgbg: pgbg dispatch enable needs a superuser: pg_cron lets only a superuser schedule "
                          "jobs that run as another role\n")


def test_status_as_a_role(test_db, cli, dispatcher):
    res = cli("dispatch", "status", "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rows = {r["role"]: r for r in json.loads(res.stdout)}
    assert rows["pgbg_app"]["on"] is True and rows["pgbg_app"]["cron_job"] is None  # pg_cron's is not its to read


def test_only_a_superuser_marks_the_dispatcher_on(test_db):
    """An admin (not a superuser) cannot make launch believe a dispatcher runs."""
    with sql_runner(test_db["boss"]) as boss, pytest.raises(psycopg.errors.InsufficientPrivilege,
                                                             match="only a superuser"):
        boss("SELECT * FROM pgbg.dispatch_mark(ARRAY['pgbg_app']::name[], true)")
    with sql_runner(test_db["app"]) as app:
        app("SELECT pgbg.dispatch()")  # a role's own run writes no row of its own making
    with sql_runner(test_db["admin"]) as admin:
        assert not admin("SELECT 1 FROM pgbg.meta WHERE key LIKE 'dispatch:%%'")


def test_grant_turns_the_dispatcher_on_for_a_new_role(test_db, cli, sql_admin, dispatcher, cron_sql, server_dsn):
    newbie = "pgbg_dispatch_newbie"
    with sql_runner(server_dsn) as run:
        run(f"DROP ROLE IF EXISTS {newbie}")
        run(f"CREATE ROLE {newbie} LOGIN")
    try:
        res = cli("grant", newbie, dsn=test_db["admin"])
        assert res.exit_code == 0, res
        assert res.stderr == f"pgbg: the dispatcher now runs every 5 seconds for {newbie} too\n"
        users = {r["username"] for r in cron_sql("SELECT username FROM cron.job WHERE database = %s",
                                                 (test_db["name"],))}
        assert users == {"pgbg_app", newbie}
        res = cli("dispatch", "status", "-F", "json", dsn=test_db["admin"])
        assert {r["role"]: r["on"] for r in json.loads(res.stdout)}[newbie] is True
        res = cli("grant", newbie, dsn=test_db["admin"])  # granted again: scheduled once
        assert res.exit_code == 0 and "dispatcher" not in res.stderr, res
        assert len(cron_sql("SELECT 1 FROM cron.job WHERE username = %s", (newbie,))) == 1
    finally:
        cli("dispatch", "disable", newbie, dsn=test_db["admin"])
        cli("revoke", newbie, dsn=test_db["admin"])
        with sql_runner(server_dsn) as run:
            run(f"DROP OWNED BY {newbie}")
            run(f"DROP ROLE IF EXISTS {newbie}")


def test_grant_without_a_dispatcher_says_nothing_of_it(test_db, cli, no_dispatcher, server_dsn):
    newbie = "pgbg_dispatch_quiet"
    with sql_runner(server_dsn) as run:
        run(f"DROP ROLE IF EXISTS {newbie}")
        run(f"CREATE ROLE {newbie} LOGIN")
    try:
        res = cli("grant", newbie, dsn=test_db["admin"])
        assert res.exit_code == 0 and "dispatcher" not in res.stderr, res
    finally:
        cli("revoke", newbie, dsn=test_db["admin"])
        with sql_runner(server_dsn) as run:
            run(f"DROP OWNED BY {newbie}")
            run(f"DROP ROLE IF EXISTS {newbie}")


def test_grant_to_a_role_that_cannot_log_in_says_the_dispatcher_cannot_run_as_it(test_db, cli, dispatcher,
                                                                               server_dsn):
    nologin = "pgbg_dispatch_nologin"
    with sql_runner(server_dsn) as run:
        run(f"DROP ROLE IF EXISTS {nologin}")
        run(f"CREATE ROLE {nologin} NOLOGIN")
    try:
        res = cli("grant", nologin, dsn=test_db["admin"])
        assert res.exit_code == 0, res
        assert res.stderr == (f"pgbg: {nologin} cannot log in: the dispatcher, which runs for pgbg_app here, "
                              "cannot run as it\n")
    finally:
        cli("revoke", nologin, dsn=test_db["admin"])
        with sql_runner(server_dsn) as run:
            run(f"DROP OWNED BY {nologin}")
            run(f"DROP ROLE IF EXISTS {nologin}")
