"""Connections the way PostgreSQL users expect: libpq's environment, service file, .pgpass,
--dsn over PGBG_DSN, and application_name=pgbg."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
from psycopg.conninfo import conninfo_to_dict


def _env_without_dsn(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def test_libpq_environment_and_pgpass(test_db, pgbg_proc, tmp_path):
    params = conninfo_to_dict(test_db["app"])
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{params['host']}:{params['port']}:{params['dbname']}:{params['user']}:{params['password']}\n")
    passfile.chmod(stat.S_IRUSR | stat.S_IWUSR)
    env = _env_without_dsn(PGHOST=params["host"], PGPORT=str(params["port"]), PGDATABASE=params["dbname"],
                           PGUSER=params["user"], PGPASSFILE=str(passfile))
    res = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["owner"] == "pgbg_app"


def test_service_file(test_db, pgbg_proc, tmp_path):
    params = conninfo_to_dict(test_db["app"])
    services = tmp_path / "pg_service.conf"
    services.write_text("[pgbg-test]\n" + "".join(f"{k}={params[k]}\n" for k in
                                                 ("host", "port", "dbname", "user", "password")))
    env = _env_without_dsn(PGSERVICEFILE=str(services), PGSERVICE="pgbg-test")
    res = pgbg_proc("list", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    by_dsn = pgbg_proc("list", "--format", "json", "-d", "service=pgbg-test",
                       env=_env_without_dsn(PGSERVICEFILE=str(services)))
    assert by_dsn.returncode == 0, by_dsn.stderr


def test_dsn_option_wins_over_pgbg_dsn(test_db, cli):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1", "-d", test_db["other"], dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)["owner"] == "pgbg_other"


def test_application_name_is_pgbg(test_db, cli, sql_admin):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1", dsn=test_db["app"])
    assert res.exit_code == 0, res
    job = json.loads(res.stdout)
    row = sql_admin("SELECT client_app FROM pgbg.job WHERE id = %s", (int(job["handle"].split(":")[0]),))
    assert row[0]["client_app"] == "pgbg"


# psql's connection options: -h, -p, -U, -d, before and after the command (README, "Connecting")

def _psql_env(test_db, **extra: str) -> tuple[dict[str, str], dict[str, str]]:
    """No PG* variable but the password; the parts of the app role's URI, as psql's options."""
    params = conninfo_to_dict(test_db["app"])
    env = _env_without_dsn(PGPASSWORD=params["password"], **extra)
    return env, params


def _owner(res) -> str:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["owner"]


def test_psql_options_after_the_command(test_db, pgbg_proc):
    env, p = _psql_env(test_db)
    res = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1",
                    "-h", p["host"], "-p", str(p["port"]), "-U", "pgbg_other", "-d", p["dbname"], env=env)
    assert _owner(res) == "pgbg_other"
    res = pgbg_proc("list", "--format", "json", f"--host={p['host']}", f"-p{p['port']}", "--username", "pgbg_app",
                    "--dbname", p["dbname"], env=env)
    assert res.returncode == 0, res.stderr


def test_psql_options_before_the_command_and_after_wins(test_db, pgbg_proc):
    env, p = _psql_env(test_db)
    before = ["-h", p["host"], "-p", str(p["port"]), "-U", "pgbg_app", "-d", p["dbname"]]
    assert _owner(pgbg_proc(*before, "launch", "--wait", "--format", "json", "SELECT 1", env=env)) == "pgbg_app"
    res = pgbg_proc(*before, "launch", "--wait", "--format", "json", "SELECT 1", "-U", "pgbg_other", env=env)
    assert _owner(res) == "pgbg_other"
    # -d after the command replaces the name before it; the host and port before still apply
    res = pgbg_proc(*before, "list", "-d", "pgbg_no_such_db", env=env)
    assert res.returncode == 3
    assert 'database "pgbg_no_such_db" does not exist' in res.stderr


def test_a_database_name_in_d_keeps_the_rest_of_pgbg_dsn(test_db, pgbg_proc):
    res = pgbg_proc("list", "-d", "pgbg_no_such_db", dsn=test_db["app"], env=_env_without_dsn())
    assert res.returncode == 3
    assert 'database "pgbg_no_such_db" does not exist' in res.stderr  # PGBG_DSN's host, port and role
    assert conninfo_to_dict(test_db["app"])["password"] not in res.stderr + res.stdout
    ok = pgbg_proc("list", "--format", "json", "-d", test_db["name"], dsn=test_db["app"], env=_env_without_dsn())
    assert ok.returncode == 0, ok.stderr
    # -U changes the role of PGBG_DSN, and nothing else
    assert _owner(pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", "-U", "pgbg_other",
                            dsn=test_db["app"], env=_env_without_dsn())) == "pgbg_other"


def test_a_connection_string_in_d_wins_over_h_p_u_as_in_psql(test_db, pgbg_proc):
    # psql -h A -d "host=B ..." connects to B: libpq lets the string's fields override
    res = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", "-h", "/nonexistent-pgbg", "-p", "1",
                    "-U", "pgbg_other", "-d", test_db["app"], env=_env_without_dsn())
    assert _owner(res) == "pgbg_app"
    # ... and they fill in what it leaves out
    p = conninfo_to_dict(test_db["app"])
    partial = f"dbname={p['dbname']} password={p['password']}"
    res = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1", "-h", p["host"], "-p", str(p["port"]),
                    "-U", "pgbg_other", "-d", partial, env=_env_without_dsn())
    assert _owner(res) == "pgbg_other"


def test_in_process_too(test_db, cli):
    # the Typer app alone (no console script, so no early connection): the same options
    p = conninfo_to_dict(test_db["app"])
    res = cli("-U", "pgbg_other", "launch", "--wait", "--format", "json", "SELECT 1", dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)["owner"] == "pgbg_other"
    res = cli("-d", p["dbname"], "-h", "/nonexistent-pgbg", "list", "-h", p["host"], dsn=test_db["app"])
    assert res.exit_code == 0, res


@pytest.mark.parametrize("args", [
    ["list", "-p", "abc"], ["-p", "abc", "list"], ["list", "-p", "70000"], ["list", "--port", ""],
    ["list", "-h"], ["-U"], ["list", "-d"],
], ids=" ".join)
def test_bad_connection_options_are_one_line_and_exit_2(pgbg_proc, args):
    res = pgbg_proc(*args, env=_env_without_dsn())
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("pgbg: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr


def test_help_is_question_mark_and_h_is_the_host(pgbg_proc):
    for args in (["-?"], ["list", "-?"], ["-h", "db1", "--help"]):
        res = pgbg_proc(*args, env=_env_without_dsn())
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("Usage: ")
        assert "-h, --host HOST" in res.stdout and "-U, --username USER" in res.stdout
    res = pgbg_proc("list", "-h", env=_env_without_dsn())
    assert "requires an argument" in res.stderr


def test_an_option_without_its_value_points_to_the_commands_help(pgbg_proc):
    """click's parser raises "requires an argument" without its context: the hint named
    `pgbg --help`, whose options are not the command's. Every command takes -h, -p, -U, -d."""
    from pgbg_cli.commands import COMMANDS

    cases = [(command, "-h") for command in COMMANDS] + [("list", option) for option in ("--host", "-p", "-U", "-d")]
    for command, option in cases:
        res = pgbg_proc(command, option, env=_env_without_dsn())
        assert res.returncode == 2, (command, option, res.stderr)
        assert res.stderr == (f"pgbg: option '{option}' requires an argument "
                              f"(see pgbg {command} --help)\n"), res.stderr
    res = pgbg_proc("list", "--state", env=_env_without_dsn())  # any option that takes a value
    assert res.stderr == "pgbg: option '--state' requires an argument (see pgbg list --help)\n", res.stderr
    res = pgbg_proc("-h", env=_env_without_dsn())  # before any command: the root's help it is
    assert res.stderr == "pgbg: option '-h' requires an argument (see pgbg --help)\n", res.stderr


