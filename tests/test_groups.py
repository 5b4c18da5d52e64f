"""Groups of jobs against the real server: at most N of a group at a time, in the order
queued, without holding back other groups, other roles or jobs of no group; a batch queued
all or none."""

from __future__ import annotations

import uuid
from typing import Any

from conftest import retry


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _log_job(table: str, k: int, sleep_s: float) -> str:
    # one statement (a DO block): start row, a short sleep, end row, each with its real time
    return (f"DO $$ BEGIN INSERT INTO public.{table} VALUES ({k}, 'start', clock_timestamp()); "
            f"PERFORM pg_sleep({sleep_s}); INSERT INTO public.{table} VALUES ({k}, 'end', clock_timestamp()); END $$")


def _group_jobs(sql_admin: Any, group: str) -> list[dict[str, Any]]:
    return sql_admin("SELECT id, state, started_at, finished_at, group_name, group_limit FROM pgbg.job "
                     "WHERE group_name = %s ORDER BY id", (group,))


def _all_final(sql_admin: Any, group: str, n: int) -> list[dict[str, Any]] | None:
    rows = _group_jobs(sql_admin, group)
    return rows if len(rows) == n and all(r["finished_at"] is not None for r in rows) else None


def _most_at_once(intervals: list[tuple[Any, Any]]) -> int:
    """The largest number of intervals [start, end) that overlap at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_group_runs_at_most_n_at_a_time_in_order(test_db, cli, sql_admin):
    table, group = _name("grp_log"), _name("g")
    sql_admin(f"CREATE TABLE public.{table} (k int, what text, at timestamptz)")
    sql_admin(f"GRANT INSERT, SELECT ON public.{table} TO pgbg_app")
    res = cli("launch", "--group", group, "--jobs", "2", *[_log_job(table, k, 0.3) for k in range(10)],
              dsn=test_db["app"])
    assert res.exit_code == 0, res
    handles = res.stdout.split()
    assert len(handles) == 10
    rows = retry(lambda: _all_final(sql_admin, group, 10), "the group's 10 jobs end", timeout=60)
    assert [f"{r['id']}" for r in rows] == [h.split(":")[0] for h in handles]  # one handle per job, in order
    assert all(r["state"] == "succeeded" and r["group_limit"] == 2 for r in rows), rows
    # never more than 2 at once: what pgbg recorded, and what the jobs themselves recorded
    assert _most_at_once([(r["started_at"], r["finished_at"]) for r in rows]) <= 2
    logged = sql_admin(f"SELECT k, min(at) FILTER (WHERE what = 'start') AS s, "
                       f"max(at) FILTER (WHERE what = 'end') AS e FROM public.{table} GROUP BY k ORDER BY k")
    assert len(logged) == 10
    assert _most_at_once([(r["s"], r["e"]) for r in logged]) == 2  # two did run together
    # launched in the order they were queued: the supervisor's own record of each launch (a
    # job's started_at, and its first statement's log, are its worker's: a worker launched
    # later can get to its statement a moment earlier when the machine is busy)
    launches = sql_admin("SELECT e.job_id FROM pgbg.job_event e JOIN pgbg.job j ON j.id = e.job_id "
                         "WHERE j.group_name = %s AND e.to_state = 'running' ORDER BY e.id", (group,))
    assert [r["job_id"] for r in launches] == [r["id"] for r in rows]


def test_a_full_group_holds_back_nothing_else(test_db, cli, sql_admin):
    slow, other = _name("slow"), _name("other")
    res = cli("launch", "--group", slow, "--jobs", "1", "SELECT pg_sleep(1.5)", "SELECT pg_sleep(1.5)",
              "SELECT 3", dsn=test_db["app"])
    assert res.exit_code == 0, res
    last = res.stdout.split()[-1]
    # another group of the same role, a job of no group, and the same group name of another role
    mine = cli("launch", "--group", other, "--jobs", "1", "SELECT 1", dsn=test_db["app"])
    loose = cli("launch", "SELECT 2", dsn=test_db["app"])
    theirs = cli("launch", "--group", slow, "--jobs", "1", "SELECT 4", dsn=test_db["other"])
    assert mine.exit_code == loose.exit_code == theirs.exit_code == 0
    for handle, who in ((mine.stdout.strip(), "another group"), (loose.stdout.strip(), "no group"),
                        (theirs.stdout.strip(), "another role's group of the same name")):
        job_id = int(handle.split(":")[0])
        retry(lambda job_id=job_id: sql_admin("SELECT 1 FROM pgbg.job WHERE id = %s AND state = 'succeeded'",
                                              (job_id,)), f"the job of {who} ends", timeout=15)
    # all of that while the slow group's last job still waits its turn
    state = sql_admin("SELECT state FROM pgbg.job WHERE id = %s", (int(last.split(":")[0]),))[0]["state"]
    assert state == "queued"


def test_a_batch_with_a_bad_statement_queues_nothing(test_db, cli, sql_admin, tmp_path):
    label = _name("allornone")
    path = tmp_path / "batch.sql"
    path.write_text("SELECT 1;\nSELECT 'a;b';\n\nSELEC 3;\nSELECT 4;\n")
    res = cli("launch", "-f", str(path), "--label", label, "--jobs", "2", dsn=test_db["app"])
    assert res.exit_code == 1, res
    assert res.stdout == ""
    err = res.stderr.strip()
    assert len(err.splitlines()) == 2  # the group's name, then the one-line refusal
    assert "statement 3 (line 4)" in err and "SELEC" in err and "nothing of this batch was queued" in err
    assert sql_admin("SELECT count(*) AS n FROM pgbg.job WHERE label = %s", (label,))[0]["n"] == 0


def test_a_group_name_too_long_is_refused_before_anything_is_queued(test_db, cli, sql_admin):
    label = _name("refused")
    res = cli("launch", "--label", label, "--group", "x" * 201, "SELECT 1", "SELECT 2", dsn=test_db["app"])
    assert res.exit_code == 2, res
    assert "--group" in res.stderr
    assert sql_admin("SELECT count(*) AS n FROM pgbg.job WHERE label = %s", (label,))[0]["n"] == 0


def test_submit_refuses_a_limit_without_a_group(test_db):
    import psycopg
    import pytest

    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="group limit"):
            conn.execute("SELECT pgbg.submit('SELECT 1', p_group_limit => 2)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="group limit"):
            conn.execute("SELECT pgbg.submit('SELECT 1', p_group_name => 'g', p_group_limit => 0)")


def test_list_wait_cancel_and_stats_take_a_group(test_db, cli, sql_admin):
    import json

    group, other = _name("lw"), _name("lw_other")
    quick = cli("launch", "--group", group, "--jobs", "2", "SELECT 1", "SELECT 2", "SELECT 1/0", dsn=test_db["app"])
    noise = cli("launch", "--group", other, "SELECT 4", dsn=test_db["app"])
    assert quick.exit_code == noise.exit_code == 0
    handles = quick.stdout.split()
    # wait --group: every job of the group, its outcome, exit 1 (one failed)
    res = cli("wait", "--group", group, "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 1, res
    assert sorted(j["handle"] for j in json.loads(res.stdout)) == sorted(handles)
    assert "division by zero" in res.stderr
    # list --group: those jobs only (and no other pg_background worker)
    res = cli("list", "--group", group, "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert sorted(j["handle"] for j in json.loads(res.stdout)) == sorted(handles)
    # stats --by group: one row per group, jobs of no group in a row of their own (null)
    res = cli("stats", "--by", "group", "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rows = {r["group"]: r for r in json.loads(res.stdout)}
    assert rows[group]["workers_completed"] == 2 and rows[group]["workers_failed"] == 1
    assert rows[other]["workers_completed"] + rows[other]["workers_active"] + rows[other]["queued"] == 1
    # list --watch --group: the counts of that group only
    res = cli("list", "--watch", "--group", group, "--count", "1", "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    snap = json.loads(res.stdout.splitlines()[0])
    assert snap["counts"]["succeeded"] == 2 and snap["counts"]["failed"] == 1
    assert sorted(j["handle"] for j in snap["jobs"]) == sorted(handles)
    # wait --group of a group that holds nothing: a clear usage error
    res = cli("wait", "--group", _name("none"), dsn=test_db["app"])
    assert res.exit_code == 2 and "no job in group" in res.stderr


def test_cancel_a_group(test_db, cli, sql_admin):
    group = _name("cg")
    res = cli("launch", "--group", group, "--jobs", "1", "SELECT pg_sleep(30)", "SELECT pg_sleep(30)",
              "SELECT pg_sleep(30)", dsn=test_db["app"])
    assert res.exit_code == 0, res
    first = int(res.stdout.split()[0].split(":")[0])
    retry(lambda: sql_admin("SELECT 1 FROM pgbg.job WHERE id = %s AND state = 'running'", (first,)),
          "the group's first job runs")
    # another role cannot reach this role's group: its cancel --group finds nothing
    res = cli("cancel", "--group", group, dsn=test_db["other"])
    assert res.exit_code == 0 and "no live job in group" in res.stderr
    assert sql_admin("SELECT state FROM pgbg.job WHERE id = %s", (first,))[0]["state"] == "running"
    res = cli("cancel", "--group", group, "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    states = [r["state"] for r in _group_jobs(sql_admin, group)]
    assert states == ["canceled", "canceled", "canceled"]
