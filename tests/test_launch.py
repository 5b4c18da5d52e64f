"""``pgbg launch`` against the real server: outcomes, errors, results, input, connection
problems, privileges, ``init``/``grant``/``revoke`` and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest
from conftest import ROOT, _make_db, _with_db, interrupt, interruptible, retry

PASSWORD = "sandbox-app-secret"


def _label() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def _job(sql_admin: Any, label: str) -> dict[str, Any] | None:
    rows = sql_admin("SELECT * FROM pgbg.job WHERE label = %s", (label,))
    return rows[0] if rows else None


def _alive(sql_admin: Any, pid: int) -> bool:
    return bool(sql_admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


# --- the deadlock trap -------------------------------------------------------------------


def test_create_index_concurrently_with_wait_completes(test_db, pgbg_proc, sql_admin):
    table = f"cic_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
    # The trap: a launcher that waits in one long statement deadlocks with CIC forever.
    res = pgbg_proc("launch", "--wait", "--format", "json",
                    f"CREATE INDEX CONCURRENTLY {table}_v_idx ON {table} (v)", dsn=test_db["app"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["state"] == "succeeded"
    valid = sql_admin("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = %s::regclass",
                      (f"{table}_v_idx",))
    assert valid == [{"indisvalid": True}]


# --- failures ----------------------------------------------------------------------------


def test_division_by_zero_json_and_plain(test_db, cli):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1/0", dsn=test_db["app"])
    assert res.exit_code == 1
    rec = json.loads(res.stdout)
    assert rec["state"] == "failed" and rec["sqlstate"] == "22012"
    assert rec["message"] == "division by zero"
    assert "[22012] division by zero" in res.stderr

    plain = cli("launch", "--wait", "--format", "plain", "SELECT 1/0", dsn=test_db["app"])
    assert plain.exit_code == 1
    lines = dict(line.split(None, 1) for line in plain.stdout.splitlines() if line and not line[0].isspace()
                 and len(line.split(None, 1)) == 2)
    assert lines["sqlstate"].strip() == "22012"
    assert lines["state"].strip() == "failed"


def test_error_detail_and_hint_are_shown(test_db, cli):
    do = ("DO $$BEGIN RAISE EXCEPTION 'it broke' USING DETAIL = 'the detail ünï', HINT = 'try the hint', "
          "ERRCODE = 'P0001'; END$$")
    res = cli("launch", "--wait", "--format", "json", do, dsn=test_db["app"])
    assert res.exit_code == 1
    rec = json.loads(res.stdout)
    assert (rec["sqlstate"], rec["message"], rec["detail"], rec["hint"]) == (
        "P0001", "it broke", "the detail ünï", "try the hint")
    plain = cli("launch", "--wait", "--format", "plain", do, dsn=test_db["app"])
    assert plain.exit_code == 1
    assert "the detail ünï" in plain.stdout and "try the hint" in plain.stdout
    assert "it broke" in plain.stderr


# --- results -----------------------------------------------------------------------------


def test_result_json_uses_column_names_and_handles_duplicates(test_db, cli):
    res = cli("launch", "--result", "--format", "json",
              "SELECT g AS n, g * 2 AS n, 'x''y' AS \"Mixed Case\" FROM generate_series(1, 3) g ORDER BY g",
              dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 3
    assert list(rows[0]) == ["n", "n_2", "Mixed Case"]
    assert rows[2] == {"n": 3, "n_2": 6, "Mixed Case": "x'y"}


def test_result_csv_and_plain(test_db, cli):
    sql = "SELECT g AS num, 'v' || g AS txt FROM generate_series(1, 2) g ORDER BY g"
    csv_res = cli("launch", "--result", "--format", "csv", sql, dsn=test_db["app"])
    assert csv_res.exit_code == 0, csv_res.stderr
    assert csv_res.stdout == "num,txt\n1,v1\n2,v2\n"
    plain = cli("launch", "--result", "--format", "plain", sql, dsn=test_db["app"])
    assert plain.exit_code == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["num", "txt"]
    assert [line.split() for line in lines[2:]] == [["1", "v1"], ["2", "v2"]]


@pytest.mark.parametrize("sql", ["SELECT 1; SELECT 2", "SELECT pg_sleep(0)"])
def test_result_refuses_what_it_cannot_return(test_db, cli, sql_admin, sql):
    before = sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"]
    res = cli("launch", "--result", sql, dsn=test_db["app"])
    assert res.exit_code == 2
    assert _one_line(res.stderr) and res.stderr.startswith("pgbg: ")
    assert res.stdout == ""
    assert sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"] == before  # nothing was queued


# --- where the SQL comes from ------------------------------------------------------------


def test_sql_from_file_and_stdin(test_db, cli, tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("SELECT 'from-file' AS src", encoding="utf-8")
    res = cli("launch", "--result", "--format", "json", "-f", str(path), dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == [{"src": "from-file"}]

    res = cli("launch", "--result", "--format", "json", "-", input="SELECT 'from-stdin' AS src",
              dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == [{"src": "from-stdin"}]

    res = cli("launch", "--result", "--format", "json", "-f", "-", input="SELECT 'stdin-f' AS src",
              dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == [{"src": "stdin-f"}]


def test_sql_input_mistakes_exit_2(test_db, cli, tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("SELECT 1", encoding="utf-8")
    for args, needle in (
        (("SELECT 1", "-f", str(path)), "not both"),
        (("",), "no SQL"),
        (("  \n ",), "no SQL"),
        (("-f", str(tmp_path / "missing.sql")), "cannot read"),
    ):
        res = cli("launch", *args, dsn=test_db["app"])
        assert res.exit_code == 2, (args, res)
        assert _one_line(res.stderr) and needle in res.stderr, (args, res.stderr)
        assert res.stdout == ""
    res = cli("launch", "-", input="", dsn=test_db["app"])
    assert res.exit_code == 2 and "no SQL" in res.stderr


def test_a_file_of_no_statement_queues_nothing(test_db, pgbg_proc, sql_admin, tmp_path):
    """--file runs one job per statement: a file of comments and semicolons alone has none, and
    is refused as an empty one is (it queued one job of that text, which did nothing)."""
    label = _label()
    for text in ("-- nothing tonight\n", ";;\n;", "/* all commented out: SELECT 1; */\n"):
        path = tmp_path / "q.sql"
        path.write_text(text, encoding="utf-8")
        for args in (["-f", str(path)], ["-f", "-"]):
            res = pgbg_proc("launch", "-l", label, *args, dsn=test_db["app"], input=text)
            assert res.returncode == 2, (text, args, res)
            assert _one_line(res.stderr) and "no SQL given" in res.stderr, (text, args, res)
            assert res.stdout == ""
    assert _job(sql_admin, label) is None


def test_missing_file_in_a_real_process_has_no_traceback(test_db, pgbg_proc, tmp_path):
    res = pgbg_proc("launch", "-f", str(tmp_path / "nope.sql"), dsn=test_db["app"])
    assert res.returncode == 2
    assert _one_line(res.stderr) and "nope.sql" in res.stderr


# --- standard streams closed or full -----------------------------------------------------


def _pgbg_closed(*args: str, dsn: str, close: int | None = None, stdout: Any = subprocess.PIPE,
                 stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """pgbg in a real process whose file descriptor ``close`` is closed (as ``>&-``, ``<&-`` or
    ``2>&-`` in a shell): Python then sees that stream as None."""
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True, stdin=stdin,
                          stdout=stdout, stderr=subprocess.PIPE, timeout=120,
                          preexec_fn=(lambda: os.close(close)) if close is not None else None)


def test_closed_stdin_reads_as_empty(test_db):
    for args in (["launch", "-"], ["launch", "--lines"], ["launch", "-f", "-"]):
        res = _pgbg_closed(*args, dsn=test_db["app"], close=0, stdin=None)
        assert res.returncode == 2, (args, res)
        assert _one_line(res.stderr) and "no SQL given" in res.stderr, (args, res)


def test_closed_stdout_is_refused_before_anything_is_queued(test_db, sql_admin):
    label = _label()
    res = _pgbg_closed("launch", "-l", label, "SELECT 1", dsn=test_db["app"], close=1, stdout=None)
    assert res.returncode == 2, res
    assert _one_line(res.stderr) and "standard output is closed" in res.stderr, res
    assert _job(sql_admin, label) is None


def test_closed_or_full_stderr_keeps_the_exit_code(test_db):
    res = _pgbg_closed("launch", "--queue-size", "1", "SELECT 1", dsn=test_db["app"], close=2)
    assert res.returncode == 2, res
    res = _pgbg_closed("launch", "--wait", "SELECT 1/0", dsn=test_db["app"], close=2)
    assert res.returncode == 1, res
    env = dict(os.environ, PGBG_DSN=test_db["app"], PYTHONPATH=str(ROOT), NO_COLOR="1")
    for args, code in ((["wait", "1:1"], 2), (["launch", "--wait", "SELECT 1/0"], 1), (["list"], 0)):
        with open("/dev/full", "w") as full:
            res = subprocess.run([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=full, timeout=120)
        assert res.returncode == code, (args, res)


def test_full_stdout_is_one_line_and_exit_3(test_db, sql_admin):
    label = _label()
    with open("/dev/full", "w") as full:
        res = _pgbg_closed("launch", "-l", label, "--wait", "-F", "json", "SELECT 1", dsn=test_db["app"],
                           stdout=full)
    assert res.returncode == 3, res
    assert _one_line(res.stderr) and "cannot write to standard output" in res.stderr, res
    assert "No space left on device" in res.stderr


def test_full_stdout_after_queueing_names_the_jobs_queued(test_db, sql_admin):
    """The handles could not be printed, but the jobs are queued: the one line on stderr names
    them, or the user runs the SQL again (and it runs twice). The exit code stays 3."""
    for args, count in ((["SELECT 1"], 1), (["--wait", "SELECT 1"], 1), (["SELECT 1", "SELECT 2"], 2),
                        (["--lines"], 2)):
        label = _label()
        with open("/dev/full", "w") as full:
            res = subprocess.run([sys.executable, "-m", "pgbg_cli", "launch", "-l", label, *args], text=True,
                                 input="SELECT 1\nSELECT 2\n", stdout=full, stderr=subprocess.PIPE, timeout=120,
                                 env=dict(os.environ, PGBG_DSN=test_db["app"], PYTHONPATH=str(ROOT), NO_COLOR="1"))
        assert res.returncode == 3, (args, res)
        rows = sql_admin("SELECT id, cookie FROM pgbg.job WHERE label = %s ORDER BY id", (label,))
        assert len(rows) == count, (args, rows)
        handles = " ".join(f"{r['id']}:{r['cookie']}" for r in rows)
        jobs = f"job {handles} was" if count == 1 else f"{count} jobs were"
        them = "it" if count == 1 else "them"
        assert res.stderr == (f"pgbg: cannot write to standard output: No space left on device; {jobs} queued all "
                              f"the same (do not launch {them} again): pgbg wait {handles}\n"), (args, res.stderr)
    with open("/dev/full", "w") as full:  # nothing queued: nothing named
        res = _pgbg_closed("list", "-n", "1", dsn=test_db["app"], stdout=full)
    assert res.returncode == 3 and res.stderr == "pgbg: cannot write to standard output: No space left on device\n"


def test_full_stdout_after_ctrl_c_does_not_call_the_canceled_job_queued(test_db, sql_admin):
    """Ctrl-C canceled the job; then its outcome could not be written: the line on stderr must not
    tell the user that the job is still queued."""
    label = _label()
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", "launch", "--wait", "-l", label,
                                 "SELECT pg_sleep(60)"], text=True, stdin=subprocess.DEVNULL, stdout=full,
                                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=interruptible,
                                env=dict(os.environ, PGBG_DSN=test_db["app"], PYTHONPATH=str(ROOT), NO_COLOR="1"))
        _, _, err = interrupt(proc, lambda: retry(
            lambda: sql_admin("SELECT 1 FROM pgbg.job WHERE label = %s AND state = 'running'", (label,)),
            "the job runs", timeout=30), timeout=120)
    assert sql_admin("SELECT state FROM pgbg.job WHERE label = %s", (label,))[0]["state"] == "canceled"
    assert "interrupted; canceling job" in err, err
    assert "queued all the same" not in err, err


def test_launch_wait_that_cannot_reconnect_names_the_job_it_launched(server_dsn):
    """With --wait no handle was printed: the last words name it, or the user could not find the job."""
    from conftest import fresh_database, pgbg_gives_up, sql_runner

    with fresh_database(server_dsn, "pgbg_giveup") as db:
        label = _label()
        res = pgbg_gives_up(db, "launch", "--wait", "-l", label, "SELECT pg_sleep(60)", looks="%JOIN unnest%")
        with sql_runner(db["admin"]) as sql:
            job = sql("SELECT id, cookie FROM pgbg.job WHERE label = %s", (label,))[0]
    handle = f"{job['id']}:{job['cookie']}"
    assert res.returncode == 3, res
    assert re.fullmatch(rf"pgbg: lost the connection \(.+\) and could not make it again within 1 s; job {handle} "
                        rf"goes on: pgbg wait {handle} once the server answers\n", res.stderr), res.stderr


# --- connection problems ----------------------------------------------------------------


def test_unreachable_server_exit_3_one_line(pgbg_proc):
    res = pgbg_proc("launch", "SELECT 1", dsn="postgresql://x@127.0.0.1:1/db", timeout=60)
    assert res.returncode == 3
    assert _one_line(res.stderr) and "cannot connect" in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 port=1 = bad", "postgresql://u:pw@[::1/db", "no_equals_sign"])
def test_bad_dsn_syntax_one_line(cli, dsn):
    res = cli("list", dsn=dsn)
    assert res.exit_code in (2, 3), res
    assert _one_line(res.stderr) and res.stderr.startswith("pgbg: ")


def test_password_never_shown(test_db, pgbg_proc):
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(test_db["app"])
    secret = "Zz-very-secret-9"
    host, port = params["host"], params["port"]
    for dsn in (
        f"postgresql://pgbg_app:{secret}@{host}:{port}/{params['dbname']}",  # wrong password
        f"postgresql://pgbg_app:{PASSWORD}@{host}:{port}/no_such_db_{uuid.uuid4().hex[:6]}",  # wrong db
        f"host={host} port={port} user=pgbg_app password={secret} dbname={params['dbname']}",
        f"postgresql://pgbg_app:{secret}@{host}:1/db",  # nothing listens
        f"postgresql://pgbg_app:{secret}@{host}:99999999/db",  # invalid port
        f"postgresql://pgbg_app:{secret}%zz@{host}:{port}/db",  # bad percent-encoding: libpq quotes it
        f"postgresql://pgbg_app:{secret}@[::1/db",  # bad URI: libpq quotes all of it
    ):
        res = pgbg_proc("launch", "--wait", "SELECT 1", dsn=dsn, timeout=60)
        assert res.returncode in (2, 3), (dsn, res.stderr)
        assert _one_line(res.stderr)
        for text in (res.stdout, res.stderr):
            assert secret not in text and PASSWORD not in text, text


# --- privileges, schema, extension -------------------------------------------------------


def test_role_without_grant_exit_3(test_db, cli):
    for args in (("launch", "SELECT 1"), ("list",)):
        res = cli(*args, dsn=test_db["plain"])
        assert res.exit_code == 3, res
        assert _one_line(res.stderr)
        assert "pgbackground_role" in res.stderr and "pgbg grant pgbg_plain" in res.stderr


def test_database_without_pgbg_schema_says_run_init(bare_db, cli):
    for args in (("launch", "SELECT 1"), ("list",), ("wait", "1:1")):
        res = cli(*args, dsn=bare_db["app"])
        assert res.exit_code == 3, res
        assert _one_line(res.stderr) and "run pgbg init" in res.stderr


@pytest.fixture
def db_without_extension(server_dsn):
    import psycopg
    from psycopg import sql

    name = f"pgbg_noext_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    from conftest import _drop_db

    _drop_db(server_dsn, name)


def test_database_without_extension_exit_3(server_dsn, db_without_extension, cli):
    dsn = _with_db(server_dsn, db_without_extension, "pgbg_app", PASSWORD)
    for args in (("launch", "SELECT 1"), ("list",), ("init", "--check")):
        res = cli(*args, dsn=dsn)
        assert res.exit_code == 3, res
        assert _one_line(res.stderr) and "CREATE EXTENSION pg_background" in res.stderr


# --- init, grant, revoke ------------------------------------------------------------------


@pytest.fixture
def fresh_db(server_dsn):
    """A database with the extension and no pgbg schema, for init tests."""
    name = f"pgbg_init_{uuid.uuid4().hex[:8]}"
    admin = _make_db(server_dsn, name, init=False)
    yield {"admin": admin, "app": _with_db(server_dsn, name, "pgbg_app", PASSWORD), "name": name}
    from conftest import _drop_db

    _drop_db(server_dsn, name)


def test_init_twice_and_check(fresh_db, cli):
    res = cli("init", "--check", dsn=fresh_db["admin"])
    assert res.exit_code == 3 and res.stdout == "pgbg schema: not installed (run pgbg init)\n" and not res.stderr
    res = cli("init", dsn=fresh_db["admin"])
    assert res.exit_code == 0, res
    assert "applied v001" in res.stderr and "current" in res.stderr
    res = cli("init", dsn=fresh_db["admin"])
    assert res.exit_code == 0, res
    assert "nothing to do" in res.stderr
    res = cli("init", "--check", dsn=fresh_db["admin"])
    assert res.exit_code == 0 and res.stdout.endswith(", current\n") and not res.stderr


def test_concurrent_init_on_fresh_database(fresh_db, cli):
    env = dict(os.environ, PGBG_DSN=fresh_db["admin"], PYTHONPATH=str(ROOT), NO_COLOR="1")
    procs = [subprocess.Popen([sys.executable, "-m", "pgbg_cli", "init"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("nothing to do" in err for _, err in outs) == 1, outs
    res = cli("init", "--check", dsn=fresh_db["admin"])
    assert res.exit_code == 0, res


@pytest.fixture
def scratch_role(sql_admin):
    """A LOGIN role of its own, so granting and revoking never disturbs the shared test roles."""
    from psycopg import sql

    role = f"pgbg_gr_{uuid.uuid4().hex[:8]}"
    sql_admin(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
    yield role
    sql_admin(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    sql_admin(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_grant_and_revoke_change_membership(test_db, cli, sql_admin, server_dsn, scratch_role):
    def groups() -> set[str]:
        rows = sql_admin("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                         "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (scratch_role,))
        return {r["rolname"] for r in rows}

    dsn = _with_db(server_dsn, test_db["name"], scratch_role, PASSWORD)
    assert cli("list", dsn=dsn).exit_code == 3
    res = cli("grant", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0, res
    assert f'GRANT "pgbackground_role" TO "{scratch_role}";' in res.stdout
    assert f'GRANT "pgbg_user" TO "{scratch_role}";' in res.stdout
    assert groups() == {"pgbackground_role", "pgbg_user"}
    assert cli("list", dsn=dsn).exit_code == 0

    res = cli("grant", "--admin", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0 and "pgbg_admin" in res.stdout
    assert groups() == {"pgbackground_role", "pgbg_user", "pgbg_admin"}

    res = cli("revoke", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0, res
    assert f'REVOKE "pgbg_user" FROM "{scratch_role}";' in res.stdout
    assert groups() == set()
    assert cli("list", dsn=dsn).exit_code == 3
    res = cli("revoke", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0 and "nothing to revoke" in res.stderr and res.stdout == ""

    res = cli("grant", f"no_such_{uuid.uuid4().hex[:6]}", dsn=test_db["admin"])
    assert res.exit_code == 2 and "no role named" in res.stderr


def test_revoke_keeps_a_pgbackground_role_membership_pgbg_did_not_give(test_db, cli, sql_admin, scratch_role):
    from psycopg import sql

    sql_admin(sql.SQL("GRANT pgbackground_role TO {}").format(sql.Identifier(scratch_role)))  # before pgbg
    res = cli("grant", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0, res
    assert "pgbackground_role" not in res.stdout  # it had it: nothing to grant
    res = cli("revoke", scratch_role, dsn=test_db["admin"])
    assert res.exit_code == 0, res
    assert f'REVOKE "pgbg_user" FROM "{scratch_role}";' in res.stdout and "pgbackground_role" not in res.stdout
    assert f"pgbg: {scratch_role} keeps pgbackground_role: pgbg did not grant it" in res.stderr
    rows = sql_admin("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                     "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (scratch_role,))
    assert {r["rolname"] for r in rows} == {"pgbackground_role"}


# --- Ctrl-C -------------------------------------------------------------------------------


def _popen_pgbg(*args: str, dsn: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.Popen([sys.executable, "-m", "pgbg_cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=interruptible)


def _running(sql_admin: Any, label: str) -> dict[str, Any]:
    return retry(lambda: (j := _job(sql_admin, label)) and j["state"] == "running" and j,
                 f"job {label} running", timeout=20)


def _interrupt_running_launch(sql_admin: Any, dsn: str, *options: str) -> tuple[dict[str, Any], int, str, str]:
    """Start `pgbg launch --wait` of a long job, send it Ctrl-C once the job runs."""
    label = _label()
    proc = _popen_pgbg("launch", "--wait", *options, "-l", label, "SELECT pg_sleep(60)", dsn=dsn)
    try:
        job = _running(sql_admin, label)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return job, proc.returncode, out, err


def test_ctrl_c_during_wait_cancels_the_job(test_db, sql_admin):
    job, code, out, err = _interrupt_running_launch(sql_admin, test_db["app"], "--format", "json")
    assert code == 130, err  # Ctrl-C is 130, whatever became of the job (README: Exit codes)
    assert "interrupted" in err and "Traceback" not in err
    assert json.loads(out)["state"] == "canceled"
    assert _job(sql_admin, job["label"])["state"] == "canceled"
    assert not _alive(sql_admin, job["worker_pid"])


def test_ctrl_c_with_keep_running_leaves_the_job(test_db, sql_admin, cli):
    job, code, out, err = _interrupt_running_launch(sql_admin, test_db["app"], "--keep-running")
    handle = f"{job['id']}:{job['cookie']}"
    assert code == 130, err
    assert out == handle + "\n"
    assert "Traceback" not in err
    assert _job(sql_admin, job["label"])["state"] == "running"
    assert _alive(sql_admin, job["worker_pid"])
    res = cli("cancel", handle, "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)[0]["state"] == "canceled"
    assert not _alive(sql_admin, job["worker_pid"])


@pytest.mark.parametrize("sql, sqlstate, words", [
    ("SELEC 1", "42601", 'syntax error at or near "SELEC"'),
    ("SELECT * FROM no_such_table_here", "42P01", 'relation "no_such_table_here" does not exist'),
    ("SELECT no_such_column FROM pg_class", "42703", 'column "no_such_column" does not exist'),
])
def test_sql_the_server_refuses_is_never_queued(test_db, cli, sql_admin, sql, sqlstate, words):
    before = sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"]
    res = cli("launch", sql, dsn=test_db["app"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == f"pgbg: the server refused the SQL; nothing was queued: {words} [{sqlstate}]\n"
    assert sql_admin("SELECT count(*) AS n FROM pgbg.job")[0]["n"] == before
