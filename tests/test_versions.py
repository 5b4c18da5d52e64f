"""Every pg_background pgbg supports: the same outcome on each, and 1.8's hazards handled.

These run on whichever server the suite runs on (`make test-matrix` runs them on 2.0.3 and on
1.8 with PostgreSQL 18, 17 and 15). The hazards are those of ../shared/docs/pg_background-facts.md,
"Supervising on 1.8 and 1.9"; each test names the one it holds pgbg to.
"""

from __future__ import annotations

import json
import uuid

import extnames
import psycopg
import pytest
from conftest import job_row as _job
from conftest import launch_handle as _launch
from conftest import retry

from pgbg_cli import extension
from pgbg_cli.errors import ExtensionProblem


def _wait(cli, dsn: str, handle: str, *args: str) -> dict:
    res = cli("wait", "--timeout", "60s", "-F", "json", *args, handle, dsn=dsn)
    assert res.exit_code in (0, 1), res
    return json.loads(res.stdout)[0]


def test_the_same_outcome_fields_on_every_version(test_db, cli, sql_admin):
    dsn = test_db["app"]
    sql_admin("CREATE TABLE IF NOT EXISTS public.v_items (n int PRIMARY KEY)")
    sql_admin("GRANT ALL ON public.v_items TO pgbg_app")
    ok = _launch(cli, dsn, "INSERT INTO public.v_items SELECT g FROM generate_series(1, 5) g")
    bad = _launch(cli, dsn, "INSERT INTO public.v_items VALUES (1)")
    noisy = _launch(cli, dsn, "DO $$ BEGIN RAISE EXCEPTION 'no' USING DETAIL = 'the detail', HINT = 'the hint'; END $$")
    assert _wait(cli, dsn, ok)["state"] == "succeeded"
    assert _wait(cli, dsn, bad)["state"] == "failed"
    assert _wait(cli, dsn, noisy)["state"] == "failed"
    row = _job(sql_admin, ok)
    assert (row["command_tag"], row["row_count"], row["sqlstate"]) == ("INSERT", 5, None)
    assert row["queued_at"] <= row["started_at"] <= row["finished_at"]
    row = _job(sql_admin, bad)
    assert row["sqlstate"] == "23505" and "duplicate key" in row["message"]
    assert row["detail"] == "Key (n)=(1) already exists."
    row = _job(sql_admin, noisy)
    assert (row["sqlstate"], row["message"], row["detail"], row["hint"]) == ("P0001", "no", "the detail", "the hint")
    # the job's own context, never pgbg's stack that read it
    assert "inline_code_block" in row["context"] and "pgbg." not in row["context"]


def test_short_sql_is_run_exactly_as_given(test_db, cli, sql_admin):
    # 1.8 hazard 1: SQL shorter than about 127 bytes passed straight from a table column lost
    # its first three bytes. pgbg keeps every job's SQL in a table, so each length is tried.
    dsn = test_db["app"]
    for width in (1, 2, 3, 4, 10, 50, 100, 110, 120, 125, 126, 127, 128, 200):
        res = cli("launch", "--result", "-t", "60s", "-F", "json", f"SELECT '{'x' * width}' AS t", dsn=dsn)
        assert res.exit_code == 0, (width, res)
        assert json.loads(res.stdout) == [{"t": "x" * width}], width


def test_jobs_that_end_at_once_are_never_signalled(test_db, cli, sql_admin):
    # 1.8 hazard 2: about 1 job in 100 that ended before launch returned had a garbage pid in
    # its handle; signalling it would hit whatever process has that number. Every one of these
    # jobs is due for a stop at once (a 1 ms timeout), yet pgbg signals only a worker it saw
    # running: each ends with its own error, none was signalled, and a bystander lives.
    dsn = test_db["app"]
    with psycopg.connect(test_db["admin"], autocommit=True) as bystander:
        handles = [_launch(cli, dsn, "SELECT 1/0", "--timeout", "1ms") for _ in range(40)]
        for handle in handles:
            retry(lambda h=handle: _job(sql_admin, h)["state"] in ("failed", "timed_out"), "the job ended", 60)
        rows = [_job(sql_admin, h) for h in handles]
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    ended_at_once = [r for r in rows if r["worker_started"] is None]
    for r in ended_at_once:
        assert r["cancel_signalled_at"] is None and r["state"] == "failed" and r["sqlstate"] == "22012", r


def test_a_statement_timeout_of_the_launching_session_never_ends_the_supervisor(test_db, cli, sql_admin):
    # 1.8 hazard 4: a supervisor launched from a session with a statement_timeout was killed by
    # it later, even after it reset it. pgbg launches its supervisor with none.
    dsn = test_db["app"]
    retry(lambda: not sql_admin("SELECT pgbg.supervisor_pid('pgbg_app') AS p")[0]["p"],
          "the role's supervisor left (idle)", 30)
    first = _launch(cli, dsn + " options='-c statement_timeout=300'", "SELECT 1")
    assert _wait(cli, dsn, first)["state"] == "succeeded"
    supervisor = sql_admin("SELECT pgbg.supervisor_pid('pgbg_app') AS p")[0]["p"]
    assert supervisor
    # well past the timeout, the same supervisor still runs jobs
    late = _launch(cli, dsn, "SELECT pg_sleep(1)")
    assert _wait(cli, dsn, late)["state"] == "succeeded"
    assert _job(sql_admin, late)["supervisor_pid"] == supervisor


