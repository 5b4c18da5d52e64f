"""Live views and progress: `pgbg list --watch` / `pgbg stats --watch` in their
one-line-per-refresh, JSON and CSV forms in a pipe, their frames at any size, Ctrl-C, and job
progress (reported by the job, or read from pg_stat_progress_vacuum) seen from other
processes. What they look like in a real 80x24 terminal is tested in test_screens.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import extnames
import pytest
from conftest import interruptible, retry
from test_stats import insert_job, label_of

from pgbg_cli import stats, watch

TMUX = "/usr/bin/tmux"
PGBG = str(Path(sys.executable).parent / "pgbg")
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ running=\d+ queued=\d+ succeeded=\d+ failed=\d+ canceled=\d+ "
                  r"timed_out=\d+ lost=\d+ detached=\d+ slots=\d+/\d+$")
STATS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ window=\S+ launched=\d+ completed=\d+ failed=\d+ "
                        r"canceled=\d+ timed_out=\d+ active=\d+ queued=\d+ avg_ms=\S+ p50_ms=\S+ p95_ms=\S+ "
                        r"max_ms=\S+ slots=\d+/\d+$")


def progress_sql(dsn: str) -> str:
    """A job that reports 42% through this pg_background's worker-side function."""
    return f"SELECT {extnames.fn(dsn, 'report_progress')}(42, 'halfway'); SELECT pg_sleep(120)"


