"""Fail fast: what the server can tell about a job's SQL refuses it at launch (exit 1, one
line, nothing queued), and each refusal is held against what the real server does when the
same SQL runs in a pg_background worker."""

from __future__ import annotations

import pytest
from conftest import launch_handle, retry, sql_runner


def _count(sql_admin) -> int:
    return sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"]


def _run_directly(dsn: str, sql: str) -> dict:
    """What the server says when ``sql`` runs as a job of ``dsn``'s role: submitted through
    pgbg's server-side functions (no launch, so none of its checks), run by the role's
    supervisor in a pg_background worker, on any pg_background version."""
    from pgbg_cli.statements import split

    # as launch submits it: a single statement with no result columns ('{}'), several with
    # none known (NULL: on pg_background 1.8 pgbg then reads their command tags)
    types = [] if len(split(sql)) == 1 else None
    with sql_runner(dsn) as run:
        job = run("SELECT id FROM pgbg.submit(%s, p_result_types => %s::oid[], p_result_typmods => %s::int[], "
                  "p_result_names => %s::text[])", (sql, types, types, types))[0]
        run("SELECT pgbg.ensure_supervisor()")
        return retry(lambda: (r := run("SELECT state, sqlstate, command_tag FROM pgbg.job WHERE id = %s",
                                       (job["id"],))[0])["state"] not in ("queued", "starting", "running") and r,
                     "the job ended", timeout=30)


