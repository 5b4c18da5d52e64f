"""Supervisor throughput, the start delay of an isolated job, and an idle supervisor's CPU.
Figures only, each beside its baseline measured in the same run.

1. N short jobs queued at once for one role, started and finished by pgbg's supervisor,
   next to one session that runs the same jobs through pg_background directly, C at a time
   (C = max_running_per_role), waiting for each. pgbg's time runs from the commit of the
   transaction that queued them (the time that took is printed apart, and the ratio with it).
   Rounds alternate (direct, pgbg, pgbg, direct, ...); the ratio is of the summed times.
2. Jobs queued one at a time to a live, idle supervisor: queued -> started (the worker's own
   start time), p50 and p95, beside the time one direct pg_background_launch takes.
3. The supervisor kept alive with nothing to do: its time on a CPU over 5 s, from 2 s after
   step 2 (/proc/<pid>/schedstat, in nanoseconds), beside an idle client backend's and the
   server's own background writer's, WAL writer's (and pg_cron launcher's) over the same 5 s.
4. With ``--durable``: the server's WAL flushes per job in part 1, pgbg's beside the direct
   session's. ``--durable`` turns ``fsync`` and ``synchronous_commit`` on for the whole run
   (ALTER SYSTEM, reset at the end), as on a production server: the sandbox runs with both off,
   so that it does not time the disk. Use a sandbox instance of your own
   (``PGBG_SANDBOX_INSTANCE``) for it.

Run with ``.venv/bin/python bench/bench_supervisor.py`` (``-n`` jobs, default 500; ``--rounds``,
default 2; ``--job-ms MS``: part 1's jobs sleep that long instead of ``SELECT 1``). It makes a
scratch database on the sandbox server (``scripts/sandbox.sh dsn admin``), installs pgbg there,
and runs everything as the superuser.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import require_server, scratch_database, server_dsn  # noqa: E402

DIRECT = """
DO $$
DECLARE
    n integer := %(n)s;
    c integer := %(c)s;
    started integer := 0;
    hs pg_background_handle[] := '{}';
    h pg_background_handle;
    still pg_background_handle[];
BEGIN
    WHILE started < n OR pg_catalog.cardinality(hs) > 0 LOOP
        WHILE started < n AND pg_catalog.cardinality(hs) < c LOOP
            hs := hs || %(launch)s(%(sql)s);
            started := started + 1;
        END LOOP;
        still := '{}';
        FOREACH h IN ARRAY hs LOOP
            BEGIN
                IF %(wait)s(h.pid, h.cookie, 1) THEN
                    PERFORM %(detach)s(h.pid, h.cookie);
                ELSE
                    still := still || h;
                END IF;
            EXCEPTION WHEN OTHERS THEN
                NULL;  -- a handle pg_background 2.0.3 handed back unusable (its worker already ended)
            END;
        END LOOP;
        hs := still;
    END LOOP;
END $$
"""


def run_direct(dsn: str, n: int, cap: int, names: dict[str, str], job_sql: str) -> float:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as plain:
        started = time.monotonic()
        plain.execute(DIRECT % {"n": n, "c": cap, "sql": sql.Literal(job_sql).as_string(plain), **names})
        return time.monotonic() - started


def run_pgbg(conn: Any, n: int, job_sql: str) -> tuple[float, float, dict[str, int]]:
    """Seconds from the queue's commit until every job has ended, seconds the queueing took, states."""
    conn.execute("DELETE FROM pgbg.job WHERE state NOT IN ('queued', 'starting', 'running')")
    queueing = time.monotonic()
    with conn.transaction():
        conn.execute("SELECT count(*) FROM generate_series(1, %s) g, "
                     "LATERAL pgbg.submit(%s || ' /* ' || g || ' */') s", (n, job_sql))
    started = time.monotonic()  # the jobs are queued: the supervisor's part starts here
    conn.execute("SELECT pgbg.ensure_supervisor()")
    while conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                       ).fetchone()["n"]:
        time.sleep(0.005)
    took = time.monotonic() - started
    states = {r["state"]: r["n"] for r in conn.execute("SELECT state, count(*) AS n FROM pgbg.job GROUP BY state")}
    return took, started - queueing, states


