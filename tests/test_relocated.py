"""pg_background is relocatable: pgbg finds it in a schema of its own and supervises through it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from conftest import APP_PASSWORD, _drop_db, _with_db
from psycopg import sql


@pytest.fixture(scope="module")
def relocated_db(server_dsn: str) -> Iterator[dict[str, str]]:
    name = f"pgbg_reloc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin = _with_db(server_dsn, name)
    newcomer = f"pgbg_new_{uuid.uuid4().hex[:6]}"  # may use pg_background, has no pgbg grant yet
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "bg ext"')
        conn.execute('CREATE EXTENSION pg_background WITH SCHEMA "bg ext"')
        conn.execute("GRANT pgbackground_role TO pgbg_app")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(newcomer), sql.Literal(APP_PASSWORD)))
        conn.execute(sql.SQL("GRANT pgbackground_role TO {}").format(sql.Identifier(newcomer)))
    try:
        yield {"admin": admin, "app": _with_db(server_dsn, name, "pgbg_app", APP_PASSWORD),
               "newcomer": _with_db(server_dsn, name, newcomer, APP_PASSWORD), "newcomer_role": newcomer}
    finally:
        _drop_db(server_dsn, name)
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(newcomer)))


def test_supervised_jobs_work_with_the_extension_in_its_own_schema(relocated_db, cli, pgbg_proc):
    app = relocated_db["app"]
    assert cli("init", dsn=relocated_db["admin"]).exit_code == 0
    assert cli("grant", "pgbg_app", dsn=relocated_db["admin"]).exit_code == 0
    # pgbackground_role alone lacks USAGE on the extension's own schema: named, with the fix
    role = relocated_db["newcomer_role"]
    denied = cli("list", dsn=relocated_db["newcomer"])
    assert denied.exit_code == 3
    assert "schema 'bg ext'" in denied.stderr and f"pgbg grant {role}" in denied.stderr
    assert cli("grant", role, dsn=relocated_db["admin"]).exit_code == 0
    assert cli("list", dsn=relocated_db["newcomer"]).exit_code == 0
    assert cli("revoke", role, dsn=relocated_db["admin"]).exit_code == 0

    # a process with a deadline: a supervisor that cannot read outcomes would leave it waiting
    done = pgbg_proc("launch", "--wait", "--format", "json", "SELECT 1/0", dsn=app, timeout=60)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["sqlstate"] == "22012"
    rows = cli("launch", "--result", "--format", "json", "SELECT 42 AS answer", dsn=app)
    assert rows.exit_code == 0, rows
    assert json.loads(rows.stdout) == [{"answer": 42}]
    long = cli("launch", "SELECT pg_sleep(60)", dsn=app).stdout.strip()
    canceled = cli("cancel", "--format", "json", long, dsn=app)
    assert canceled.exit_code == 0, canceled
    assert json.loads(canceled.stdout)[0]["state"] == "canceled"
