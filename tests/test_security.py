"""The trust model, tried as attackers would (docs/security.md): a hostile granted role
(pgbg_evil), a pgbg_admin member who is not a superuser (pgbg_boss), and a superuser victim
(pgbg_victim) with queued, running and finished jobs, in a database of their own.

Every victim job inserts one row into victim_audit (unique key): at the end each ran
exactly once and its outcome is truthful. Everything the attackers' own code does while
pgbg's functions run is recorded in spy_log with the role it ran as: nothing may ever run
there as anyone but the attacker.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import extnames
import psycopg
import pytest
from conftest import APP_PASSWORD, _with_db, fresh_database, retry, sql_runner

from pgbg_cli import install
from pgbg_cli.handles import parse

Run = Callable[..., list[dict[str, Any]]]

STATES_FINAL = ("succeeded", "failed", "canceled", "timed_out", "lost", "detached")


@pytest.fixture(scope="module")
def sec(server_dsn: str) -> Iterator[dict[str, str]]:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for role, attrs in (("pgbg_victim", "SUPERUSER"), ("pgbg_evil", "NOSUPERUSER")):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"CREATE ROLE {role} LOGIN {attrs} PASSWORD '{APP_PASSWORD}'")
    with fresh_database(server_dsn, "pgbg_sec") as dsns:
        dsns["victim"] = _with_db(server_dsn, dsns["name"], "pgbg_victim", APP_PASSWORD)
        dsns["evil"] = _with_db(server_dsn, dsns["name"], "pgbg_evil", APP_PASSWORD)
        from pgbg_cli import db, install

        conn = db.connect(dsns["admin"])
        try:
            install.grant(conn, "pgbg_evil")
        finally:
            conn.close()
        with sql_runner(dsns["admin"]) as run:
            run("GRANT CREATE ON SCHEMA public TO pgbg_evil")
            run("CREATE TABLE public.victim_audit (job text PRIMARY KEY, who name NOT NULL DEFAULT current_user)")
            run("CREATE TABLE public.spy_log (at timestamptz DEFAULT clock_timestamp(), ran_as name, what text)")
            run("GRANT INSERT, SELECT ON public.spy_log TO PUBLIC")
        yield dsns


@pytest.fixture(scope="module")
def admin_sql(sec: dict[str, str]) -> Iterator[Run]:
    with sql_runner(sec["admin"]) as run:
        yield run


def _job(admin_sql: Run, handle: str) -> dict[str, Any]:
    h = parse(handle)
    return admin_sql("SELECT * FROM pgbg.job WHERE id = %s AND cookie = %s", (h.id, h.cookie))[0]


def _launch(cli: Any, dsn: str, sql: str, *args: str) -> str:
    res = cli("launch", *args, sql, dsn=dsn)
    assert res.exit_code == 0, res
    return res.stdout.strip()


@pytest.fixture(scope="module")
def victim_jobs(sec: dict[str, str], admin_sql: Run) -> dict[str, str]:
    """The victim's jobs: one finished, one running (until told to stop), two queued behind it."""
    from typer.testing import CliRunner

    from pgbg_cli.cli import app

    def cli(*args: str, dsn: str) -> Any:
        return CliRunner().invoke(app, list(args), env={"PGBG_DSN": dsn, "NO_COLOR": "1"}, catch_exceptions=False)

    admin_sql("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
    v = sec["victim"]
    jobs = {"finished": _launch(cli, v, "INSERT INTO public.victim_audit (job) VALUES ('finished')")}
    assert cli("wait", jobs["finished"], dsn=v).exit_code == 0
    admin_sql("CREATE TABLE public.victim_gate (open boolean)")
    admin_sql("INSERT INTO public.victim_gate VALUES (false)")
    # runs until the test opens the gate; a SELECT of the gate sees each new commit
    jobs["running"] = _launch(cli, v, "DO $$ BEGIN WHILE NOT (SELECT open FROM public.victim_gate) LOOP "
                                      "PERFORM pg_sleep(0.05); END LOOP; "
                                      "INSERT INTO public.victim_audit (job) VALUES ('running'); END $$")
    retry(lambda: _job(admin_sql, jobs["running"])["state"] == "running", "victim job running", 20)
    jobs["queued1"] = _launch(cli, v, "INSERT INTO public.victim_audit (job) VALUES ('queued1')")
    jobs["queued2"] = _launch(cli, v, "INSERT INTO public.victim_audit (job) VALUES ('queued2')", "-l", "victim")
    assert _job(admin_sql, jobs["queued1"])["state"] == "queued"
    return jobs


@pytest.fixture(scope="module")
def evil(sec: dict[str, str], victim_jobs: dict[str, str]) -> Iterator[Run]:
    """The hostile role's connection, with its traps laid in public and pg_temp."""
    with sql_runner(sec["evil"]) as run:
        run("""CREATE FUNCTION public.spy(what text) RETURNS boolean LANGUAGE sql VOLATILE AS $$
                 INSERT INTO public.spy_log (ran_as, what) VALUES (current_user, what) RETURNING true $$""")
        # operators that would win over a built-in only if pgbg's code searched public first
        for left, right in (("name", "name"), ("text", "text"), ("integer", "integer"), ("bigint", "bigint"),
                            ("timestamptz", "timestamptz"), ("oid", "oid")):
            fn = f"evil_eq_{left}_{right}"
            run(f"CREATE FUNCTION public.{fn}({left}, {right}) RETURNS boolean LANGUAGE sql AS "
                f"$$ SELECT public.spy('operator = on {left}') $$")
            run(f"CREATE OPERATOR public.= (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = public.{fn})")
        # functions pgbg calls, shadowed in public
        run("CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS "
            "$$ SELECT CASE WHEN public.spy('clock_timestamp') THEN now() END $$")
        run("CREATE FUNCTION public.pg_backend_pid() RETURNS integer LANGUAGE sql AS "
            "$$ SELECT CASE WHEN public.spy('pg_backend_pid') THEN 1 END $$")
        # temporary relations named like the catalogs pgbg reads
        for rel in ("pg_stat_activity", "pg_roles", "pg_locks", "pg_type", "pg_database"):
            run(f"CREATE TEMP VIEW {rel} AS SELECT * FROM pg_catalog.{rel} WHERE public.spy('temp {rel}')")
        run("SET search_path = pg_temp, public, pg_catalog")
        yield run


def _spied(admin_sql: Run) -> list[dict[str, Any]]:
    return admin_sql("SELECT ran_as, what FROM public.spy_log WHERE ran_as <> 'pgbg_evil'")


def test_what_event_triggers_run_is_a_superusers_alone(sec, admin_sql):
    # run as whoever changes the extension (usually a superuser): in a schema owned by the
    # superuser who ran init, which no other role may use, pinned, and definers of nothing
    superusers = {r["rolname"] for r in admin_sql("SELECT rolname FROM pg_roles WHERE rolsuper")}
    schema = admin_sql("SELECT pg_get_userbyid(nspowner) AS owner, nspacl::text AS acl FROM pg_namespace "
                       "WHERE nspname = %s", (install.BIND_SCHEMA,))[0]
    assert schema["owner"] in superusers
    for role in ("pgbg_user", "pgbg_admin", "pgbg_owner", "pgbg_evil"):
        assert admin_sql("SELECT has_schema_privilege(%s, %s, 'USAGE') AS u", (role, install.BIND_SCHEMA))[0]["u"] \
            is False, role
    rows = admin_sql("SELECT p.oid::regprocedure::text AS fn, pg_get_userbyid(p.proowner) AS owner, p.prosecdef, "
                     "p.proconfig FROM pg_proc p WHERE p.pronamespace = %s::regnamespace", (install.BIND_SCHEMA,))
    assert {r["fn"] for r in rows} >= {"pgbg_bind.rebind()", "pgbg_bind.on_ddl_start()", "pgbg_bind.on_ddl_end()"}
    for r in rows:
        assert r["owner"] in superusers and not r["prosecdef"], r
        assert "search_path=pg_catalog, pg_temp" in (r["proconfig"] or []), r
    triggers = admin_sql("SELECT evtname, evtfoid::regproc::text AS fn FROM pg_event_trigger "
                         "WHERE evtname LIKE 'pgbg%%'")
    assert sorted(t["fn"] for t in triggers) == ["pgbg_bind.on_ddl_end", "pgbg_bind.on_ddl_start"]


def test_every_routine_pins_search_path_and_definers_belong_to_pgbg_owner(sec, admin_sql):
    rows = admin_sql(
        "SELECT p.oid::regprocedure::text AS routine, p.prokind, p.prosecdef, p.proconfig, "
        "       pg_get_userbyid(p.proowner) AS owner "
        "  FROM pg_proc p WHERE p.pronamespace = 'pgbg'::regnamespace ORDER BY 1")
    assert len(rows) > 40
    ext_schema = admin_sql("SELECT extnamespace::regnamespace::text AS s FROM pg_extension "
                           "WHERE extname = 'pg_background'")[0]["s"]
    for r in rows:
        assert r["owner"] == "pgbg_owner", r
        if r["routine"] == "pgbg.supervise()":
            # a procedure that COMMITs cannot carry SET; it pins the path as its first statement
            assert r["prokind"] == "p" and not r["prosecdef"] and r["proconfig"] is None
            continue
        paths = [c.split("=", 1)[1] for c in (r["proconfig"] or []) if c.startswith("search_path=")]
        assert len(paths) == 1, f"{r['routine']} does not pin search_path"
        parts = [p.strip() for p in paths[0].split(",")]
        assert parts[0] == "pg_catalog" and parts[-1] == "pg_temp", r
        assert set(parts[1:-1]) <= {ext_schema}, r
    owner = admin_sql("SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls "
                      "FROM pg_roles WHERE rolname = 'pgbg_owner'")[0]
    assert not any(owner.values()), owner


def test_nobody_but_pgbg_owner_may_write_pgbgs_tables(sec, admin_sql):
    rows = admin_sql(
        "SELECT c.oid::regclass::text AS rel, r.rolname, "
        "       has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS w "
        "  FROM pg_class c CROSS JOIN pg_roles r "
        " WHERE c.relnamespace = 'pgbg'::regnamespace AND c.relkind = 'r' "
        "   AND r.rolname IN ('pgbg_user', 'pgbg_admin', 'pgbg_evil', 'pgbg_boss', 'pgbg_app')")
    assert rows and not [r for r in rows if r["w"]]
    public = admin_sql("SELECT count(*) AS n FROM information_schema.role_table_grants "
                       "WHERE table_schema = 'pgbg' AND grantee = 'PUBLIC'")[0]["n"]
    assert public == 0


@pytest.mark.parametrize("who", ["evil", "boss"])
@pytest.mark.parametrize("statement", [
    "UPDATE pgbg.job SET state = 'queued' WHERE state = 'succeeded'",
    "UPDATE pgbg.job SET message = 'forged', result = '[]' WHERE true",
    "DELETE FROM pgbg.job",
    "TRUNCATE pgbg.job CASCADE",
    "INSERT INTO pgbg.job (id, owner, sql) OVERRIDING SYSTEM VALUE VALUES (999999, current_user, 'SELECT 1')",
    "LOCK TABLE pgbg.job IN EXCLUSIVE MODE",
    "LOCK TABLE pgbg.supervisor IN ACCESS EXCLUSIVE MODE",
    "SELECT * FROM pgbg.job FOR UPDATE",
    "UPDATE pgbg.settings SET value = '1' WHERE name = 'poll_ms'",
    "DELETE FROM pgbg.job_event",
    "INSERT INTO pgbg.supervisor (pid, backend_start, role) VALUES (1, now(), 'pgbg_victim')",
])
def test_direct_writes_and_locks_are_refused(sec, victim_jobs, admin_sql, who, statement):
    before = admin_sql("SELECT id, state, message FROM pgbg.job ORDER BY id")
    with psycopg.connect(sec[who]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)  # in a transaction, where LOCK TABLE is allowed
    assert admin_sql("SELECT id, state, message FROM pgbg.job ORDER BY id") == before


def test_definer_functions_refuse_to_act_as_another_role(sec, victim_jobs, admin_sql):
    h = parse(victim_jobs["finished"])
    r = parse(victim_jobs["running"])
    calls = [
        "SELECT * FROM pgbg.submit('SELECT 1', p_owner => 'pgbg_victim')",
        f"SELECT pgbg.request_cancel(ARRAY[{r.id}::bigint], ARRAY[{r.cookie}::bigint], 0, 'pgbg_victim')",
        f"SELECT pgbg.request_detach(ARRAY[{r.id}::bigint], ARRAY[{r.cookie}::bigint], 'pgbg_victim')",
        "SELECT pgbg.prune('0 seconds', 'pgbg_victim')",
        "SELECT pgbg._autoprune('pgbg_victim')",
        "SELECT * FROM pgbg.set_setting('poll_ms', '100', 'pgbg_victim')",
        "SELECT * FROM pgbg._reconcile_scan('pgbg_victim')",
        f"SELECT pgbg._reconcile_note({r.id}, 'pgbg_victim')",
        "SELECT pgbg._supervisor_register('pgbg_victim')",
        "SELECT pgbg._supervisor_register()",  # only from inside a pg_background worker
        "SELECT pgbg._claim_next()",
        "SELECT pgbg._claim_batch()",
        f"SELECT pgbg._lock_claimed({h.id})",
        f"SELECT pgbg._record_outcome({h.id}, true, false, '22012', 'forged', NULL, NULL, NULL, "
        "NULL, NULL, NULL, NULL, NULL, '[]', 0)",
        f"SELECT pgbg._record_lost({r.id}, 'forged')",
        f"SELECT pgbg._record_tend_error({r.id}, 'forged')",
        f"SELECT pgbg._supervised_worker_alive({r.id})",
        f"SELECT pgbg._record_launched({h.id}, 1, 1)",
        f"SELECT pgbg._record_requeued({h.id}, 'forged')",
        f"SELECT pgbg._record_detached({r.id})",
        f"SELECT pgbg._record_progress({r.id}, 99, 'forged')",
        f"SELECT pgbg._record_stop_signal({r.id}, true)",
        f"SELECT pgbg._record_worker_started({r.id})",
    ]
    before = admin_sql("SELECT * FROM pgbg.job ORDER BY id")
    for who in ("evil", "boss"):
        for call in calls:
            with psycopg.connect(sec[who], autocommit=True) as conn, \
                    pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgbg: "):
                conn.execute(call)
                pytest.fail(f"{who} was allowed: {call}")
    assert admin_sql("SELECT * FROM pgbg.job ORDER BY id") == before
    # an admin may request a cancel as itself (tested elsewhere), but no setting as another
    assert admin_sql("SELECT count(*) AS n FROM pgbg.job_event WHERE actor IN ('pgbg_evil', 'pgbg_boss')")[0]["n"] == 0


def test_a_handle_of_anothers_job_gives_a_non_admin_nothing(sec, victim_jobs, admin_sql, cli):
    running = victim_jobs["running"]
    for command in (("cancel", running), ("detach", running), ("show", running), ("wait", "-t", "1", running)):
        res = cli(*command, dsn=sec["evil"])
        assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1 and "no job" in res.stderr, res
    h = parse(running)
    with psycopg.connect(sec["evil"], autocommit=True) as conn:
        asked = conn.execute("SELECT pgbg.request_cancel(ARRAY[%s::bigint], ARRAY[%s::bigint])",
                             (h.id, h.cookie)).fetchall()
        assert asked == []
        assert conn.execute("SELECT count(*) FROM pgbg.job_event").fetchone()[0] == 0  # RLS: none of theirs
    job = _job(admin_sql, running)
    assert job["state"] == "running" and job["cancel_requested_at"] is None


def test_traps_in_public_and_pg_temp_never_run_as_anyone_else(sec, victim_jobs, evil, admin_sql):
    # every pgbg routine the hostile role may call, with its traps on its search_path
    for call in ("SELECT * FROM pgbg.worker_slots()", "SELECT pgbg.supervisor_pid('pgbg_victim')",
                 "SELECT * FROM pgbg.supervisors()", "SELECT pgbg.server_started()", "SELECT pgbg.reconcile()",
                 "SELECT * FROM pgbg._reconcile_scan()", "SELECT pgbg.setting('poll_ms')",
                 "SELECT * FROM pgbg.transitions()", "SELECT pgbg.prune('1 day')"):
        evil(call)
    # and its own jobs, launched from that search_path, run through the same code
    res = evil("SELECT id, cookie FROM pgbg.submit('SELECT 1')")[0]
    evil("SELECT pgbg.ensure_supervisor()")
    retry(lambda: admin_sql("SELECT state FROM pgbg.job WHERE id = %s", (res["id"],))[0]["state"] == "succeeded",
          "the hostile role's own job ran", 20)
    assert _spied(admin_sql) == []


def test_a_forged_notification_wakes_waiters_but_changes_nothing(sec, victim_jobs, admin_sql, pgbg_proc):
    running = victim_jobs["running"]
    h = parse(running)
    waiter = threading.Thread(target=lambda: results.append(
        pgbg_proc("wait", "-t", "3", "-F", "json", running, dsn=sec["victim"], timeout=60)))
    results: list[Any] = []
    waiter.start()
    with psycopg.connect(sec["evil"], autocommit=True) as conn:
        for payload in (str(h.id), f"{h.id}:{h.cookie}", "'; DROP TABLE x; --", "x" * 1000):
            conn.execute("SELECT pg_notify('pgbg_jobs', %s)", (payload,))
            time.sleep(0.1)
    waiter.join()
    assert results[0].returncode == 124, results[0]  # still waiting when its own timeout came
    assert _job(admin_sql, running)["state"] == "running"


def test_a_forged_worker_pid_never_gets_another_backend_signalled(sec, victim_jobs, admin_sql, cli):
    # the hostile role supervises its own job from its own worker and records the pid of a
    # victim's backend as the job's worker; then an admin (who may signal any non-superuser
    # backend) cancels that job, and reconcile looks for the worker to stop
    retry(lambda: admin_sql("SELECT pgbg.supervisor_pid('pgbg_evil') AS p")[0]["p"] is None,
          "the hostile role's own supervisor left", 20)
    with psycopg.connect(sec["victim"], autocommit=True) as victim_conn:
        victim_pid = victim_conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(sec["evil"], autocommit=True) as conn:
            job = conn.execute("SELECT id, cookie FROM pgbg.submit('SELECT pg_sleep(60)')").fetchone()
            conn.execute(
                f"SELECT r.* FROM {extnames.fn(sec['evil'], 'launch')}(%s) h, "
                f"LATERAL {extnames.fn(sec['evil'], 'result')}(h.pid, h.cookie) AS r(x text)",
                (f"DO $$ BEGIN PERFORM pgbg._supervisor_register(); "
                 f"PERFORM pgbg._claim_next(); PERFORM pgbg._record_launched({job[0]}, {victim_pid}, 1); END $$",))
        forged = admin_sql("SELECT state, worker_pid, worker_started FROM pgbg.job WHERE id = %s", (job[0],))[0]
        assert forged["worker_pid"] == victim_pid and forged["worker_started"] is None  # never trusted
        res = cli("cancel", "-F", "json", f"{job[0]}:{job[1]}", dsn=sec["boss"])
        assert res.exit_code in (0, 1), res
        assert victim_conn.execute("SELECT 1").fetchone() == (1,)  # the victim's session lives
    final = retry(lambda: (j := admin_sql("SELECT state, reason FROM pgbg.job WHERE id = %s", (job[0],))[0])
                  ["state"] in STATES_FINAL and j, "the forged job ended", 20)
    assert final["state"] in ("canceled", "lost"), final


def test_out_of_range_settings_are_refused_whoever_writes_them(sec, victim_jobs, admin_sql, cli):
    res = cli("settings", "poll_ms", "0", dsn=sec["boss"])
    assert res.exit_code == 2 and res.stderr == "pgbg: poll_ms takes a whole number from 5 to 10000, not 0\n"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="from 5 to 10000"):
        admin_sql("UPDATE pgbg.settings SET value = '0' WHERE name = 'poll_ms'")  # a superuser too
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin_sql("DELETE FROM pgbg.settings WHERE name = 'poll_ms'")
    assert admin_sql("SELECT value FROM pgbg.settings WHERE name = 'poll_ms'")[0]["value"] == "25"


