"""What people see, in a real 80x24 terminal (tmux), asserted on the captured screen: the
progress display of ``wait`` and ``launch --wait``, ``list --watch``, ``stats --watch`` and
``capacity``. Every screen must fit 80 columns and 24 lines and say what matters first.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import extnames
import pytest
from conftest import job_row, launch_handle, retry
from test_stats import insert_job, label_of
from test_watch import progress_sql

TMUX = "/usr/bin/tmux"
PGBG = str(Path(sys.executable).parent / "pgbg")


class Terminal:
    """pgbg in a detached tmux session of its own server: 80 columns, 24 lines. The command
    runs in a shell script that records its exit status, then stays (so the screen stays)."""

    def __init__(self, tmp_path: Path, args: list[str], dsn: str, *, width: int = 80, height: int = 24) -> None:
        self.socket = f"pgbg-test-{uuid.uuid4().hex[:8]}"
        self.exit_file = tmp_path / f"exit-status-{self.socket}"
        script = tmp_path / f"run-{self.socket}.sh"
        script.write_text(
            "unset COLUMNS LINES\n"  # the terminal's size, not the test run's
            f"export PGBG_DSN={shlex.quote(dsn)}\n"
            f"{shlex.join([PGBG, *args])}\n"
            f"echo $? > {shlex.quote(str(self.exit_file))}\n"
            "sleep 300\n",
            encoding="utf-8",
        )
        self.tmux("new-session", "-d", "-s", "pgbg", "-x", str(width), "-y", str(height),
                  f"bash {shlex.quote(str(script))}")

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "pgbg")

    def wait_for(self, test: str | Callable[[str], bool], what: str | None = None, timeout: float = 30) -> str:
        """The screen, once it shows ``test`` (a text, or a test of the whole screen)."""
        check = (lambda screen: test in screen) if isinstance(test, str) else test

        def shows() -> str | None:
            screen = self.screen()
            return screen if check(screen) else None

        try:
            return retry(shows, what or f"{test!r} on screen", timeout=timeout, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def flag(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", "pgbg", f"#{{{name}}}").strip()

    def exit_status(self) -> str | None:
        return self.exit_file.read_text().strip() if self.exit_file.exists() else None

    def wait_exit(self) -> str:
        return retry(self.exit_status, "pgbg to exit", timeout=30, interval=0.1)

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)


def fits(screen: str) -> list[str]:
    """The screen's lines, trailing blank ones dropped, after checking that it fits 80x24."""
    lines = screen.rstrip("\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    assert len(lines) <= 24, screen
    assert all(len(line) <= 80 for line in lines), screen
    return lines


def _clock_s(text: str) -> float:
    """Seconds of a clock as pgbg writes durations (``59s``, ``4m05s``, ``1.2s``)."""
    from pgbg_cli.durations import parse_ms

    return parse_ms(text) / 1000


def _ctrl_c_ends_cleanly(term: Terminal) -> None:
    assert term.flag("alternate_on") == "1"  # the view draws on the alternate screen
    term.tmux("send-keys", "-t", "pgbg", "C-c")
    assert term.wait_exit() == "0"
    assert term.flag("alternate_on") == "0"  # the terminal is back as it was
    assert term.flag("cursor_flag") == "1"  # with its cursor
    after = term.screen()
    assert "Traceback" not in after and "interrupted" not in after


# --- the progress display of wait / launch --wait --------------------------------------------

BAR_LINE = re.compile(r"^job (\d+) \[(#*)(-*)\] +(\d+)% +(\S+)  (.*)$")


def test_progress_bar_keeps_bar_percent_and_clock_at_80_columns(test_db, sql_admin, cli, tmp_path):
    """The bar, its percent and the time since the job started come first, whole, however
    long the job's message; the clock counts from the job's start, not from the wait's."""
    dsn = test_db["app"]
    message = "chunk 3 of 7: copying the orders of the last quarter into the archive table " * 2
    handle = launch_handle(cli, dsn, f"SELECT {extnames.fn(dsn, 'report_progress')}(42, '{message}'); "
                           "SELECT pg_sleep(120)", "-l", label_of("bar"))
    term = None
    try:
        # the job has run for a while before anyone waits for it
        retry(lambda: sql_admin("SELECT now() - started_at > interval '3 seconds' AS old FROM pgbg.job "
                                "WHERE id = %s", (int(handle.split(":")[0]),))[0]["old"],
              "the job to have run for 3 seconds", timeout=30, interval=0.2)
        term = Terminal(tmp_path, ["wait", handle], dsn)
        screen = term.wait_for(lambda s: "42%" in s, "the bar")
        lines = fits(screen)
        bar = [m for m in map(BAR_LINE.match, lines) if m]
        assert len(bar) == 1, screen
        job_id, filled, empty, pct, clock, rest = bar[0].groups()
        assert job_id == handle.split(":")[0] and pct == "42"
        assert len(filled) + len(empty) == 10 and len(filled) == 4
        assert _clock_s(clock) >= 3  # from the job's start
        assert re.match(r"\S+ left  chunk 3 of 7: copying", rest) and rest.endswith("…"), rest  # cut at the end
        # the clock goes on between refreshes
        later = term.wait_for(lambda s: any(m and _clock_s(m.group(5)) >= _clock_s(clock) + 2
                                            for m in map(BAR_LINE.match, s.splitlines())), "the clock to tick")
        fits(later)
        cli("cancel", "--no-wait", handle, dsn=dsn)
        assert term.wait_exit() == "1"  # canceled
        assert not any(BAR_LINE.match(line) for line in term.screen().splitlines())  # the bar is gone
    finally:
        if term:
            term.close()
        cli("cancel", "--no-wait", handle, dsn=dsn)


def test_waiting_on_many_jobs_shows_done_of_total_and_running_ones_first(test_db, cli, max_running, tmp_path):
    dsn = test_db["other"]
    label = label_of("many")
    max_running(2)
    failing = [launch_handle(cli, dsn, "SELECT 1/0", "-l", label) for _ in range(2)]
    sleeping = [launch_handle(cli, dsn, progress_sql(dsn), "-l", label) for _ in range(4)]
    term = None
    try:
        def settled() -> bool:
            states = [j["state"] for j in _jobs(cli, dsn, label)]
            return sorted(states) == ["failed", "failed", "queued", "queued", "running", "running"]

        retry(settled, "2 failed, 2 running, 2 queued", timeout=30, interval=0.2)
        term = Terminal(tmp_path, ["wait", *failing, *sleeping], dsn)
        screen = term.wait_for(lambda s: s.count("42%") == 2, "two running jobs")
        lines = fits(screen)
        assert lines[0] == "2/6 done (2 failed), 2 running, 2 queued", screen
        ids = [h.split(":")[0] for h in sleeping]
        assert [line.split()[1] for line in lines[1:5]] == ids, screen  # running (oldest first), then queued
        assert all("42%" in line for line in lines[1:3])
        assert all(re.match(r"job \d+ queued +\S+$", line) for line in lines[3:5]), screen
    finally:
        if term:
            term.close()
        cli("cancel", "--no-wait", "--label", label, dsn=dsn)


def _jobs(cli, dsn: str, label: str) -> list[dict[str, Any]]:
    import json

    return json.loads(cli("list", "-F", "json", "--label", label, dsn=dsn).stdout)


@pytest.mark.slow
def test_vacuum_shows_overall_progress_pace_and_time_left(test_db, sql_admin, cli, tmp_path):
    """A VACUUM's percent runs across its phases (it does not start again at each one), with
    its pace and the time left beside it."""
    import psycopg

    db = test_db["name"]
    table = f"screen_vacuum_{uuid.uuid4().hex[:8]}"
    sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db}" SET vacuum_cost_delay = \'2ms\'')
    sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db}" SET vacuum_cost_limit = 5')
    # a job inherits its supervisor's settings: a supervisor started before these would run the
    # VACUUM at full speed, done before the screen could show it
    sql_admin("SELECT pg_terminate_backend(pgbg.supervisor_pid('pgbg_other'))")
    retry(lambda: sql_admin("SELECT pgbg.supervisor_pid('pgbg_other') AS p")[0]["p"] is None,
          "pgbg_other's supervisor gone", 30)
    term = None
    try:
        with psycopg.connect(test_db["other"], autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table} WITH (autovacuum_enabled = off) AS "
                         "SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 300000) g")
            conn.execute(f"CREATE INDEX ON {table} (id)")
            with conn.transaction():
                conn.execute(f"DELETE FROM {table} WHERE id % 2 = 0")
                deleted_by = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0] % 2**32
        # The VACUUM removes the deleted rows (and so makes its later passes) only once no session
        # of this database holds a snapshot taken before the DELETE: a dozing supervisor's lasts
        # up to 1 s, an autovacuum ANALYZE's as long as it samples. Wait for that first.
        retry(lambda: not sql_admin(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND backend_xmin IS NOT NULL "
            "AND backend_xmin::text::bigint <= %s", (db, deleted_by)),
            "no snapshot of this database older than the DELETE", 30)
        term = Terminal(tmp_path, ["launch", "--wait", "-l", label_of("vacuum"), f"VACUUM {table}"],
                        test_db["other"])
        seen: list[tuple[str, int]] = []  # (phase, percent) as the screen showed them
        paced: list[str] = []  # lines with the pace and the time left

        def sample(screen: str) -> bool:
            for m in map(BAR_LINE.match, fits(screen)):
                if m and "VACUUM" in m.group(6):
                    seen.append((m.group(6).split("VACUUM ", 1)[1], int(m.group(4))))
                    if re.match(r"\S+ left  \d+(\.\d)? [kMG]?B/s  VACUUM ", m.group(6)):
                        paced.append(m.group(0))
            return any(p.startswith("vacuuming heap") for p, _ in seen) or term.exit_status() is not None

        term.wait_for(sample, "VACUUM to reach its second pass over the heap", timeout=120)
        scans = [pct for phase, pct in seen if phase.startswith("scanning heap")]
        later = [pct for phase, pct in seen if not phase.startswith("scanning heap")]
        assert scans and later and paced, f"{seen}; exit {term.exit_status()}; the screen:\n{term.screen()}"
        # two passes over the heap and one over the index: the scan alone is less than half
        assert max(scans) < 60 and min(later) >= max(scans) - 5, seen
        assert term.wait_exit() == "0"
    finally:
        if term:
            term.close()
        sql_admin(f'ALTER ROLE pgbg_other IN DATABASE "{db}" RESET ALL')
        sql_admin(f"DROP TABLE IF EXISTS {table}")