def _proc(args: list[str], dsn: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PGBG_DSN=dsn, NO_COLOR="1")
    return subprocess.Popen([PGBG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=interruptible)


@pytest.mark.parametrize("command, pattern", [("list", LINE), ("stats", STATS_LINE)])
def test_watch_in_a_pipe_prints_a_line_per_refresh_and_stops_on_sigint(test_db, command, pattern):
    proc = _proc([command, "--watch", "--interval", "0.2"], test_db["app"])
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        for line in lines:
            assert pattern.match(line.rstrip("\n")), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert err == ""  # no traceback, no message
    assert all(pattern.match(line) for line in out.splitlines())


def test_watch_count_and_json_lines(test_db, sql_admin, pgbg_proc):
    label = label_of("count")
    for state in ("succeeded", "succeeded", "succeeded", "failed", "failed", "lost"):
        insert_job(sql_admin, owner="pgbg_app", label=label, state=state, run_ms=5)
    insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=5, ago_s=2 * 3600)  # not in the hour
    res = pgbg_proc("list", "--watch", "--count", "3", "--interval", "0.1", "--label", label, dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3
    assert all(LINE.match(line) for line in lines)
    assert " running=0 queued=0 succeeded=3 failed=2 canceled=0 timed_out=0 lost=1 detached=0 " in lines[0]

    res = pgbg_proc("list", "--watch", "--count", "2", "--interval", "0.1", "--label", label, "-F", "json",
                    dsn=test_db["app"])
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == 2
    assert docs[0]["counts"]["succeeded"] == 3 and len(docs[0]["jobs"]) == 6
    assert {"at", "counts", "jobs", "slots_used", "max_worker_processes"} <= set(docs[0])

    res = pgbg_proc("stats", "--watch", "--count", "1", "--by", "label", "-F", "json", dsn=test_db["app"])
    doc = json.loads(res.stdout)
    mine = [g for g in doc["groups"] if g["group"] == label]
    assert mine and mine[0]["workers_completed"] == 4 and mine[0]["workers_failed"] == 3  # 24 hours


def test_watch_in_a_pipe_that_closes_exits_quietly(test_db):
    env = dict(os.environ, PGBG_DSN=test_db["app"])
    res = subprocess.run(f"{shlex.quote(PGBG)} list --watch --interval 0.1 | head -n 2", shell=True,
                         capture_output=True, text=True, env=env, timeout=60)
    assert len(res.stdout.splitlines()) == 2
    assert "Traceback" not in res.stderr and "Broken pipe" not in res.stderr


def test_reported_progress_is_seen_from_other_processes(test_db, pgbg_proc):
    label = label_of("progress")
    launched = pgbg_proc("launch", "-l", label, progress_sql(test_db["app"]), dsn=test_db["app"])
    assert launched.returncode == 0, launched.stderr
    handle = launched.stdout.strip()
    try:
        def listed() -> dict[str, Any] | None:
            res = pgbg_proc("list", "--format", "json", "--label", label, dsn=test_db["app"])
            rows = json.loads(res.stdout)
            prog = rows[0]["progress"] if rows else None
            return prog if prog and prog.get("reported_pct") == 42 else None

        prog = retry(listed, "list to show the job's reported progress", timeout=20, interval=0.3)
        assert prog["percent"] == 42 and prog["message"] == "halfway"
        shown = json.loads(pgbg_proc("show", "-F", "json", handle, dsn=test_db["app"]).stdout)
        assert shown["progress"]["message"] == "halfway"
        plain = pgbg_proc("show", handle, dsn=test_db["app"]).stdout
        assert "[####------]  42% halfway" in plain
        # pgbg_admin sees it too
        boss = json.loads(pgbg_proc("list", "-F", "json", "--label", label, dsn=test_db["boss"]).stdout)
        assert boss[0]["progress"]["reported_pct"] == 42
    finally:
        pgbg_proc("cancel", "--no-wait", handle, dsn=test_db["app"])


@pytest.mark.slow
def test_vacuum_progress_is_seen_while_it_runs(test_db, sql_admin, pgbg_proc):
    from conftest import _with_db

    label = label_of("vacuum")
    table = f"vacuum_probe_{uuid.uuid4().hex[:8]}"
    other = test_db["other"]
    # slow VACUUM down for this role's new sessions (the job's worker), so it is seen running
    db_name = test_db["name"]
    sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db_name}" SET vacuum_cost_delay = \'2ms\'')
    sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db_name}" SET vacuum_cost_limit = 1')
    handle = None
    try:
        import psycopg

        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table} AS SELECT g AS id, repeat('x', 200) AS pad "
                         "FROM generate_series(1, 100000) g")
            conn.execute(f"DELETE FROM {table} WHERE id % 2 = 0")
        launched = pgbg_proc("launch", "-l", label, f"VACUUM {table}", dsn=other)
        assert launched.returncode == 0, launched.stderr
        handle = launched.stdout.strip()

        def vacuuming(dsn: str) -> dict[str, Any] | None:
            rows = json.loads(pgbg_proc("list", "-F", "json", "--label", label, dsn=dsn).stdout)
            prog = rows[0]["progress"] if rows and rows[0]["state"] == "running" else None
            return prog if prog and prog.get("total") else None

        prog = retry(lambda: vacuuming(other), "VACUUM's progress in list", timeout=30, interval=0.3)
        assert prog["command"] == "VACUUM" and prog["unit"] == "blocks"
        assert prog["phase"] in ("scanning heap", "vacuuming indexes", "vacuuming heap", "cleaning up indexes",
                                 "truncating heap", "performing final cleanup")
        assert 0 <= prog["done"] <= prog["total"] and prog["total"] > 1000
        if prog["phase"] == "scanning heap":  # one pass over the heap (no index): the scan is the whole
            assert prog["percent"] == pytest.approx(100 * prog["done"] / prog["total"], abs=0.1)
        assert prog["rate_bytes_per_s"] is None or prog["rate_bytes_per_s"] > 0
        # from a pgbg_admin session (another role) as well
        seen = retry(lambda: vacuuming(test_db["boss"]), "VACUUM's progress for pgbg_admin", timeout=30,
                     interval=0.3)
        assert seen["phase"]
        shown = pgbg_proc("show", handle, dsn=other).stdout
        assert re.search(r"progress +\[[#-]{10}\] +\d+% \S", shown), shown
    finally:
        if handle:
            pgbg_proc("cancel", handle, dsn=other)
        sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db_name}" RESET ALL')
        with psycopg.connect(_with_db(test_db["admin"], db_name), autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# Rendering, without a server: the frames fit whatever the terminal's size.

def _jobs(n: int) -> list[dict[str, Any]]:
    return [{"id": 1000 + i, "handle": f"{1000 + i}:{7_000_000_000_000_000_000 + i}", "label": f"backfill-{i}",
             "state": "running" if i < 5 else "succeeded", "owner": "pgbg_app", "elapsed_ms": 1000 * i,
             "progress": {"percent": 10.0 * (i % 10), "message": "chunk [x]"} if i < 5 else None,
             "sql": "SELECT something FROM somewhere WHERE it = 'long enough to be cut'"} for i in range(n)]


def _frame(view: Any, snap: watch.Snapshot, width: int, height: int) -> list[str]:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=width, height=height, color_system=None, legacy_windows=False)
    console.print(view.render(snap, width, height))
    return out.getvalue().rstrip("\n").split("\n")


