"""The doorbell (pgbg_cli/schema/fn_25_doorbell.sql): an idle supervisor dozes until a session
of its role rings it, a ring reaches it only where it can take one, and a cancel or terminate
from anyone else still ends an idle supervisor. Real server, real pg_background; every wait
polls a state with a deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from conftest import fresh_database, retry, sql_runner

KEY = 1885823591  # the doorbell's advisory lock key ('pgbg'), fn_25_doorbell.sql
FENCE = 1885823592  # the fence's key, which a waker holds while it rings (fn_25_doorbell.sql)


@pytest.fixture
def bell(server_dsn: str) -> Iterator[dict[str, str]]:
    with fresh_database(server_dsn, "pgbg_bell") as dsns:
        with sql_runner(dsns["admin"]) as admin:
            admin("SELECT * FROM pgbg.set_setting('supervisor_idle_ms', '600000')")
        yield dsns


def _submit(run: Callable[..., list[dict[str, Any]]], sql: str = "SELECT 1") -> int:
    """As `pgbg launch` does: the job committed, then the supervisor made sure of (and rung)."""
    job = run("SELECT (pgbg.submit(%s)).id", (sql,))[0]["id"]
    run("SELECT pgbg.ensure_supervisor()")
    return job


def _state(admin: Callable[..., list[dict[str, Any]]], job: int) -> str:
    return admin("SELECT state FROM pgbg.job WHERE id = %s", (job,))[0]["state"]


def _dozing(admin: Callable[..., list[dict[str, Any]]], pid: int) -> bool:
    """The supervisor sits in its doze: in pg_sleep, holding the doorbell's key."""
    return bool(admin(
        "SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
        "WHERE a.pid = %s AND a.wait_event = 'PgSleep' AND l.locktype = 'advisory' "
        "AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 AND l.granted", (pid, KEY, pid)))


def _idle_supervisor(admin: Callable[..., list[dict[str, Any]]], app: Callable[..., list[dict[str, Any]]]) -> int:
    job = _submit(app)
    retry(lambda: _state(admin, job) == "succeeded", "the first job succeeded", timeout=30)
    pid = app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"]
    assert pid is not None
    retry(lambda: _dozing(admin, pid), "the supervisor dozes", timeout=30)
    return pid


def test_a_ring_wakes_a_dozing_supervisor_which_starts_the_job_and_stays(bell):
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        for _ in range(3):
            job = app("SELECT (pgbg.submit('SELECT 1')).id")[0]["id"]
            assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is True
            retry(lambda job=job: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)
            assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid  # woken, not replaced
            retry(lambda: _dozing(admin, pid), "the supervisor dozes again", timeout=30)
        assert admin("SELECT last_error FROM pgbg.supervisors()")[0]["last_error"] is None


def test_a_busy_supervisor_is_never_rung(bell):
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        _idle_supervisor(admin, app)
        job = _submit(app, "SELECT pg_sleep(60)")
        retry(lambda: _state(admin, job) == "running", "the long job runs", timeout=30)
        pid = app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"]
        retry(lambda: not _dozing(admin, pid), "the supervisor left its doze", timeout=30)
        assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is False
        app("SELECT pgbg.request_cancel(ARRAY[%s]::bigint[], ARRAY[cookie]) FROM pgbg.job WHERE id = %s", (job, job))
        retry(lambda: _state(admin, job) == "canceled", "the long job canceled", timeout=30)


