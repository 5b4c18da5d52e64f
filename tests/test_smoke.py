"""The first end-to-end path: launch in one process, wait in another."""

from __future__ import annotations


def test_launch_then_wait_from_another_process(test_db, pgbg_proc):
    launched = pgbg_proc("launch", "SELECT pg_sleep(0.2)", dsn=test_db["app"])
    assert launched.returncode == 0, launched.stderr
    handle = launched.stdout.strip()
    assert handle.count(":") == 1 and launched.stdout == handle + "\n"
    waited = pgbg_proc("wait", handle, "--format", "json", dsn=test_db["app"])
    assert waited.returncode == 0, waited.stderr
    assert '"state": "succeeded"' in waited.stdout


def test_division_by_zero_exits_1_with_sqlstate(test_db, cli):
    res = cli("launch", "--wait", "--format", "json", "SELECT 1/0", dsn=test_db["app"])
    assert res.exit_code == 1
    assert '"sqlstate": "22012"' in res.stdout