@pytest.mark.parametrize("width, height", [(80, 24), (60, 12), (140, 40), (80, 8), (200, 50)])
def test_list_frame_fits(width, height):
    snap = watch.Snapshot(at=_now(), slots=stats.Slots(5, 24, 3), jobs=_jobs(100),
                          counts={"running": 5, "succeeded": 95})
    view = watch.ListView(None, limit=100)  # type: ignore[arg-type]
    lines = _frame(view, snap, width, height)
    assert len(lines) == height
    assert all(len(line) <= width for line in lines)
    assert lines[-1].strip() == f"+{100 - (height - 5)} more"  # 2 head lines, the table's head and rule
    headers = lines[2].split()
    # the columns follow the width: job ids below 110 columns, handles, ROLE from 110, QUERY when it has room
    wide = ["HANDLE", "LABEL", "STATE", "ROLE", "ELAPSED", "PROGRESS"] + (["QUERY"] if width >= 140 else [])
    assert headers == (["ID", "LABEL", "STATE", "ELAPSED", "PROGRESS"] if width < 110 else wide)
    assert lines[4].split()[0] == ("1000:7000000000000000000" if width >= 110 else "1000")
    assert "[###-------]  30%" in "\n".join(lines) or height < 10  # brackets are text, not markup


@pytest.mark.parametrize("width", [80, 110, 150])
def test_list_columns_stay_whatever_the_rows_hold(width):
    """A refresh with no progress, or no rows, shows the same columns as one with them."""
    view = watch.ListView(None, limit=100)  # type: ignore[arg-type]
    heads = set()
    for rows in (_jobs(30), [dict(j, progress=None, label="x") for j in _jobs(3)], []):
        snap = watch.Snapshot(at=_now(), slots=stats.Slots(5, 24, 3), jobs=rows, counts={})
        heads.add(tuple(_frame(view, snap, width, 24)[2].split()))
    assert len(heads) == 1, heads


def test_list_head_counts_every_state():
    snap = watch.Snapshot(at=_now(), slots=stats.Slots(9, 24, 8), counts={
        "running": 7, "starting": 1, "queued": 22, "succeeded": 40, "failed": 3, "canceled": 2, "timed_out": 1,
        "lost": 1, "detached": 0})
    head = watch.ListView(None).head(snap)  # type: ignore[arg-type]
    assert head[0].endswith("  8 running, 22 queued · slots 9/24")
    assert head[1] == "last 1h: 40 succeeded, 3 failed, 2 canceled, 1 timed_out, 1 lost, 0 detached"
    assert all(len(line) <= 80 for line in head)


def test_running_jobs_come_first_then_queued_then_ended():
    import datetime as dt

    t = _now()
    rows = [
        {"id": 9, "state": "queued", "queued_at": t},
        {"id": 8, "state": "succeeded", "finished_at": t - dt.timedelta(minutes=5)},
        {"id": 7, "state": "running", "started_at": t - dt.timedelta(seconds=10)},
        {"id": 6, "state": "queued", "queued_at": t - dt.timedelta(seconds=30)},
        {"id": 5, "state": "failed", "finished_at": t - dt.timedelta(minutes=1)},
        {"id": 4, "state": "running", "started_at": t - dt.timedelta(minutes=3)},
        {"id": "pid 77", "state": "running", "started_at": t - dt.timedelta(minutes=1)},  # not pgbg's
    ]
    assert [r["id"] for r in watch.by_importance(rows)] == [4, "pid 77", 7, 6, 9, 5, 8]


