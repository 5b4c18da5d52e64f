"""``pgbg capacity``: worker slots checked against the server's own views, and --plan.

Other test runs share the server, so figures that move (workers come and go) are
compared with the superuser's count taken just before and just after the command,
retried until the three agree.
"""

from __future__ import annotations

import csv
import io
import json
import re

import extnames
import pytest
from conftest import retry

from pgbg_cli import capacity as core

JOB_WORKERS = r"backend_type = 'pg_background' AND application_name ~ '^pg_background:pgbg:[0-9]+:'"
SUPERVISORS = r"backend_type = 'pg_background' AND application_name LIKE 'pg\_background:pgbg:supervisor:%'"
FOREIGN = (r"backend_type = 'pg_background' AND application_name NOT LIKE 'pg\_background:pgbg:%'")


def _capacity(cli, dsn: str, *args: str) -> dict:
    res = cli("capacity", "--format", "json", *args, dsn=dsn)
    assert res.exit_code == 0, res
    return json.loads(res.stdout)


def _agrees(cli, sql_admin, dsn: str, field: str, where: str, *args: str):
    """Retry until the superuser's count of ``where`` is the same before and after, and equals ``field``."""

    def attempt():
        count = f"SELECT count(*)::int AS n FROM pg_stat_activity WHERE {where}"
        before = sql_admin(count)[0]["n"]
        data = _capacity(cli, dsn, *args)
        after = sql_admin(count)[0]["n"]
        return data if before == after == data[field] else None

    return retry(attempt, f"{field} never matched pg_stat_activity", timeout=30, interval=0.2)


def test_settings_and_arithmetic_match_the_server(cli, test_db, sql_admin):
    data = _capacity(cli, test_db["admin"])
    settings = {r["name"]: int(r["setting"]) for r in sql_admin(
        "SELECT name, setting FROM pg_settings WHERE name IN ('max_worker_processes', 'max_parallel_workers')")}
    assert data["max_worker_processes"] == settings["max_worker_processes"]
    assert data["max_parallel_workers"] == settings["max_parallel_workers"]
    stats_fn = extnames.fn(test_db["admin"], "stats")
    assert data["pg_background_max_workers"] == sql_admin(f"SELECT max_workers FROM {stats_fn}()")[0][
        "max_workers"]
    parts = ("pgbg_job_workers", "pgbg_supervisors", "other_pg_background", "parallel_workers",
             "replication_workers", "other_workers")
    assert data["used_slots"] == sum(data[p] for p in parts)
    assert data["free_slots"] == data["max_worker_processes"] - data["used_slots"]
    assert data["schema"] == "installed" and data["hidden_processes"] == 0
    budget = {r["name"]: int(r["value"]) for r in sql_admin(
        "SELECT name, value FROM pgbg.settings WHERE name IN ('max_running_per_role', 'reserve_slots')")}
    assert data["max_running_per_role"] == budget["max_running_per_role"]
    assert data["reserve_slots"] == budget["reserve_slots"]
    slot_room = data["free_slots"] - data["reserve_slots"] - data["supervisor_slot"]
    role_room = min(data["max_running_per_role"], data["pg_background_max_workers"]) - data["role_running_jobs"]
    assert data["safe_to_launch"] == max(0, min(slot_room, role_room) - data["role_queued_jobs"])


def test_a_reserve_that_leaves_no_slot_for_a_job_is_said(cli, test_db, sql_admin):
    slots = int(sql_admin("SELECT current_setting('max_worker_processes')::int AS n")[0]["n"])
    try:
        # a supervisor's slot is one of them: whatever other workers hold, nothing could start
        res = cli("settings", "reserve_slots", str(slots - 1), dsn=test_db["boss"])
        assert res.exit_code == 0, res
        assert res.stderr.startswith(f"pgbg: warning: reserve_slots {slots - 1} leaves no slot for a job: of "
                                     f"max_worker_processes {slots}, other workers hold "), res.stderr
        assert "queued jobs wait until it is at most " in res.stderr and res.stderr.count("\n") == 1
        res = cli("settings", "reserve_slots", "0", dsn=test_db["boss"])
        assert res.exit_code == 0 and res.stderr == "", res
    finally:
        assert cli("settings", "reserve_slots", "2", dsn=test_db["boss"]).exit_code == 0