def test_nobody_can_hold_a_lock_that_blocks_init_but_a_writer_of_its_tables(sec, victim_jobs, cli):
    from pgbg_cli.install import LOCK_CLASS

    with psycopg.connect(sec["evil"]) as conn:  # in a transaction: what a granted role can hold
        conn.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_CLASS,))
        conn.execute("LOCK TABLE pgbg.meta, pgbg.job, pgbg.settings IN ACCESS SHARE MODE")
        res = cli("init", dsn=sec["admin"])
        assert res.exit_code == 0, res
        conn.execute("SELECT pg_advisory_unlock_all()")
    with psycopg.connect(sec["admin"]) as conn:  # a superuser can, and init then says so in one line
        conn.execute("LOCK TABLE pgbg.meta IN EXCLUSIVE MODE")
        started = time.monotonic()
        res = cli("init", dsn=sec["admin"])
        took = time.monotonic() - started
    assert res.exit_code == 3 and len(res.stderr.splitlines()) == 1 and "lock" in res.stderr, res
    assert took < 30


@pytest.mark.parametrize("routine", ["pgbg._backend_alive(1, now())", "pgbg._live_worker(j) FROM pgbg.job j",
                                     "pgbg._actor('pgbg_evil', 'x')", "pgbg._supervised_job(1, '{running}')"])
