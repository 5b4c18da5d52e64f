"""Red team of schema version 3's features (docs/security.md), against the real sandbox server:
a granted role (pgbg_app, a member of pgbg_user and pgbackground_role, not a superuser)
attacks pgbg fanout, pgbg_messages and the connection options; each test failed before its fix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import SANDBOX, fresh_database, sql_runner

# A table name that, quoted and put into a template, ends the statement and runs its own:
# expanding {table} and then {name} again inside what {table} put there would let it out.
PAYLOAD = ";CREATE TABLE public.rt_pwned ();--"


@pytest.fixture(scope="module")
def v3(server_dsn: str) -> Iterator[dict[str, str]]:
    with fresh_database(server_dsn, "pgbg_sec3") as dsns:
        yield dsns


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("evil_name", [PAYLOAD + "{name}", PAYLOAD + "{schema}", "x{table}" + PAYLOAD])
def test_a_table_name_with_a_placeholder_cannot_break_out_of_its_quotes(v3, cli, evil_name):
    # the hostile role makes tables in a schema it may write; a superuser fans a template out
    with sql_runner(v3["app"]) as app, sql_runner(v3["admin"]) as admin:
        for name in (evil_name, PAYLOAD):
            app(f"CREATE TABLE IF NOT EXISTS public.{_quoted(name)} (id int)")
        try:
            res = cli("fanout", "ANALYZE {table}", "--schema", "public", "--dry-run", "-F", "json",
                      dsn=v3["admin"])
            assert res.exit_code == 0, res
            rows = {r["target"]: r for r in json.loads(res.stdout)}
            # each statement names its own table, as the server quotes it, and nothing else
            target = "public." + _quoted(evil_name)
            assert rows[target]["sql"] == "ANALYZE " + target, rows[target]
            for row in rows.values():
                assert row["sql"] == f"ANALYZE {row['target']}"
            # run as printed (as `psql` would, or a launch): no statement of the name's runs
            for row in rows.values():
                admin(row["sql"])
            assert admin("SELECT to_regclass('public.rt_pwned') AS t")[0]["t"] is None
        finally:
            admin("DROP TABLE IF EXISTS public.rt_pwned")
            for name in (evil_name, PAYLOAD):
                admin(f"DROP TABLE IF EXISTS public.{_quoted(name)}")


def _server_log() -> Path | None:
    import os
    import subprocess

    if os.environ.get("PGBG_TEST_DSN"):
        return None
    out = subprocess.run(["bash", str(SANDBOX), "logfile"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    return path if path.is_file() else None


def test_capturing_never_hides_a_roles_own_warnings_from_the_server_log(v3):
    # log_min_messages is a superuser's setting: a granted role calling pgbg_messages in its own
    # session must not get its WARNINGs (the server's own included) kept out of the server log
    log = _server_log()
    if log is None:
        pytest.skip("the server log is not readable here (PGBG_TEST_DSN)")
    token = f"rt-hidden-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(v3["app"]) as conn:
        before = conn.execute("SHOW log_min_messages").fetchone()[0]
        assert before == "warning"
        conn.execute("SELECT pgbg._messages_begin(1, 1024)")
        conn.execute(f"DO $$ BEGIN RAISE WARNING '{token}-kept'; RAISE WARNING '{token}-dropped'; "
                     f"RAISE NOTICE '{token}-notice'; END $$")
        taken = conn.execute("SELECT pgbg._messages_take()").fetchone()[0]
        assert [m["message"] for m in taken["messages"]] == [f"{token}-kept"]  # still kept
        conn.execute("SELECT pgbg._messages_begin(1, 1024)")
        conn.execute(f"DO $$ BEGIN RAISE WARNING '{token}-at-commit'; END $$")
        conn.commit()
        conn.execute(f"DO $$ BEGIN RAISE WARNING '{token}-sync'; END $$")  # the log has caught up
        conn.commit()
    from conftest import retry

    text = retry(lambda: (t := log.read_text(errors="replace")) and f"{token}-sync" in t and t,
                 "the server log shows the last warning")
    for what in ("kept", "dropped", "at-commit"):
        assert f"WARNING:  {token}-{what}" in text, what
    # and nothing the setting would not log was added to it (NOTICE stays below warning)
    assert f"{token}-notice" not in text


def test_a_run_of_wildcards_is_one_atom_of_the_servers_regular_expression(v3, cli):
    # 200 stars were 200 `.*` (seconds of the server's time to compile); a run is one atom now
    from pgbg_cli.fanout import pattern

    assert pattern("*" * 200, "table") == "^.*$"
    assert pattern("?*" * 100, "table") == "^.{100,}$"
    assert pattern("a??b*c?", "table") == "^a.{2}b.*c.$"
    with sql_runner(v3["admin"]) as admin:
        admin("CREATE TABLE IF NOT EXISTS public.rt_wild_abcd (id int)")
        res = cli("fanout", "ANALYZE {table}", "--table", "rt_" + "*" * 150 + "?" * 2 + "*" * 40, "--dry-run", "-F",
                  "json", dsn=v3["admin"])
        assert res.exit_code == 0, res
        assert [r["target"] for r in json.loads(res.stdout)] == ["public.rt_wild_abcd"]


def test_h_names_the_host_even_when_pgbg_dsn_has_a_hostaddr(v3, cli):
    # PGBG_DSN points at one server by address; -h names another: libpq would have gone to the
    # address, so the command ran against the server the user had just said not to use
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(v3["admin"])
    params["hostaddr"] = params.pop("host")
    res = cli("capacity", "-h", "elsewhere.invalid", dsn=make_conninfo(**params))
    assert res.exit_code == 3, res
    assert "elsewhere.invalid" in res.stderr and "sandbox-admin-secret" not in res.stderr
    assert cli("capacity", dsn=make_conninfo(**params)).exit_code == 0  # the address alone still works


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 password=hunter2 s3cr3t-half",
                                 "postgresql://u@127.0.0.1/x?password=pw&s3cr3t-half=1"])
def test_an_unparsable_connection_string_never_shows_what_followed_its_password(cli, dsn):
    res = cli("list", "-d", dsn)
    assert res.exit_code == 2, res
    assert res.stderr.startswith("pgbg: invalid connection string: ") and len(res.stderr.splitlines()) == 1
    assert "s3cr3t" not in res.stderr and "hunter2" not in res.stderr, res.stderr


def test_a_take_in_a_later_transaction_sets_no_log_level_of_an_earlier_one(v3):
    # begin() remembered log_min_messages to put it back; once its transaction ended, the
    # setting is the server's again: a take() in a later transaction must not set the one
    # remembered (where a superuser made the log say more, it would make it say less)
    with psycopg.connect(v3["admin"], autocommit=True) as dba:
        dba.execute("CREATE OR REPLACE FUNCTION public.rt_take_at_notice() RETURNS text LANGUAGE plpgsql "
                    "SECURITY DEFINER SET log_min_messages = 'notice' SET search_path = pg_catalog, pg_temp AS "
                    "$$ BEGIN PERFORM pgbg._messages_take(); RETURN current_setting('log_min_messages'); END $$")
        dba.execute("GRANT EXECUTE ON FUNCTION public.rt_take_at_notice() TO pgbg_app")
    with psycopg.connect(v3["app"], autocommit=True) as app:
        app.execute("SELECT pgbg._messages_begin(10, 2048)")  # its own transaction, ended
        assert app.execute("SHOW log_min_messages").fetchone()[0] == "warning"
        assert app.execute("SELECT public.rt_take_at_notice()").fetchone()[0] == "notice"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1 that asks every client for its password in clear, and keeps it."""
    import socket
    import struct
    import threading

    heard: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                body = read(conn, struct.unpack("!I", read(conn, 4))[0] - 4)
                if body[:4] == struct.pack("!I", 80877103) or body[:4] == struct.pack("!I", 80877104):
                    conn.sendall(b"N")  # no TLS, no GSS
                    body = read(conn, struct.unpack("!I", read(conn, 4))[0] - 4)
                conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
                read(conn, 1)
                heard.append(read(conn, struct.unpack("!I", read(conn, 4))[0] - 4))
            except (OSError, EOFError, struct.error):
                heard.append(b"(a connection)")
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], heard
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("where", ["-p{port}", "--port={port}"])
def test_a_value_that_looks_like_a_connection_option_never_gets_the_password_sent_elsewhere(v3, pgbg_proc, listener,
                                                                                            where):
    # the console script begins connecting before Typer reads the command line, from a guess of
    # it: a label (from data: a table's name, say) that reads like -p/-h must not be taken for one
    port, heard = listener
    label = where.format(port=port)
    res = pgbg_proc("launch", "--label", label, "--wait", "SELECT 1", dsn=v3["app"])
    assert res.returncode == 0, res
    assert heard == [], heard  # before the fix: [b'sandbox-app-secret\x00']


