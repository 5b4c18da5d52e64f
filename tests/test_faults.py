"""Faults: a killed CLI, a killed supervisor, a crashed worker, a restarted server.

These crash and restart a server, so they run on an instance of their own
(PGBG_SANDBOX_INSTANCE=faults) of the selected server (PGBG_SANDBOX_SERVER), never on the
one the other tests share. The instance's
port may change across a restart, so DSNs are read afresh each time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import APP_PASSWORD, ROOT, SANDBOX, SERVER, _drop_db, _make_db, _with_db, retry
from psycopg import sql as psql
from psycopg.rows import dict_row

INSTANCE = "faults"
# the default server keeps the lock file it always had; each other server has its own
LOCK_NAME = f"pgbg-sandbox-{INSTANCE}.lock" if SERVER == "pg18-bg20" else f"pgbg-sandbox-{SERVER}-{INSTANCE}.lock"


def _sandbox(*args: str) -> str:
    env = dict(os.environ, PGBG_SANDBOX_INSTANCE=INSTANCE)
    return subprocess.run(["bash", str(SANDBOX), *args], check=True, capture_output=True, text=True,
                          env=env, timeout=180).stdout.strip()


class Faults:
    """The faults instance, one fresh database on it, and ways to break it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def server(self) -> str:
        return _sandbox("dsn", "admin")

    def dsn(self, role: str = "app") -> str:
        if role == "admin":
            return _with_db(self.server(), self.name)
        return _with_db(self.server(), self.name, f"pgbg_{role}", APP_PASSWORD)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn("admin"), autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def job(self, handle: str | None = None, *, label: str | None = None) -> dict[str, Any] | None:
        if handle:
            job_id, cookie = handle.split(":")
            rows = self.sql("SELECT * FROM pgbg.job WHERE id = %s AND cookie = %s", (int(job_id), int(cookie)))
        else:
            rows = self.sql("SELECT * FROM pgbg.job WHERE label = %s", (label,))
        return rows[0] if rows else None

    def alive(self, pid: int) -> bool:
        return bool(self.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))

    def wait_up(self, timeout: float = 60) -> None:
        def up() -> bool:
            try:
                self.sql("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        retry(up, "the faults server accepts connections again", timeout=timeout, interval=0.2)


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    # One pytest run at a time crashes and restarts this instance: two at once would kill
    # each other's connections, so a second run waits here for the first to finish.
    import fcntl
    import tempfile

    with open(os.path.join(tempfile.gettempdir(), LOCK_NAME), "w") as lock:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run has held the {INSTANCE} instance of {SERVER} for 10 minutes")
                time.sleep(0.5)
        yield from _faults_instance()


def _faults_instance() -> Iterator[Faults]:
    _sandbox("start")
    name = f"pgbg_faults_{uuid.uuid4().hex[:8]}"
    _make_db(_sandbox("dsn", "admin"), name, init=True)
    f = Faults(name)
    # The sandbox runs with synchronous_commit = off, whose last commits a crash restart
    # forgets (the init of this very database, if the crash comes soon enough): commit as
    # a production server does, so what pgbg recorded is what recovery finds.
    f.sql(psql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(psql.Identifier(name)))
    f.sql("SET synchronous_commit = on; CHECKPOINT")
    yield f
    _drop_db(f.server(), name)


def _pgbg(*args: str, dsn: str, timeout: float = 60, new_session: bool = False) -> Any:
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    cmd = [sys.executable, "-m", "pgbg_cli", *args]
    if new_session:
        return subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=timeout)


def _launch(faults: Faults, sql: str, *args: str, role: str = "app") -> str:
    res = _pgbg("launch", *args, sql, dsn=faults.dsn(role))
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _running(faults: Faults, handle: str | None = None, *, label: str | None = None) -> dict[str, Any]:
    def check() -> Any:
        job = faults.job(handle, label=label)
        return job and job["state"] == "running" and job["worker_started"] is not None and job

    return retry(check, f"job {handle or label} running", timeout=20)


def _supervisor_pid(faults: Faults, role: str = "pgbg_app") -> int:
    return retry(lambda: faults.sql("SELECT pgbg.supervisor_pid(%s) AS pid", (role,))[0]["pid"],
                 "a live supervisor")