def test_internal_helpers_are_not_callable(sec, victim_jobs, routine):
    with psycopg.connect(sec["evil"], autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
        conn.execute(f"SELECT {routine}")


def test_code_of_another_role_in_the_victims_session_cannot_act_as_the_victim(sec, victim_jobs, admin_sql, evil):
    # the hostile role's SECURITY DEFINER function, and an index expression that runs when
    # the victim analyzes the hostile role's table: both run as pgbg_evil in the victim's
    # session, where session_user is the victim
    evil("""CREATE FUNCTION public.evil_submit() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
              PERFORM pgbg.submit('INSERT INTO public.victim_audit (job) VALUES (''evil'')',
                                  p_owner => session_user);
              RETURN true;
            EXCEPTION WHEN insufficient_privilege THEN
              PERFORM public.spy('submit refused as ' || session_user);
              RETURN false;
            END $$""")
    evil("CREATE FUNCTION public.evil_api() RETURNS boolean LANGUAGE sql SECURITY DEFINER "
         "AS $$ SELECT public.evil_submit() $$")
    evil("GRANT EXECUTE ON FUNCTION public.evil_api() TO PUBLIC")
    evil("CREATE FUNCTION public.evil_idx(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
         "$$ BEGIN PERFORM public.evil_submit(); RETURN i; END $$")
    evil("CREATE TABLE public.evil_tbl (i int)")
    evil("CREATE INDEX ON public.evil_tbl (public.evil_idx(i))")
    evil("INSERT INTO public.evil_tbl VALUES (1), (2)")
    with psycopg.connect(sec["victim"], autocommit=True) as victim:
        assert victim.execute("SELECT public.evil_api()").fetchone() == (False,)
        victim.execute("ANALYZE public.evil_tbl")
    # (the hostile role's own inserts ran its index expression as itself: those jobs are its own)
    assert admin_sql("SELECT owner FROM pgbg.job WHERE sql LIKE '%''evil''%' AND owner <> 'pgbg_evil'") == []
    refused = admin_sql("SELECT what FROM public.spy_log WHERE what LIKE 'submit refused%'")
    assert refused and all(r["what"] == "submit refused as pgbg_victim" for r in refused)


def test_a_group_role_cannot_own_jobs(sec, victim_jobs, admin_sql):
    with psycopg.connect(sec["boss"], autocommit=True) as conn:
        for group in ("pgbg_user", "pgbg_admin"):
            conn.execute(f"SET ROLE {group}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT pgbg.submit('SELECT 1')")
            conn.execute("RESET ROLE")
    assert admin_sql("SELECT count(*) AS n FROM pgbg.job WHERE owner IN ('pgbg_user', 'pgbg_admin')")[0]["n"] == 0


def test_a_timeout_no_interval_can_hold_is_refused(sec, victim_jobs, evil, cli):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="36525 days"):
        evil("SELECT pgbg.submit('SELECT 1', p_timeout_ms => 9223372036854775807)")
    assert cli("list", dsn=sec["boss"]).exit_code == 0


