"""Many jobs in one ``pgbg launch``: SQL arguments, a file of statements, lines of standard
input; one handle per line, in order; refusals name where the statement was."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import retry

from pgbg_cli import batch


def _label() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


def _queued(sql_admin: Any, label: str) -> list[dict[str, Any]]:
    return sql_admin("SELECT id, cookie, sql, state, group_name FROM pgbg.job WHERE label = %s ORDER BY id", (label,))


def test_statements_of_a_file_and_where_each_starts():
    text = "SELECT 1;\n-- a comment; with a semicolon\nSELECT $$x;y$$\n  ; SELECT 'a;b' /* ; */;\n\n"
    pieces = batch.from_statements(text, "f.sql")
    assert [p.sql for p in pieces] == ["SELECT 1", "-- a comment; with a semicolon\nSELECT $$x;y$$",
                                       "SELECT 'a;b' /* ; */"]
    assert [p.where for p in pieces] == ["f.sql: statement 1 (line 1)", "f.sql: statement 2 (line 3)",
                                         "f.sql: statement 3 (line 4)"]
    assert [p.where for p in batch.from_lines("SELECT 1\n\n  \nSELECT 2\n", "standard input")] == [
        "standard input line 1", "standard input line 4"]


def test_several_arguments_one_handle_each_in_order(test_db, cli, sql_admin):
    label = _label()
    res = cli("launch", "--label", label, "SELECT 1", "SELECT 2; SELECT 3", "SELECT 4", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rows = _queued(sql_admin, label)
    assert res.stdout.splitlines() == [f"{r['id']}:{r['cookie']}" for r in rows]
    # an argument of several statements stays one job
    assert [r["sql"] for r in rows] == ["SELECT 1", "SELECT 2; SELECT 3", "SELECT 4"]
    assert all(r["group_name"] is None for r in rows)


def test_a_file_is_one_job_per_statement(test_db, cli, sql_admin, tmp_path):
    label = _label()
    path = tmp_path / "jobs.sql"
    path.write_text("SELECT 'one;1';\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT 3\n")
    res = cli("launch", "--label", label, "-f", str(path), dsn=test_db["app"])
    assert res.exit_code == 0, res
    rows = _queued(sql_admin, label)
    assert [r["sql"] for r in rows] == ["SELECT 'one;1'", "DO $$ BEGIN PERFORM 1; END $$", "SELECT 3"]
    assert res.stdout.splitlines() == [f"{r['id']}:{r['cookie']}" for r in rows]


def test_lines_of_standard_input_wait_for_all(test_db, cli, sql_admin):
    label = _label()
    res = cli("launch", "--label", label, "--lines", "--wait", "--format", "json",
              input="SELECT 1\n\nSELECT 1/0\nSELECT 3\n", dsn=test_db["app"])
    assert res.exit_code == 1, res  # one failed
    out = json.loads(res.stdout)
    assert [j["state"] for j in out] == ["succeeded", "failed", "succeeded"]
    assert "division by zero" in res.stderr
    assert len(_queued(sql_admin, label)) == 3


@pytest.mark.parametrize(("args", "input_", "expect"), [
    (("--lines", "SELECT 1"), None, "--lines reads standard input"),
    (("SELECT 1", "-"), "SELECT 2", "one job alone"),
    (("--result", "SELECT 1", "SELECT 2"), None, "--result takes a single job"),
    (("--jobs", "0", "SELECT 1", "SELECT 2"), None, "--jobs"),
    (("--lines",), "\n  \n", "no line of SQL"),
])
def test_batch_usage_errors(test_db, cli, args, input_, expect):
    res = cli("launch", *args, input=input_, dsn=test_db["app"])
    assert res.exit_code == 2, res
    assert expect in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""


def test_a_refused_line_is_named_and_nothing_queued(test_db, cli, sql_admin):
    label = _label()
    res = cli("launch", "--label", label, "--lines", input="SELECT 1\nSELECT * FROM no_such_table_x\n",
              dsn=test_db["app"])
    assert res.exit_code == 1, res
    assert "standard input line 2" in res.stderr and "no_such_table_x" in res.stderr
    assert _queued(sql_admin, label) == []


def test_a_generated_group_is_named_and_waited_for(test_db, cli, sql_admin):
    label = _label()
    res = cli("launch", "--label", label, "--jobs", "2", "SELECT 1", "SELECT 2", "SELECT 3", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rows = _queued(sql_admin, label)
    group = rows[0]["group_name"]
    assert group and all(r["group_name"] == group for r in rows)
    assert f"pgbg wait --group {group}" in res.stderr
    retry(lambda: all(r["state"] == "succeeded" for r in _queued(sql_admin, label)), "the batch ends")


def test_submit_many_keeps_the_checks_of_submit(test_db, sql_admin):
    import psycopg

    label = _label()
    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        # another role's jobs: the proof is of the caller's role only
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pgbg.submit_many(ARRAY['SELECT 1'], '[null]', %s, p_owner => 'pgbg_other')",
                         (label,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="one object or null per statement"):
            conn.execute("SELECT * FROM pgbg.submit_many(ARRAY['SELECT 1', 'SELECT 2'], '[null]', %s)", (label,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"no SQL given \(job 2 of 2\)"):
            conn.execute("SELECT * FROM pgbg.submit_many(ARRAY['SELECT 1', ' '], '[null, null]', %s)", (label,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="timeout"):
            conn.execute("SELECT * FROM pgbg.submit_many(ARRAY['SELECT 1'], '[null]', %s, 0)", (label,))
        rows = conn.execute("SELECT * FROM pgbg.submit_many(ARRAY['SELECT 1', 'SELECT 2; SELECT 3'], "
                            "'[{\"t\": [23], \"m\": [-1], \"n\": [\"x\"]}, null]', %s)", (label,)).fetchall()
    assert len(rows) == 2
    kept = sql_admin("SELECT owner, result_types, result_names, want_result FROM pgbg.job WHERE label = %s "
                     "ORDER BY id", (label,))
    assert kept == [{"owner": "pgbg_app", "result_types": [23], "result_names": ["x"], "want_result": False},
                    {"owner": "pgbg_app", "result_types": None, "result_names": None, "want_result": False}]


@pytest.mark.parametrize("keep", [False, True], ids=["cancels", "keep-running"])
def test_ctrl_c_while_waiting_for_several(test_db, cli, sql_admin, keep):
    """Ctrl-C during `launch --wait` of several jobs cancels them all and exits 130; with
    --keep-running they go on."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import ROOT, interruptible

    dsn = test_db["app"]
    label = _label()
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    args = ["launch", "--wait", "--format", "json", "-l", label, *(["--keep-running"] if keep else []),
            "SELECT pg_sleep(60)", "SELECT pg_sleep(60)"]
    proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=interruptible)
    try:
        retry(lambda: [r["state"] for r in _queued(sql_admin, label)] == ["running", "running"],
              "both jobs run", 30)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        if keep:  # still running, their handles printed for a later wait or cancel
            rows = _queued(sql_admin, label)
            assert [r["state"] for r in rows] == ["running", "running"]
            assert out.split() == [f"{r['id']}:{r['cookie']}" for r in rows]
        else:
            assert [r["state"] for r in json.loads(out)] == ["canceled", "canceled"]
            assert [r["state"] for r in _queued(sql_admin, label)] == ["canceled", "canceled"]
    finally:
        if proc.poll() is None:
            proc.kill()
        cli("cancel", "--label", label, dsn=dsn)


def test_a_file_is_split_as_a_server_without_standard_strings_reads_it(server_dsn, cli, tmp_path):
    """Where standard_conforming_strings is off, a backslash escapes a quote in a plain string:
    the file's statements are split as that server reads them."""
    from conftest import fresh_database, sql_runner

    path = tmp_path / "jobs.sql"
    path.write_text("SELECT 'a\\';b' AS v;\nSELECT 2;\n")
    with fresh_database(server_dsn, "pgbg_scs") as dsns, sql_runner(dsns["admin"]) as admin:
        admin(f"ALTER DATABASE {dsns['name']} SET standard_conforming_strings = off")
        res = cli("launch", "--label", "scs", "-f", str(path), dsn=dsns["app"])
        assert res.exit_code == 0, res
        rows = admin("SELECT sql FROM pgbg.job WHERE label = 'scs' ORDER BY id")
    assert [r["sql"] for r in rows] == ["SELECT 'a\\';b' AS v", "SELECT 2"]
