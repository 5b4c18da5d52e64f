"""Where a supervisor's time goes: its functions' time, from PostgreSQL's own counters.

N short jobs are queued for one role in a scratch database; the supervisor is started from a
session with ``track_functions = all`` (a worker inherits its launcher's settings), runs them,
and leaves once idle; then ``pg_stat_user_functions`` lists, per function, its calls, its total
time and its own time (without what it called). The supervisor's own time includes its last
``supervisor_idle_ms`` of dozing. A diagnostic, not a figure with a baseline: the ratios are in
``bench/bench_supervisor.py``.

Run with ``.venv/bin/python bench/profile_supervisor.py`` (``-n`` jobs, default 500; ``--top``
rows, default 30). It makes a scratch database on the sandbox server (``scripts/sandbox.sh dsn
admin``) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs queued at once (default 500)")
    parser.add_argument("--top", type=int, default=30, help="functions listed (default 30)")
    args = parser.parse_args()

    from pgbg_cli import db

    with scratch_database("pgbg_bench_prof") as scratch:
        conn = db.connect(scratch.dsn)
        conn.execute("SET track_functions = 'all'")
        started = time.monotonic()
        with conn.transaction():
            conn.execute("SELECT count(*) FROM generate_series(1, %s) g, "
                         "LATERAL pgbg.submit('SELECT 1 /* ' || g || ' */') s", (args.n,))
        conn.execute("SELECT pgbg.ensure_supervisor()")
        while conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                           ).fetchone()["n"]:
            time.sleep(0.005)
        took = time.monotonic() - started
        while conn.execute("SELECT pgbg.supervisor_pid() AS pid").fetchone()["pid"]:
            time.sleep(0.2)  # it reports its counters as it leaves
        time.sleep(1.0)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions "
            "ORDER BY self_time DESC LIMIT %s", (args.top,)).fetchall()
        conn.close()

    print(f"{args.n} jobs queued at once, started and recorded in {took:.2f} s ({args.n / took:.1f} jobs/s)")
    print(f"{'function':32} {'calls':>7} {'total ms':>10} {'self ms':>10} {'self ms/job':>12}")
    for r in rows:
        print(f"{r['funcname']:32} {r['calls']:7} {r['total_time']:10.1f} {r['self_time']:10.1f} "
              f"{r['self_time'] / args.n:12.3f}")


if __name__ == "__main__":
    main()