def test_an_open_transaction_of_another_role_does_not_keep_supervisors_away(sec, victim_jobs, admin_sql, cli):
    with psycopg.connect(sec["evil"]) as conn:  # left open: its locks stay
        conn.execute("SELECT pgbg._supervisor_unregister()")
        conn.execute("SELECT pgbg.request_cancel(ARRAY[1::bigint], ARRAY[1::bigint])")
        retry(lambda: admin_sql("SELECT pgbg.supervisor_pid('pgbg_boss') AS p")[0]["p"] is None,
              "pgbg_boss has no supervisor yet", 20)
        res = cli("launch", "--wait", "-t", "20s", "SELECT 1", dsn=sec["boss"])
        assert res.exit_code == 0, res


def test_types_of_another_role_never_run_their_code_in_a_victims_job(sec, victim_jobs, admin_sql, evil, cli):
    evil("CREATE DOMAIN public.evil_int AS int CHECK (public.spy('domain check'))")
    evil("CREATE TYPE public.evil_row AS (a public.evil_int)")
    evil("CREATE TABLE public.evil_data (id int, arr public.evil_int[], r public.evil_row)")
    evil("INSERT INTO public.evil_data VALUES (1, ARRAY[1]::public.evil_int[], ROW(1)::public.evil_row)")
    evil("GRANT SELECT ON public.evil_data TO PUBLIC")
    # a superuser with no job running (pgbg_victim's one slot is taken until the last test)
    res = cli("launch", "--wait", "-t", "30s", "-F", "json", "SELECT id, arr, r FROM public.evil_data",
              dsn=sec["admin"])
    assert res.exit_code == 0, res
    kept = cli("launch", "--result", "SELECT id, arr FROM public.evil_data", dsn=sec["admin"])
    assert kept.exit_code == 2 and "cast it" in kept.stderr, kept
    assert _spied(admin_sql) == []


