"""Values survive the trip through the registry: numbers keep their digits, times stay ordered."""

from __future__ import annotations

import json


def test_result_numbers_keep_every_digit(test_db, cli):
    sql = ("SELECT 12345678901234567890.12::numeric AS big, 124990000.00::numeric AS money, "
           "0.1::numeric AS tenth, 9007199254740993::bigint AS past_float")
    res = cli("launch", "--result", "--format", "json", sql, dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)[0]
    assert row["big"] == "12345678901234567890.12"  # no float holds it: exact digits as a string
    assert row["money"] == 124990000
    assert row["tenth"] == 0.1
    assert row["past_float"] == 9007199254740993
    plain = cli("launch", "--result", "--format", "plain", sql, dsn=test_db["app"])
    assert "12345678901234567890.12" in plain.stdout and "124990000.00" in plain.stdout


def test_fast_jobs_never_finish_before_they_start(test_db, cli):
    for _ in range(5):
        res = cli("launch", "--wait", "--format", "json", "SELECT 1", dsn=test_db["app"])
        assert res.exit_code == 0, res.stderr
        job = json.loads(res.stdout)
        assert job["duration_ms"] >= 0
        assert job["finished_at"] >= job["started_at"]
