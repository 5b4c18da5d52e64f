"""The per-role budget: launches beyond max_running_per_role queue instead of failing, and
the worker slots a role's jobs hold (N running jobs: N workers and one supervisor)."""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
from conftest import launch_handle as _launch
from conftest import retry

ROLE = "pgbg_other"


def test_more_launches_than_the_budget_queue_and_all_run(test_db, cli, max_running):
    dsn = test_db[ROLE.removeprefix("pgbg_")]
    max_running(2)
    label = f"budget-{uuid.uuid4().hex[:8]}"
    seen_running: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(test_db["admin"], autocommit=True) as conn:
            while not stop.is_set():
                n = conn.execute("SELECT count(*) FROM pgbg.job WHERE label = %s AND state IN ('starting', 'running')",
                                 (label,)).fetchone()[0]
                seen_running.append(n)
                stop.wait(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    # the jobs wait for a gate (an advisory lock the test holds) before they sleep: the first two
    # hold the two places, and the others are certain to be queued, however slow the machine
    gate = uuid.uuid4().int % 2**31
    holder = psycopg.connect(test_db["admin"], autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        handles = [_launch(cli, dsn, f"SELECT pg_advisory_lock_shared({gate}); SELECT pg_sleep(0.3)", "-l", label)
                   for _ in range(6)]
        assert len(set(handles)) == 6
        queued = json.loads(cli("list", "--state", "queued", "--label", label, "--format", "json", dsn=dsn).stdout)
        assert len(queued) >= 4  # accepted at once, waiting for a place
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        res = cli("wait", "--timeout", "60s", "--format", "json", *handles, dsn=dsn)
    finally:
        holder.close()
        stop.set()
        poller.join()
    assert res.exit_code == 0, res
    assert [r["state"] for r in json.loads(res.stdout)] == ["succeeded"] * 6
    assert max(seen_running) == 2, seen_running

    # the registry's own record agrees: never more than two ran at the same moment
    with psycopg.connect(test_db["admin"], autocommit=True) as conn:
        spans = conn.execute("SELECT started_at, finished_at FROM pgbg.job WHERE label = %s", (label,)).fetchall()
    for start, _ in spans:
        overlapping = sum(1 for s, f in spans if s <= start < f)
        assert overlapping <= 2, spans


def test_n_running_jobs_hold_n_plus_one_slots(test_db, cli, sql_admin):
    dsn = test_db[ROLE.removeprefix("pgbg_")]
    n = 3

    def slots(supervisor: bool = True) -> int:
        return sql_admin("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'pg_background' "
                         "AND usename = %s AND datname = %s AND (%s OR application_name NOT LIKE %s)",
                         (ROLE, test_db["name"], supervisor, "pg_background:pgbg:supervisor:%"))[0]["n"]

    retry(lambda: slots(supervisor=False) == 0, "no job worker of the role is left from earlier tests", timeout=15)
    handles = [_launch(cli, dsn, "SELECT pg_sleep(30)") for _ in range(n)]
    try:
        ids = [int(h.split(":")[0]) for h in handles]
        retry(lambda: sql_admin("SELECT count(*) AS n FROM pgbg.job WHERE id = ANY(%s) AND state = 'running' "
                                "AND worker_started IS NOT NULL", (ids,))[0]["n"] == n, "all running")
        assert slots() == n + 1
        supervisors = sql_admin("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'pg_background' "
                                "AND usename = %s AND datname = %s AND application_name LIKE %s",
                                (ROLE, test_db["name"], "pg_background:pgbg:supervisor:%"))
        assert supervisors[0]["n"] == 1
    finally:
        assert cli("cancel", *handles, dsn=dsn).exit_code == 0


def test_jobs_queued_at_once_start_only_in_the_worker_slots_above_the_reserve(test_db, cli, sql_admin):
    # the supervisor claims what may start in one go: as many as there are free worker slots
    # above reserve_slots (each launch takes one), the first of the rest waits with a reason
    dsn = test_db[ROLE.removeprefix("pgbg_")]
    old = sql_admin("SELECT value FROM pgbg.settings WHERE name = 'reserve_slots'")[0]["value"]
    retry(lambda: sql_admin("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'pg_background'"
                            )[0]["n"] == 0, "no pg_background worker is left from earlier tests", timeout=30)
    sql_admin("UPDATE pgbg.settings SET value = '10000' WHERE name = 'reserve_slots'")
    handles: list[str] = []
    try:
        handles = [_launch(cli, dsn, "SELECT pg_sleep(30)") for _ in range(5)]
        ids = [int(h.split(":")[0]) for h in handles]

        def jobs() -> list[dict]:
            return sql_admin("SELECT id, state, reason FROM pgbg.job WHERE id = ANY(%s) ORDER BY id", (ids,))

        retry(lambda: jobs()[0]["reason"] == "waiting for a free worker slot", "the supervisor found no slot")
        assert [j["state"] for j in jobs()] == ["queued"] * 5
        # room for exactly two more workers now (the supervisor holds its slot already)
        free = sql_admin("SELECT max_worker_processes - used AS n FROM pgbg.worker_slots()")[0]["n"]
        sql_admin("UPDATE pgbg.settings SET value = %s WHERE name = 'reserve_slots'", (str(free - 2),))
        retry(lambda: sum(j["state"] == "running" for j in jobs()) == 2, "two jobs run", timeout=20)
        got = jobs()
        assert [j["state"] for j in got] == ["running", "running", "queued", "queued", "queued"], got
        assert [j["reason"] for j in got[2:]] == ["waiting for a free worker slot", None, None], got
    finally:
        sql_admin("UPDATE pgbg.settings SET value = %s WHERE name = 'reserve_slots'", (old,))
        # one cancel each: a cancel of several jobs can deadlock with a supervisor's pass that
        # records several of them (rows locked in different orders), and the cancel gives way
        for handle in handles:
            res = cli("cancel", handle, dsn=dsn)
            assert res.exit_code == 0, res


def test_a_wait_on_a_job_held_by_the_limit_says_why_once(test_db, cli, max_running, tmp_path):
    """A job queued behind max_running_per_role under a live supervisor: after a few seconds
    with none of its jobs started, launch --wait says once, on stderr, what holds it."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    dsn = test_db[ROLE.removeprefix("pgbg_")]
    max_running(1)
    gate = uuid.uuid4().int % 2**31
    holder = psycopg.connect(test_db["admin"], autocommit=True)
    err_path = tmp_path / "stderr"
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        blocker = _launch(cli, dsn, f"SELECT pg_advisory_lock_shared({gate})")
        retry(lambda: holder.execute("SELECT 1 FROM pgbg.job WHERE id = %s AND state = 'running'",
                                     (int(blocker.split(":")[0]),)).fetchone(), "the blocker runs", 30)
        env = dict(os.environ, PGBG_DSN=dsn, NO_COLOR="1", PYTHONPATH=str(ROOT))
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", "launch", "--wait", "--format", "json",
                                     "SELECT 1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    text=True, env=env)
            try:
                retry(lambda: "still queued" in err_path.read_text(), "launch --wait says why its job waits", 30)
            finally:
                holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
            out, _ = proc.communicate(timeout=60)
    finally:
        holder.close()
    said = err_path.read_text()
    assert proc.returncode == 0, said
    assert json.loads(out)["state"] == "succeeded"
    job_id = json.loads(out)["id"]
    assert said.count("still queued") == 1, said
    assert (f"pgbg: job {job_id} is still queued: 1 job of {ROLE} is starting or running, as many as "
            "max_running_per_role (1) allows") in said, said