def test_operators_of_another_role_never_run_in_the_cli(sec, victim_jobs, admin_sql, evil, cli):
    evil("CREATE FUNCTION public.evil_mul(numeric, integer) RETURNS numeric LANGUAGE sql AS "
         "$$ SELECT CASE WHEN public.spy('operator *') THEN $1 * $2::numeric END $$")
    evil("CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.evil_mul)")
    for command in (("list", "-a"), ("stats",), ("capacity",), ("show", victim_jobs["finished"])):
        res = cli(*command, dsn=sec["victim"], env={"PGOPTIONS": "-c search_path=public,pg_catalog"})
        assert res.exit_code == 0, (command, res)
    assert _spied(admin_sql) == []


def test_overloads_in_the_extensions_schema_change_no_outcome(sec, victim_jobs, admin_sql, evil, cli):
    # an overload of each function pgbg calls, by this version's names (1.8 has no labels, no
    # outcome, error_info or result_info)
    ext = extnames.ext(sec["admin"])
    launch_args = "text, int4, text, int4 DEFAULT 0" if ext.labels else "text, int4, int4 DEFAULT 0"
    made = []
    for role, args in (("launch", launch_args),
                       ("result_info", "int4, int8, int4 DEFAULT 0"),
                       ("error_info", "int4, int8, int4 DEFAULT 0"),
                       ("detach", "int4, int8, int4 DEFAULT 0"),
                       ("get_progress", "int4, int8, int4 DEFAULT 0"),
                       ("outcome", "int4, int8, int4 DEFAULT 0"),
                       ("result", "int4, int8, int4 DEFAULT 0")):
        if ext.has(role):
            evil(f"CREATE FUNCTION {ext.schema}.{ext.fn(role)}({args}) RETURNS void LANGUAGE sql AS $$ SELECT $$")
            made.append(ext.fn(role))
    res = cli("launch", "--wait", "-t", "30s", "-F", "json", "SELECT 41 + 1", dsn=sec["admin"])
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)["state"] == "succeeded"
    failing = cli("launch", "--wait", "-t", "30s", "-F", "json", "SELECT 1/0", dsn=sec["admin"])
    assert failing.exit_code == 1 and json.loads(failing.stdout)["sqlstate"] == "22012", failing
    # reading --result rows is the one call not bound in advance: the job ends lost, saying why,
    # never failed with an error that was not its own
    kept = cli("launch", "--result", "-t", "30s", "-F", "json", "SELECT 41 + 1 AS n", dsn=sec["admin"])
    assert kept.exit_code == 1, kept
    job = _job(admin_sql, json.loads(cli("list", "-a", "-n", "1", "-F", "json", dsn=sec["admin"]).stdout)[0]["handle"])
    assert job["state"] == "lost" and job["sqlstate"] is None and "could not read its rows" in job["reason"], job
    # and pgbg init will not bind to a schema with such functions in it
    res = cli("init", dsn=sec["admin"])
    assert res.exit_code == 3 and len(res.stderr.splitlines()) == 1 and "not its own" in res.stderr, res
    assert f"public.{ext.fn('detach')}(integer,bigint,integer) (owned by pgbg_evil)" in res.stderr
    assert f"and {len(made) - 3} more" in res.stderr