def test_used_slots_match_pg_stat_activity(cli, test_db, sql_admin):
    background = ("backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker', "
                  "'background writer', 'checkpointer', 'walwriter', 'walsender', 'walreceiver', 'startup', "
                  "'archiver', 'logger', 'walsummarizer', 'slotsync worker', 'io worker')")
    data = _agrees(cli, sql_admin, test_db["admin"], "used_slots", background)
    _agrees(cli, sql_admin, test_db["admin"], "parallel_workers", "backend_type = 'parallel worker'")
    assert data["replication_workers"] >= 1  # the logical replication launcher holds a slot


def test_plain_role_sees_every_slot_through_the_schema(cli, test_db, sql_admin):
    # Without pg_read_all_stats pgbg_app cannot see other roles' backend types; pgbg.worker_slots() can.
    assert not sql_admin("SELECT pg_has_role('pgbg_app', 'pg_read_all_stats', 'MEMBER') AS m")[0]["m"]
    data = _capacity(cli, test_db["app"])
    assert data["hidden_processes"] == 0
    assert data["replication_workers"] >= 1
    assert data["role"] == "pgbg_app" and data["jobs_seen"] == "own jobs"
    assert _capacity(cli, test_db["boss"])["jobs_seen"] == "all roles"


def test_running_job_counts_as_job_worker_and_its_supervisor(cli, test_db, sql_admin):
    launched = cli("launch", "--label", "capacity-probe", "SELECT pg_sleep(60)", dsn=test_db["app"])
    assert launched.exit_code == 0, launched
    handle = launched.stdout.strip()
    job_id = int(handle.split(":")[0])
    try:
        pid = retry(lambda: sql_admin("SELECT worker_pid FROM pgbg.job WHERE id = %s AND state = 'running'",
                                      (job_id,)), "the job never ran")[0]["worker_pid"]
        # the worker names itself once it has started (pg_background 2.0): wait for it
        retry(lambda: sql_admin("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,))[0]
              ["application_name"].startswith(f"pg_background:pgbg:{job_id}:"), "the worker carries its label", 20)
        data = _agrees(cli, sql_admin, test_db["app"], "pgbg_job_workers", JOB_WORKERS)
        assert data["pgbg_job_workers"] >= 1
        assert data["role_running_jobs"] >= 1 and data["running_jobs"] >= data["role_running_jobs"]
        assert data["supervisor_running"] is True and data["supervisor_slot"] == 0
        assert data["live_supervisors"] >= 1
        data = _agrees(cli, sql_admin, test_db["app"], "pgbg_supervisors", SUPERVISORS)
        assert data["pgbg_supervisors"] >= 1
        sup = sql_admin("SELECT pgbg.supervisor_pid('pgbg_app') AS pid")[0]["pid"]
        assert sql_admin("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (sup,))[0][
            "application_name"].startswith("pg_background:pgbg:supervisor:")
    finally:
        cli("cancel", handle, dsn=test_db["app"])


def test_foreign_pg_background_worker_counts_as_other(cli, test_db, sql_admin):
    import psycopg

    def fn(role: str) -> str:
        return extnames.fn(test_db["app"], role)

    with psycopg.connect(test_db["app"], autocommit=True) as conn:
        pid, cookie = conn.execute(f"SELECT * FROM {fn('launch')}('SELECT pg_sleep(60)')").fetchone()
        try:
            retry(lambda: sql_admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)), "no worker")
            data = _agrees(cli, sql_admin, test_db["app"], "other_pg_background", FOREIGN)
            assert data["other_pg_background"] >= 1
            assert data["pgbg_job_workers"] + data["pgbg_supervisors"] + data["other_pg_background"] >= 1
        finally:
            conn.execute(f"SELECT {fn('cancel')}(%s, %s, 0)", (pid, cookie))
            conn.execute(f"SELECT {fn('detach')}(%s, %s)", (pid, cookie))