def cpu_ns(pid: int) -> int:
    """Time a process has spent on a CPU, in nanoseconds (/proc/<pid>/schedstat, its first field):
    exact, where utime + stime of /proc/<pid>/stat count whole clock ticks (10 ms)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def wal_flushes(conn: Any) -> int:
    """The WAL flushes every process of the server has made so far: pg_stat_io's (PostgreSQL 18
    counts WAL there), pg_stat_wal's wal_sync before (PostgreSQL 15 has no pg_stat_io). Backends
    count theirs as they go idle or exit."""
    if conn.info.server_version >= 180000:
        query = "SELECT coalesce(sum(fsyncs), 0)::bigint AS n FROM pg_stat_io WHERE object = 'wal'"
    else:
        query = "SELECT wal_sync AS n FROM pg_stat_wal"
    return int(conn.execute(query).fetchone()["n"])


def durable_server(on: bool) -> None:
    """fsync and synchronous_commit on for the server (ALTER SYSTEM), or back to its files."""
    import psycopg

    dsn = server_dsn()
    require_server(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin:
        for name in ("fsync", "synchronous_commit"):
            admin.execute(f"ALTER SYSTEM SET {name} = on" if on else f"ALTER SYSTEM RESET {name}")
        admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # every process reads its configuration again


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs queued at once (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    parser.add_argument("--isolated", type=int, default=40, help="jobs queued one at a time (default 40)")
    parser.add_argument("--job-ms", type=int, default=0,
                        help="part 1's jobs run pg_sleep for this long (default 0: SELECT 1)")
    parser.add_argument("--durable", action="store_true",
                        help="fsync and synchronous_commit on for the run, and WAL flushes per job (part 4)")
    args = parser.parse_args()
    if args.durable:
        durable_server(True)
    try:
        run(args)
    finally:
        if args.durable:
            durable_server(False)


def run(args: argparse.Namespace) -> None:

    import psycopg

    from pgbg_cli import db

    direct_s: list[float] = []
    pgbg_s: list[float] = []
    queue_s: list[float] = []
    states: dict[str, int] = {}
    flushes = {"direct": 0, "pgbg": 0}
    job_sql = f"SELECT pg_catalog.pg_sleep({args.job_ms / 1000})" if args.job_ms > 0 else "SELECT 1"
    with scratch_database("pgbg_bench_sup") as scratch:
        dsn, ext = scratch.dsn, scratch.ext
        conn = db.connect(dsn)
        names = {role: ext.fn(role) for role in ("launch", "wait", "detach")}
        cap = int(conn.execute("SELECT pgbg.setting('max_running_per_role', '8') AS v").fetchone()["v"])

        # 1. throughput, alternated: direct, pgbg, pgbg, direct, ...
        for r in range(args.rounds):
            order = ("direct", "pgbg") if r % 2 == 0 else ("pgbg", "direct")
            for which in order:
                print(f"  round {r + 1}/{args.rounds}: {which}", file=sys.stderr, flush=True)
                flushed = wal_flushes(conn) if args.durable else 0
                if which == "direct":
                    direct_s.append(run_direct(dsn, args.n, cap, names, job_sql))
                else:
                    took, queued, got = run_pgbg(conn, args.n, job_sql)
                    pgbg_s.append(took)
                    queue_s.append(queued)
                    for state, count in got.items():
                        states[state] = states.get(state, 0) + count
                if args.durable:
                    # a supervisor counts its flushes when it leaves: wait for that
                    deadline = time.monotonic() + 30
                    while (conn.execute("SELECT pgbg.supervisor_pid() AS pid").fetchone()["pid"]
                           and time.monotonic() < deadline):
                        time.sleep(0.05)
                    flushes[which] += wal_flushes(conn) - flushed

        # 2. isolated jobs, a live supervisor kept alive
        conn.execute("SELECT * FROM pgbg.set_setting('supervisor_idle_ms', '600000')")
        conn.execute("DELETE FROM pgbg.job WHERE state NOT IN ('queued', 'starting', 'running')")
        conn.execute("SELECT pgbg.ensure_supervisor()")
        time.sleep(1.5)  # the supervisor reads its settings once a second
        launch_ms: list[float] = []
        with psycopg.connect(dsn, autocommit=True) as plain:
            for i in range(args.isolated):
                print(f"  isolated job {i + 1}/{args.isolated}", file=sys.stderr, flush=True)
                time.sleep(0.02 + random.random() * 0.08)
                job = conn.execute("SELECT (pgbg.submit('SELECT 1')).id").fetchone()["id"]
                # as pgbg launch does once the job is committed: the supervisor of the rounds
                # above may have left before it read the longer supervisor_idle_ms
                conn.execute("SELECT pgbg.ensure_supervisor()")
                while conn.execute("SELECT state FROM pgbg.job WHERE id = %s", (job,)).fetchone()["state"] in (
                        "queued", "starting", "running"):
                    time.sleep(0.005)
                time.sleep(0.02 + random.random() * 0.08)
                t0 = time.monotonic()
                plain.execute(f"SELECT {names['detach']}(h.pid, h.cookie) FROM {names['launch']}('SELECT 1') h")
                launch_ms.append((time.monotonic() - t0) * 1000)
        isolated = [float(r["ms"]) for r in conn.execute(
            "SELECT extract(epoch FROM started_at - queued_at) * 1000 AS ms FROM pgbg.job "
            "WHERE started_at IS NOT NULL AND sql = 'SELECT 1'").fetchall()]

        # 3. the idle supervisor's CPU, beside an idle client backend's
        pid = conn.execute("SELECT pgbg.supervisor_pid() AS pid").fetchone()["pid"]
        idle_client = psycopg.connect(dsn, autocommit=True)
        client_pid = idle_client.execute("SELECT pg_backend_pid()").fetchone()[0]
        # and the server's own processes that wake on a timer while idle (pg_cron's launcher
        # when it is there)
        own = conn.execute(
            "SELECT backend_type AS kind, pid FROM pg_stat_activity "
            "WHERE backend_type IN ('background writer', 'walwriter', 'pg_cron launcher') "
            "ORDER BY backend_type").fetchall()
        time.sleep(2)  # idle: step 2 ended, and the server has been quiet for a second (the doze sleeps 1 s)
        before = cpu_ns(pid), cpu_ns(client_pid)
        own_before = {r["kind"]: cpu_ns(r["pid"]) for r in own}
        time.sleep(5)
        after = cpu_ns(pid), cpu_ns(client_pid)
        own_used = {r["kind"]: (cpu_ns(r["pid"]) - own_before[r["kind"]]) / 1e6 for r in own}
        alive = conn.execute("SELECT pgbg.supervisor_pid() AS pid").fetchone()["pid"] == pid
        idle_client.close()
        conn.close()

    total = args.n * args.rounds
    print(f"1. {args.n} jobs of {job_sql} queued at once, {cap} at a time, {args.rounds} alternated rounds")
    print(f"  direct (one session, pg_background_launch/wait/detach): {total / sum(direct_s):7.1f} jobs/s")
    print(f"  pgbg supervisor (from the queue's commit to the last end): {total / sum(pgbg_s):7.1f} jobs/s")
    print(f"  ratio pgbg / direct: {sum(direct_s) / sum(pgbg_s):.2f}   (target >= 0.90)")
    print(f"  (queueing them took {sum(queue_s) / args.rounds * 1000:.0f} ms a round, one transaction, not counted; "
          f"counted, the ratio is {sum(direct_s) / (sum(pgbg_s) + sum(queue_s)):.2f})")
    print(f"  states: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}")
    if isolated:
        print(f"2. {len(isolated)} jobs queued one at a time to a live, idle supervisor")
        print(f"  queued -> started: p50 {statistics.median(isolated):.1f} ms, p95 {pct(isolated, 0.95):.1f} ms"
              "   (target p95 < 30 ms)")
        print(f"  baseline, one direct pg_background_launch: p50 {statistics.median(launch_ms):.1f} ms, "
              f"p95 {pct(launch_ms, 0.95):.1f} ms")
    used = (after[0] - before[0]) / 1e6
    print("3. idle supervisor kept alive, time on a CPU over 5 s (/proc/<pid>/schedstat)")
    print(f"  supervisor: {used:.1f} ms ({used / 50:.2f}% of a core){'' if alive else ' (it left meanwhile!)'}")
    print(f"  baseline, an idle client backend: {(after[1] - before[1]) / 1e6:.1f} ms")
    for kind, ms in own_used.items():
        print(f"  baseline, the server's own {kind}: {ms:.1f} ms")
    if args.durable:
        print("4. fsync and synchronous_commit on: WAL flushes per job of part 1, every process of the server")
        print(f"  pgbg: {flushes['pgbg'] / total:.2f}   direct: {flushes['direct'] / total:.2f}")


if __name__ == "__main__":
    main()
