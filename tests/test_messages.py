"""A job's WARNING, NOTICE and INFO messages are kept with its outcome (pgbg_messages, the C
module in ext/ that the sandbox builds into every server), shown by show, printed to stderr by
wait and launch --wait, present in JSON; --strict exits 4 when a success warned. Real server."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest
from conftest import fresh_database
from conftest import job_row as _job
from conftest import launch_handle as _launch

from pgbg_cli.errors import EXIT_CODES, WARNED


def _said(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["severity"], m["message"]) for m in row["messages"]]


def _wait(cli: Any, dsn: str, handle: str, *args: str) -> Any:
    res = cli("wait", "--timeout", "60s", *args, handle, dsn=dsn)
    assert res.exit_code in (0, 1, WARNED), res
    return res


@pytest.fixture(autouse=True)
def _module_here(sql_admin: Any) -> None:
    # the sandbox builds ext/pgbg_messages into every server's root and the test database is
    # made by a superuser's init: without it, every test here would only see "not kept"
    assert sql_admin("SELECT pgbg._messages_available() AS ok")[0]["ok"], \
        "pgbg_messages is not installed on the sandbox server (scripts/sandbox.sh messages)"


def test_notice_warning_and_info_are_kept_in_order(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "DO $$ BEGIN RAISE NOTICE 'first'; RAISE WARNING 'second' USING DETAIL = 'd', "
                               "HINT = 'h'; RAISE INFO 'third'; RAISE NOTICE 'fourth'; END $$")
    res = _wait(cli, dsn, handle)
    row = _job(sql_admin, handle)
    assert row["state"] == "succeeded"
    assert _said(row) == [("NOTICE", "first"), ("WARNING", "second"), ("INFO", "third"), ("NOTICE", "fourth")]
    assert row["messages"][1]["detail"] == "d" and row["messages"][1]["hint"] == "h"
    assert row["messages"][1]["sqlstate"] == "01000" and row["messages_dropped"] == 0
    # wait: one line each on stderr, and the success that warned told apart
    assert "NOTICE: first\nWARNING: second (detail: d; hint: h)\nINFO: third\nNOTICE: fourth\n" in res.stderr
    assert f"job {handle} succeeded with 1 warning" in res.stderr
    # show: the same lines, and the state
    shown = cli("show", handle, dsn=dsn)
    assert shown.exit_code == 0, shown
    assert "succeeded with 1 warning" in shown.stdout and "WARNING: second (detail: d; hint: h)" in shown.stdout
    # JSON of wait: the same, with the count left out
    waited = json.loads(cli("wait", "--format", "json", handle, dsn=dsn).stdout)[0]
    assert [m["message"] for m in waited["messages"]] == ["first", "second", "third", "fourth"]
    assert waited["messages_dropped"] == 0
    # JSON of show: the list as kept
    data = json.loads(cli("show", "--format", "json", handle, dsn=dsn).stdout)
    assert data["state"] == "succeeded" and [m["message"] for m in data["messages"]] == [
        "first", "second", "third", "fourth"]


def test_a_clean_success_says_nothing_and_keeps_an_empty_list(test_db, cli, sql_admin):
    dsn = test_db["app"]
    res = cli("launch", "--wait", "--strict", "SELECT 1", dsn=dsn)
    assert res.exit_code == 0, res
    assert "warning" not in res.stderr.lower() and "NOTICE" not in res.stderr
    handle = res.stdout.split()[1]
    assert _job(sql_admin, handle)["messages"] == []


def test_a_real_server_warning_is_kept_and_strict_exits_4(test_db, cli, sql_admin):
    # a REVOKE by a role that may use a table but grant nothing on it is not an error: the
    # server says WARNING, and revokes nothing
    table = f"msg_{uuid.uuid4().hex[:8]}"
    sql_admin(f"CREATE TABLE public.{table} (id int)")
    sql_admin(f"GRANT SELECT ON public.{table} TO pgbg_app")
    dsn = test_db["app"]
    res = cli("launch", "--wait", f"REVOKE SELECT ON public.{table} FROM PUBLIC", dsn=dsn)
    assert res.exit_code == 0, res  # without --strict a success is a success
    assert f'WARNING: no privileges could be revoked for "{table}"\n' in res.stderr
    said = _said(_job(sql_admin, res.stdout.split()[1]))  # the table's, then one per column
    assert said[0] == ("WARNING", f'no privileges could be revoked for "{table}"')
    assert {severity for severity, _ in said} == {"WARNING"}
    assert f"succeeded with {len(said)} warnings" in res.stderr and f"succeeded with {len(said)} warnings" in res.stdout
    strict = cli("launch", "--wait", "--strict", f"REVOKE SELECT ON public.{table} FROM PUBLIC", dsn=dsn)
    assert strict.exit_code == WARNED == 4, strict
    assert 4 in EXIT_CODES
    handle = strict.stdout.split()[1]
    row = _job(sql_admin, handle)
    assert row["state"] == "succeeded" and _said(row) == said
    assert row["messages"][0]["sqlstate"] == "01006"  # warning_privilege_not_revoked
    # wait --strict on the same job: 4; a failure still outranks it (1)
    assert _wait(cli, dsn, handle, "--strict").exit_code == WARNED
    failed = _launch(cli, dsn, "SELECT 1/0")
    assert cli("wait", "--strict", "--timeout", "60s", handle, failed, dsn=dsn).exit_code == 1


def test_a_job_that_fails_after_a_notice_keeps_the_notice(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "DO $$ BEGIN RAISE NOTICE 'about to divide'; PERFORM 1/0; END $$")
    res = _wait(cli, dsn, handle)
    assert res.exit_code == 1
    row = _job(sql_admin, handle)
    assert (row["state"], row["sqlstate"]) == ("failed", "22012")
    assert _said(row) == [("NOTICE", "about to divide")]
    assert "NOTICE: about to divide" in res.stderr


def test_messages_beyond_the_bound_are_counted_and_marked(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "DO $$ BEGIN FOR i IN 1..150 LOOP RAISE NOTICE 'n%', i; END LOOP; "
                               "RAISE NOTICE '%', repeat('x', 10000); END $$")
    _wait(cli, dsn, handle)
    row = _job(sql_admin, handle)
    assert [m["message"] for m in row["messages"]] == [f"n{i}" for i in range(1, 101)]
    assert row["messages_dropped"] == 51
    shown = cli("show", handle, dsn=dsn).stdout
    assert "NOTICE: n100" in shown and "NOTICE: n101" not in shown
    assert "... 51 more messages not kept (pgbg keeps at most 100 messages, 64 kB, per job)" in shown


def test_a_long_message_is_cut_and_marked(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "DO $$ BEGIN RAISE WARNING '%', repeat('y', 10000); END $$")
    _wait(cli, dsn, handle)
    (message,) = _job(sql_admin, handle)["messages"]
    assert message["message"] == "y" * 4096 and message["truncated"] is True
    assert "[cut at 4 kB]" in cli("show", handle, dsn=dsn).stdout


def test_capturing_touches_only_the_calling_backend_and_ends_with_its_transaction(test_db):
    # pgbg_app may call them (a member of pgbg_user, as its supervisor runs them)
    with psycopg.connect(test_db["app"]) as conn:
        before = conn.execute("SHOW log_min_messages").fetchone()[0]
        conn.execute("SELECT pgbg._messages_begin(2, 2048)")
        assert conn.execute("SHOW log_min_messages").fetchone()[0] == "info"
        conn.execute("DO $$ BEGIN RAISE NOTICE 'a'; RAISE WARNING 'b'; RAISE NOTICE 'c'; END $$")
        taken = conn.execute("SELECT pgbg._messages_take()").fetchone()[0]
        assert [m["message"] for m in taken["messages"]] == ["a", "b"] and taken["dropped"] == 1
        assert conn.execute("SHOW log_min_messages").fetchone()[0] == before
        assert conn.execute("SELECT pgbg._messages_take()").fetchone()[0] is None  # nothing begun
        conn.execute("SELECT pgbg._messages_begin(10, 2048)")
        conn.commit()
        # the transaction ended: capturing stopped, and the setting is back
        assert conn.execute("SHOW log_min_messages").fetchone()[0] == before
        conn.execute("DO $$ BEGIN RAISE NOTICE 'after'; END $$")
        assert conn.execute("SELECT pgbg._messages_take()").fetchone()[0]["messages"] == []


def test_roles_outside_pgbg_may_not_call_the_capture_functions(test_db, sql_admin):
    for fn in ("pgbg._messages_begin(integer, integer)", "pgbg._messages_take()"):
        rights = sql_admin("SELECT has_function_privilege('pgbg_plain', %s, 'EXECUTE') AS plain, "
                           "has_function_privilege('pgbg_user', %s, 'EXECUTE') AS users, "
                           "(SELECT proowner::regrole::text FROM pg_proc WHERE oid = %s::regprocedure) AS owner",
                           (fn, fn, fn))[0]
        assert rights == {"plain": False, "users": True, "owner": "pgbg_owner"}, (fn, rights)
    with psycopg.connect(test_db["plain"], autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT pgbg._messages_begin(10, 2048)")


def test_without_the_module_messages_are_not_kept_and_say_so(server_dsn, cli):
    with fresh_database(server_dsn, "pgbg_nomsg") as db:
        with psycopg.connect(db["admin"], autocommit=True) as conn:
            # as on a server without the library (init drops them then, too)
            conn.execute("DROP FUNCTION pgbg._messages_begin(integer, integer), pgbg._messages_take()")
        dsn = db["app"]
        res = cli("launch", "--wait", "DO $$ BEGIN RAISE WARNING 'unheard'; END $$", dsn=dsn)
        assert res.exit_code == 0, res
        handle = res.stdout.split()[1]
        with psycopg.connect(db["admin"]) as conn:
            kept = conn.execute("SELECT messages, state FROM pgbg.job WHERE id = %s",
                                (int(handle.split(":")[0]),)).fetchone()
        assert kept == (None, "succeeded")
        shown = cli("show", handle, dsn=dsn)
        assert "messages       not kept on this server (see README: Messages)" in shown.stdout, shown
        assert json.loads(cli("show", "--format", "json", handle, dsn=dsn).stdout)["messages"] is None
        doctor = cli("doctor", "--format", "json", dsn=db["admin"])
        assert json.loads(doctor.stdout)["messages"].startswith("not kept"), doctor


def test_a_vacuum_that_skips_tables_it_may_not_vacuum_warns(test_db, pgbg_proc, sql_admin):
    # the case: a non-owner's VACUUM "succeeds" while the server skipped tables. The
    # wording differs by version (PostgreSQL 15: 'skipping "t" --- only table or database
    # owner can vacuum it'; 17 and 18: 'permission denied to vacuum "t", skipping it').
    res = pgbg_proc("launch", "--wait", "--strict", "VACUUM", dsn=test_db["app"], timeout=300)
    assert res.returncode == WARNED, res
    handle = res.stdout.split()[1]
    row = _job(sql_admin, handle)
    assert row["state"] == "succeeded"
    skipped = [m for m in row["messages"] if m["severity"] == "WARNING" and "vacuum" in m["message"]
               and "skipping" in m["message"]]
    assert skipped, row["messages"][:3]
    assert all(re.search(r'"[a-z_0-9]+"', m["message"]) for m in skipped)  # each names its table
    assert "WARNING: " + skipped[0]["message"] in res.stderr
    assert "succeeded with" in res.stderr and "warning" in res.stderr


def test_vacuum_verbose_keeps_its_info_report(test_db, cli, sql_admin):
    dsn = test_db["app"]
    table = f"msg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} AS SELECT g AS id FROM generate_series(1, 1000) g")
    res = cli("launch", "--wait", "--strict", f"VACUUM (VERBOSE) public.{table}", dsn=dsn)
    assert res.exit_code == 0, res  # INFO is not a warning
    row = _job(sql_admin, res.stdout.split()[1])
    infos = [m["message"] for m in row["messages"] if m["severity"] == "INFO"]
    assert infos and infos[0].startswith("vacuuming ") and table in infos[0], row["messages"]
    assert f"INFO: {infos[0]}" in res.stderr


def test_a_batch_launch_wait_prints_each_jobs_messages_and_strict_counts_them(test_db, cli, sql_admin):
    dsn = test_db["app"]
    res = cli("launch", "--wait", "--strict", "-F", "json", "DO $$ BEGIN RAISE WARNING 'from the first'; END $$",
              "SELECT 1", dsn=dsn)
    assert res.exit_code == WARNED, res
    first, second = json.loads(res.stdout)
    assert [m["message"] for m in first["messages"]] == ["from the first"] and second["messages"] == []
    assert f"job {first['handle']}: WARNING: from the first" in res.stderr
    assert f"job {first['handle']} succeeded with 1 warning" in res.stderr


def test_a_message_of_several_lines_prints_as_lines_each_escaped(test_db, cli):
    sql = "DO $$ BEGIN RAISE NOTICE E'first line\\nsecond \\x1b[31mline'; END $$"
    res = cli("launch", "--wait", sql, dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert "NOTICE: first line\n  second \\x1b[31mline\n" in res.stderr, res.stderr  # ESC escaped, not sent
    assert "\x1b" not in res.stderr