def test_times_and_labels_on_every_version(test_db, cli, sql_admin):
    # 1.8 hazard 3: no start or finish times, no labels. pgbg records its own observations and
    # names the worker in pg_stat_activity the way 2.0 does.
    dsn = test_db["app"]
    label = f"lbl-{uuid.uuid4().hex[:6]}"
    handle = _launch(cli, dsn, "SELECT pg_sleep(3)", "-l", label)
    job_id = handle.split(":")[0]
    names = retry(lambda: sql_admin("SELECT application_name FROM pg_stat_activity "
                                    "WHERE backend_type = 'pg_background' AND application_name LIKE %s",
                                    (f"pg\\_background:pgbg:{job_id}:%",)), "the worker named in pg_stat_activity", 20)
    assert names[0]["application_name"].startswith(f"pg_background:pgbg:{job_id}:{label}")
    res = cli("list", "-F", "json", dsn=dsn)
    assert [r["label"] for r in json.loads(res.stdout) if r["handle"] == handle] == [label]
    rec = _wait(cli, dsn, handle)
    row = _job(sql_admin, handle)
    assert rec["state"] == "succeeded" and row["label"] == label
    elapsed_ms = (row["finished_at"] - row["started_at"]).total_seconds() * 1000
    assert 2900 <= elapsed_ms <= 60_000, row


@pytest.mark.parametrize("query", ["SELECT pg_sleep(0.1)", "SELECT row(1, 2)", "SELECT NULL::void"])
def test_results_of_types_no_column_list_can_name(test_db, cli, sql_admin, query):
    # 1.8: void and record columns cannot be named in a column definition list, and a list
    # that does not match hides the job's outcome. The outcome is still read on every version.
    handle = _launch(cli, test_db["app"], query)
    assert _wait(cli, test_db["app"], handle)["state"] == "succeeded"
    row = _job(sql_admin, handle)
    assert (row["command_tag"], row["row_count"]) == ("SELECT", 1)


def test_a_result_larger_than_the_queue_never_blocks_the_job(test_db, cli, sql_admin):
    # 1.8: a result larger than the queue (64 KB) blocks the worker until someone reads it.
    dsn = test_db["app"]
    unkept = _launch(cli, dsn, "SELECT g, repeat('y', 100) AS pad FROM generate_series(1, 20000) g")
    kept = cli("launch", "--result", "-t", "60s", "-F", "json",
               "SELECT g, repeat('y', 100) AS pad FROM generate_series(1, 5000) g", dsn=dsn)
    assert kept.exit_code == 0, kept
    rows = json.loads(kept.stdout)
    assert len(rows) == 5000 and rows[-1] == {"g": 5000, "pad": "y" * 100}
    assert _wait(cli, dsn, unkept)["state"] == "succeeded"
    assert _job(sql_admin, unkept)["row_count"] == 20000


def test_must_run_alone_statements_still_run_alone(test_db, cli, sql_admin):
    # pgbg appends a statement to some jobs on 1.8 to read their outcome: never to a statement
    # that must run alone
    sql_admin("CREATE TABLE IF NOT EXISTS public.v_vac (n int)")
    sql_admin("ALTER TABLE public.v_vac OWNER TO pgbg_app")
    handle = _launch(cli, test_db["app"], "VACUUM public.v_vac")
    assert _wait(cli, test_db["app"], handle)["state"] == "succeeded"
    assert _job(sql_admin, handle)["command_tag"] == "VACUUM"


def test_doctor_reports_versions_and_features(test_db, cli, server_features):
    res = cli("doctor", "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rep = json.loads(res.stdout)
    assert rep["extension_version"] == server_features.extversion
    assert rep["server"].startswith(f"PostgreSQL {server_features.pg_major}")
    assert rep["schema_state"] == "version 4, current" and rep["problems"] == []
    ext = extnames.ext(test_db["app"])
    assert rep["features"] == ext.features()
    assert rep["features"]["outcome without reading"] is server_features.ext_at_least("1.9")


def test_doctor_names_a_schema_to_initialise(bare_db, cli):
    res = cli("doctor", dsn=bare_db["admin"])
    assert res.exit_code == 3
    assert "pgbg: pgbg schema: not installed (run pgbg init)" in res.stderr.splitlines()


@pytest.mark.parametrize("num, fix", [(140013, "upgrade the server"), (190001, "upgrade pgbg")])
def test_servers_outside_the_range_are_refused_with_the_fix(num, fix):
    with pytest.raises(ExtensionProblem) as err:
        extension.check_server(num)
    assert fix in str(err.value) and extension.SUPPORTED_SERVERS in str(err.value)


def test_the_tested_servers_are_inside_the_range():
    for num in (150000, 160004, 170012, 180006):
        extension.check_server(num)