def test_a_superuser_acting_as_a_role_never_starts_its_supervisor(sec, victim_jobs, admin_sql, cli):
    # a worker keeps its launcher's session user, and a job may return to it (SET ROLE NONE):
    # a supervisor of pgbg_evil started by a superuser's session would make its jobs superuser
    retry(lambda: admin_sql("SELECT pgbg.supervisor_pid('pgbg_evil') AS p")[0]["p"] is None,
          "the hostile role's own supervisor left", 20)
    res = cli("launch", "--start-timeout", "0", "SET ROLE NONE", dsn=sec["admin"],
              env={"PGOPTIONS": "-c role=pgbg_evil"})
    assert res.exit_code == 75, res  # queued, and nothing will start it
    assert "acting as pgbg_evil" in res.stderr and len(res.stderr.splitlines()) == 1, res
    assert admin_sql("SELECT pgbg.supervisor_pid('pgbg_evil') AS p")[0]["p"] is None
    with psycopg.connect(sec["admin"], autocommit=True) as conn:
        conn.execute("SET ROLE pgbg_evil")
        assert conn.execute("SELECT pgbg.ensure_supervisor()").fetchone() == (None,)
    assert not admin_sql("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_background' "
                         "AND usename <> 'pgbg_evil' AND query = 'CALL pgbg.supervise()' "
                         "AND pid IN (SELECT pid FROM pgbg.supervisors() WHERE role = 'pgbg_evil')")
    h = parse(res.stdout.strip())
    admin_sql("SELECT pgbg.request_cancel(ARRAY[%s::bigint], ARRAY[%s::bigint], p_actor => 'postgres')",
              (h.id, h.cookie))


