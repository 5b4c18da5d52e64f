"""pg_background changing under pgbg: a library of another version, DROP and CREATE
EXTENSION (in another schema), ALTER EXTENSION ... UPDATE. With jobs queued and running:
none ends with an outcome nobody read, none runs twice, and the queued ones run afterwards.

A package of another version installed over the extension is simulated in a database of the
test's own: the extension's C functions are pointed at symbols its library lacks, which gives
the very error such a package gives ("could not find function ... in file"). The update is
an update script of the test's own (written into the sandbox server's extension directory)
that drops and re-creates functions, as pg_background's 1.10 to 2.0 script does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import extnames
import psycopg
import pytest
from conftest import SANDBOX, fresh_database, retry, sql_runner
from conftest import job_row as _job
from conftest import launch_handle as _launch

FINAL = ("succeeded", "failed", "canceled", "timed_out", "lost", "detached")


@pytest.fixture
def db(server_dsn: str) -> Iterator[dict[str, str]]:
    with fresh_database(server_dsn, "pgbg_extchg") as dsns:
        with sql_runner(dsns["admin"]) as run:
            run("CREATE TABLE public.ran (k text PRIMARY KEY, n int NOT NULL DEFAULT 1)")
            run("GRANT ALL ON public.ran TO pgbg_app")
        yield dsns


def _ran(admin) -> dict[str, int]:
    return {r["k"]: r["n"] for r in admin("SELECT k, n FROM public.ran")}


def _gated_job(cli, dsn: str, gate: int, key: str) -> str:
    """A job that runs until the test releases its advisory lock, then records that it ran."""
    return _launch(cli, dsn, f"SELECT pg_advisory_lock({gate}); INSERT INTO public.ran (k) VALUES ('{key}')")


def test_a_library_that_lacks_the_extensions_functions(db, cli):
    gate = uuid.uuid4().int % 2**31
    with sql_runner(db["admin"]) as admin, psycopg.connect(db["admin"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        running = _gated_job(cli, db["app"], gate, "running")
        retry(lambda: _job(admin, running)["worker_started"] is not None, "the job runs", 30)
        # the package of another version: every C function of the extension now names a
        # symbol its library does not have
        admin("UPDATE pg_catalog.pg_proc p SET prosrc = p.prosrc || '_gone' FROM pg_catalog.pg_depend d "
              "WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' "
              "AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_background') "
              "AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')")
        res = cli("launch", "INSERT INTO public.ran (k) VALUES ('queued')", dsn=db["app"])
        assert res.exit_code == 3 and len(res.stderr.splitlines()) == 1, res
        assert "does not match its SQL objects" in res.stderr and "DROP EXTENSION pg_background" in res.stderr
        queued = re.search(r"job (\d+:\d+) is queued", res.stderr).group(1)
        doctor = cli("doctor", dsn=db["app"])
        assert doctor.exit_code == 3 and "does not match its SQL objects" in doctor.stderr, doctor
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        # the supervisor cannot read the running job's outcome: it stops instead of guessing,
        # and the job ends lost, saying so; the queued one waits, never failed
        retry(lambda: admin("SELECT pgbg.supervisor_pid('pgbg_app') AS p")[0]["p"] is None, "the supervisor stops", 30)
        retry(lambda: cli("list", "-a", dsn=db["app"]) and _job(admin, running)["state"] in FINAL,
              "the running job ends", 30)
        lost = _job(admin, running)
        assert lost["state"] == "lost" and lost["sqlstate"] is None and lost["reason"], lost
        assert _job(admin, queued)["state"] == "queued"
        # the DBA's fix; pgbg binds itself to the new extension (its event triggers)
        admin("DROP EXTENSION pg_background")
        admin("CREATE EXTENSION pg_background")
        res = cli("wait", "--timeout", "60s", queued, dsn=db["app"])
        assert res.exit_code == 0, res
        assert _ran(admin) == {"running": 1, "queued": 1}  # each ran, once


def test_drop_and_create_extension_in_another_schema(db, cli):
    gate = uuid.uuid4().int % 2**31
    with sql_runner(db["admin"]) as admin, psycopg.connect(db["admin"], autocommit=True) as holder:
        admin("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        running = _gated_job(cli, db["app"], gate, "running")
        queued = _launch(cli, db["app"], "INSERT INTO public.ran (k) VALUES ('queued')")
        retry(lambda: _job(admin, running)["worker_started"] is not None, "the job runs", 30)
        assert _job(admin, queued)["state"] == "queued"
        # no CASCADE needed: pgbg lets go of the extension before it is dropped
        admin("DROP EXTENSION pg_background")
        # the supervisor, which can no longer call pg_background, stops rather than guess
        retry(lambda: admin("SELECT pgbg.supervisor_pid('pgbg_app') AS p")[0]["p"] is None,
              "the supervisor stops", 30)
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        admin("CREATE SCHEMA bg")
        admin("CREATE EXTENSION pg_background SCHEMA bg")
        admin("GRANT USAGE ON SCHEMA bg TO pgbg_app")
        assert _bound(admin)
        assert admin("SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                     "JOIN pg_depend d ON d.refobjid = p.oid AND d.objid = 'pgbg._bg_detach(integer, bigint)'"
                     "::regprocedure LIMIT 1") == [{"nspname": "bg"}]
        res = cli("wait", "--timeout", "60s", queued, dsn=db["app"])
        assert res.exit_code == 0, res
        retry(lambda: cli("list", "-a", dsn=db["app"]) and _job(admin, running)["state"] in FINAL,
              "the running job ends", 30)
        ended = _job(admin, running)
        # its handle went with the old extension: pgbg says it does not know how it ended
        assert ended["state"] == "lost" and ended["sqlstate"] is None and ended["reason"], ended
        assert _ran(admin) == {"running": 1, "queued": 1}
        assert cli("doctor", dsn=db["app"]).exit_code == 0


def _extdir() -> Path | None:
    if os.environ.get("PGBG_TEST_DSN"):
        return None
    out = subprocess.run(["bash", str(SANDBOX), "extdir"], capture_output=True, text=True, check=True).stdout
    path = Path(out.strip())
    return path if path.is_dir() and os.access(path, os.W_OK) else None


@pytest.fixture
def update_script(db) -> Iterator[tuple[str, Any]]:
    """An update of pg_background to '<version>.99' that drops and re-creates its result and
    list functions (same C code), as its 1.10 to 2.0 script drops every _v2 function."""
    extdir = _extdir()
    if extdir is None:
        pytest.skip("writes an extension update script into the server's extension directory: the project's "
                    "sandbox only (not PGBG_TEST_DSN)")
    with sql_runner(db["admin"]) as admin:
        version = admin("SELECT extversion FROM pg_extension WHERE extname = 'pg_background'")[0]["extversion"]
        target = f"{version}.99"
        lines = []
        for fn in admin(
                "SELECT p.oid::regprocedure::text AS sig, pg_get_functiondef(p.oid) AS def FROM pg_proc p "
                "JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' "
                "JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_background' "
                "WHERE p.proname IN ('pg_background_result', 'pg_background_result_v2', 'pg_background_list_v2') "
                "AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')"):
            if fn["sig"].startswith("pg_background_result(") and "bigint" not in fn["sig"]:
                continue  # the old int4 API
            lines += [f"DROP FUNCTION {fn['sig']};", fn["def"] + ";",
                      f"GRANT EXECUTE ON FUNCTION {fn['sig']} TO pgbackground_role;"]
    script = extdir / f"pg_background--{version}--{target}.sql"
    script.write_text("\n".join(lines) + "\n")
    try:
        yield target, script
    finally:
        script.unlink(missing_ok=True)


def test_alter_extension_update_switches_with_no_manual_step(db, cli, update_script):
    target, _ = update_script
    gate = uuid.uuid4().int % 2**31
    with sql_runner(db["admin"]) as admin, psycopg.connect(db["admin"], autocommit=True) as holder:
        admin("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        running = _gated_job(cli, db["app"], gate, "running")
        queued = _launch(cli, db["app"], "INSERT INTO public.ran (k) VALUES ('queued')")
        retry(lambda: _job(admin, running)["worker_started"] is not None, "the job runs", 30)
        # without pgbg letting go first, its wrappers would stop the update
        admin("ALTER EVENT TRIGGER pgbg_extension_ddl_start DISABLE")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            admin(f"ALTER EXTENSION pg_background UPDATE TO '{target}'")
        admin("ALTER EVENT TRIGGER pgbg_extension_ddl_start ENABLE")
        admin(f"ALTER EXTENSION pg_background UPDATE TO '{target}'")
        assert _bound(admin)
        doctor = cli("doctor", "-F", "json", dsn=db["app"])
        assert json.loads(doctor.stdout)["bound_to"] == f"pg_background {target} in schema public", doctor
        holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
        # the supervisor that held the running job reads its outcome through the new functions
        for handle in (running, queued):
            res = cli("wait", "--timeout", "60s", handle, dsn=db["app"])
            assert res.exit_code == 0, res
        assert _ran(admin) == {"running": 1, "queued": 1}
        assert cli("doctor", dsn=db["app"]).exit_code == 0


# --- what a hostile role might try with the event triggers (found by a red-team review) ---

def _bound(admin) -> bool:
    from pgbg_cli.doctor import BOUND_SQL

    return admin(BOUND_SQL)[0]["b"]


def _relocate_and_back(admin) -> None:
    admin("CREATE SCHEMA IF NOT EXISTS rt_bg")
    admin("ALTER EXTENSION pg_background SET SCHEMA rt_bg")
    admin("ALTER EXTENSION pg_background SET SCHEMA public")


def test_code_of_pgbg_owner_never_runs_as_whoever_changes_the_extension(db, cli):
    with sql_runner(db["admin"]) as admin:
        admin("CREATE TABLE public.rt_spy (ran_as name, superuser boolean)")
        admin("GRANT INSERT ON public.rt_spy TO PUBLIC")
        admin("SET ROLE pgbg_owner")  # stands for any way of running code as pgbg_owner
        spy = ("INSERT INTO public.rt_spy SELECT current_user, rolsuper FROM pg_catalog.pg_roles "
               "WHERE rolname = current_user")
        admin(f"CREATE FUNCTION pgbg.rt_spy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {spy}; RETURN NEW; END $$")
        for table in ("meta", "settings", "job"):
            admin(f"CREATE TRIGGER rt_spy BEFORE INSERT OR UPDATE ON pgbg.{table} "
                  "FOR EACH ROW EXECUTE FUNCTION pgbg.rt_spy()")
        # what the event triggers run is out of its reach
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin("DROP FUNCTION pgbg_bind.rebind()")
        admin("RESET ROLE")
        _relocate_and_back(admin)
        assert _bound(admin)
        assert admin("SELECT * FROM public.rt_spy WHERE superuser") == []
        # and pgbg init, which writes those tables as a superuser, refuses to while they are there
        res = cli("init", dsn=db["admin"])
        assert res.exit_code == 3 and "rt_spy on pgbg.meta" in res.stderr, res
        assert admin("SELECT * FROM public.rt_spy WHERE superuser") == []


def test_a_trusted_extensions_script_cannot_unbind_pgbg(db, cli):
    # a trusted extension's script runs as a superuser, and the event triggers fire inside it:
    # only a superuser's own command may set them off
    with sql_runner(db["admin"]) as admin, psycopg.connect(db["app"], autocommit=True) as app:
        if not admin("SELECT 1 FROM pg_available_extension_versions WHERE name = 'cube' AND version = '1.3' "
                     "AND trusted"):
            pytest.skip("needs the trusted extension cube 1.3, whose update script runs ALTER EXTENSION")
        admin(f"GRANT CREATE ON DATABASE {db['name']} TO pgbg_app")
        app.execute("CREATE SCHEMA rt_app")
        app.execute("CREATE EXTENSION cube VERSION '1.3' SCHEMA rt_app")
        app.execute("BEGIN")
        app.execute("ALTER EXTENSION cube UPDATE TO '1.4' /* pg_background */")
        # still bound, and nothing of pgbg's locked by that open transaction
        assert _bound(admin)
        res = cli("init", dsn=db["admin"])
        app.execute("ROLLBACK")
        assert res.exit_code == 0, res
        assert cli("doctor", dsn=db["app"]).exit_code == 0


def test_an_overload_in_the_extensions_schema_never_unbinds_pgbg(db, cli):
    with sql_runner(db["admin"]) as admin, sql_runner(db["app"]) as app:
        detach = extnames.ext(db["admin"]).fn("detach")
        app(f"CREATE FUNCTION public.{detach}(int4, int8, int4 DEFAULT 0) RETURNS void LANGUAGE sql AS $$ SELECT $$")
        admin("ALTER EXTENSION pg_background UPDATE")  # nothing to update: changes nothing
        assert _bound(admin)
        handle = _launch(cli, db["app"], "SELECT 1")
        assert cli("wait", "--timeout", "60s", handle, dsn=db["app"]).exit_code == 0


def test_dropping_another_extension_leaves_pgbg_bound(db):
    with psycopg.connect(db["admin"], autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS rt_no_such_ext; SELECT 'pg_background'")
    with sql_runner(db["admin"]) as admin:
        assert _bound(admin)


def test_a_procedure_that_commits_runs_as_it_would_alone(db, cli):
    # on 1.8 pgbg appends a statement to some jobs: never to one that returns nameable rows
    # (a CALL with an INOUT parameter), which would then run in a transaction block
    with sql_runner(db["admin"]) as admin:
        admin("CREATE TABLE public.rt_t (x int)")
        admin("CREATE PROCEDURE public.rt_commit(INOUT n int) LANGUAGE plpgsql AS "
              "$$ BEGIN INSERT INTO public.rt_t VALUES (n); COMMIT; n := n + 1; END $$")
        res = cli("launch", "--wait", "-t", "60s", "-F", "json", "CALL public.rt_commit(1)", dsn=db["admin"])
        assert res.exit_code == 0 and json.loads(res.stdout)["state"] == "succeeded", res
        assert admin("SELECT x FROM public.rt_t") == [{"x": 1}]


@pytest.mark.parametrize("message", ["remote query result rowtype does not match the specified FROM clause rowtype",
                                     "lost connection to worker process with PID 1"])
def test_a_jobs_own_error_is_its_error_however_worded(db, cli, message):
    sql = f"SELECT 1; DO $$BEGIN RAISE EXCEPTION '{message}'; END$$"
    res = cli("launch", "--wait", "-t", "60s", "-F", "json", sql, dsn=db["app"])
    job = json.loads(res.stdout)
    assert job["state"] == "failed" and job["sqlstate"] == "P0001" and job["message"] == message, job
