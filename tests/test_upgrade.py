"""Upgrading in place: `pgbg init` on a database that holds the version-1 schema, with a
version-1 supervisor running one job and two more queued, upgrades it without losing or
re-running a job; the old supervisor finishes what it holds and hands the queue to a
supervisor running the new code.

Version 1 is installed the way version 1's `pgbg init` installed it: its table file (which,
like every migration, never changes) and its function files as released, kept in
tests/fixtures/schema_v1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import APP_PASSWORD, _drop_db, _make_db, _with_db, retry, sql_runner
from psycopg.rows import dict_row

V1 = Path(__file__).parent / "fixtures" / "schema_v1"


def install_v1(conn: psycopg.Connection[Any]) -> None:
    """What version 1's `pgbg init` did, with its own files."""
    from psycopg import sql

    from pgbg_cli import extension, schema

    ext = extension.discover(conn)
    roles = ("launch", "detach", "cancel", "outcome", "error_info", "result_info", "get_progress", "result")
    names: dict[str, Any] = {r: sql.Identifier(ext.schema, ext.fn(r)) for r in roles}
    names["result_name"] = sql.Literal(sql.Identifier(ext.schema, ext.fn("result")).as_string(conn))
    names["worker_slots"] = sql.SQL((V1 / "worker_slots.sql").read_text())
    names["ext_schema"] = sql.Identifier(ext.schema)
    with conn.transaction():
        for role in ("pgbg_user", "pgbg_admin"):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute("GRANT pgbg_user TO pgbg_admin")
        conn.execute("CREATE SCHEMA pgbg")
        conn.execute("CREATE TABLE pgbg.meta (key text PRIMARY KEY, value text NOT NULL)")
        conn.execute(schema.read("v001_registry.sql"))  # a migration never changes once released
        conn.execute(sql.SQL((V1 / "api.sql").read_text()).format(**names))
        conn.execute((V1 / "functions.sql").read_text())
        conn.execute("INSERT INTO pgbg.meta VALUES ('schema_version', '1'), ('code_digest', 'v1'), "
                     "('extension_schema', %s), ('extension_version', %s)", (ext.schema, ext.version))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO pgbg_user").format(sql.Identifier(ext.schema)))
        conn.execute("""
            REVOKE ALL ON ALL TABLES IN SCHEMA pgbg FROM PUBLIC;
            REVOKE ALL ON ALL ROUTINES IN SCHEMA pgbg FROM PUBLIC;
            GRANT USAGE ON SCHEMA pgbg TO pgbg_user;
            GRANT SELECT, INSERT, UPDATE, DELETE ON pgbg.job TO pgbg_user;
            GRANT SELECT ON pgbg.settings, pgbg.meta TO pgbg_user;
            GRANT INSERT, UPDATE, DELETE ON pgbg.settings TO pgbg_admin;
            GRANT EXECUTE ON ALL ROUTINES IN SCHEMA pgbg TO pgbg_user;
            GRANT pgbackground_role, pgbg_user TO pgbg_app;
        """)


@pytest.fixture
def v1_db(server_dsn: str) -> Iterator[dict[str, str]]:
    name = f"pgbg_upgrade_{uuid.uuid4().hex[:8]}"
    admin = _make_db(server_dsn, name, init=False)
    try:
        with psycopg.connect(admin, autocommit=True, row_factory=dict_row) as conn:
            install_v1(conn)
        yield {"admin": admin, "app": _with_db(server_dsn, name, "pgbg_app", APP_PASSWORD)}
    finally:
        _drop_db(server_dsn, name)