def test_an_unparsable_target_is_named_without_what_followed_its_password(v3, cli):
    res = cli("list", "-d", v3["name"], "-d", "host=127.0.0.1 password=hunter2 s3cr3t-half", dsn=v3["admin"])
    assert "unreachable" in res.stdout or "invalid connection string" in res.stderr, res
    assert "s3cr3t" not in res.stdout + res.stderr and "hunter2" not in res.stdout + res.stderr, res


def test_a_new_job_never_starts_with_messages_whoever_inserts_it(v3):
    # job_guard gives every new row a clean outcome, the table's owner's included: the messages
    # of version 3 too (they would read as what the job said before it ran)
    with psycopg.connect(v3["admin"]) as conn:
        row = conn.execute(
            "INSERT INTO pgbg.job (owner, sql, messages, messages_dropped) "
            "VALUES ('pgbg_app', 'SELECT 1', '[{\"severity\": \"WARNING\", \"message\": \"forged\"}]', 7) "
            "RETURNING state, messages, messages_dropped").fetchone()
        conn.rollback()  # never seen by a supervisor
    assert row == ("queued", None, 0), row


LITERAL_PAYLOAD = "x'); CREATE TABLE public.rt_pwned (); --"


def test_a_table_name_in_a_string_literal_of_the_template_stays_in_it(v3, cli):
    # '{name}' is a natural template ('{table}'::regclass, a log line): the quoted identifier
    # went into the literal as it was, and a quote in the name ended the literal
    with sql_runner(v3["app"]) as app, sql_runner(v3["admin"]) as admin:
        app(f"CREATE TABLE IF NOT EXISTS public.{_quoted(LITERAL_PAYLOAD)} (id int)")
        try:
            res = cli("fanout", "SELECT length('{name}'), '{table}'::regclass", "--schema", "public",
                      "--table", "x*", "--dry-run", "-F", "json", dsn=v3["admin"])
            assert res.exit_code == 0, res
            (row,) = json.loads(res.stdout)
            doubled = _quoted(LITERAL_PAYLOAD).replace("'", "''")
            assert row["sql"] == f"SELECT length('{doubled}'), 'public.{doubled}'::regclass", row
            (got,) = admin(row["sql"])  # one statement: the name's own length, and its table
            assert got["length"] == len(_quoted(LITERAL_PAYLOAD))
            assert admin("SELECT to_regclass('public.rt_pwned') AS t")[0]["t"] is None
        finally:
            admin("DROP TABLE IF EXISTS public.rt_pwned")
            admin(f"DROP TABLE IF EXISTS public.{_quoted(LITERAL_PAYLOAD)}")