def _listed(dsn: str, port: int) -> str:
    """``dsn`` reached through a host list whose first host answers nothing (port 1)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, host="127.0.0.1,127.0.0.1", port=f"1,{port}", load_balance_hosts="disable")


def test_a_second_connection_goes_to_the_server_the_first_reached(test_db):
    from pgbg_cli import db

    first = conninfo_to_dict(test_db["app"])
    listed = _listed(test_db["app"], int(first["port"]))
    with db.connection(listed) as conn:
        again = conninfo_to_dict(db.on_same_server(conn, listed, dbname="postgres"))
        hostaddr = conn.info.hostaddr
    assert (again["host"], again["port"], again["dbname"]) == ("127.0.0.1", first["port"], "postgres")
    assert again["hostaddr"] == hostaddr == "127.0.0.1"
    assert "load_balance_hosts" not in again
    assert (again["user"], again["password"]) == (first["user"], first["password"])


# Session settings of the user's (PGOPTIONS, PGCLIENTENCODING, ALTER ROLE/DATABASE ... SET)
# that change how the server sends values to pgbg

def test_a_client_encoding_of_sql_ascii_is_no_traceback(test_db, pgbg_proc):
    """psycopg hands text over as bytes under SQL_ASCII: every command failed with a TypeError.
    pgbg's own session speaks UTF-8, whatever PGCLIENTENCODING says."""
    for args in (["list", "-n", "1", "-F", "json"], ["launch", "--wait", "-F", "json", "SELECT 'é'"]):
        res = pgbg_proc(*args, dsn=test_db["app"], env={"PGCLIENTENCODING": "SQL_ASCII"})
        assert res.returncode == 0, (args, res)
        assert "Traceback" not in res.stderr
        json.loads(res.stdout)


@pytest.mark.parametrize("style", ["German", "SQL, DMY", "Postgres, MDY"])
def test_a_datestyle_pgbg_cannot_read_is_one_line_and_exit_3(test_db, pgbg_proc, sql_admin, style):
    """psycopg reads timestamps in DateStyle ISO only: another one (here from PGOPTIONS; a
    role's or database's setting alike) failed every command that shows a time with a
    NotImplementedError traceback and exit 1."""
    env = {"PGOPTIONS": f"-c DateStyle={style.replace(' ', '')}"}
    res = pgbg_proc("list", "-n", "1", dsn=test_db["app"], env=env)
    assert res.returncode == 3, res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res
    assert "DateStyle" in res.stderr and "ISO" in res.stderr, res
    # a launch says so before it queues anything: exit 3 and no job (a script would run it again)
    label = f"ds-{uuid.uuid4().hex[:8]}"
    for args in (["SELECT 1"], ["--wait", "SELECT 1"], ["SELECT 1", "SELECT 2"]):
        res = pgbg_proc("launch", "-l", label, *args, dsn=test_db["app"], env=env)
        assert res.returncode == 3 and res.stdout == "", (args, res)
        assert res.stderr.count("\n") == 1 and "DateStyle" in res.stderr, (args, res)
    assert not sql_admin("SELECT 1 FROM pgbg.job WHERE label = %s", (label,))
