"""Bounded history: `pgbg prune --older-than` (the caller's jobs, all for pgbg_admin) and
the automatic bound (pgbg.settings history_keep / history_max_age, applied by
pgbg._autoprune(), which each role's supervisor calls about once a minute).

These tests change pgbg.settings and delete history, so they run in a database of their
own rather than in the session's shared one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from conftest import fresh_database, sql_runner
from test_stats import insert_job


@pytest.fixture(scope="module")
def prune_db(server_dsn: str) -> Iterator[dict[str, str]]:
    with fresh_database(server_dsn, "pgbg_prune") as dsns:
        yield dsns


@pytest.fixture
def sql(prune_db: dict[str, str]) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    with sql_runner(prune_db["admin"]) as run:
        run("TRUNCATE pgbg.job CASCADE")  # live rows too (deleting one is refused)
        yield run
        run("UPDATE pgbg.settings SET value = '10000' WHERE name = 'history_keep'")
        run("UPDATE pgbg.settings SET value = '30 days' WHERE name = 'history_max_age'")


def _labels(sql: Callable[..., list[dict[str, Any]]], owner: str) -> list[str]:
    return [r["label"] for r in sql("SELECT label FROM pgbg.job WHERE owner = %s ORDER BY id", (owner,))]


def test_prune_deletes_the_callers_old_finished_jobs(prune_db, sql, cli):
    day = 86400
    insert_job(sql, owner="pgbg_app", label="app-old-ok", state="succeeded", ago_s=3 * day)
    insert_job(sql, owner="pgbg_app", label="app-old-failed", state="failed", ago_s=3 * day)
    insert_job(sql, owner="pgbg_app", label="app-new", state="succeeded", ago_s=60)
    insert_job(sql, owner="pgbg_app", label="app-live", state="running", ago_s=3 * day)
    insert_job(sql, owner="pgbg_other", label="other-old", state="succeeded", ago_s=3 * day)

    dry = cli("prune", "--older-than", "2d", "--dry-run", "-F", "json", dsn=prune_db["app"])
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout) == {"would_delete": 2, "older_than_s": 2 * day}
    assert len(_labels(sql, "pgbg_app")) == 4  # nothing went

    res = cli("prune", "--older-than", "2d", "-F", "json", dsn=prune_db["app"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["deleted"] == 2
    assert _labels(sql, "pgbg_app") == ["app-new", "app-live"]  # live jobs never go
    assert _labels(sql, "pgbg_other") == ["other-old"]  # nor another role's

    again = cli("prune", "--older-than", "2d", dsn=prune_db["app"])
    assert again.exit_code == 0 and again.stdout.split() == ["deleted", "0", "older", "than", "2d"]


def test_pgbg_admin_prunes_every_roles_jobs(prune_db, sql, cli):
    insert_job(sql, owner="pgbg_app", label="a", state="succeeded", ago_s=7200)
    insert_job(sql, owner="pgbg_other", label="b", state="canceled", ago_s=7200)
    insert_job(sql, owner="pgbg_other", label="c", state="running", ago_s=7200)
    res = cli("prune", "-o", "1h", "-F", "json", dsn=prune_db["boss"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["deleted"] == 2
    assert [r["label"] for r in sql("SELECT label FROM pgbg.job")] == ["c"]


@pytest.mark.parametrize("args", [["--older-than", "yesterday"], ["--older-than", ""], []])
def test_prune_usage_errors(prune_db, cli, args):
    res = cli("prune", *args, dsn=prune_db["app"])
    assert res.exit_code == 2
    assert res.stdout == ""


def test_autoprune_keeps_history_keep_jobs_of_the_role(prune_db, sql, cli):
    assert cli("settings", "history_keep", "2", dsn=prune_db["boss"]).exit_code == 0
    handles = []
    for i in range(4):  # real jobs, through the supervisor
        res = cli("launch", "-l", f"run-{i}", f"SELECT {i}", dsn=prune_db["app"])
        assert res.exit_code == 0, res.stderr
        handles.append(res.stdout.strip())
        assert cli("wait", handles[-1], dsn=prune_db["app"]).exit_code == 0
    insert_job(sql, owner="pgbg_other", label="other-1", state="succeeded")
    insert_job(sql, owner="pgbg_other", label="other-2", state="succeeded")
    insert_job(sql, owner="pgbg_other", label="other-3", state="succeeded")
    insert_job(sql, owner="pgbg_app", label="app-live", state="running")  # no supervisor of its own: stays

    with psycopg.connect(prune_db["app"], autocommit=True) as conn:  # as the role, as its supervisor does
        deleted = conn.execute("SELECT pgbg._autoprune()").fetchone()[0]
    # the supervisor may have run it already (it does about once a minute): what is left matters
    assert deleted in (0, 1, 2)
    assert _labels(sql, "pgbg_app") == ["run-2", "run-3", "app-live"]  # the 2 newest finished, and live
    assert _labels(sql, "pgbg_other") == ["other-1", "other-2", "other-3"]  # another role's are its own
    gone = cli("show", handles[0], dsn=prune_db["app"])
    assert gone.exit_code == 2 and "no job" in gone.stderr


def test_autoprune_drops_jobs_older_than_history_max_age(prune_db, sql, cli):
    assert cli("settings", "history_max_age", "1 hour", dsn=prune_db["boss"]).exit_code == 0
    insert_job(sql, owner="pgbg_other", label="old", state="failed", ago_s=2 * 3600)
    insert_job(sql, owner="pgbg_other", label="recent", state="succeeded", ago_s=600)
    insert_job(sql, owner="pgbg_other", label="old-but-live", state="running", ago_s=5 * 3600)
    with psycopg.connect(prune_db["other"], autocommit=True) as conn:
        assert conn.execute("SELECT pgbg._autoprune()").fetchone()[0] == 1
    assert _labels(sql, "pgbg_other") == ["recent", "old-but-live"]