def test_a_storm_of_rings_never_reaches_a_supervisor_at_work(bell):
    """Three sessions queue 25 short jobs each and ring; a fourth rings without pause. A ring
    that landed outside the doze would end the supervisor in the middle of a step: a job
    would then be lost or failed, and the supervisor would note an error."""
    errors: list[BaseException] = []
    jobs: list[int] = []
    done = threading.Event()

    def submitter(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with sql_runner(bell["app"]) as app:
                for _ in range(25):
                    jobs.append(_submit(app, f"SELECT pg_sleep({rnd.choice([0, 0, 0.005, 0.02])})"))
                    if rnd.random() < 0.5:
                        app("SELECT pgbg._wake_supervisor()")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def ringer() -> None:
        try:
            with sql_runner(bell["app"]) as app:
                while not done.is_set():
                    app("SELECT pgbg._wake_supervisor()")
        except BaseException as exc:
            errors.append(exc)

    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        _idle_supervisor(admin, app)
        threads = [threading.Thread(target=submitter, args=(i,)) for i in range(3)]
        bell_thread = threading.Thread(target=ringer)
        bell_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        try:
            assert not errors, errors
            assert len(jobs) == 75
            retry(lambda: not admin("SELECT 1 FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"),
                  "every job ended", timeout=120)
        finally:
            done.set()
            bell_thread.join(30)
        states = {r["state"]: r["n"] for r in admin("SELECT state, count(*) AS n FROM pgbg.job GROUP BY state")}
        assert states == {"succeeded": 76}, states
        # each job started once: one transition into running apiece
        assert admin("SELECT count(*) AS n FROM pgbg.job_event WHERE to_state = 'running'")[0]["n"] == 76
        assert [r["last_error"] for r in admin("SELECT last_error FROM pgbg.supervisors()")] in ([], [None])


@pytest.mark.parametrize("signal", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_cancel_or_terminate_still_ends_an_idle_supervisor(bell, signal):
    """pg_background 2.0 turns SIGTERM into a cancel, which the doze takes: with no job queued
    it must still end the supervisor (DROP DATABASE ... WITH (FORCE) and shutdowns rely on it)."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        assert admin(f"SELECT pg_catalog.{signal}(%s) AS ok", (pid,))[0]["ok"]
        retry(lambda: not admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)),
              "the supervisor ended", timeout=30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] is None
        job = _submit(app)  # and the next launch starts a new one
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)


def test_someone_holding_the_key_slows_the_supervisor_but_never_stops_it(bell):
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app, sql_runner(bell["other"]) as other:
        pid = _idle_supervisor(admin, app)

        def squat() -> bool:
            _submit(app)  # a job, and a ring: out of its doze for a pass, its shared lock let go
            return bool(other("SELECT pg_try_advisory_lock(%s, %s) AS got", (KEY, pid))[0]["got"])

        retry(squat, "another role holds the doorbell's key", timeout=30)
        for _ in range(3):
            job = _submit(app)
            assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is False  # no doze to ring
            retry(lambda job=job: _state(admin, job) == "succeeded", "the job succeeded on the timer", timeout=30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid
        assert not admin("SELECT 1 FROM pgbg.job WHERE state <> 'succeeded'")


def test_a_role_rings_only_its_own_supervisor(bell):
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app, sql_runner(bell["other"]) as other:
        _idle_supervisor(admin, app)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other("SELECT * FROM pgbg._doorbell('pgbg_app', pgbg._proof())")
        assert other("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is False  # it has none
        with sql_runner(bell["plain"]) as plain, pytest.raises(psycopg.errors.InsufficientPrivilege):
            plain("SELECT pgbg._wake_supervisor()")


@pytest.mark.parametrize("call", ["SELECT pgbg._supervisor_hold()", "SELECT pgbg._supervisor_doze_begin()",
                                  "SELECT pgbg._supervisor_doze_end()"])
def test_only_a_supervisor_takes_the_supervisors_side(bell, call):
    with sql_runner(bell["app"]) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        app(call)


def test_a_ring_from_an_open_transaction_keeps_no_snapshot_of_the_supervisor(bell):
    """A session of the role rings, then stays in its transaction (an application that
    launches inside its own). The supervisor must not wait that transaction out holding a
    transaction of its own: its snapshot would stall another role's CREATE INDEX
    CONCURRENTLY in this database for as long (the supervisor's transactions last 5 s at most)."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        admin("CREATE TABLE public.cic_t (x int)")
        with psycopg.connect(bell["app"], autocommit=False) as tx:
            tx.execute("SELECT pgbg.ensure_supervisor()")  # rings; the transaction stays open
            retry(lambda: not _dozing(admin, pid), "the ring reached the supervisor", timeout=30)
            admin("SET statement_timeout = '20s'")
            admin("CREATE INDEX CONCURRENTLY cic_t_x ON public.cic_t (x)")  # canceled after 20 s: failed
            admin("RESET statement_timeout")
            tx.rollback()


def _committed_since(admin: Callable[..., list[dict[str, Any]]], pid: int, since: Any) -> bool:
    """The supervisor has started a transaction (so committed one) since the moment `since`."""
    row = admin("SELECT a.xact_start > %s AS later FROM pg_stat_activity a WHERE a.pid = %s", (since, pid))[0]
    return bool(row["later"])


def test_a_held_bell_never_keeps_an_administrator_from_stopping_the_supervisor(bell):
    """A session of the role holds its supervisor's row (pgbg._doorbell()) and stays in its
    transaction. The supervisor dozes on (it commits between its sleeps without the row), and a
    terminate of it (a cancel on pg_background 2.0) still ends it."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        with psycopg.connect(bell["app"], autocommit=False) as tx:
            assert tx.execute("SELECT pid FROM pgbg._doorbell()").fetchone() == (pid,)
            since = admin("SELECT clock_timestamp() AS t")[0]["t"]
            retry(lambda: _dozing(admin, pid) and _committed_since(admin, pid, since),
                  "the supervisor dozes on, committing, while the row is held", timeout=30)
            assert admin("SELECT pg_terminate_backend(%s) AS ok", (pid,))[0]["ok"]
            retry(lambda: not admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)),
                  "the supervisor ended", timeout=30)
            tx.rollback()


def test_a_dozing_supervisor_commits_without_a_row_lock(bell):
    """Between two sleeps the supervisor commits inside its doze, fenced by the fence's key: it
    locks no row and takes no transaction id for it (that cost an idle supervisor 0.4% of a
    core). Its row's xmax, set by any row lock, stays as it was over many commits."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        xmax = admin("SELECT xmax::text AS x FROM pgbg.supervisor WHERE pid = %s", (pid,))[0]["x"]
        for _ in range(5):
            since = admin("SELECT clock_timestamp() AS t")[0]["t"]
            retry(lambda since=since: _dozing(admin, pid) and _committed_since(admin, pid, since),
                  "the dozing supervisor committed", timeout=30, interval=0.01)
        assert admin("SELECT xmax::text AS x FROM pgbg.supervisor WHERE pid = %s", (pid,))[0]["x"] == xmax
        job = _submit(app)  # and a ring still wakes it
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid


def test_another_role_holding_the_fence_keeps_rings_out_but_jobs_still_start(bell):
    """Anyone may take an advisory lock. Another role that holds the fence's key of the
    supervisor keeps every ring out (no waker may ring without it) and makes the supervisor
    leave its doze by the row lock at each commit: the supervisor then looks for work every
    poll_ms, and every job still starts."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app, sql_runner(bell["other"]) as other:
        pid = _idle_supervisor(admin, app)
        assert other("SELECT pg_try_advisory_lock(%s, %s) AS got", (FENCE, pid))[0]["got"]
        for _ in range(3):
            job = app("SELECT (pgbg.submit('SELECT 1')).id")[0]["id"]
            assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is False
            retry(lambda job=job: _state(admin, job) == "succeeded", "the job succeeded on the timer", timeout=30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid
        other("SELECT pg_advisory_unlock(%s, %s)", (FENCE, pid))
        retry(lambda: _dozing(admin, pid), "the supervisor dozes", timeout=30)
        job = app("SELECT (pgbg.submit('SELECT 1')).id")[0]["id"]
        assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is True  # the bell works again
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)
        assert not admin("SELECT 1 FROM pgbg.job WHERE state <> 'succeeded'")


def _holds_key(admin: Callable[..., list[dict[str, Any]]], pid: int) -> bool:
    """The supervisor holds the doorbell's key (it is inside its region), asleep or not."""
    return bool(admin(
        "SELECT 1 FROM pg_locks l WHERE l.pid = %s AND l.locktype = 'advisory' AND l.classid = %s "
        "AND l.objid = %s AND l.objsubid = 2 AND l.granted", (pid, KEY, pid)))


@pytest.mark.parametrize("lock", ["pg_advisory_lock", "pg_advisory_lock_shared"])
def test_another_role_holding_the_fence_makes_the_supervisor_poll_outside_its_region(bell, lock):
    """Another role that holds the fence's key, shared or not, keeps every ring out. The supervisor
    must see it and look for work every poll_ms outside its region, as when the doorbell's key is
    held: not doze on in 200 ms sleeps that no ring ends (a shared holder let it: every job then
    waited up to 200 ms), nor enter its region again at every poll_ms only to leave it by a row
    lock (a transaction id, WAL and a flush every poll_ms that any role could impose)."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app, sql_runner(bell["other"]) as other:
        pid = _idle_supervisor(admin, app)
        other(f"SELECT {lock}(%s, %s)", (FENCE, pid))
        retry(lambda: not _holds_key(admin, pid), "the supervisor left its region", timeout=30, interval=0.005)
        since = admin("SELECT clock_timestamp() AS t")[0]["t"]
        retry(lambda: _committed_since(admin, pid, since), "the supervisor committed", timeout=30, interval=0.005)
        xmax = admin("SELECT xmax::text AS x FROM pgbg.supervisor WHERE pid = %s", (pid,))[0]["x"]
        for _ in range(10):
            since = admin("SELECT clock_timestamp() AS t")[0]["t"]
            retry(lambda since=since: _committed_since(admin, pid, since), "the supervisor committed",
                  timeout=30, interval=0.005)
            assert not _holds_key(admin, pid), "the supervisor entered its region again"
        assert admin("SELECT xmax::text AS x FROM pgbg.supervisor WHERE pid = %s", (pid,))[0]["x"] == xmax
        job = app("SELECT (pgbg.submit('SELECT 1')).id")[0]["id"]
        assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is False
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded on the timer", timeout=30)
        other(f"SELECT {lock.replace('_lock', '_unlock')}(%s, %s)", (FENCE, pid))
        retry(lambda: _dozing(admin, pid), "the supervisor dozes again", timeout=30)
        job = app("SELECT (pgbg.submit('SELECT 1')).id")[0]["id"]
        assert app("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"] is True  # the bell works again
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid


def test_a_job_submitted_and_rung_in_one_transaction_starts_after_its_commit(bell):
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        _idle_supervisor(admin, app)
        with psycopg.connect(bell["app"], autocommit=False) as tx:
            job = tx.execute("SELECT (pgbg.submit('SELECT 1')).id").fetchone()[0]
            tx.execute("SELECT pgbg.ensure_supervisor()")
            tx.commit()
        retry(lambda: _state(admin, job) == "succeeded", "the job succeeded", timeout=30)


def test_rings_without_pause_never_end_a_supervisor_in_the_middle_of_its_doze(bell):
    """Sessions of the role ring without pause (each ring with no job queued makes the
    supervisor leave, so it starts, dozes and leaves over and over), while one launches a job at
    a time. A ring that reached the supervisor between the statements of its doze, outside the
    blocks that catch it, ended it with an error after the launch had seen it alive: that job
    then waited for the next launch, forever here."""
    errors: list[BaseException] = []
    done = threading.Event()

    def ringer() -> None:
        try:
            with sql_runner(bell["app"]) as app:
                while not done.is_set():
                    app("SELECT pgbg._wake_supervisor()")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        _idle_supervisor(admin, app)
        threads = [threading.Thread(target=ringer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(40):
                job = _submit(app)
                retry(lambda job=job: _state(admin, job) == "succeeded", "the job succeeded (no launch after it)",
                      timeout=15)
        finally:
            done.set()
            for t in threads:
                t.join(30)
        assert not errors, errors


def test_many_wakers_at_once_send_one_ring(bell):
    """Wakers that ring at the same moment send the doze one cancel between them: the first
    holds the row until the supervisor is out of its sleep, the others skip it."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        barrier = threading.Barrier(8)
        rung: list[bool] = []
        errors: list[BaseException] = []

        def wake() -> None:
            try:
                with sql_runner(bell["app"]) as mine:
                    mine("SELECT 1")
                    barrier.wait(30)
                    rung.append(mine("SELECT pgbg._wake_supervisor() AS rung")[0]["rung"])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=wake) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sorted(rung) == [False] * 7 + [True]
        # rung with no job queued, it leaves as a cancel would have it: cleanly
        retry(lambda: not admin("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)),
              "the supervisor left", timeout=30)
        job = _submit(app)
        retry(lambda: _state(admin, job) == "succeeded", "the next job succeeded", timeout=30)


def test_a_dozing_supervisor_keeps_no_old_snapshot(bell):
    """A VACUUM cannot remove rows deleted after the oldest snapshot of the database's sessions
    was taken. A dozing supervisor sleeps in short statements, so its snapshot stays newer than
    any commit of a moment ago (one long sleep held it for seconds: a VACUUM right after a
    DELETE then left every deleted row). On a quiet server a sleep lasts 1 s (the next test),
    so the commit that ends a quiet second may wait that long; the next ones 200 ms."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)

        def fresh(xid: int) -> bool:
            row = admin("SELECT a.backend_xmin::text::bigint AS x FROM pg_stat_activity a WHERE a.pid = %s",
                        (pid,))[0]
            return _dozing(admin, pid) and (row["x"] is None or row["x"] > xid)

        for i in range(6):
            xid = admin("SELECT pg_current_xact_id()::text::bigint AS x")[0]["x"]  # committed at once
            retry(lambda xid=xid: fresh(xid), "the dozing supervisor's snapshot is newer than a commit",
                  timeout=2.0 if i == 0 else 1.0, interval=0.01)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid


def _doze_gaps(admin: Callable[..., list[dict[str, Any]]], pid: int, seconds: float) -> list[float]:
    """The times between the dozing supervisor's transactions (one sleep each) seen over `seconds`,
    read from pg_stat_activity every 10 ms. Reads only: this session ends no transaction that
    has a transaction id."""
    starts: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = admin("SELECT a.xact_start FROM pg_stat_activity a WHERE a.pid = %s", (pid,))[0]
        if row["xact_start"] is not None and (not starts or row["xact_start"] != starts[-1]):
            starts.append(row["xact_start"])
        time.sleep(0.01)
    return [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]


def test_a_dozing_supervisor_sleeps_longer_once_no_transaction_ends_for_a_second(bell):
    """Once no transaction of the server has ended for a second, a doze's snapshot holds back no
    deleted row, and the supervisor sleeps 1 s a transaction instead of 200 ms (an idle
    supervisor's CPU). A server that ends a transaction every 300 ms (less often than each
    200 ms sleep) keeps it at 200 ms. Other sessions of the server may write meanwhile
    (autovacuum): each look polls a state with a deadline."""
    with sql_runner(bell["admin"]) as admin, sql_runner(bell["app"]) as app:
        pid = _idle_supervisor(admin, app)
        retry(lambda: any(g >= 0.9 for g in _doze_gaps(admin, pid, 2.5)),
              "a dozing supervisor slept 1 s on a quiet server", timeout=60, interval=0)
        stop = threading.Event()

        def write() -> None:  # a transaction id committed every 300 ms
            with psycopg.connect(bell["admin"], autocommit=True) as w:
                while not stop.is_set():
                    w.execute("SELECT pg_current_xact_id()")
                    time.sleep(0.3)

        def short_dozes() -> bool:  # the first gap may have begun as a long sleep
            gaps = _doze_gaps(admin, pid, 2.5)
            return len(gaps) >= 5 and max(gaps[1:]) < 0.6

        writer = threading.Thread(target=write)
        writer.start()
        try:
            retry(short_dozes, "a dozing supervisor slept 200 ms while transactions ended",
                  timeout=60, interval=0)
        finally:
            stop.set()
            writer.join(30)
        assert app("SELECT pgbg.supervisor_pid() AS pid")[0]["pid"] == pid
