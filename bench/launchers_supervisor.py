"""Would a second launching session per role raise the supervisor's throughput? A diagnostic.

pg_background's launch blocks its session until the new worker has attached, so one
supervisor cannot overlap its bookkeeping with its launches. This script measures what a
second session would give, on this machine, beside the same change made to the direct
baseline, rounds alternated, N ``SELECT 1`` jobs each time, C at a time in all
(C = max_running_per_role, 8):

- direct, one session launching C at a time (``bench_supervisor.py``'s baseline);
- direct, two sessions at once, each launching C/2 at a time, N/2 jobs each;
- pgbg, one supervisor (as shipped);
- pgbg, two supervisors of the one role, sharing the queue and the limit of C.

pgbg allows one supervisor per role. For the last figure the scratch database's copy of pgbg
lets a second one register (its unique index dropped) and serialises the claims of the two
(an advisory lock taken first in ``pgbg._claim_batch()``), so that they never run more than C
jobs between them. Nothing else changes; the shipped schema is not touched.

Beside each rate: the whole machine's CPU time per job (/proc/stat, every process, the
poller of the pgbg rounds included) and how busy its CPUs were. When they are near 100% busy,
a second session has nothing left to overlap with, and only less work per job raises a rate.

Run with ``.venv/bin/python bench/launchers_supervisor.py`` (``-n`` jobs, default 500;
``--rounds``, default 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_supervisor import run_direct  # noqa: E402
from bench.scratch import routine_text, scratch_database  # noqa: E402

CAP = 8
CONFIGS = ("direct, 1 session", "direct, 2 sessions", "pgbg, 1 supervisor", "pgbg, 2 supervisors")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def second_supervisor_allowed() -> list[str]:
    """The statements that let two supervisors of one role register and claim in turn."""
    register = routine_text("fn_20_supervisor.sql", "CREATE OR REPLACE FUNCTION pgbg._supervisor_register")
    register = _replace(register, "    ON CONFLICT (role) WHERE NOT legacy DO NOTHING;", "    ;")
    claim = _replace(routine_text("fn_30_record.sql", "CREATE OR REPLACE FUNCTION pgbg._claim_batch"),
                     "    IF me.legacy THEN\n        RETURN ids;",
                     "    PERFORM pg_catalog.pg_advisory_xact_lock(7391, 1);\n"
                     "    IF me.legacy THEN\n        RETURN ids;")
    return ["DROP INDEX pgbg.supervisor_one_per_role", register, claim]


def direct_two(dsn: str, n: int, names: dict[str, str]) -> float:
    """Two direct sessions at once, n/2 jobs and CAP/2 at a time each: seconds until both end."""
    took: list[float] = []
    threads = [threading.Thread(target=lambda: took.append(run_direct(dsn, n // 2, CAP // 2, names, "SELECT 1")))
               for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(took) == 2
    return time.monotonic() - started


def pgbg_run(conn: Any, n: int, supervisors: int) -> tuple[float, int]:
    """Seconds from the queue's commit until every job ended; the most jobs seen running at once."""
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) AS n FROM pgbg.supervisors()").fetchone()["n"]:
        assert time.monotonic() < deadline, "a supervisor of the last round did not leave within 30 s"
        time.sleep(0.05)
    conn.execute("DELETE FROM pgbg.job WHERE state NOT IN ('queued', 'starting', 'running')")
    with conn.transaction():
        conn.execute("SELECT count(*) FROM generate_series(1, %s) g, "
                     "LATERAL pgbg.submit('SELECT 1 /* ' || g || ' */') s", (n,))
    started = time.monotonic()
    conn.execute("SELECT pgbg.ensure_supervisor()")
    if supervisors == 2:
        # as ensure_supervisor() does, from a session of the role itself
        conn.execute("SELECT pgbg._bg_detach(h.pid, h.cookie) "
                     "FROM pgbg._bg_launch('CALL pgbg.supervise()', 0, 'pgbg:supervisor', NULL) h")
    most = 0
    while True:
        row = conn.execute("SELECT count(*) FILTER (WHERE state IN ('queued', 'starting', 'running')) AS active, "
                           "count(*) FILTER (WHERE state IN ('starting', 'running')) AS running FROM pgbg.job"
                           ).fetchone()
        most = max(most, row["running"])
        if not row["active"]:
            break
        time.sleep(0.005)
    took = time.monotonic() - started
    bad = conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state <> 'succeeded'").fetchone()["n"]
    assert bad == 0, f"{bad} jobs did not succeed"
    return took, most


def busy_ms() -> float:
    """CPU time every process of this machine has spent so far, in ms (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = sum(fields) - fields[3] - fields[4]
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs a round (default 500)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    args = parser.parse_args()

    from pgbg_cli import db

    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    most: dict[str, int] = {}
    cpu: dict[str, float] = {c: 0.0 for c in CONFIGS}
    with scratch_database("pgbg_bench_launchers") as scratch:
        conn = db.connect(scratch.dsn)
        names = {role: scratch.ext.fn(role) for role in ("launch", "wait", "detach")}
        for statement in second_supervisor_allowed():
            conn.execute(statement)
        conn.execute("SELECT * FROM pgbg.set_setting('max_running_per_role', %s)", (str(CAP),))
        conn.execute("SELECT * FROM pgbg.set_setting('supervisor_idle_ms', '300')")
        for r in range(args.rounds):
            order = CONFIGS if r % 2 == 0 else tuple(reversed(CONFIGS))
            for config in order:
                print(f"  round {r + 1}/{args.rounds}: {config}", file=sys.stderr, flush=True)
                before = busy_ms()
                if config == "direct, 1 session":
                    times[config].append(run_direct(scratch.dsn, args.n, CAP, names, "SELECT 1"))
                elif config == "direct, 2 sessions":
                    times[config].append(direct_two(scratch.dsn, args.n, names))
                else:
                    took, seen = pgbg_run(conn, args.n, int(config.split(", ")[1][0]))
                    times[config].append(took)
                    most[config] = max(most.get(config, 0), seen)
                cpu[config] += busy_ms() - before
        conn.close()

    rate = {c: args.n * len(times[c]) / sum(times[c]) for c in CONFIGS}
    print(f"{args.n} jobs of SELECT 1, {CAP} at a time in all, {args.rounds} alternated rounds, {os.cpu_count()} CPUs")
    for c in CONFIGS:
        seen = f"   (at most {most[c]} running at once)" if c in most else ""
        used = cpu[c] / sum(times[c]) / 1000 / os.cpu_count()
        print(f"  {c + ':':22} {rate[c]:6.1f} jobs/s, the machine's CPU {cpu[c] / (args.n * len(times[c])):5.2f} ms"
              f" a job, {used:4.0%} busy{seen}")
    print(f"  a second direct session gives    {rate['direct, 2 sessions'] / rate['direct, 1 session']:.2f}x")
    print(f"  a second supervisor gives        {rate['pgbg, 2 supervisors'] / rate['pgbg, 1 supervisor']:.2f}x")
    print(f"  pgbg / direct, one session each: {rate['pgbg, 1 supervisor'] / rate['direct, 1 session']:.2f}")
    print(f"  pgbg / direct, two each:         {rate['pgbg, 2 supervisors'] / rate['direct, 2 sessions']:.2f}")
    print(f"  pgbg with two / direct with one: {rate['pgbg, 2 supervisors'] / rate['direct, 1 session']:.2f}"
          "   (target >= 0.90)")


if __name__ == "__main__":
    main()