def test_pg_write_all_data_writes_none_of_pgbgs_tables(sec, victim_jobs, admin_sql):
    admin_sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbg_writer') THEN "
              f"CREATE ROLE pgbg_writer LOGIN PASSWORD '{APP_PASSWORD}'; END IF; END $$")
    admin_sql("GRANT pg_write_all_data TO pgbg_writer")
    admin_sql("GRANT USAGE ON SCHEMA pgbg TO pgbg_writer")
    writer = _with_db(sec["admin"], sec["name"], "pgbg_writer", APP_PASSWORD)
    before = [admin_sql(f"SELECT * FROM pgbg.{t} ORDER BY 1") for t in ("supervisor", "settings", "meta", "job")]
    with psycopg.connect(writer, autocommit=True) as conn:
        for statement in ("INSERT INTO pgbg.supervisor (pid, backend_start, role) "
                          "VALUES (pg_backend_pid(), now(), 'pgbg_victim')",
                          "INSERT INTO pgbg.settings VALUES ('x', '1', '')",
                          "INSERT INTO pgbg.job (owner, sql) VALUES ('pgbg_victim', 'SELECT 1')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        for statement in ("UPDATE pgbg.settings SET value = '1000' WHERE name = 'max_running_per_role'",
                          "DELETE FROM pgbg.supervisor", "UPDATE pgbg.meta SET value = '9'",
                          "UPDATE pgbg.job SET state = 'queued'"):
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # refused, or touching no row
                assert conn.execute(statement).rowcount == 0, statement
    after = [admin_sql(f"SELECT * FROM pgbg.{t} ORDER BY 1") for t in ("supervisor", "settings", "meta", "job")]
    assert after == before
    admin_sql("REVOKE pg_write_all_data FROM pgbg_writer")