# --- the watch views ---------------------------------------------------------------------------


def test_list_watch_shows_running_then_queued_then_ended(test_db, sql_admin, cli, max_running, tmp_path):
    dsn = test_db["app"]
    label = label_of("lw")
    for i in range(30):  # more than 24 lines can hold
        insert_job(sql_admin, owner="pgbg_app", label=label, state="succeeded", run_ms=10 + i)
    for state in ("failed", "canceled", "timed_out", "lost", "detached"):
        insert_job(sql_admin, owner="pgbg_app", label=label, state=state, run_ms=5)
    max_running(2)
    running = [launch_handle(cli, dsn, progress_sql(dsn), "-l", label) for _ in range(2)]
    queued = [launch_handle(cli, dsn, "SELECT pg_sleep(120)", "-l", label) for _ in range(3)]
    term = None
    try:
        retry(lambda: all(job_row(sql_admin, h)["state"] == "running" for h in running), "2 running", 30, 0.2)
        term = Terminal(tmp_path, ["list", "--watch", "--interval", "0.3", "--label", label], dsn)
        # a frame drawn while the jobs change may be short: wait for a whole one
        screen = term.wait_for(lambda s: s.count("42%") == 2 and len(fits(s)) == 24 and "more" in fits(s)[-1],
                               "both running jobs' progress on a full screen")
        lines = fits(screen)
        assert re.fullmatch(r"\d\d:\d\d:\d\d  2 running, 3 queued · slots \d+/24", lines[0]), lines[0]
        assert lines[1] == "last 1h: 30 succeeded, 1 failed, 1 canceled, 1 timed_out, 1 lost, 1 detached"
        assert lines[2].split() == ["ID", "LABEL", "STATE", "ELAPSED", "PROGRESS"]
        rows = lines[4:]
        states = [line.split()[2] for line in rows[:-1]]
        assert states[:5] == ["running", "running", "queued", "queued", "queued"], screen
        assert [line.split()[0] for line in rows[:5]] == [h.split(":")[0] for h in running + queued]
        assert all("[####------]  42% " in line for line in rows[:2])
        # 2 head lines + table head and rule + 19 jobs + the "+N more" line = 24
        assert len(lines) == 24 and lines[-1].strip() == f"+{35 + 5 - 19} more"
        _ctrl_c_ends_cleanly(term)
    finally:
        if term:
            term.close()
        cli("cancel", "--no-wait", "--label", label, dsn=dsn)