def _show(faults: Faults, handle: str) -> dict[str, Any]:
    res = _pgbg("show", "--format", "json", handle, dsn=faults.dsn())
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_killing_the_launching_cli_loses_nothing(faults):
    label = f"k9cli-{uuid.uuid4().hex[:8]}"
    table = f"k9_{uuid.uuid4().hex[:8]}"
    faults.sql(f"CREATE TABLE {table} (v text)")
    faults.sql(f"GRANT INSERT ON {table} TO pgbg_app")
    proc = _pgbg("launch", "--wait", "-l", label, f"SELECT pg_sleep(1); INSERT INTO {table} VALUES ('ran')",
                 dsn=faults.dsn(), new_session=True)
    try:
        job = _running(faults, label=label)
    finally:
        proc.kill()  # SIGKILL: no cleanup at all
        proc.communicate(timeout=30)
    handle = f"{job['id']}:{job['cookie']}"
    res = _pgbg("wait", "--timeout", "30s", "--format", "json", handle, dsn=faults.dsn())
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["state"] == "succeeded"
    assert faults.job(handle)["command_tag"] == "INSERT"
    assert faults.sql(f"SELECT v FROM {table}") == [{"v": "ran"}]


def test_supervisor_terminated_orphan_then_lost(faults):
    # the job runs until the test releases its advisory lock: it is certain to be running
    # while the supervisor is gone, however slow the machine
    gate = uuid.uuid4().int % 2**31
    with psycopg.connect(faults.dsn("admin"), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        handle = _launch(faults, f"SELECT pg_advisory_lock({gate})")
        job = _running(faults, handle)
        sup = _supervisor_pid(faults)
        assert faults.sql("SELECT pg_terminate_backend(%s) AS ok", (sup,))[0]["ok"]
        retry(lambda: not faults.alive(sup), "the supervisor is gone")
        assert faults.alive(job["worker_pid"])  # the worker goes on without it

        listed = _pgbg("list", "--format", "json", dsn=faults.dsn())
        assert listed.returncode == 0, listed.stderr
        row = next(r for r in json.loads(listed.stdout) if r["handle"] == handle)
        assert row["state"] == "running" and row["reason"].startswith("orphaned")
        shown = _show(faults, handle)
        assert shown["state"] == "running" and str(job["worker_pid"]) in shown["reason"]
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))

    # once the worker ends, the next look says lost (never running forever)
    res = _pgbg("wait", "--timeout", "30s", "--format", "json", handle, dsn=faults.dsn())
    assert res.returncode == 1, res.stderr
    rec = json.loads(res.stdout)[0]
    assert rec["state"] == "lost" and "supervisor exited" in rec["reason"]
    assert "lost" in res.stderr


def test_cancel_of_an_orphan_stops_its_worker(faults):
    # renamed: the worker no longer carries pgbg's label, only its pid and start time say it is the job's
    handle = _launch(faults, "SET application_name = 'renamed'; SELECT pg_sleep(60)")
    job = _running(faults, handle)
    sup = _supervisor_pid(faults)
    faults.sql("SELECT pg_terminate_backend(%s)", (sup,))
    retry(lambda: not faults.alive(sup), "the supervisor is gone")
    res = _pgbg("cancel", "--format", "json", handle, dsn=faults.dsn())
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)[0]
    assert rec["state"] == "canceled" and "no supervisor" in rec["reason"]
    assert not faults.alive(job["worker_pid"])


def test_timeout_of_an_orphan_still_applies(faults):
    handle = _launch(faults, "SELECT pg_sleep(60)", "--timeout", "1s")
    job = _running(faults, handle)
    sup = _supervisor_pid(faults)
    faults.sql("SELECT pg_terminate_backend(%s)", (sup,))
    retry(lambda: not faults.alive(sup), "the supervisor is gone")
    res = _pgbg("wait", "--timeout", "30s", "--format", "json", handle, dsn=faults.dsn())
    assert res.returncode == 1, res.stderr
    rec = json.loads(res.stdout)[0]
    assert rec["state"] == "timed_out" and "timeout of 1s" in rec["reason"]
    assert not faults.alive(job["worker_pid"])