@pytest.fixture(scope="module")
def tables(test_db):
    """t_app (pgbg_app's own), t_admin (the superuser's: pgbg_app may not read it, nor
    maintain it), v_app (a view), pt_app (partitioned, with an index), f_admin()."""
    with sql_runner(test_db["app"]) as app:
        app("CREATE TABLE IF NOT EXISTS t_app (x int)")
        app("CREATE OR REPLACE VIEW v_app AS SELECT 1 AS x")
        app("CREATE TABLE IF NOT EXISTS pt_app (x int) PARTITION BY RANGE (x)")
        app("CREATE TABLE IF NOT EXISTS pt_app_1 PARTITION OF pt_app FOR VALUES FROM (0) TO (10)")
        app("CREATE INDEX IF NOT EXISTS pt_app_x ON pt_app (x)")
    with sql_runner(test_db["admin"]) as admin:
        admin("CREATE TABLE IF NOT EXISTS t_admin (x int)")
        admin("CREATE OR REPLACE FUNCTION f_admin() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        admin("REVOKE EXECUTE ON FUNCTION f_admin() FROM PUBLIC")


@pytest.mark.parametrize("command", [
    "VACUUM t_app",
    "VACUUM (ANALYZE) t_app",
    "CREATE INDEX CONCURRENTLY t_app_c ON t_app (x)",
    "DROP INDEX CONCURRENTLY IF EXISTS no_such_index",
    "REINDEX TABLE CONCURRENTLY t_app",
    "REINDEX (CONCURRENTLY) TABLE t_app",
    "REINDEX TABLE pt_app",  # partitioned: the catalog says so
    "CLUSTER pt_app USING pt_app_x",
    "DISCARD ALL",
])
def test_a_statement_that_must_run_alone_among_others_is_refused(test_db, tables, cli, sql_admin, command):
    sql = f"SELECT 1; {command}"
    # what the server does with it: refuses it when it runs
    out = _run_directly(test_db["app"], sql)
    assert out["sqlstate"] == "25001", out
    before = _count(sql_admin)
    res = cli("launch", sql, dsn=test_db["app"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("pgbg: ")
    assert " must run alone, and this SQL has 2 statements (PostgreSQL would refuse it: 25001); nothing was " \
           "queued: launch each as a job of its own: pgbg launch 'SELECT 1'; pgbg launch " in res.stderr
    assert _count(sql_admin) == before


@pytest.mark.parametrize("command", [
    "CREATE DATABASE pgbg_never_made", "DROP DATABASE IF EXISTS pgbg_never_made",
    "CREATE TABLESPACE pgbg_never_made LOCATION '/nonexistent'", "DROP TABLESPACE IF EXISTS pgbg_never_made",
    "ALTER SYSTEM SET work_mem = '4MB'", "REINDEX SCHEMA public", "REINDEX DATABASE {db}", "REINDEX SYSTEM {db}",
    "CLUSTER",
])
def test_superuser_commands_that_must_run_alone(test_db, tables, cli, sql_admin, command):
    sql = f"{command.format(db=test_db['name'])}; SELECT 1"  # a name: PostgreSQL 15 needs it
    assert _run_directly(test_db["admin"], sql)["sqlstate"] == "25001"
    before = _count(sql_admin)
    res = cli("launch", sql, dsn=test_db["admin"])
    assert res.exit_code == 1, res
    assert res.stderr.startswith(f"pgbg: {command.split()[0]}")
    assert "must run alone, and this SQL has 2 statements" in res.stderr
    assert _count(sql_admin) == before


def test_the_message_says_how_to_launch_them_apart(test_db, tables, cli):
    res = cli("launch", "VACUUM t_app; VACUUM pt_app_1", dsn=test_db["app"])
    assert res.exit_code == 1
    assert res.stderr == (
        "pgbg: VACUUM must run alone, and this SQL has 2 statements (PostgreSQL would refuse it: 25001); nothing "
        "was queued: launch each as a job of its own: pgbg launch 'VACUUM t_app'; pgbg launch 'VACUUM pt_app_1'\n")
    long = "VACUUM t_app; " + "; ".join(["SELECT 1"] * 3)
    res = cli("launch", long, dsn=test_db["app"])
    assert res.stderr.endswith("nothing was queued: launch each as a job of its own (statement 1 of 4: "
                               "VACUUM t_app)\n")
    # as it says: each alone runs
    for sql in ("VACUUM t_app", "VACUUM pt_app_1"):
        res = cli("launch", "--wait", sql, dsn=test_db["app"])
        assert res.exit_code == 0, res


@pytest.mark.parametrize("sql", [
    "SELECT 'VACUUM t_app; VACUUM t_app'; SELECT 2",
    "SELECT $$; VACUUM t_app;$$; SELECT 2",
    "SELECT 1 /* ; VACUUM t_app; */; SELECT 2 -- ; VACUUM t_app",
    "SELECT 1; ANALYZE t_app",  # ANALYZE runs in a transaction block
    "SELECT 1; REINDEX TABLE t_app",  # not partitioned
    "SELECT 1; CREATE INDEX IF NOT EXISTS t_app_plain ON t_app (x)",
])
def test_what_runs_among_others_is_queued_and_runs(test_db, tables, cli, sql):
    res = cli("launch", "--wait", sql, dsn=test_db["app"])
    assert res.exit_code == 0, res


@pytest.mark.parametrize(("sql", "command"), [
    ("BEGIN", "BEGIN"), ("SELECT 1; COMMIT", "COMMIT"), ("SAVEPOINT a", "SAVEPOINT"), ("LISTEN x", "LISTEN"),
])
def test_what_pg_background_never_runs_is_refused(test_db, cli, sql_admin, sql, command):
    assert _run_directly(test_db["app"], sql)["sqlstate"] == "0A000"
    before = _count(sql_admin)
    res = cli("launch", sql, dsn=test_db["app"])
    assert res.exit_code == 1
    assert res.stderr.startswith(f"pgbg: {command} cannot run in a job: ")
    assert res.stderr.endswith("; nothing was queued [0A000]\n")
    assert _count(sql_admin) == before


@pytest.mark.parametrize(("sql", "words", "sqlstate"), [
    ("SELECT * FROM t_admin", "permission denied for table t_admin", "42501"),
    ("UPDATE t_admin SET x = 1", "permission denied for table t_admin", "42501"),
    ("SELECT f_admin()", "permission denied for function f_admin", "42501"),
    ("SELECT $1::int", "there is no parameter $1: a job's SQL runs without parameter values", "42P02"),
])
def test_a_missing_privilege_is_refused_at_launch(test_db, tables, cli, sql_admin, sql, words, sqlstate):
    assert _run_directly(test_db["app"], sql)["sqlstate"] == sqlstate
    before = _count(sql_admin)
    res = cli("launch", sql, dsn=test_db["app"])
    assert (res.exit_code, res.stdout) == (1, "")
    assert res.stderr == f"pgbg: the server refused the SQL; nothing was queued: {words} [{sqlstate}]\n"
    assert _count(sql_admin) == before


def test_planning_runs_nothing(test_db, tables, cli, sql_admin):
    """The privilege check plans the statement (EXPLAIN of the prepared statement): nothing runs."""
    sql_admin("CREATE TABLE IF NOT EXISTS t_calls (x int)")
    sql_admin("GRANT INSERT, SELECT ON t_calls TO pgbg_app")
    res = cli("launch", "INSERT INTO t_calls VALUES (1)", dsn=test_db["app"])
    assert res.exit_code == 0, res
    res = cli("wait", res.stdout.strip(), dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert sql_admin("SELECT count(*) AS n FROM t_calls")[0]["n"] == 1


@pytest.mark.parametrize(("sql", "line"), [
    ("VACUUM t_admin", 'VACUUM would skip "t_admin": permission denied to vacuum it (it takes {takes}); '
                       "nothing was queued [42501]"),
    ("ANALYZE t_app, t_admin", 'ANALYZE would skip "t_admin": permission denied to analyze it (it takes '
                               "{takes}); nothing was queued [42501]"),
    ("VACUUM (ANALYZE) v_app", 'VACUUM would skip "v_app": it cannot vacuum that kind of relation (only tables '
                               "and materialized views); nothing was queued [42809]"),
    ("VACUUM no_such_table", 'the server refused the SQL; nothing was queued: relation "no_such_table" does '
                             "not exist [42P01]"),
])
def test_vacuum_of_what_the_server_would_skip_is_refused(test_db, tables, cli, sql_admin, server_features, sql,
                                                         line):
    takes = ("the MAINTAIN privilege on it, or owning it" if server_features.pg_major >= 17
             else "owning it, or the database")
    before = _count(sql_admin)
    res = cli("launch", sql, dsn=test_db["app"])
    assert (res.exit_code, res.stdout) == (1, "")
    assert res.stderr == f"pgbg: {line.format(takes=takes)}\n"
    assert _count(sql_admin) == before


def test_the_server_itself_only_warns_and_skips(test_db, tables):
    """Why VACUUM is checked at launch: run, it 'succeeds' having done nothing."""
    out = _run_directly(test_db["app"], "VACUUM t_admin")
    assert (out["state"], out["sqlstate"], out["command_tag"]) == ("succeeded", None, "VACUUM")


def test_vacuum_and_analyze_of_own_tables_run(test_db, tables, cli, sql_admin, server_features):
    for sql in ("VACUUM (ANALYZE) t_app", "ANALYZE pt_app", "VACUUM", "ANALYZE"):
        res = cli("launch", "--wait", sql, dsn=test_db["app"])
        assert res.exit_code == 0, (sql, res)
    if server_features.pg_major < 17:
        return  # no MAINTAIN privilege before PostgreSQL 17
    sql_admin("GRANT MAINTAIN ON t_admin TO pgbg_app")
    try:
        res = cli("launch", "--wait", "VACUUM (ANALYZE) t_app, public.t_admin", dsn=test_db["app"])
        assert res.exit_code == 0, res
    finally:
        sql_admin("REVOKE MAINTAIN ON t_admin FROM pgbg_app")


def test_the_job_search_path_finds_the_table(test_db, tables, cli, sql_admin):
    sql_admin("CREATE SCHEMA IF NOT EXISTS app_s AUTHORIZATION pgbg_app")
    sql_admin("CREATE TABLE IF NOT EXISTS app_s.only_here (x int)")
    sql_admin("ALTER TABLE app_s.only_here OWNER TO pgbg_app")
    res = cli("launch", "VACUUM only_here", dsn=test_db["app"])
    assert res.exit_code == 1 and "does not exist" in res.stderr
    handle = launch_handle(cli, test_db["app"] + " options='-c search_path=app_s'", "VACUUM only_here")
    retry(lambda: cli("wait", handle, dsn=test_db["app"]).exit_code == 0, "the VACUUM ran", timeout=30)