@pytest.mark.pg_background("1.10")  # version 1 of pgbg's schema refused anything older
def test_init_upgrades_version_1_with_jobs_running_and_queued(v1_db, cli):
    with sql_runner(v1_db["admin"]) as admin:
        admin("CREATE TABLE public.up_audit (job text PRIMARY KEY)")
        admin("CREATE TABLE public.up_gate (open boolean)")
        admin("INSERT INTO public.up_gate VALUES (false)")
        admin("GRANT SELECT ON public.up_gate TO pgbg_app")
        admin("GRANT INSERT ON public.up_audit TO pgbg_app")
        admin("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
        admin("UPDATE pgbg.settings SET value = 'not a number' WHERE name = 'history_keep'")  # v1 took anything
        with psycopg.connect(v1_db["app"], autocommit=True) as app:  # version 1's API, as its CLI used it
            def submit(sql: str) -> int:
                return app.execute("SELECT id FROM pgbg.submit(%s)", (sql,)).fetchone()[0]

            done = submit("INSERT INTO public.up_audit VALUES ('done')")
            running = submit("DO $$ BEGIN WHILE NOT (SELECT open FROM public.up_gate) LOOP "
                             "PERFORM pg_sleep(0.05); END LOOP; INSERT INTO public.up_audit VALUES ('running'); END $$")
            app.execute("SELECT pgbg.ensure_supervisor()")
            retry(lambda: admin("SELECT state FROM pgbg.job WHERE id = %s", (running,))[0]["state"] == "running",
                  "the version-1 job runs", 20)
            queued = [submit(f"INSERT INTO public.up_audit VALUES ('queued{i}')") for i in (1, 2)]
        old = admin("SELECT supervisor_pid FROM pgbg.job WHERE id = %s", (running,))[0]["supervisor_pid"]
        assert admin("SELECT state FROM pgbg.job WHERE id = %s", (done,))[0]["state"] == "succeeded"
        assert [r["state"] for r in admin("SELECT state FROM pgbg.job WHERE id = ANY(%s) ORDER BY id",
                                          (queued,))] == ["queued", "queued"]

        res = cli("init", dsn=v1_db["admin"])
        assert res.exit_code == 0, res
        assert "applied v002_trust.sql" in res.stderr and "applied v003_messages_groups.sql" in res.stderr \
            and "applied v004_grant_memory.sql" in res.stderr and "version 4, current" in res.stderr

        legacy = admin("SELECT pid, role, legacy FROM pgbg.supervisor")
        assert legacy == [{"pid": old, "role": "pgbg_app", "legacy": True}]
        assert admin("SELECT value FROM pgbg.settings WHERE name = 'history_keep'")[0]["value"] == "10000"

        admin("UPDATE public.up_gate SET open = true")
        for job_id in (running, *queued):
            job = retry(lambda j=job_id: (r := admin("SELECT * FROM pgbg.job WHERE id = %s", (j,))[0])["state"]
                        not in ("queued", "starting", "running") and r, f"job {job_id} ended", 30)
            assert job["state"] == "succeeded", job
        assert [r["job"] for r in admin("SELECT job FROM public.up_audit ORDER BY job")] == [
            "done", "queued1", "queued2", "running"]
        # the old supervisor finished its own job; the queued ones ran under the new code
        by = {r["id"]: r["supervisor_pid"] for r in admin("SELECT id, supervisor_pid FROM pgbg.job")}
        assert by[running] == old
        assert by[queued[0]] != old and by[queued[1]] != old
        events = admin("SELECT job_id, from_state, to_state FROM pgbg.job_event WHERE job_id = %s ORDER BY id",
                       (queued[0],))
        assert [(e["from_state"], e["to_state"]) for e in events] == [
            ("queued", "starting"), ("starting", "running"), ("running", "succeeded")]
        retry(lambda: not admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (old,)),
              "the version-1 supervisor left", 30)
        # and nothing of version 1's write access is left
        with psycopg.connect(v1_db["app"], autocommit=True) as app, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("UPDATE pgbg.job SET state = 'queued' WHERE id = %s", (done,))


# A migration, once released, never changes: databases that applied it would not apply it
# again. A new change to the tables is a new vNNN file.
RELEASED = {
    "v001_registry.sql": "06b74519d5843e90b0e87bf1d18151c9197183ae0d6eeb51b348d9531c2b7afd",
    "v002_trust.sql": "7f8c91d68dddcc1629c9fd1b8c689c931107998cc8c826c1052c3e1f002701e9",
    "v003_messages_groups.sql": "71afb48d7df636b71df77e0f0e084bbfeca3eb21433e5501d2c5a802e203740e",
}


def test_released_migrations_never_change():
    import hashlib

    from pgbg_cli import schema

    for name, digest in RELEASED.items():
        assert hashlib.sha256(schema.read(name).encode()).hexdigest() == digest, (
            f"{name} was released and must not change: add a new migration file instead")