def test_plan_beyond_max_worker_processes_names_the_restart(cli, test_db):
    mwp = _capacity(cli, test_db["app"])["max_worker_processes"]
    res = cli("capacity", "--plan", str(mwp + 1), "--format", "json", dsn=test_db["app"])
    assert res.exit_code == 0, res
    data = json.loads(res.stdout)
    assert data["fits"] is False and data["plan"] == mwp + 1
    assert "max_worker_processes" in data["verdict"] and "restart" in data["verdict"]
    assert data["changes"][0].startswith(f"raise max_worker_processes from {mwp} to ")
    assert any("max_running_per_role" in c for c in data["changes"])
    plain = cli("capacity", "--plan", str(mwp + 1), "--format", "plain", dsn=test_db["app"])
    assert plain.exit_code == 0
    lines = plain.stdout.splitlines()
    assert re.match(rf"verdict +{mwp + 1} more jobs do not fit now: ", lines[0])  # the answer first
    # a second look: other tests' workers may come and go between the two, so the target moves
    assert re.fullmatch(rf"to make room +- raise max_worker_processes from {mwp} to [0-9]+\b.*", lines[1]), lines
    assert len(lines) == 1 + len(data["changes"]) + 4  # then the summary: four lines
    verbose = cli("capacity", "--plan", str(mwp + 1), "--verbose", "--format", "plain", dsn=test_db["app"])
    assert re.search(r"^fits\s+no$", verbose.stdout, re.M)


def test_plan_of_one_agrees_with_safe_to_launch(cli, test_db):
    data = _capacity(cli, test_db["app"], "--plan", "1")
    assert data["fits"] is (data["safe_to_launch"] >= 1)
    assert data["verdict"].startswith("1 more job ")
    assert data["changes"] == [] if data["fits"] else data["changes"]


def test_plan_rejects_zero(cli, test_db):
    res = cli("capacity", "--plan", "0", dsn=test_db["app"])
    assert res.exit_code == 2


def test_works_without_the_schema(cli, bare_db):
    res = cli("capacity", "--format", "json", dsn=bare_db["app"])
    assert res.exit_code == 0, res
    data = json.loads(res.stdout)
    assert data["schema"] == "not installed"
    assert data["reserve_slots"] == 2 and data["max_running_per_role"] is None
    assert data["supervisor_slot"] == 0 and data["queued_jobs"] is None
    assert data["safe_to_launch"] == max(0, min(data["free_slots"] - 2, data["pg_background_max_workers"]))
    assert "schema is not installed" in res.stderr
    # Without pgbg.worker_slots() a plain role cannot see the type of the replication launcher.
    assert data["replication_workers"] == 0 and data["hidden_processes"] >= 1
    assert "may not see" in res.stderr
    admin = _capacity(cli, bare_db["admin"])
    assert admin["hidden_processes"] == 0 and admin["replication_workers"] >= 1
    human = cli("capacity", "--format", "plain", dsn=bare_db["app"])
    assert human.exit_code == 0 and "max_running_per_role" not in human.stdout
    assert re.search(r"^pgbg schema\s+not installed$", human.stdout, re.M)


@pytest.mark.parametrize("db", ["test_db", "bare_db"])
def test_role_without_pg_background_gets_exit_3(cli, request, db):
    res = cli("capacity", dsn=request.getfixturevalue(db)["plain"])
    assert res.exit_code == 3
    assert "may not use pg_background" in res.stderr and "GRANT pgbackground_role TO pgbg_plain" in res.stderr
    assert res.stdout == ""


def test_plain_and_csv_parse_to_the_json_values(cli, test_db):
    data = _capacity(cli, test_db["admin"], "--plan", "2")
    plain = cli("capacity", "--plan", "2", "--verbose", "--format", "plain", dsn=test_db["admin"])
    assert plain.exit_code == 0
    pairs = dict(m.groups() for m in re.finditer(r"^(\S.*?|  \S.*?) {2,}(\S.*)$", plain.stdout, re.M))
    assert pairs["max_worker_processes"] == str(data["max_worker_processes"])
    assert pairs["reserve_slots"] == str(data["reserve_slots"])
    assert pairs["fits"] == ("yes" if data["fits"] else "no")
    assert pairs["role"] == data["role"]
    res = cli("capacity", "--plan", "2", "--format", "csv", dsn=test_db["admin"])
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 1
    row = rows[0]
    assert row["max_worker_processes"] == str(data["max_worker_processes"])
    assert row["max_running_per_role"] == str(data["max_running_per_role"])
    assert row["fits"] in ("True", "False") and row["plan"] == "2"
    assert json.loads(row["changes"]) == data["changes"] or not data["fits"]
    assert set(data) >= {f.key for f in core.FIELDS + core.PLAN_FIELDS}


