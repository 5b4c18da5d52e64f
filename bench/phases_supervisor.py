"""Where a supervisor's wall-clock time goes, phase by phase, over N jobs queued at once.

A diagnostic beside ``bench/profile_supervisor.py`` (which reads the functions' own times):
in a scratch database, ``pgbg.supervise()`` and ``pgbg._launch_claimed()`` are replaced by
copies of this checkout's code with ``clock_timestamp()`` taken around each phase of a pass
(tend the running jobs, claim, launch: pg_background's own launch and recording it, the
commits, the wait between passes). The supervisor writes its totals to a table as it leaves.
Figures per job, in milliseconds; pg_background's launch beside the rest of pgbg's work is the
budget a throughput target leaves.

Run with ``.venv/bin/python bench/phases_supervisor.py`` (``-n`` jobs, default 500). The copies
are made from the SQL files by text replacement: a change of the statements they anchor on
stops this script with an AssertionError, never with wrong figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import routine_text, scratch_database  # noqa: E402

PHASES = ("tend", "commit_tend", "claim", "launch", "commit_launch", "wait")


def _timed(text: str, statement: str, phase: str) -> str:
    assert statement in text, statement
    return text.replace(statement, f"t0 := clock_timestamp(); {statement} "
                                   f"acc_{phase} := acc_{phase} + (clock_timestamp() - t0);", 1)


def instrumented_supervise() -> str:
    proc = routine_text("fn_20_supervisor.sql", "CREATE OR REPLACE PROCEDURE pgbg.supervise()")
    proc = _timed(proc, "active := pgbg._tend_all();", "tend")
    proc = _timed(proc, "claimed_ids := pgbg._claim_batch();", "claim")
    proc = _timed(proc, "launched := pgbg._launch_claimed(claimed);", "launch")
    proc = _timed(proc, "PERFORM pgbg._bg_wait(w.worker_pid, w.worker_cookie, poll_ms);", "wait")
    for before, phase in (("            active := 1;\n        END;\n        ", "commit_tend"),
                          ("                launched := false;\n            END;\n            ", "commit_launch")):
        anchor = before + "COMMIT;"
        assert anchor in proc, anchor
        proc = proc.replace(anchor, before + f"t0 := clock_timestamp(); COMMIT; "
                                             f"acc_{phase} := acc_{phase} + (clock_timestamp() - t0);", 1)
    declare = "DECLARE\n    t0 timestamptz;\n    t_start timestamptz := clock_timestamp();\n" + "".join(
        f"    acc_{p} interval := '0';\n" for p in PHASES)
    proc = proc.replace("DECLARE\n", declare, 1)
    leaving = ("            PERFORM pgbg._supervisor_unregister();\n"
               "            COMMIT;\n            EXIT WHEN NOT EXISTS")
    assert leaving in proc
    return proc.replace(leaving, (
        "            PERFORM pgbg._supervisor_unregister();\n"
        "            INSERT INTO public.phases SELECT clock_timestamp() - t_start, "
        + ", ".join(f"acc_{p}" for p in PHASES)
        + ", pg_catalog.current_setting('pgbg.t_bg', true)::float8,"
          " pg_catalog.current_setting('pgbg.t_rec', true)::float8;\n"
        "            COMMIT;\n            EXIT WHEN NOT EXISTS"), 1)


def instrumented_launch() -> str:
    fn = routine_text("fn_35_launch.sql", "CREATE OR REPLACE FUNCTION pgbg._launch_claimed")
    add = ("PERFORM pg_catalog.set_config('pgbg.{k}', "
           "(coalesce(nullif(pg_catalog.current_setting('pgbg.{k}', true), ''), '0')::float8"
           " + extract(epoch FROM clock_timestamp() - t0))::text, false);")
    launch = "    BEGIN\n        SELECT * INTO h FROM pgbg._bg_launch("
    record = "    PERFORM pgbg._record_launched(j.id, h.pid, h.cookie);"
    assert launch in fn and record in fn
    fn = fn.replace(launch, launch.replace("    BEGIN\n", "    BEGIN\n        t0 := clock_timestamp();\n"), 1)
    fn = fn.replace(record, "    " + add.format(k="t_bg") + "\n    t0 := clock_timestamp();\n" + record + "\n    "
                    + add.format(k="t_rec"), 1)
    return fn.replace("DECLARE\n", "DECLARE\n    t0 timestamptz;\n", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="jobs queued at once (default 500)")
    args = parser.parse_args()

    from pgbg_cli import db

    idle_ms = 300
    with scratch_database("pgbg_bench_phases") as scratch:
        conn = db.connect(scratch.dsn)
        conn.execute("CREATE TABLE public.phases (total interval, " + ", ".join(f"{p} interval" for p in PHASES)
                     + ", bg float8, rec float8)")
        conn.execute("GRANT INSERT ON public.phases TO PUBLIC")
        conn.execute(instrumented_supervise())
        conn.execute(instrumented_launch())
        conn.execute("SELECT * FROM pgbg.set_setting('supervisor_idle_ms', %s)", (str(idle_ms),))
        with conn.transaction():
            conn.execute("SELECT count(*) FROM generate_series(1, %s) g, "
                         "LATERAL pgbg.submit('SELECT 1 /* ' || g || ' */') s", (args.n,))
        started = time.monotonic()
        conn.execute("SELECT pgbg.ensure_supervisor()")
        while conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                           ).fetchone()["n"]:
            time.sleep(0.005)
        took = time.monotonic() - started
        deadline = time.monotonic() + 60
        while not (row := conn.execute("SELECT * FROM public.phases").fetchone()):
            assert time.monotonic() < deadline, "the supervisor did not leave within 60 s"
            time.sleep(0.05)
        conn.close()

    per_job = {p: row[p].total_seconds() * 1000 / args.n for p in PHASES}
    total = (row["total"].total_seconds() - idle_ms / 1000) * 1000 / args.n
    print(f"{args.n} jobs queued at once, started and recorded in {took:.2f} s ({args.n / took:.1f} jobs/s)")
    print(f"per job, ms (the supervisor's wall clock, {total:.2f} in all, its last {idle_ms} ms idle left out):")
    print(f"  pg_background's launch          {row['bg'] * 1000 / args.n:6.3f}")
    print(f"  recording the launch            {row['rec'] * 1000 / args.n:6.3f}")
    print(f"  the rest of launching           {per_job['launch'] - (row['bg'] + row['rec']) * 1000 / args.n:6.3f}"
          "   (locking the claimed job, its transaction)")
    print(f"  tending and recording the ends  {per_job['tend']:6.3f}")
    print(f"  claiming                        {per_job['claim']:6.3f}")
    print(f"  commits                         {per_job['commit_tend'] + per_job['commit_launch']:6.3f}")
    print(f"  waiting between passes          {per_job['wait']:6.3f}")
    print(f"  the rest of the loop            {total - sum(per_job.values()):6.3f}")
    print(f"  pgbg's own work (all but pg_background's launch and the waits): "
          f"{total - row['bg'] * 1000 / args.n - per_job['wait']:.3f}")


if __name__ == "__main__":
    main()
