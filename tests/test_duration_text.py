"""The durations the server writes into reasons (pgbg._duration_text) read like the CLI's own
(durations.format_ms): "ran longer than its timeout of 2s", not "of 2000 ms"."""

from __future__ import annotations

from pgbg_cli.durations import MAX_MS, format_ms

EDGES = [0, 1, 999, 1000, 1049, 1050, 1949, 1950, 2000, 12_300, 59_949, 59_950, 60_000, 90_000, 245_000,
         3_599_499, 3_599_500, 3_600_000, 7_380_000, 172_799_499, 172_799_500, 183_600_000, 2_592_000_000, MAX_MS]


def test_the_server_writes_durations_as_the_cli_does(sql_admin):
    values = EDGES + [7**k for k in range(1, 16)] + [k * 86_399_999 for k in range(1, 40)]
    rows = sql_admin("SELECT v, pgbg._duration_text(v) AS text FROM unnest(%s::bigint[]) AS v", (values,))
    assert {r["v"]: r["text"] for r in rows} == {v: format_ms(v) for v in values}


def test_a_few_durations_read_as_people_write_them(sql_admin):
    text = sql_admin("SELECT pgbg._duration_text(2000) AS a, pgbg._duration_text(90000) AS b, "
                     "pgbg._duration_text(NULL) AS c, pgbg._duration_text(-5) AS d")[0]
    assert text == {"a": "2s", "b": "1m30s", "c": None, "d": "0ms"}


def test_a_timed_out_job_says_its_timeout_that_way(cli, test_db, sql_admin):
    from conftest import job_row, launch_handle, retry

    handle = launch_handle(cli, test_db["app"], "SELECT pg_sleep(30)", "--timeout", "1.5s")
    job = retry(lambda: (row := job_row(sql_admin, handle))["state"] == "timed_out" and row,
                "the job timed out", timeout=30)
    assert job["reason"] == "ran longer than its timeout of 1.5s"