@pytest.mark.parametrize("text, width, cut", [
    ("batch-10", 16, "batch-10"),
    ("nightly-reindex-of-the-orders-table-2026-11-25", 16, "nightly-…6-11-25"),
    ("abcdef", 5, "ab…ef"),
    ("日本語のラベル-10", 9, "日本…-10"),  # wide characters count two cells
])
def test_middle_cuts_keep_both_ends(text, width, cut):
    from rich.cells import cell_len

    assert watch.middle(text, width) == cut
    assert cell_len(watch.middle(text, width)) <= width


def test_watch_csv_prints_one_header_then_a_row_per_refresh(capsys):
    snaps = iter([watch.Snapshot(at=_now(), slots=stats.Slots(5, 24, 3), counts={"running": 2, "queued": 1}),
                  watch.Snapshot(at=_now(), slots=stats.Slots(6, 24, 3), counts={"running": 3, "starting": 1})])
    view = watch.ListView(None)  # type: ignore[arg-type]
    view.fetch = lambda: next(snaps)  # type: ignore[method-assign]
    assert watch.run(view, interval=0, count=2, fmt="csv", live=False, sleep=lambda s: None) == 0
    assert capsys.readouterr().out.splitlines() == [
        "at,running,queued,succeeded,failed,canceled,timed_out,lost,detached,slots_used,max_worker_processes",
        "2026-11-25T14:00:00Z,2,1,0,0,0,0,0,0,5,24",
        "2026-11-25T14:00:00Z,4,0,0,0,0,0,0,0,6,24",
    ]


def test_stats_frame_fits_with_many_groups():
    groups = [{"group": f"label-{i}", "workers_launched": i, "workers_completed": i, "workers_failed": 0,
               "workers_canceled": 0, "workers_timed_out": 0, "workers_active": 0, "queued": 0,
               "avg_execution_ms": 1234.5, "p50_ms": 1000.0, "p95_ms": 2000.0, "max_ms": 3000.0,
               "max_workers": 16} for i in range(40)]
    snap = watch.Snapshot(at=_now(), slots=stats.Slots(5, 24, 3), groups=groups, jobs=_jobs(3))
    view = watch.StatsView(None, window_ms=3600_000, window_text="1h", by="label")  # type: ignore[arg-type]
    lines = _frame(view, snap, 80, 24)
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert lines[-1].strip() == "+20 more"  # 24 - head - table head and rule - the "+N more" line = 20
    assert lines[1].split() == ["LABEL", "OK", "FAILED", "CANCELED", "T/OUT", "ACTIVE", "QUEUED", "AVG", "P95"]
    line = view.line(snap)
    assert len(line) == 40 and line[0].split()[1] == "label=label-0"


def test_interval_must_be_a_duration(test_db, cli):
    res = cli("list", "--watch", "--interval", "often", dsn=test_db["app"])
    assert res.exit_code == 2 and "invalid --interval" in res.stderr


