"""pgbg stats: pg_background_stats()'s columns computed from the job registry over a window,
plus the queue, run-time percentiles and worker slots; --by label/role; RLS; --session;
pgbg settings. Real server only.

Jobs with exact run times are written straight into pgbg.job as the superuser (with
session_replication_role = replica, so the guard trigger does not make them queued);
each test uses labels of its own, so the jobs other tests leave do not disturb it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import extnames
import psycopg
import pytest

from pgbg_cli import durations, stats

INSERT_JOB = """
INSERT INTO pgbg.job (owner, label, sql, state, queued_at, started_at, finished_at, worker_pid)
SELECT %(owner)s, %(label)s, 'SELECT 1 /* written by test_stats */', %(state)s,
       statement_timestamp() - make_interval(secs => %(ago)s + %(run)s / 1000.0 + 1),
       CASE WHEN %(started)s THEN statement_timestamp() - make_interval(secs => %(ago)s + %(run)s / 1000.0) END,
       CASE WHEN %(final)s THEN statement_timestamp() - make_interval(secs => %(ago)s) END,
       CASE WHEN %(state)s = 'running' THEN 999999 END
RETURNING id, cookie
"""


def insert_job(sql_admin: Callable[..., list[dict[str, Any]]], *, owner: str, label: str | None, state: str,
               run_ms: float = 0, ago_s: float = 1, started: bool | None = None) -> str:
    """Write one job row as it would look; returns its handle."""
    final = state not in ("queued", "starting", "running")
    if started is None:
        started = state != "queued"
    sql_admin("SET session_replication_role = replica")
    try:
        row = sql_admin(INSERT_JOB, {"owner": owner, "label": label, "state": state, "run": run_ms,
                                     "ago": ago_s, "started": started, "final": final})[0]
    finally:
        sql_admin("RESET session_replication_role")
    return f"{row['id']}:{row['cookie']}"


def delete_jobs(sql_admin: Callable[..., list[dict[str, Any]]], where: str, params: Any) -> None:
    """Delete rows that insert_job wrote, live ones too (the guard trigger refuses that)."""
    sql_admin("SET session_replication_role = replica")
    try:
        sql_admin(f"DELETE FROM pgbg.job WHERE {where}", params)
    finally:
        sql_admin("RESET session_replication_role")


def label_of(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def group(rows: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    found = [r for r in rows if r["group"] == name]
    assert len(found) == 1, f"no single group {name!r} in {rows}"
    return found[0]


def test_stats_columns_are_those_of_pg_background_stats(test_db, sql_admin):
    # the extension's own function, with the column names pgbg mirrors
    cols = sql_admin(f"SELECT * FROM {extnames.fn(test_db['admin'], 'stats')}()")[0]
    # 2.0's columns, all of them; 1.8's lack workers_timed_out (pgbg computes it from its registry)
    assert set(cols) <= set(stats.EXTENSION_COLUMNS)
    assert [c for c in stats.EXTENSION_COLUMNS if c in cols] == list(cols)
    if extnames.ext(test_db["admin"]).worker_times:
        assert tuple(cols) == stats.EXTENSION_COLUMNS


def test_stats_by_label_counts_outcomes_and_run_times(test_db, sql_admin, cli):
    label = label_of("stats")
    for run_ms in (100, 200, 300, 400, 1000):
        insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=run_ms)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="failed", run_ms=50)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="lost", run_ms=50)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="canceled", run_ms=50)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="timed_out", run_ms=50)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="detached", run_ms=50)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=999_000, ago_s=30 * 3600)

    res = cli("stats", "--by", "label", "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    row = group(json.loads(res.stdout), label)
    assert {k: row[k] for k in ("workers_launched", "workers_completed", "workers_failed", "workers_canceled",
                                "workers_timed_out", "workers_active", "queued", "lost", "detached")} == {
        "workers_launched": 10, "workers_completed": 5, "workers_failed": 2, "workers_canceled": 1,
        "workers_timed_out": 1, "workers_active": 0, "queued": 0, "lost": 1, "detached": 1,
    }
    runs = sorted([100, 200, 300, 400, 1000] + [50] * 5)
    assert row["avg_execution_ms"] == pytest.approx(sum(runs) / len(runs), abs=0.1)
    assert row["p50_ms"] == pytest.approx(75.0, abs=0.1)  # percentile_cont: between 50 and 100
    assert row["p95_ms"] == pytest.approx(400 + 0.55 * 600, abs=0.1)
    assert row["max_ms"] == pytest.approx(1000, abs=0.1)
    stats_fn = extnames.fn(test_db["admin"], "stats")
    assert row["max_workers"] == sql_admin(f"SELECT max_workers FROM {stats_fn}()")[0]["max_workers"]
    assert row["max_worker_processes"] == int(sql_admin("SHOW max_worker_processes")[0]["max_worker_processes"])

    # the job that ended 30 hours ago comes in with a wider window
    wide = group(json.loads(cli("stats", "--by", "label", "--since", "2d", "-F", "json",
                                dsn=test_db["app"]).stdout), label)
    assert wide["workers_completed"] == 6
    assert wide["max_ms"] == pytest.approx(999_000, abs=0.1)


def test_stats_counts_live_jobs_whatever_their_age(test_db, sql_admin, cli):
    label = label_of("live")
    # pgbg_plain never runs a supervisor, so its queued and "running" rows stay as written
    insert_job(sql_admin, owner="pgbg_plain", label=label, state="queued", ago_s=10 * 86400)
    insert_job(sql_admin, owner="pgbg_plain", label=label, state="running", ago_s=10 * 86400, run_ms=1)
    try:
        rows = json.loads(cli("stats", "--by", "label", "-F", "json", dsn=test_db["admin"]).stdout)
        row = group(rows, label)
        assert (row["queued"], row["workers_active"], row["workers_launched"]) == (1, 1, 0)
        # jobs that have not ended have no run time (not a run time of 0)
        assert (row["avg_execution_ms"], row["p50_ms"], row["max_ms"]) == (None, None, None)
        plain = cli("stats", "--by", "label", "-F", "plain", dsn=test_db["admin"]).stdout
        # the columns of the table on a terminal: LAUNCHED OK FAILED CANCELED T/OUT ACTIVE QUEUED AVG P50 P95 MAX
        assert re.search(rf"^{label} +0 +0 +0 +0 +0 +1 +1 +- +- +- +-$", plain, re.M), plain
    finally:
        delete_jobs(sql_admin, "label = %s", (label,))


def test_real_jobs_are_counted(test_db, cli):
    label = label_of("real")
    assert cli("launch", "--wait", "-l", label, "SELECT pg_sleep(0.1)", dsn=test_db["app"]).exit_code == 0
    assert cli("launch", "--wait", "-l", label, "SELECT 1/0", dsn=test_db["app"]).exit_code == 1
    row = group(json.loads(cli("stats", "--by", "label", "-F", "json", dsn=test_db["app"]).stdout), label)
    assert (row["workers_launched"], row["workers_completed"], row["workers_failed"]) == (2, 1, 1)
    assert row["max_ms"] > 0 and row["p50_ms"] is not None


def test_rls_a_role_sees_its_own_jobs_and_pgbg_admin_all(test_db, sql_admin, cli):
    label = label_of("rls")
    insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=10)
    insert_job(sql_admin, owner="pgbg_other", label=label, state="succeeded", run_ms=10)
    insert_job(sql_admin, owner="pgbg_other", label=label, state="failed", run_ms=10)

    def by_label(dsn: str) -> dict[str, Any]:
        res = cli("stats", "--by", "label", "-F", "json", dsn=dsn)
        assert res.exit_code == 0, res.stderr
        return group(json.loads(res.stdout), label)

    assert by_label(test_db["app"])["workers_launched"] == 1
    assert by_label(test_db["other"])["workers_launched"] == 2
    assert by_label(test_db["boss"])["workers_launched"] == 3

    roles = {r["group"] for r in json.loads(cli("stats", "--by", "role", "-F", "json", dsn=test_db["other"]).stdout)}
    assert roles == {"pgbg_other"}
    boss_roles = {r["group"] for r in json.loads(cli("stats", "--by", "role", "-F", "json",
                                                     dsn=test_db["boss"]).stdout)}
    assert {"pgbg_app", "pgbg_other"} <= boss_roles


def test_stats_without_grouping_is_one_record_with_slots(test_db, cli):
    res = cli("stats", "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    record = json.loads(res.stdout)
    assert isinstance(record, dict) and "group" not in record
    assert set(stats.EXTENSION_COLUMNS) | set(stats.EXTRA_COLUMNS) | set(stats.SLOT_COLUMNS) <= set(record)
    assert record["window_s"] == 86400
    assert 0 < record["slots_used"] <= record["max_worker_processes"]

    plain = cli("stats", "--since", "30m", dsn=test_db["app"])
    assert plain.exit_code == 0
    assert "workers_launched" in plain.stdout and "max_worker_processes" in plain.stdout


def test_an_empty_window_still_gives_its_row(test_db, sql_admin, cli):
    from conftest import _with_db

    role = f"pgbg_stats_{uuid.uuid4().hex[:8]}"
    sql_admin(f"CREATE ROLE {role} LOGIN PASSWORD 'x'")
    assert cli("grant", role, dsn=test_db["admin"]).exit_code == 0
    try:
        dsn = _with_db(test_db["admin"], test_db["name"], role, "x")
        record = json.loads(cli("stats", "-F", "json", dsn=dsn).stdout)
        assert record["workers_launched"] == 0 and record["avg_execution_ms"] is None
        assert record["max_workers"] > 0
    finally:
        assert cli("revoke", role, dsn=test_db["admin"]).exit_code == 0
        sql_admin(f"DROP ROLE {role}")


def test_session_shows_the_extensions_own_row(test_db, cli):
    res = cli("stats", "--session", "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)
    assert tuple(row) == stats.EXTENSION_COLUMNS
    assert row["workers_launched"] == 0  # a new session has launched nothing: that is the point


@pytest.mark.parametrize("args, message", [
    (["--by", "nothing"], "nothing"),
    (["--since", "soon"], "invalid --since"),
    (["--since", "0"], "from 1ms to 36525d"),
    (["--count", "2"], "--count goes with --watch"),
    (["--watch", "--interval", "1ms"], "from 50ms to 1d"),
    (["--session", "--by", "label"], "--session"),
])
def test_stats_usage_errors(test_db, cli, args, message):
    res = cli("stats", *args, dsn=test_db["app"])
    assert res.exit_code == 2
    assert message in res.stderr and res.stdout == ""


def test_window_figures_equal_the_sql_ones(test_db, sql_admin):
    """The watch views compute the same figures in Python, kept current by deltas."""
    from conftest import retry

    from pgbg_cli import db

    label = label_of("window")
    for i, state in enumerate(["succeeded", "succeeded", "failed", "canceled", "succeeded"]):
        insert_job(sql_admin, owner="pgbg_other", label=label, state=state, run_ms=10 * i + 0.05)
    insert_job(sql_admin, owner="pgbg_other", label=label, state="canceled", started=False)  # while queued
    insert_job(sql_admin, owner="pgbg_plain", label=label, state="running", run_ms=1)  # no run time yet
    conn = db.connect(test_db["boss"])
    day = 24 * 3600 * 1000

    def keyed(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        return {r["group"]: r for r in rows}

    last: list[Any] = []

    def agree(window: stats.Window) -> bool:
        # the whole database's figures: retried, in case another test's job ends in between
        window.refresh(conn)
        last.clear()
        for by in (None, "label", "role", "group"):
            mine, theirs = keyed(window.figures(by=by)), keyed(stats.job_stats(conn, window_ms=day, by=by))
            last.extend((k, mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs)
                        if mine.get(k) != theirs.get(k))
        return not last

    try:
        window = stats.Window(day)
        try:
            retry(lambda: agree(window), "the window's figures to equal job_stats'", timeout=10, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last}") from None
        # jobs that end after the first refresh come in through the delta
        insert_job(sql_admin, owner="pgbg_app", label=label, state="timed_out", run_ms=12345.65)
        insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=0.25)
        retry(lambda: agree(window), "the window's figures to equal job_stats' after new jobs", timeout=10,
              interval=0.2)
        mine = keyed(window.figures(by="label"))[label]
        assert mine == keyed(stats.job_stats(conn, window_ms=day, by="label"))[label]
        assert (mine["workers_timed_out"], mine["workers_completed"], mine["p50_ms"]) == (1, 4, 20.1)
        assert (mine["workers_canceled"], mine["workers_active"], mine["workers_launched"]) == (2, 1, 8)
        counts = window.counts(label_glob=label[:-3] + "*")
        assert (counts["succeeded"], counts["failed"], counts["timed_out"], counts["running"]) == (4, 1, 1, 1)
    finally:
        conn.close()
        delete_jobs(sql_admin, "label = %s AND owner = 'pgbg_plain'", (label,))


def test_window_forgets_jobs_that_leave_it(test_db, sql_admin):
    from conftest import retry

    from pgbg_cli import db

    label = label_of("leave")
    insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=5, ago_s=1)
    conn = db.connect(test_db["app"])
    try:
        window = stats.Window(4000)
        window.refresh(conn)
        assert window.counts(label_glob=label)["succeeded"] == 1

        def gone() -> bool:
            window.refresh(conn)
            return window.counts(label_glob=label)["succeeded"] == 0

        retry(gone, "the job to leave a 4-second window", timeout=15, interval=0.5)
    finally:
        conn.close()


def test_settings_list_and_change(test_db, cli):
    res = cli("settings", "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res.stderr
    names = {r["name"] for r in json.loads(res.stdout)}
    assert {"history_keep", "history_max_age", "max_running_per_role"} <= names

    one = json.loads(cli("settings", "history_keep", "-F", "json", dsn=test_db["app"]).stdout)
    assert [r["name"] for r in one] == ["history_keep"]

    denied = cli("settings", "history_keep", "500", dsn=test_db["app"])
    assert denied.exit_code == 3 and "pgbg_admin" in denied.stderr

    for name, value, needle in (("history_keep", "1.5", "whole number"), ("poll_ms", "0", "from 5 to 10000"),
                                ("reserve_slots", "10001", "from 0 to 10000"),
                                ("max_running_per_role", "1001", "from 1 to 1000"),
                                ("max_running_per_role", "99999999999", "whole number"),
                                ("poll_ms", "nan", "whole number"), ("poll_ms", "1e3", "whole number"),
                                ("supervisor_idle_ms", "\u0663", "ASCII"), ("poll_ms", "inf", "whole number"),
                                ("history_max_age", "infinity", "from 1 minute to 100 years"),
                                ("history_max_age", "a while", "interval"), ("nonsense", "1", "unknown setting")):
        bad = cli("settings", name, value, dsn=test_db["boss"])
        assert bad.exit_code == 2 and needle in bad.stderr, bad
        assert len(bad.stderr.splitlines()) == 1, bad

    current = one[0]["value"]
    same = cli("settings", "history_keep", current, "-F", "json", dsn=test_db["boss"])
    assert same.exit_code == 0, same.stderr
    assert json.loads(same.stdout)[0]["value"] == current


def test_a_bare_number_for_an_interval_setting_is_refused_and_a_stored_one_shown_with_its_unit(
        test_db, sql_admin, pgbg_proc):
    """`history_max_age 600000` beside settings in milliseconds: PostgreSQL would read seconds (6.9
    days), the user may have meant 10 minutes. Refused with the units named; one stored bare (by SQL,
    or an earlier pgbg) is shown as the server reads it."""
    def stored() -> str:
        return sql_admin("SELECT value FROM pgbg.settings WHERE name = 'history_max_age'")[0]["value"]

    before = stored()
    for value in ("600000", " 60 ", "600000.5", ".5"):
        res = pgbg_proc("settings", "history_max_age", value, dsn=test_db["boss"])
        assert res.returncode == 2, res
        assert res.stderr == (f"pgbg: history_max_age takes an interval with its unit, not a bare number "
                              f"({value.strip()!r}): such as '10 minutes', '12 hours' or '30 days' (units: ms, "
                              "s, min, h, d, weeks, months, years)\n"), res.stderr
        assert stored() == before
    try:
        res = pgbg_proc("settings", "history_max_age", "600000 seconds", "-F", "plain", dsn=test_db["boss"])
        assert res.returncode == 0, res.stderr
        assert re.split(r"\s{2,}", res.stdout.splitlines()[-1])[:2] == ["history_max_age", "600000 seconds"], res.stdout
        sql_admin("UPDATE pgbg.settings SET value = '600000' WHERE name = 'history_max_age'")
        for args in ((), ("history_max_age",)):
            res = pgbg_proc("settings", *args, "-F", "plain", dsn=test_db["app"])
            assert res.returncode == 0, res.stderr
            line = next(line for line in res.stdout.splitlines() if line.startswith("history_max_age"))
            assert re.split(r"\s{2,}", line)[1] == "600000 seconds", line
        res = pgbg_proc("settings", "history_max_age", "-F", "json", dsn=test_db["app"])
        assert json.loads(res.stdout)[0]["value"] == "600000"  # as stored: JSON is for programs
    finally:
        sql_admin("UPDATE pgbg.settings SET value = %s WHERE name = 'history_max_age'", (before,))


def test_set_setting_from_sql_refuses_a_bare_number_for_an_interval(test_db, sql_admin):
    """pgbg.set_setting() called from SQL refuses what the CLI refuses: a bare number for an
    interval, which PostgreSQL would read as seconds."""
    before = sql_admin("SELECT value FROM pgbg.settings WHERE name = 'history_max_age'")[0]["value"]
    with psycopg.connect(test_db["boss"], autocommit=True) as boss:
        for value in ("600000", " 60 ", "1.5", ".5", "\t600000", "600000\n", "+600000", "@ 600000", "'600000'"):
            with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
                boss.execute("SELECT * FROM pgbg.set_setting('history_max_age', %s)", (value,))
            assert str(refused.value).startswith(
                "pgbg: history_max_age takes an interval with its unit, not a bare number ("), refused.value
        assert sql_admin("SELECT value FROM pgbg.settings WHERE name = 'history_max_age'")[0]["value"] == before
        try:
            row = boss.execute("SELECT * FROM pgbg.set_setting('history_max_age', '600000 seconds')").fetchone()
            assert row[1] == "600000 seconds"
        finally:
            sql_admin("UPDATE pgbg.settings SET value = %s WHERE name = 'history_max_age'", (before,))


def test_the_clis_setting_kinds_are_the_schemas(sql_admin):
    spec = {r["name"]: r["kind"] for r in sql_admin("SELECT name, kind FROM pgbg._setting_spec()")}
    assert spec == stats.SETTING_KINDS


@pytest.mark.parametrize("name, value", [("poll_ms", "inf"), ("poll_ms", "-5"), ("poll_ms", "\uff13"),
                                         ("history_max_age", "30 days; DROP"), ("nonsense", "1")])
def test_setting_values_are_checked_before_connecting(cli, name, value):
    res = cli("settings", name, value, dsn="postgresql://nobody@127.0.0.1:1/none")
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1, res


def test_plain_stats_name_figures_without_units_and_write_durations_one_way(test_db, sql_admin, cli):
    label = label_of("plain")
    insert_job(sql_admin, owner="pgbg_other", label=label, state="succeeded", run_ms=208)
    try:
        res = cli("stats", "--since", "1d", "-F", "plain", dsn=test_db["other"])
        assert res.exit_code == 0, res.stderr
        pairs = dict(line.split(None, 1) for line in res.stdout.splitlines())
        assert pairs["window"] == "24h"  # not "window_s 86400.0"
        assert "p50_ms" not in pairs and "window_s" not in pairs
        data = json.loads(cli("stats", "--since", "1d", "-F", "json", dsn=test_db["other"]).stdout)
        assert data["window_s"] == 86400 and data["max_ms"] >= 208  # the keys keep their units
        for key in ("avg_execution", "p50", "p95", "max"):  # not "p50_ms 208ms"
            assert pairs[key] == durations.format_ms(data[f"{key}_ms"]), key
    finally:
        delete_jobs(sql_admin, "label = %s", (label,))


def test_stats_by_label_table_keeps_labels_apart_at_80_columns():
    """``batch-1``, ``batch-10`` and ``batch-11`` stay apart (they used to wrap into ``batch-1``),
    and a label too long for the column is cut from the middle, keeping its end."""
    import io

    from rich.console import Console

    from pgbg_cli import watch

    names = ["batch-1", "batch-10", "batch-11", "nightly-reindex-of-the-orders-table-2026-11-25",
             "nightly-reindex-of-the-orders-table-2026-11-26"]
    rows = [{"group": n, "workers_launched": 3, "workers_completed": 2, "workers_failed": 1, "workers_canceled": 0,
             "workers_timed_out": 0, "workers_active": 0, "queued": 0, "avg_execution_ms": 61_000.0,
             "p50_ms": 900.0, "p95_ms": 2_500.0, "max_ms": 3_000.0} for n in names]
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    for part in watch.stats_table(rows, "label", 80)[0]:
        console.print(part)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    first = [line.split()[0] for line in lines[2:]]
    assert first[:3] == ["batch-1", "batch-10", "batch-11"]
    assert first[3] != first[4] and first[3].endswith("-25") and first[4].endswith("-26") and "…" in first[3]
    assert lines[2].split()[1:] == ["2", "1", "0", "0", "0", "0", "1m01s", "2.5s"]  # OK .. QUEUED, AVG, P95


def test_stats_of_one_group_counts_its_jobs_only(test_db, cli):
    from pgbg_cli import db

    group_name = label_of("stats-group")
    res = cli("launch", "--group", group_name, "--jobs", "2", "SELECT 1", "SELECT 2", "SELECT 1/0",
              dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert cli("launch", "--wait", "SELECT 3", dsn=test_db["app"]).exit_code == 0  # of no group
    assert cli("wait", "--group", group_name, dsn=test_db["app"]).exit_code == 1
    res = cli("stats", "--group", group_name, "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    rec = json.loads(res.stdout)
    assert (rec["workers_completed"], rec["workers_failed"], rec["workers_active"]) == (2, 1, 0)
    res = cli("stats", "--watch", "--count", "1", "--group", group_name, "-F", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    frame = json.loads(res.stdout.splitlines()[0])
    assert (frame["stats"]["workers_completed"], frame["stats"]["workers_failed"]) == (2, 1)
    conn = db.connect(test_db["app"])
    try:
        window = stats.Window(3600 * 1000)
        window.refresh(conn)
        for by in (None, "label"):
            assert window.figures(by=by, only_group=group_name) == stats.job_stats(
                conn, window_ms=3600 * 1000, by=by, group=group_name)
    finally:
        conn.close()
    res = cli("stats", "--session", "--group", group_name, dsn=test_db["app"])
    assert res.exit_code == 2 and "--session shows one row" in res.stderr