@pytest.mark.parametrize("template", ["SELECT $${name}$$", "SELECT E'{name}'", "SELECT 1 -- {table}",
                                      "SELECT 1 /* {table} */", 'SELECT "{name}"',
                                      "SELECT 1 /* nested /* */ {name} */"])  # block comments nest
def test_a_placeholder_where_no_name_can_be_kept_is_refused(v3, cli, template):
    res = cli("fanout", template, "--dry-run", dsn=v3["admin"])
    assert res.exit_code == 2, res
    assert len(res.stderr.splitlines()) == 1 and "put it where an identifier goes" in res.stderr, res


def test_a_backslash_in_a_name_never_goes_into_a_literal(v3, cli):
    # where standard_conforming_strings is off, 'public.x\' would end with an escaped quote
    name = "xb\\'; SELECT 1; --"
    with sql_runner(v3["app"]) as app, sql_runner(v3["admin"]) as admin:
        app(f"CREATE TABLE IF NOT EXISTS public.{_quoted(name)} (id int)")
        try:
            res = cli("fanout", "SELECT '{table}'::regclass", "--schema", "public", "--table", "xb*",
                      "--dry-run", dsn=v3["admin"])
            assert res.exit_code == 2 and "has a backslash in its name" in res.stderr, res
            res = cli("fanout", "ANALYZE {table}", "--schema", "public", "--table", "xb*", "--dry-run", "-F", "json",
                      dsn=v3["admin"])  # where an identifier goes it is quoted as one: fine
            assert res.exit_code == 0, res
        finally:
            admin(f"DROP TABLE IF EXISTS public.{_quoted(name)}")