def test_subprocess_json(pgbg_proc, test_db):
    res = pgbg_proc("capacity", "--format", "json", dsn=test_db["app"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["schema"] == "installed"
    assert res.stderr == ""


# Pure arithmetic of the budget and of --plan.

def _cap(**kw) -> core.Capacity:
    base = dict(role="r", max_worker_processes=8, max_parallel_workers=8, used_slots=1, pgbg_job_workers=0,
                pgbg_supervisors=0, other_pg_background=0, parallel_workers=0, replication_workers=1,
                other_workers=0, hidden_processes=0, pg_background_max_workers=16, schema="installed",
                reserve_slots=2, max_running_per_role=8, queued_jobs=0, running_jobs=0, jobs_seen="own jobs",
                live_supervisors=0, supervisor_running=False)
    base.update(kw)
    return core.Capacity(**base)


def test_first_job_also_needs_a_slot_for_the_supervisor():
    cap = _cap()
    assert cap.supervisor_slot == 1 and cap.safe_to_launch == 8 - 1 - 2 - 1
    assert cap.limited_by == "worker slots"
    assert _cap(supervisor_running=True).safe_to_launch == 5
    assert _cap(max_running_per_role=None, schema="not installed").safe_to_launch == 5


def test_role_cap_and_queue_limit_the_budget():
    cap = _cap(max_worker_processes=64, role_running_jobs=6, role_queued_jobs=1, supervisor_running=True)
    assert cap.safe_to_launch == 1 and cap.limited_by == "max_running_per_role"
    p = core.plan(cap, 3)
    assert not p.fits
    assert p.changes == [
        "raise pgbg's max_running_per_role from 8 to 10 (as pgbg_admin: pgbg settings max_running_per_role 10)"
    ]
    assert "pgbg launch queues the other 2" in p.verdict


def test_session_limit_is_named():
    cap = _cap(max_worker_processes=64, max_running_per_role=40, pg_background_max_workers=16)
    assert cap.limited_by == "pg_background.max_workers"
    p = core.plan(cap, 20)
    assert not p.fits and len(p.changes) == 1
    assert p.changes[0].startswith("pg_background.max_workers (per session) is 16")


def test_plan_that_fits_and_one_that_needs_a_restart():
    assert core.plan(_cap(), 4).fits
    p = core.plan(_cap(), 10)
    assert not p.fits
    assert p.changes[0].startswith("raise max_worker_processes from 8 to 14: needs a server restart")
    assert any("max_running_per_role from 8 to 10" in c for c in p.changes)
    no_schema = core.plan(_cap(max_running_per_role=None, schema="not installed"), 10)
    assert no_schema.changes[0].startswith("raise max_worker_processes from 8 to 13")
    assert "queues" not in no_schema.verdict


def test_summary_says_what_can_start_and_who_holds_the_slots():
    cap = _cap(max_worker_processes=24, used_slots=11, pgbg_job_workers=9, pgbg_supervisors=1, role="app",
               role_running_jobs=3, role_queued_jobs=1, supervisor_running=True)
    rec = core.record(cap)
    assert rec["can_start"] == "4 more jobs (limited by max_running_per_role)"
    assert rec["slots_text"] == ("11 of 24 in use (9 pgbg jobs, 1 pgbg supervisor, 1 logical replication), "
                                 "2 kept in reserve, 13 free")
    assert rec["role_text"] == ("app: 3 running, 1 queued, at most 8 at once (max_running_per_role); "
                                "its supervisor runs")
    full = _cap(used_slots=8, max_worker_processes=8)
    assert core.record(full)["can_start"] == "no more jobs (limited by worker slots)"
    bare = core.record(_cap(max_running_per_role=None, schema="not installed"))
    assert bare["role_text"] == "r: at most 16 workers of one session (pg_background.max_workers); no pgbg budget"


def test_the_short_verdict_leaves_the_changes_to_their_list():
    p = core.plan(_cap(), 10)
    assert p.verdict.startswith(p.short.split(" (")[0])
    assert p.changes[0] in p.verdict and p.changes[0] not in p.short
    assert p.short.endswith("pgbg launch queues the other 6 until there is room")
