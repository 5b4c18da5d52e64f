"""Who may see and touch which job: row-level security and the guard trigger, in the database
itself, and the CLI on top of them (pgbg_app, pgbg_other: users; pgbg_boss: pgbg admin)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from conftest import job_row as _job
from conftest import launch_handle as _launch
from conftest import retry


def _running(sql_admin: Any, handle: str) -> dict[str, Any]:
    return retry(lambda: (j := _job(sql_admin, handle))["state"] == "running" and j, f"{handle} running", 20)


def _alive(sql_admin: Any, pid: int) -> bool:
    return bool(sql_admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


@pytest.fixture
def others_job(test_db, cli, sql_admin):
    """A running job of pgbg_other, canceled at the end if still live."""
    handle = _launch(cli, test_db["other"], "SELECT pg_sleep(60)", "-l", f"theirs-{uuid.uuid4().hex[:6]}")
    _running(sql_admin, handle)
    yield handle
    cli("cancel", handle, dsn=test_db["other"])


def test_app_cannot_see_or_cancel_anothers_job(test_db, cli, sql_admin, others_job):
    app = test_db["app"]
    job_id, cookie = others_job.split(":")
    unknown = f"{int(job_id) + 10_000_000}:{cookie}"
    for command in ("show", "cancel", "wait", "detach"):
        theirs = cli(command, others_job, dsn=app)
        nothing = cli(command, unknown, dsn=app)
        assert theirs.exit_code == nothing.exit_code == 2, (command, theirs)
        assert theirs.stderr.replace(others_job, "H") == nothing.stderr.replace(unknown, "H")
    listed = json.loads(cli("list", "--format", "json", dsn=app).stdout)
    assert others_job not in [r["handle"] for r in listed]
    # label patterns do not reach it either
    res = cli("cancel", "--label", "theirs-*", dsn=app)
    assert res.exit_code == 0 and "no live job" in res.stderr
    assert _job(sql_admin, others_job)["state"] == "running"
    assert _job(sql_admin, others_job)["cancel_requested_at"] is None


def test_admin_lists_and_cancels_anothers_job(test_db, cli, sql_admin, others_job):
    boss = test_db["boss"]
    worker = _job(sql_admin, others_job)["worker_pid"]
    listed = json.loads(cli("list", "--format", "json", dsn=boss).stdout)
    rows = [r for r in listed if r["handle"] == others_job]
    assert len(rows) == 1 and rows[0]["owner"] == "pgbg_other" and rows[0]["state"] == "running"
    shown = cli("show", "--format", "json", others_job, dsn=boss)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["owner"] == "pgbg_other"
    res = cli("cancel", "--format", "json", others_job, dsn=boss)
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)[0]["state"] == "canceled"
    job = _job(sql_admin, others_job)
    assert job["state"] == "canceled" and job["cancel_by"] == "pgbg_boss"
    assert "pgbg_boss" in job["reason"]
    assert not _alive(sql_admin, worker)


def test_rls_shows_a_role_only_its_own_rows(test_db, cli, sql_admin, others_job):
    _launch(cli, test_db["app"], "SELECT 1")
    counts = {r["owner"]: r["n"] for r in sql_admin("SELECT owner, count(*) AS n FROM pgbg.job GROUP BY owner")}
    assert counts.get("pgbg_app") and counts.get("pgbg_other")
    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        seen = conn.execute("SELECT count(*) FROM pgbg.job").fetchone()[0]
        owners = {r[0] for r in conn.execute("SELECT DISTINCT owner FROM pgbg.job").fetchall()}
    assert seen == counts["pgbg_app"] and owners == {"pgbg_app"}
    with psycopg.connect(test_db["boss"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pgbg.job").fetchone()[0] == sum(counts.values())


def test_app_cannot_update_or_delete_anothers_job(test_db, sql_admin, others_job):
    job_id = int(others_job.split(":")[0])
    for statement in ("UPDATE pgbg.job SET cancel_requested_at = now(), state = 'canceled' WHERE id = %s",
                      "DELETE FROM pgbg.job WHERE id = %s",
                      "INSERT INTO pgbg.job (sql, owner) SELECT 'SELECT 1', 'pgbg_other' WHERE %s > 0"):
        with psycopg.connect(test_db["app"], autocommit=True) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, (job_id,))
    job = _job(sql_admin, others_job)
    assert job["state"] == "running" and job["cancel_requested_at"] is None


def test_submitted_job_cannot_change_what_it_runs_or_whose_it_is(test_db, cli, sql_admin):
    handle = _launch(cli, test_db["app"], "SELECT pg_sleep(30)")
    job_id = int(handle.split(":")[0])
    try:
        with psycopg.connect(test_db["app"], autocommit=True) as conn:
            for assignment in ("sql = 'DROP TABLE x'", "owner = 'pgbg_other'", "owner = 'pgbg_boss'",
                               "cookie = cookie + 1", "timeout_ms = 5", "label = 'changed'"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"UPDATE pgbg.job SET {assignment} WHERE id = %s", (job_id,))
        job = _job(sql_admin, handle)
        assert job["sql"] == "SELECT pg_sleep(30)" and job["owner"] == "pgbg_app"
    finally:
        cli("cancel", handle, dsn=test_db["app"])


def test_a_new_job_always_starts_queued_without_a_worker(test_db, cli, sql_admin):
    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO pgbg.job (sql, owner) VALUES ('SELECT 1', 'pgbg_app')")
        # (a job that outlives the test: the cancels below always find it active, whether a
        # supervisor started it meanwhile or not)
        row = conn.execute("SELECT state, worker_pid, supervisor_pid, started_at, id || ':' || cookie "
                           "FROM pgbg.submit('SELECT pg_sleep(60)')").fetchone()
    assert row[:4] == ("queued", None, None, None)
    assert cli("cancel", row[4], dsn=test_db["app"]).exit_code == 0
    # even the table's owner cannot write a row that starts anywhere but queued
    sql_admin("SET ROLE pgbg_owner")
    try:
        forged = sql_admin("INSERT INTO pgbg.job (owner, sql, state, worker_pid, cookie) "
                           "VALUES ('pgbg_app', 'SELECT pg_sleep(60)', 'succeeded', 1, 42) "
                           "RETURNING id, state, worker_pid, cookie")
    finally:
        sql_admin("RESET ROLE")
    assert forged[0]["state"] == "queued" and forged[0]["worker_pid"] is None and forged[0]["cookie"] != 42
    assert cli("cancel", f"{forged[0]['id']}:{forged[0]['cookie']}", dsn=test_db["app"]).exit_code == 0


def test_a_role_granted_by_hand_needs_pgbg_grant_in_each_database(test_db, cli, sql_admin):
    from conftest import APP_PASSWORD, _with_db

    sql_admin("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbg_handgrant') THEN "
              f"CREATE ROLE pgbg_handgrant LOGIN PASSWORD '{APP_PASSWORD}'; END IF; END $$")
    sql_admin("GRANT pgbackground_role, pgbg_user TO pgbg_handgrant")  # cluster-wide, not through pgbg grant
    sql_admin("DELETE FROM pgbg.role_key WHERE role = 'pgbg_handgrant'")
    dsn = _with_db(test_db["admin"], test_db["name"], "pgbg_handgrant", APP_PASSWORD)
    assert cli("init", dsn=test_db["admin"]).exit_code == 0  # init gives no key
    res = cli("list", dsn=dsn)
    assert res.exit_code == 3 and res.stderr == (
        "pgbg: role 'pgbg_handgrant' may not use pgbg: ask an administrator to run pgbg grant pgbg_handgrant\n")
    assert cli("grant", "pgbg_handgrant", dsn=test_db["admin"]).exit_code == 0
    assert cli("list", dsn=dsn).exit_code == 0


def test_a_new_install_keys_nobody_an_upgrade_keeps_version_1s_roles(server_dsn, cli):
    from conftest import fresh_database, sql_runner

    with fresh_database(server_dsn, "pgbg_keys") as dsns, sql_runner(dsns["admin"]) as run:
        # pgbg_app, pgbg_other and pgbg_boss were granted by the fixture; members of pgbg_user
        # granted elsewhere in the cluster (pgbg_handgrant, other test databases) were not
        keyed = {r["role"] for r in run("SELECT role FROM pgbg.role_key")}
        assert keyed == {"pgbg_app", "pgbg_other", "pgbg_boss"}