def test_admin_cancels_another_roles_orphan(faults):
    handle = _launch(faults, "SELECT pg_sleep(60)", role="other")
    job = _running(faults, handle)
    sup = _supervisor_pid(faults, "pgbg_other")
    faults.sql("SELECT pg_terminate_backend(%s)", (sup,))
    retry(lambda: not faults.alive(sup), "the supervisor is gone")
    res = _pgbg("cancel", "--format", "json", handle, dsn=faults.dsn("boss"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["state"] == "canceled"
    assert faults.job(handle)["cancel_by"] == "pgbg_boss"
    assert not faults.alive(job["worker_pid"])


def test_crashed_worker_reads_lost_after_recovery(faults):
    handle = _launch(faults, "SELECT pg_sleep(60)")
    job = _running(faults, handle)
    os.kill(job["worker_pid"], signal.SIGKILL)  # the postmaster now restarts every backend
    time.sleep(0.5)
    faults.wait_up()

    def looked() -> Any:
        res = _pgbg("show", "--format", "json", handle, dsn=faults.dsn())
        return res.returncode == 0 and json.loads(res.stdout)

    rec = retry(looked, "pgbg show answers after recovery", timeout=60, interval=0.3)
    assert rec["state"] == "lost"
    # when it ended at the latest: when the server came back, not when `show` noticed
    back = faults.sql("SELECT to_char(pgbg.server_started() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS t")
    assert rec["reason"] == f"the server restarted at {back[0]['t']} UTC while the job ran; its outcome is unknown"
    assert _pgbg("wait", handle, dsn=faults.dsn()).returncode == 1


def test_a_job_claimed_after_the_restart_did_not_run_through_it(faults):
    """A job queued before the server last started, claimed (starting) by a supervisor started
    after it, which then exited before launching it: it never ran, and reconcile must say its
    supervisor exited while starting it, not that the server restarted while it ran. A supervisor
    that dies between its claim and its launch cannot be timed from a test, so the superuser sets
    that state up directly, pgbg's triggers off for that one transaction."""
    with psycopg.connect(faults.dsn("admin"), row_factory=dict_row) as conn:
        conn.execute("SET ROLE pgbg_app")
        job = conn.execute("SELECT (pgbg.submit('SELECT 43')).*").fetchone()
        conn.execute("RESET ROLE")
        conn.execute("ALTER TABLE pgbg.job DISABLE TRIGGER USER")
        conn.execute("UPDATE pgbg.job SET state = 'starting', queued_at = pgbg.server_started() - interval '1 day', "
                     "supervisor_pid = 999999, supervisor_start = clock_timestamp() WHERE id = %s", (job["id"],))
        conn.execute("ALTER TABLE pgbg.job ENABLE TRIGGER USER")
    handle = f"{job['id']}:{job['cookie']}"
    rec = _show(faults, handle)
    assert rec["state"] == "lost", rec
    assert rec["reason"] == "its supervisor exited while starting it", rec


def test_server_restart_running_lost_queued_survive(faults):
    table = f"rq_{uuid.uuid4().hex[:8]}"
    faults.sql(f"CREATE TABLE {table} (v int)")
    faults.sql(f"GRANT INSERT ON {table} TO pgbg_other")
    faults.sql("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
    try:
        running = _launch(faults, "SELECT pg_sleep(60)", role="other")
        _running(faults, running)
        queued = [_launch(faults, f"INSERT INTO {table} VALUES ({i})", role="other") for i in range(2)]
        assert [faults.job(h)["state"] for h in queued] == ["queued", "queued"]

        _sandbox("restart")
        faults.wait_up()
        # nothing has looked yet: the queued jobs are still there, waiting
        assert [faults.job(h)["state"] for h in queued] == ["queued", "queued"]
        assert faults.sql(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]

        res = _pgbg("wait", "--timeout", "30s", "--format", "json", running, *queued, dsn=faults.dsn("other"))
        assert res.returncode == 1, res.stderr  # the one that ran through the restart is lost
        states = {r["handle"]: r["state"] for r in json.loads(res.stdout)}
        assert states == {running: "lost", queued[0]: "succeeded", queued[1]: "succeeded"}
        back = faults.sql("SELECT to_char(pgbg.server_started() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS t")
        assert faults.job(running)["reason"] == (f"the server restarted at {back[0]['t']} UTC while the job ran; "
                                                 "its outcome is unknown")
        assert sorted(r["v"] for r in faults.sql(f"SELECT v FROM {table}")) == [0, 1]
    finally:
        faults.sql("UPDATE pgbg.settings SET value = '8' WHERE name = 'max_running_per_role'")


def test_wait_outlives_a_server_restart(faults):
    faults.sql("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
    proc = None
    try:
        running = _launch(faults, "SELECT pg_sleep(60)", role="other")
        _running(faults, running)
        queued = _launch(faults, "SELECT 1", role="other")
        proc = _pgbg("wait", "--format", "json", running, queued, dsn=faults.dsn("other"), new_session=True)
        retry(lambda: faults.sql("SELECT 1 FROM pg_stat_activity WHERE usename = 'pgbg_other' "
                                 "AND application_name = 'pgbg' AND query LIKE '%%JOIN unnest%%'"),
              "the client waits", timeout=20)
        _sandbox("restart")
        faults.wait_up()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err  # the job that ran through the restart is lost
        states = {r["handle"]: r["state"] for r in json.loads(out)}
        assert states == {running: "lost", queued: "succeeded"}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        faults.wait_up()
        faults.sql("UPDATE pgbg.settings SET value = '8' WHERE name = 'max_running_per_role'")