def _now() -> Any:
    import datetime as dt

    return dt.datetime(2026, 11, 25, 14, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("command", ["list", "stats"])
def test_watch_outlives_a_dropped_connection(test_db, sql_admin, pgbg_proc, command):
    import threading

    from conftest import retry

    app = f"pgbg-watch-drop-{command}"
    results: list[Any] = []
    watcher = threading.Thread(target=lambda: results.append(pgbg_proc(
        command, "--watch", "-i", "200ms", "-c", "20", "-F", "json", dsn=test_db["app"] + f" application_name={app}",
        timeout=90)))
    watcher.start()
    try:
        pid = retry(lambda: sql_admin("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                      "AND query LIKE '%%worker_slots%%'", (app,)), "the view refreshes", 20)[0]["pid"]
        sql_admin("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        watcher.join(90)
    res = results[0]
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 20  # every refresh, the dropped one included


@pytest.mark.parametrize("command", ["list", "stats"])
def test_watch_that_cannot_reconnect_ends_with_words_that_fit_it(server_dsn, command):
    """A view has no jobs of its own to wait for: its last words say to run it again."""
    from conftest import fresh_database, pgbg_gives_up

    with fresh_database(server_dsn, "pgbg_giveup") as db:
        res = pgbg_gives_up(db, command, "--watch", "-i", "200ms", "-F", "json", looks="%worker_slots%")
    assert res.returncode == 3, res
    assert re.fullmatch(rf"pgbg: lost the connection \(.+\) and could not make it again within 1 s; the view ends "
                        rf"and the jobs go on: run pgbg {command} --watch again once the server answers\n",
                        res.stderr), res.stderr


def test_watch_of_a_group_counts_all_its_jobs_done_of_total(test_db, cli):
    from pgbg_cli import db

    group = f"g-{uuid.uuid4().hex[:8]}"
    res = cli("launch", "--group", group, "--jobs", "1", "SELECT 1", "SELECT 2", "SELECT 1/0", dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert cli("wait", "--group", group, dsn=test_db["app"]).exit_code == 1  # one failed
    res = cli("list", "--watch", "--group", group, "--count", "1", "-F", "plain", dsn=test_db["app"])
    assert res.exit_code == 0, res
    assert re.search(r" succeeded=2 failed=1 .* done=3/3 slots=", res.stdout), res.stdout
    res = cli("list", "--watch", "--group", group, "--count", "1", "-F", "json", dsn=test_db["app"])
    rec = json.loads(res.stdout.splitlines()[0])
    assert rec["group"] == {"name": group, "done": 3, "total": 3, "counts": {"succeeded": 2, "failed": 1},
                            "bytes_done": None, "bytes_total": None}  # not VACUUMs of named tables
    conn = db.connect(test_db["app"])
    try:
        conn.row_factory = __import__("psycopg").rows.dict_row
        view = watch.ListView(conn, group=group)
        head = view.head(view.fetch())
    finally:
        conn.close()
    assert head[1] == f"group {group}: 3 of 3 done (2 succeeded, 1 not), 0 detached"


def test_watch_of_a_vacuum_group_counts_the_bytes_of_its_tables(test_db, cli, sql_admin):
    group = f"v-{uuid.uuid4().hex[:8]}"
    names = [f"public.wv_{uuid.uuid4().hex[:6]}_{i}" for i in range(2)]
    for name in names:
        sql_admin(f"CREATE TABLE {name} AS SELECT g AS id FROM generate_series(1, 5000) g")
        sql_admin(f"ALTER TABLE {name} OWNER TO pgbg_app")
    try:
        res = cli("launch", "--group", group, "--jobs", "1", *[f"VACUUM (ANALYZE) {n}" for n in names],
                  "VACUUM", dsn=test_db["app"])  # the last names no table: no bytes for the group
        assert res.exit_code == 0, res
        res = cli("list", "--watch", "--group", group, "--count", "1", "-F", "json", dsn=test_db["app"])
        assert json.loads(res.stdout.splitlines()[0])["group"]["bytes_total"] is None
        cli("cancel", "--group", group, dsn=test_db["app"])
        res = cli("launch", "--group", group + "b", "--jobs", "1", *[f"VACUUM (ANALYZE) {n}" for n in names],
                  dsn=test_db["app"])
        assert res.exit_code == 0, res
        assert cli("wait", "--group", group + "b", dsn=test_db["app"]).exit_code == 0
        sizes = sum(sql_admin("SELECT pg_total_relation_size(%s::regclass) AS b", (n,))[0]["b"] for n in names)
        res = cli("list", "--watch", "--group", group + "b", "--count", "1", "-F", "json", dsn=test_db["app"])
        g = json.loads(res.stdout.splitlines()[0])["group"]
        assert (g["done"], g["total"], g["bytes_done"], g["bytes_total"]) == (2, 2, sizes, sizes)
        res = cli("list", "--watch", "--group", group + "b", "--count", "1", "-F", "plain", dsn=test_db["app"])
        assert f" done=2/2 bytes_done={sizes}/{sizes} slots=" in res.stdout
    finally:
        cli("wait", "--group", group, dsn=test_db["app"])
        for name in names:
            sql_admin(f"DROP TABLE IF EXISTS {name}")
