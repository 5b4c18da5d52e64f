"""No job waits forever, across a server restart: with the dispatcher, queued jobs start with
no pgbg command from anyone; without it, list, show and capacity say why they wait.

These restart a server, so they run on the faults instance, under its lock (tests/test_faults.py).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import retry
from test_faults import _launch, _pgbg, _running, _sandbox, faults  # noqa: F401  (faults: the fixture)

DEADLINE_S = 40  # from the server accepting connections again to the queued jobs' outcomes


def _cron_loaded(f) -> bool:
    return bool(f.sql("SELECT current_setting('cron.database_name', true) AS db")[0]["db"])


def _queue_behind_a_sleeper(f, table: str) -> tuple[str, list[str]]:
    """One job of pgbg_other running (60 s) and two queued behind it (max_running_per_role 1)."""
    f.sql(f"CREATE TABLE {table} (v int)")
    f.sql(f"GRANT INSERT ON {table} TO pgbg_other")
    f.sql("UPDATE pgbg.settings SET value = '1' WHERE name = 'max_running_per_role'")
    running = _launch(f, "SELECT pg_sleep(60)", role="other")
    _running(f, running)
    queued = [_launch(f, f"INSERT INTO {table} VALUES ({i})", role="other") for i in range(2)]
    assert [f.job(h)["state"] for h in queued] == ["queued", "queued"]
    return running, queued


def test_the_dispatcher_starts_queued_jobs_after_a_restart(faults):  # noqa: F811
    if not _cron_loaded(faults):
        if not faults.sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron'"):
            pytest.skip("needs pg_cron; this server has none")
        _sandbox("restart")  # started before pg_cron came: its next start loads it
        faults.wait_up()
    table = f"rd_{uuid.uuid4().hex[:8]}"
    res = _pgbg("dispatch", "enable", "pgbg_other", dsn=faults.dsn("admin"))
    assert res.returncode == 0, res.stderr
    try:
        running, queued = _queue_behind_a_sleeper(faults, table)
        _sandbox("restart")
        faults.wait_up()
        # from here on no pgbg command runs: the superuser only reads the registry
        retry(lambda: all(faults.job(h)["state"] == "succeeded" for h in queued),
              "the dispatcher started the queued jobs", timeout=DEADLINE_S, interval=0.2)
        assert sorted(r["v"] for r in faults.sql(f"SELECT v FROM {table}")) == [0, 1]
        job = faults.job(running)
        assert job["state"] == "lost" and "restarted" in job["reason"]  # reconciled by the dispatcher too
    finally:
        faults.sql("UPDATE pgbg.settings SET value = '8' WHERE name = 'max_running_per_role'")
        res = _pgbg("dispatch", "disable", dsn=faults.dsn("admin"))
        assert res.returncode == 0, res.stderr


def test_without_the_dispatcher_list_show_and_capacity_say_why_after_a_restart(faults):  # noqa: F811
    faults.sql("DELETE FROM pgbg.meta WHERE key LIKE 'dispatch:%%'")
    table = f"rw_{uuid.uuid4().hex[:8]}"
    try:
        running, queued = _queue_behind_a_sleeper(faults, table)
        _sandbox("restart")
        faults.wait_up()
        why = ("waiting: no supervisor of pgbg_other runs: pgbg list (or show, wait) as pgbg_other starts it, or "
               "an admin runs pgbg dispatch enable (pg_cron) to have it started within seconds")
        res = _pgbg("list", "-F", "json", dsn=faults.dsn("admin"))  # a superuser's look starts no one's supervisor
        assert res.returncode == 0, res.stderr
        rows = {r["handle"]: r for r in json.loads(res.stdout)}
        assert [rows[h]["state"] for h in queued] == ["queued", "queued"]
        assert [rows[h]["reason"] for h in queued] == [why, why]
        assert rows[running]["state"] == "lost"
        assert f"pgbg: 2 queued jobs of pgbg_other wait: {why.removeprefix('waiting: ')}\n" in res.stderr
        res = _pgbg("show", "-F", "json", queued[0], dsn=faults.dsn("admin"))
        assert json.loads(res.stdout)["reason"] == why
        res = _pgbg("capacity", dsn=faults.dsn("admin"))
        assert "2 queued jobs of pgbg_other wait: no supervisor of pgbg_other runs" in res.stderr
        # and indeed nothing starts them
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert [faults.job(h)["state"] for h in queued] == ["queued", "queued"]
            time.sleep(0.2)
        res = _pgbg("wait", "--timeout", "30s", *queued, dsn=faults.dsn("other"))  # the role's own command
        assert res.returncode == 0, res.stderr
    finally:
        faults.sql("UPDATE pgbg.settings SET value = '8' WHERE name = 'max_running_per_role'")
