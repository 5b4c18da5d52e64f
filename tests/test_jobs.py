"""Durable jobs across processes: wait, list, show, cancel, detach, timeouts, handles,
awkward text, and many launches at once. Real server; each pgbg run is its own session."""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

import extnames
import pytest
from conftest import interruptible, retry
from conftest import job_row as _job
from conftest import launch_handle as _launch


def _label(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _state(sql_admin: Any, handle: str) -> str:
    return _job(sql_admin, handle)["state"]


def _running(sql_admin: Any, handle: str, timeout: float = 20) -> dict[str, Any]:
    return retry(lambda: (j := _job(sql_admin, handle))["state"] == "running" and j,
                 f"job {handle} running", timeout=timeout)


def _alive(sql_admin: Any, pid: int) -> bool:
    return bool(sql_admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


def _one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# --- across processes --------------------------------------------------------------------


def test_launch_in_one_process_act_from_others(test_db, pgbg_proc, sql_admin):
    dsn = test_db["app"]
    label = _label("xproc")
    launched = pgbg_proc("launch", "-l", label, "SELECT pg_sleep(30)", dsn=dsn)
    assert launched.returncode == 0, launched.stderr
    handle = launched.stdout.strip()
    job = _running(sql_admin, handle)

    listed = pgbg_proc("list", "--format", "json", "--label", label, dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    assert [(r["handle"], r["state"]) for r in json.loads(listed.stdout)] == [(handle, "running")]

    shown = pgbg_proc("show", handle, "--format", "json", dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    rec = json.loads(shown.stdout)
    assert (rec["state"], rec["label"], rec["sql"], rec["worker_pid"]) == (
        "running", label, "SELECT pg_sleep(30)", job["worker_pid"])

    canceled = pgbg_proc("cancel", handle, "--format", "json", dsn=dsn)
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)[0]["state"] == "canceled"

    waited = pgbg_proc("wait", handle, "--format", "json", dsn=dsn)
    assert waited.returncode == 1
    assert json.loads(waited.stdout)[0]["state"] == "canceled"
    assert "canceled" in waited.stderr
    assert not _alive(sql_admin, job["worker_pid"])


def test_failing_job_sqlstate_read_back_from_another_process(test_db, pgbg_proc):
    dsn = test_db["app"]
    launched = pgbg_proc("launch", "SELECT 1/0", dsn=dsn)
    assert launched.returncode == 0, launched.stderr
    handle = launched.stdout.strip()
    waited = pgbg_proc("wait", handle, "--format", "json", dsn=dsn)
    assert waited.returncode == 1
    assert json.loads(waited.stdout)[0]["sqlstate"] == "22012"
    shown = pgbg_proc("show", handle, "--format", "json", dsn=dsn)
    rec = json.loads(shown.stdout)
    assert (rec["state"], rec["sqlstate"], rec["message"]) == ("failed", "22012", "division by zero")


def test_wait_timeout_exits_124_and_job_goes_on(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT pg_sleep(30)")
    res = cli("wait", "--timeout", "1s", handle, dsn=dsn)
    assert res.exit_code == 124, res
    assert _one_line(res.stderr) and handle in res.stderr
    job = _job(sql_admin, handle)
    assert job["state"] == "running" and _alive(sql_admin, job["worker_pid"])
    assert cli("cancel", handle, dsn=dsn).exit_code == 0


def test_wait_any_returns_when_the_first_ends(test_db, cli, sql_admin):
    dsn = test_db["app"]
    quick = _launch(cli, dsn, "SELECT pg_sleep(0.3)")
    slow = _launch(cli, dsn, "SELECT pg_sleep(30)")
    res = cli("wait", "--any", "--format", "json", "--timeout", "20s", quick, slow, dsn=dsn)
    assert res.exit_code == 0, res
    states = {r["handle"]: r["state"] for r in json.loads(res.stdout)}
    assert states[quick] == "succeeded" and states[slow] == "running"
    assert _state(sql_admin, slow) == "running"
    assert cli("cancel", slow, dsn=dsn).exit_code == 0


def test_wait_exits_1_when_any_failed(test_db, cli):
    dsn = test_db["app"]
    good = _launch(cli, dsn, "SELECT 1")
    bad = _launch(cli, dsn, "SELECT 1/0")
    res = cli("wait", "--format", "json", good, bad, dsn=dsn)
    assert res.exit_code == 1
    assert {r["handle"]: r["state"] for r in json.loads(res.stdout)} == {good: "succeeded", bad: "failed"}
    ok = cli("wait", good, dsn=dsn)
    assert ok.exit_code == 0


# --- cancel ------------------------------------------------------------------------------


def test_cancel_running_job_stops_the_worker(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT pg_sleep(60)")
    job = _running(sql_admin, handle)
    res = cli("cancel", handle, "--format", "json", dsn=dsn)
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)[0]["state"] == "canceled"
    after = _job(sql_admin, handle)
    assert after["state"] == "canceled" and after["cancel_by"] == "pgbg_app"
    assert not _alive(sql_admin, job["worker_pid"])


@pytest.mark.parametrize("signal", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_worker_stopped_from_outside_pgbg_says_so(test_db, cli, sql_admin, signal):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT pg_sleep(60)")
    job = _running(sql_admin, handle)
    sql_admin(f"SELECT {signal}(%s)", (job["worker_pid"],))
    after = retry(lambda: (r := _job(sql_admin, handle))["state"] not in ("queued", "starting", "running") and r,
                  "the job ended", 30)
    assert after["state"] == "failed" and after["sqlstate"] in ("57014", "57P01"), after
    assert after["reason"].startswith("stopped from outside pgbg: its worker was canceled or terminated"), after
    res = cli("show", handle, dsn=dsn)
    assert "stopped from outside pgbg" in res.stdout


def test_cancel_with_grace_stops_the_statement_first(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT pg_sleep(60)")
    job = _running(sql_admin, handle)
    res = cli("cancel", "--grace", "2s", "--format", "json", handle, dsn=dsn)
    assert res.exit_code == 0, res
    after = _job(sql_admin, handle)
    assert (after["state"], after["sqlstate"], after["cancel_terminated"]) == ("canceled", "57014", False)
    assert not _alive(sql_admin, job["worker_pid"])


def test_cancel_with_grace_of_a_worker_that_renamed_itself(test_db, cli, sql_admin):
    # the SQL changes application_name, so the worker no longer carries pgbg's label
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SET application_name = 'renamed'; SELECT pg_sleep(60)")
    job = _running(sql_admin, handle)
    retry(lambda: sql_admin("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (job["worker_pid"],))
          == [{"application_name": "renamed"}], "the worker renamed itself")
    res = cli("cancel", "--grace", "2s", "--format", "json", handle, dsn=dsn)
    assert res.exit_code == 0, res
    rec = json.loads(res.stdout)[0]
    assert rec["state"] == "canceled"
    after = _job(sql_admin, handle)
    assert after["cancel_grace_ms"] == 2000
    assert after["sqlstate"] == "57014"  # the SIGINT canceled the statement: no need to terminate
    assert not after["cancel_terminated"]
    assert not _alive(sql_admin, job["worker_pid"])


def test_cancel_grace_ends_with_terminate_when_the_statement_ignores_it(test_db, cli, sql_admin):
    dsn = test_db["app"]
    # Swallows the first cancel (the grace's SIGINT) only. Never write a test job that
    # swallows every cancel: pg_background 2.0 turns SIGTERM into a cancel too, so no safe
    # signal would stop it and it would outlive the test database.
    stubborn = ("DO $$ BEGIN BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN NULL; END; "
                "PERFORM pg_sleep(60); END $$")
    handle = _launch(cli, dsn, stubborn)
    job = _running(sql_admin, handle)
    res = cli("cancel", "--grace", "1s", "--format", "json", handle, dsn=dsn)
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)[0]["state"] == "canceled"
    after = _job(sql_admin, handle)
    assert after["cancel_terminated"]
    assert (after["finished_at"] - after["cancel_signalled_at"]).total_seconds() >= 0.9  # the grace was given
    assert not _alive(sql_admin, job["worker_pid"])


def test_cancel_by_label_only_matching_live_jobs(test_db, cli, sql_admin):
    dsn = test_db["app"]
    tag = uuid.uuid4().hex[:6]
    hits = [_launch(cli, dsn, "SELECT pg_sleep(60)", "-l", f"batch-{tag}-{i}") for i in range(2)]
    miss = _launch(cli, dsn, "SELECT pg_sleep(60)", "-l", f"other-{tag}")
    done = _launch(cli, dsn, "SELECT 1", "-l", f"batch-{tag}-done")
    assert cli("wait", done, dsn=dsn).exit_code == 0
    for h in hits + [miss]:
        _running(sql_admin, h)
    res = cli("cancel", "--label", f"batch-{tag}-*", "--format", "json", dsn=dsn)
    assert res.exit_code == 0, res
    assert sorted(r["handle"] for r in json.loads(res.stdout)) == sorted(hits)
    assert [_state(sql_admin, h) for h in hits] == ["canceled", "canceled"]
    assert _state(sql_admin, miss) == "running"
    assert _state(sql_admin, done) == "succeeded"
    none = cli("cancel", "--label", f"nomatch-{tag}-*", dsn=dsn)
    assert none.exit_code == 0 and "no live job" in none.stderr
    assert cli("cancel", miss, dsn=dsn).exit_code == 0


def test_cancel_of_no_match_prints_valid_json_and_csv(test_db, pgbg_proc):
    """Nothing to cancel is still a success, and a script reading -F json or csv gets an empty
    list or a header (as list prints them), not nothing, which no JSON parser reads."""
    import csv
    import io

    tag = uuid.uuid4().hex[:6]
    for args in (["--label", f"nomatch-{tag}-*"], ["--group", f"nomatch-{tag}"]):
        res = pgbg_proc("cancel", *args, "-F", "json", dsn=test_db["app"])
        assert res.returncode == 0 and "no live job" in res.stderr, res
        assert json.loads(res.stdout) == [], res
        res = pgbg_proc("cancel", *args, "-F", "csv", dsn=test_db["app"])
        assert res.returncode == 0 and "no live job" in res.stderr, res
        rows = list(csv.reader(io.StringIO(res.stdout)))
        assert len(rows) == 1 and "handle" in rows[0], res


def test_cancel_queued_job(test_db, cli, sql_admin, max_running):
    dsn = test_db["other"]
    max_running(1)
    first = _launch(cli, dsn, "SELECT pg_sleep(60)")
    _running(sql_admin, first)
    queued = _launch(cli, dsn, "SELECT pg_sleep(60)")
    assert _state(sql_admin, queued) == "queued"
    res = cli("cancel", "--format", "json", queued, dsn=dsn)
    assert res.exit_code == 0, res
    job = _job(sql_admin, queued)
    assert job["state"] == "canceled" and job["worker_pid"] is None and "while queued" in job["reason"]
    assert cli("cancel", first, dsn=dsn).exit_code == 0


def test_cancel_of_finished_job_is_harmless(test_db, cli, sql_admin):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT 42")
    assert cli("wait", handle, dsn=dsn).exit_code == 0
    before = _job(sql_admin, handle)
    res = cli("cancel", handle, "--format", "json", dsn=dsn)
    # nothing was canceled, and pgbg says so (it used to exit 0 in silence)
    assert res.exit_code == 1, res
    assert res.stderr == f"pgbg: job {handle} had already ended (succeeded): nothing to cancel\n"
    assert json.loads(res.stdout)[0]["state"] == "succeeded"
    after = _job(sql_admin, handle)
    assert after["state"] == "succeeded" and after["cancel_requested_at"] is None
    assert after["finished_at"] == before["finished_at"]


# --- handles -----------------------------------------------------------------------------


def test_wrong_cookie_reads_like_unknown_id(test_db, cli):
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT 1")
    job_id, cookie = handle.split(":")
    wrong = f"{job_id}:{int(cookie) ^ 1}"
    unknown = f"{int(job_id) + 10_000_000}:{cookie}"
    for command in (("show",), ("wait",), ("cancel",), ("detach",)):
        a = cli(*command, wrong, dsn=dsn)
        b = cli(*command, unknown, dsn=dsn)
        assert a.exit_code == b.exit_code == 2, (a, b)
        assert _one_line(a.stderr) and _one_line(b.stderr)
        assert a.stderr.replace(wrong, "H") == b.stderr.replace(unknown, "H")


@pytest.mark.parametrize("bad", ["abc", "12", "1:2:3", ":5", "5:", "1:x", "1:2 x", "1:99999999999999999999"])
def test_malformed_handles_exit_2(test_db, cli, bad):
    for command in ("show", "wait", "cancel", "detach"):
        res = cli(command, bad, dsn=test_db["app"])
        assert res.exit_code == 2, (command, bad, res)
        assert _one_line(res.stderr)


# --- detach, timeout ---------------------------------------------------------------------


def test_detach_lets_the_worker_commit(test_db, cli, sql_admin):
    dsn = test_db["app"]
    table = f"det_{uuid.uuid4().hex[:8]}"
    sql_admin(f"CREATE TABLE {table} (v text)")
    sql_admin(f"GRANT INSERT, SELECT ON {table} TO pgbg_app")
    handle = _launch(cli, dsn, f"SELECT pg_sleep(1.5); INSERT INTO {table} VALUES ('done')")
    job = _running(sql_admin, handle)
    res = cli("detach", handle, "--format", "json", dsn=dsn)
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)[0]["state"] == "detached"
    assert _alive(sql_admin, job["worker_pid"])  # detach does not stop the work
    retry(lambda: sql_admin(f"SELECT v FROM {table}") == [{"v": "done"}], "the detached INSERT commits")
    assert _state(sql_admin, handle) == "detached"
    # waiting on it says so once: "job ID:COOKIE detached: pgbg stopped tracking it; ..."
    res = cli("wait", handle, dsn=dsn)
    assert res.exit_code == 1, res
    assert f"pgbg: job {handle} detached: pgbg stopped tracking it" in res.stderr, res.stderr


def test_launch_timeout_ends_timed_out(test_db, cli, sql_admin):
    res = cli("launch", "--timeout", "1s", "--wait", "--format", "json", "SELECT pg_sleep(30)",
              dsn=test_db["app"])
    assert res.exit_code == 1, res
    rec = json.loads(res.stdout)
    assert rec["state"] == "timed_out"
    assert rec["timeout_ms"] == 1000
    assert "timeout" in rec["reason"]
    assert 900 <= rec["duration_ms"] < 20_000
    assert not _alive(sql_admin, rec["worker_pid"])


def test_cancel_blocked_create_index_concurrently(test_db, cli, sql_admin):
    import psycopg

    dsn = test_db["app"]
    table = f"cicb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, 1000) g")
    blocker = psycopg.connect(dsn)  # an open writing transaction: CIC waits for it
    try:
        blocker.execute(f"INSERT INTO {table} VALUES (0)")
        handle = _launch(cli, dsn, f"CREATE INDEX CONCURRENTLY {table}_idx ON {table} (id)")
        job = _running(sql_admin, handle)
        retry(lambda: sql_admin("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                (job["worker_pid"],)) == [{"wait_event_type": "Lock"}],
              "CIC waits behind the open transaction")
        res = cli("cancel", handle, "--format", "json", dsn=dsn)
        assert res.exit_code == 0, res
        assert json.loads(res.stdout)[0]["state"] == "canceled"
        assert not _alive(sql_admin, job["worker_pid"])
        assert not sql_admin("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_background' "
                             "AND application_name LIKE %s", (f"pg_background:pgbg:{job['id']}:%",))
    finally:
        blocker.rollback()
        blocker.close()


# --- awkward text ------------------------------------------------------------------------


def test_quotes_dollars_backslashes_newlines_unicode_round_trip(test_db, cli):
    dsn = test_db["app"]
    text = "it's \"q\" $$ $x$ \\n \\ back\nline2 ünï €"
    label = "lbl it's $$ \\ ünï € " + uuid.uuid4().hex[:6]
    literal = "E'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
    sql = f"SELECT {literal} AS v -- ünï € $$\n"
    res = cli("launch", "--result", "--format", "json", "-l", label, sql, dsn=dsn)
    assert res.exit_code == 0, res
    assert json.loads(res.stdout) == [{"v": text}]
    listed = json.loads(cli("list", "--format", "json", "--label", label, dsn=dsn).stdout)
    assert len(listed) == 1 and listed[0]["label"] == label
    handle = listed[0]["handle"]
    shown = json.loads(cli("show", handle, "--format", "json", dsn=dsn).stdout)
    assert shown["label"] == label and shown["sql"] == sql

    raise_sql = f"DO $body$ BEGIN RAISE EXCEPTION '%', {literal}; END $body$"
    res = cli("launch", "--wait", "--format", "json", "-l", label + "-err", raise_sql, dsn=dsn)
    assert res.exit_code == 1
    rec = json.loads(res.stdout)
    assert rec["message"] == text and rec["sql"] == raise_sql and rec["label"] == label + "-err"
    assert "ünï €" in res.stderr
    shown = json.loads(cli("show", rec["handle"], "--format", "json", dsn=dsn).stdout)
    assert shown["message"] == text


# --- many at once ------------------------------------------------------------------------


def test_twenty_launches_from_five_processes(test_db, pgbg_proc, sql_admin, cli):
    dsn = test_db["app"]
    table = f"conc_{uuid.uuid4().hex[:8]}"
    sql_admin(f"CREATE TABLE {table} (tag text)")
    sql_admin(f"GRANT INSERT, SELECT ON {table} TO pgbg_app")
    handles: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def launcher(n: int) -> None:
        for i in range(4):
            res = pgbg_proc("launch", f"INSERT INTO {table} VALUES ('p{n}-{i}')", dsn=dsn, timeout=60)
            with lock:
                if res.returncode == 0:
                    handles.append(res.stdout.strip())
                else:
                    errors.append(res.stderr)

    threads = [threading.Thread(target=launcher, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(handles) == 20 and len(set(handles)) == 20
    res = cli("wait", "--timeout", "60s", "--format", "json", *handles, dsn=dsn)
    assert res.exit_code == 0, res
    assert [r["state"] for r in json.loads(res.stdout)] == ["succeeded"] * 20
    rows = sql_admin(f"SELECT tag, count(*) AS n FROM {table} GROUP BY tag")
    assert len(rows) == 20 and all(r["n"] == 1 for r in rows)


def test_result_rows_read_again_from_another_process(test_db, cli, pgbg_proc):
    dsn = test_db["app"]
    label = _label("rows")
    res = cli("launch", "--result", "--format", "json", "-l", label,
              "SELECT g AS n, repeat('x', 3) AS n FROM generate_series(1, 2000) g ORDER BY g", dsn=dsn)
    assert res.exit_code == 0, res
    first = json.loads(res.stdout)
    assert len(first) == 2000 and first[0] == {"n": 1, "n_2": "xxx"}
    handle = json.loads(cli("list", "--label", label, "--format", "json", dsn=dsn).stdout)[0]["handle"]
    again = pgbg_proc("show", "--result", "--format", "json", handle, dsn=dsn)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first
    plain = _launch(cli, dsn, "SELECT 1")
    assert cli("wait", plain, dsn=dsn).exit_code == 0
    res = cli("show", "--result", plain, dsn=dsn)
    assert res.exit_code == 2 and "not launched with --result" in res.stderr


def test_ctrl_c_while_queued_cancels_it_before_it_runs(test_db, cli, sql_admin, max_running):
    import os
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    dsn = test_db["other"]
    max_running(1)
    first = _launch(cli, dsn, "SELECT pg_sleep(60)")
    _running(sql_admin, first)
    label = _label("q-int")
    env = dict(os.environ, PGBG_DSN=dsn, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-m", "pgbg_cli", "launch", "--wait", "--format", "json", "-l", label,
                             "SELECT 1"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=interruptible)
    try:
        retry(lambda: sql_admin("SELECT state FROM pgbg.job WHERE label = %s", (label,)) == [{"state": "queued"}],
              "the second job waits in the queue")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        cli("cancel", first, dsn=dsn)
    assert proc.returncode == 130, err  # interrupted (README, Exit codes), and the job canceled
    rec = json.loads(out)
    assert rec["state"] == "canceled" and "while queued" in rec["reason"] and rec["worker_pid"] is None


@pytest.mark.parametrize("level", ["NOTICE", "INFO"])
def test_a_flood_of_messages_does_not_hang_the_job(test_db, cli, level):
    # 20000 messages fill the worker's queue many times over (VACUUM VERBOSE on many tables
    # does the same with INFO); nobody reads them while the job runs.
    dsn = test_db["app"]
    sql = (f"DO $$ BEGIN FOR i IN 1..20000 LOOP RAISE {level} 'message % of a flood, padded to fill "
           "the queue sooner', i; END LOOP; END $$")
    handle = _launch(cli, dsn, sql)
    res = cli("wait", "--timeout", "30s", "--format", "json", handle, dsn=dsn)
    assert res.exit_code == 0, res
    rec = json.loads(res.stdout)[0]
    assert rec["state"] == "succeeded"


def test_rows_of_an_undescribable_statement_do_not_hang_the_job(test_db, cli, sql_admin):
    # Several statements cannot be described at launch, so pgbg cannot name the last one's
    # columns; its rows fill the queue. The job must still end, and say what happened.
    dsn = test_db["app"]
    handle = _launch(cli, dsn, "SELECT 1; SELECT g, repeat('x', 50) FROM generate_series(1, 100000) g")
    res = cli("wait", "--timeout", "30s", "--format", "json", handle, dsn=dsn)
    rec = json.loads(res.stdout)[0]
    if extnames.ext(dsn).outcome_info:
        assert res.exit_code == 1, res
        assert rec["state"] == "lost" and "rows" in rec["reason"]
    else:
        # 1.8: pgbg ran it with a statement without rows appended, so no rows were sent and
        # the command tags tell the outcome
        assert res.exit_code == 0, res
        row = _job(sql_admin, handle)
        assert (row["state"], row["command_tag"], row["row_count"]) == ("succeeded", "SELECT", 100000)
    retry(lambda: not _alive(sql_admin, _job(sql_admin, handle)["worker_pid"]), "the worker ends", timeout=30)


def test_a_chatty_job_does_not_stall_the_others(test_db, cli, sql_admin):
    # pgbg never shows a worker's notices; if they reached its queue, a full queue would
    # make the supervisor read it to the end of the job, and every other job would wait.
    dsn = test_db["app"]
    chatty = _launch(cli, dsn, "DO $$ BEGIN FOR i IN 1..5000 LOOP RAISE NOTICE 'chatter % padded out to fill "
                               "the queue', i; END LOOP; PERFORM pg_sleep(30); END $$")
    _running(sql_admin, chatty)
    try:
        other = _launch(cli, dsn, "SELECT 1")
        res = cli("wait", "--timeout", "10s", other, dsn=dsn)
        assert res.exit_code == 0, res
    finally:
        assert cli("cancel", "--no-wait", chatty, dsn=dsn).exit_code == 0
    res = cli("wait", "--timeout", "10s", "--format", "json", chatty, dsn=dsn)
    assert res.exit_code == 1 and json.loads(res.stdout)[0]["state"] == "canceled", res


def test_wait_outlives_a_dropped_connection(test_db, cli, sql_admin, pgbg_proc):
    import threading

    import psycopg

    dsn = test_db["app"]
    label = _label("drop")
    gate = uuid.uuid4().int % 2**31
    # the job runs until the test opens its gate (an advisory lock the test holds): the wait
    # is certain to be under way when its connection drops, however slow the machine is
    with psycopg.connect(test_db["admin"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (gate,))
        handle = _launch(cli, dsn, f"SELECT pg_advisory_lock({gate})", "-l", label)
        results: list[Any] = []
        waiter = threading.Thread(target=lambda: results.append(
            pgbg_proc("wait", "-F", "json", handle, dsn=dsn + " application_name=pgbg-drop-test", timeout=90)))
        waiter.start()
        try:
            pid = retry(lambda: sql_admin("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbg-drop-test' "
                                          "AND (query LIKE 'LISTEN%%' OR query LIKE '%%JOIN unnest%%')"),
                        "the client waits", 30)[0]["pid"]
            sql_admin("SELECT pg_terminate_backend(%s)", (pid,))  # as a network blip or an idle timeout would
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (gate,))
            waiter.join(90)
    res = results[0]
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["state"] == "succeeded"


def test_wait_that_cannot_reconnect_names_the_jobs_that_go_on(server_dsn, cli):
    from conftest import fresh_database, pgbg_gives_up

    with fresh_database(server_dsn, "pgbg_giveup") as db:
        handles = [_launch(cli, db["app"], "SELECT pg_sleep(60)") for _ in range(2)]
        res = pgbg_gives_up(db, "wait", *handles, looks="%JOIN unnest%")
    assert res.returncode == 3, res
    assert re.fullmatch(rf"pgbg: lost the connection \(.+\) and could not make it again within 1 s; the 2 jobs go "
                        rf"on: pgbg wait {' '.join(handles)} once the server answers\n", res.stderr), res.stderr


def test_a_waiter_is_woken_once_a_job_at_its_end(test_db, cli, sql_admin):
    """NOTIFY pgbg_jobs comes when a job has ended, not at each state it passes through: a
    waiter wakes for what it waits for, and a supervisor's commits carry no notification (a
    lock and a queue entry each) while a job starts."""
    import psycopg

    with psycopg.connect(test_db["app"], autocommit=True) as listener:
        listener.execute("LISTEN pgbg_jobs")
        handle = _launch(cli, test_db["app"], "SELECT 1")
        job_id = handle.split(":")[0]
        retry(lambda: _state(sql_admin, handle) == "succeeded", "the job succeeded", 30)
        events = sql_admin("SELECT to_state FROM pgbg.job_event WHERE job_id = %s ORDER BY id", (int(job_id),))
        assert [e["to_state"] for e in events] == ["queued", "starting", "running", "succeeded"]
        heard = [n.payload for n in listener.notifies(timeout=2, stop_after=10)]
    assert heard.count(job_id) == 1, heard


def test_jobs_commit_as_their_role_would(server_dsn):
    """The supervisor records a launch without waiting for its WAL to reach the disk
    (synchronous_commit off for that transaction), and sets that only after the worker has
    copied its settings: each job, three queued together, runs with its role's own value."""
    from conftest import fresh_database, sql_runner

    with fresh_database(server_dsn, "pgbg_sync") as dsns, sql_runner(dsns["admin"]) as admin:
        admin(f"ALTER ROLE pgbg_app IN DATABASE {dsns['name']} SET synchronous_commit = 'local'")
        with sql_runner(dsns["app"]) as app:  # a session begun after that: it has the role's setting
            ids = [r["id"] for r in app(
                "SELECT (pgbg.submit('SELECT pg_catalog.current_setting(''synchronous_commit'') AS v',"
                " p_want_result => true, p_result_types => '{25}', p_result_typmods => '{-1}',"
                " p_result_names => '{v}')).id FROM generate_series(1, 3)")]
            app("SELECT pgbg.ensure_supervisor()")
            ended = retry(lambda: (rows := app("SELECT id, state, result FROM pgbg.job WHERE id = ANY(%s) ORDER BY id",
                                               (ids,)))
                          and all(r["state"] not in ("queued", "starting", "running") for r in rows) and rows,
                          "the three jobs ended", 30)
    assert [(r["state"], json.dumps(r["result"])) for r in ended] == [("succeeded", '[{"c1": "local"}]')] * 3