def test_an_admin_cannot_write_a_reason_on_a_supervised_job(sec, victim_jobs, admin_sql):
    h = parse(victim_jobs["running"])
    before = _job(admin_sql, victim_jobs["running"])["reason"]
    with psycopg.connect(sec["boss"], autocommit=True) as conn:
        conn.execute("SELECT pgbg._reconcile_note(%s)", (h.id,))
    assert _job(admin_sql, victim_jobs["running"])["reason"] == before


def test_control_characters_from_a_hostile_label_are_escaped(sec, victim_jobs, evil, cli):
    label = "x\x1b[2J\rfake\nrow"
    evil("SELECT id FROM pgbg.submit('SELECT 1', p_label => %s)", (label,))
    res = cli("list", "-a", "-F", "plain", dsn=sec["boss"])
    assert res.exit_code == 0
    assert "\x1b" not in res.stdout and "\r" not in res.stdout
    assert "x\\x1b[2J\\rfake\\nrow" in res.stdout
    import json

    rows = json.loads(cli("list", "-a", "-F", "json", dsn=sec["boss"]).stdout)
    assert label in [r["label"] for r in rows]


def test_zz_victims_jobs_ran_exactly_once_with_truthful_outcomes(sec, victim_jobs, admin_sql, cli):
    admin_sql("UPDATE public.victim_gate SET open = true")
    for name in ("running", "queued1", "queued2"):
        res = cli("wait", "-t", "60", victim_jobs[name], dsn=sec["victim"])
        assert res.exit_code == 0, (name, res)
    audit = admin_sql("SELECT job, who FROM public.victim_audit ORDER BY job")
    assert audit == [{"job": j, "who": "pgbg_victim"} for j in ("finished", "queued1", "queued2", "running")]
    for name, handle in victim_jobs.items():
        job = _job(admin_sql, handle)
        assert job["state"] == "succeeded" and job["command_tag"].split()[0] in ("INSERT", "DO"), (name, job)
        events = admin_sql("SELECT from_state, to_state FROM pgbg.job_event WHERE job_id = %s ORDER BY id",
                           (job["id"],))
        assert [(e["from_state"], e["to_state"]) for e in events] == [
            (None, "queued"), ("queued", "starting"), ("starting", "running"), ("running", "succeeded")]
    evil_role = admin_sql("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = 'pgbg_evil'")
    assert not any(evil_role[0].values())
    member_of = admin_sql("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                          "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = 'pgbg_evil' ORDER BY 1")
    assert [r["rolname"] for r in member_of] == ["pgbackground_role", "pgbg_user"]
    assert _spied(admin_sql) == []
    admin_sql("UPDATE pgbg.settings SET value = '8' WHERE name = 'max_running_per_role'")