def test_stats_watch_fits_and_keeps_labels_whole(test_db, sql_admin, cli, tmp_path):
    dsn = test_db["other"]
    base = label_of("sw")
    labels = [f"{base}-1", f"{base}-10", f"{base}-11"]
    for label in labels:
        insert_job(sql_admin, owner="pgbg_other", label=label, state="succeeded", run_ms=1500)
    handle = launch_handle(cli, dsn, progress_sql(dsn), "-l", labels[0])
    term = None
    try:
        # a short window keeps other tests' labels off the screen
        term = Terminal(tmp_path, ["stats", "--watch", "--interval", "0.3", "--by", "label", "--since", "1m"], dsn)
        job_id = handle.split(":")[0]
        # the first frames may come before the pace is known: wait for the one that has it
        screen = term.wait_for(lambda s: re.search(rf"(?m)^{job_id} .* 42% \S+ left", s) is not None,
                               "the job's progress with the time left")
        lines = fits(screen)
        assert re.match(r"\d\d:\d\d:\d\d · last 1m · slots \d+/24, \d+ pg_background · max_workers 16", lines[0])
        assert lines[1].split() == ["LABEL", "OK", "FAILED", "CANCELED", "T/OUT", "ACTIVE", "QUEUED", "AVG", "P95"]
        mine = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(base)}
        assert set(mine) == set(labels), screen  # whole: not three "sw-…-1"
        assert mine[labels[0]] == ["1", "0", "0", "0", "1", "0", "1.5s", "1.5s"]
        assert mine[labels[2]] == ["1", "0", "0", "0", "0", "0", "1.5s", "1.5s"]
        assert any(re.match(rf"{job_id} .* \[####------\]  42% \S+ left halfway", line) for line in lines), screen
        _ctrl_c_ends_cleanly(term)
    finally:
        if term:
            term.close()
        cli("cancel", "--no-wait", handle, dsn=dsn)


# --- capacity ----------------------------------------------------------------------------------


def test_capacity_plan_fits_one_screen_with_the_verdict_first(test_db, cli, tmp_path):
    term = Terminal(tmp_path, ["capacity", "--plan", "40"], test_db["app"])
    try:
        term.wait_exit()
        lines = fits(term.screen())
        assert lines[0].startswith("verdict        40 more jobs do not fit now: "), lines
        labels = [line[:15].strip() for line in lines if line[:15].strip()]
        assert labels == ["verdict", "to make room", "can start now", "worker slots", "role", "pgbg schema"]
        assert sum(1 for line in lines if line[15:].startswith("- ")) >= 2  # each change, marked
    finally:
        term.close()
    term = Terminal(tmp_path, ["capacity"], test_db["app"])
    try:
        term.wait_exit()
        lines = fits(term.screen())
        assert lines[0].startswith("can start now  ") and re.search(r"\d+ more jobs? \(limited by ", lines[0])
        assert len(lines) <= 8
    finally:
        term.close()
