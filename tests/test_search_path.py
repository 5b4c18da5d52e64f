"""A job runs with the search_path of the session that submitted it, not the supervisor's."""

from __future__ import annotations

import json


def test_job_inherits_submitters_search_path(test_db, pgbg_proc, sql_admin):
    sql_admin("CREATE SCHEMA IF NOT EXISTS sp_a AUTHORIZATION pgbg_app")
    sql_admin("CREATE SCHEMA IF NOT EXISTS sp_b AUTHORIZATION pgbg_app")
    sql_admin("CREATE OR REPLACE FUNCTION sp_a.which() RETURNS text LANGUAGE sql AS $$ SELECT 'a' $$")
    sql_admin("CREATE OR REPLACE FUNCTION sp_b.which() RETURNS text LANGUAGE sql AS $$ SELECT 'b' $$")
    sql_admin("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sp_a, sp_b TO pgbg_app")
    seen = {}
    for schema in ("sp_a", "sp_b"):
        res = pgbg_proc("launch", "--result", "-F", "json", "SELECT which() AS w", dsn=test_db["app"],
                        env={"PGOPTIONS": f"-c search_path={schema},public"})
        assert res.returncode == 0, res.stderr
        seen[schema] = json.loads(res.stdout)[0]["w"]
    assert seen == {"sp_a": "a", "sp_b": "b"}


def test_nobody_can_change_a_submitted_jobs_search_path(test_db, sql_admin):
    import psycopg
    import pytest

    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        job_id = conn.execute("SELECT id FROM pgbg.submit('SELECT 1', p_label => 'sp-fixed')").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no UPDATE on pgbg's tables at all
            conn.execute("UPDATE pgbg.job SET search_path = 'evil' WHERE id = %s", (job_id,))
    # nor for the table's owner: the guard trigger refuses it
    sql_admin("SET ROLE pgbg_owner")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot change"):
            sql_admin("UPDATE pgbg.job SET search_path = 'evil' WHERE id = %s", (job_id,))
    finally:
        sql_admin("RESET ROLE")
    sql_admin("SELECT pgbg.request_cancel(ARRAY[id], ARRAY[cookie]) FROM pgbg.job WHERE id = %s", (job_id,))
