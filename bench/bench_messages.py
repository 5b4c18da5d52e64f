"""What keeping a job's messages costs the supervisor. Figures only, beside a baseline
measured in the same run.

N short jobs queued at once for one role and run by pgbg's supervisor, in two scratch
databases of the sandbox server: one where pgbg keeps messages (pgbg_messages installed, its
functions made by init), one where it does not (the same, with the two functions dropped:
the baseline). Rounds alternate (kept, not kept, not kept, kept, ...); the ratio is of the
summed times. Each job is ``SELECT 1`` or, with ``--chatty``, a DO block that says one NOTICE
and one WARNING (kept in the first database, filtered at the worker in the second).

Run with ``.venv/bin/python bench/bench_messages.py`` (``-n`` jobs, default 300; ``--rounds``,
default 2; ``--chatty``). Runs everything as the superuser; drops its databases after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

CHATTY = "DO $$ BEGIN RAISE NOTICE 'job %s'; RAISE WARNING 'careful'; END $$"


def run(conn: Any, n: int, chatty: bool) -> float:
    """Queue n jobs at once, start the supervisor, wait for every one to end: seconds."""
    conn.execute("DELETE FROM pgbg.job WHERE state NOT IN ('queued', 'starting', 'running')")
    template = CHATTY if chatty else "SELECT 1 /* %s */"
    started = time.monotonic()
    with conn.transaction():
        conn.execute("SELECT count(*) FROM generate_series(1, %s) g, LATERAL pgbg.submit(pg_catalog.format(%s, g)) s",
                     (n, template))
    conn.execute("SELECT pgbg.ensure_supervisor()")
    while conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state IN ('queued', 'starting', 'running')"
                       ).fetchone()["n"]:
        time.sleep(0.005)
    took = time.monotonic() - started
    bad = conn.execute("SELECT count(*) AS n FROM pgbg.job WHERE state <> 'succeeded'").fetchone()["n"]
    if bad:
        raise SystemExit(f"{bad} jobs did not succeed")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300, help="jobs queued at once (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    parser.add_argument("--chatty", action="store_true", help="each job says a NOTICE and a WARNING")
    args = parser.parse_args()

    from pgbg_cli import db

    prefixes = {"kept": "pgbg_bench_msg", "not kept": "pgbg_bench_nomsg"}
    conns: dict[str, Any] = {}
    times: dict[str, list[float]] = {which: [] for which in prefixes}
    with contextlib.ExitStack() as stack:
        for which, prefix in prefixes.items():
            conn = db.connect(stack.enter_context(scratch_database(prefix)).dsn)
            stack.callback(conn.close)  # before its database is dropped
            if which == "not kept":
                conn.execute("DROP FUNCTION pgbg._messages_begin(integer, integer), pgbg._messages_take()")
            elif not conn.execute("SELECT pgbg._messages_available() AS ok").fetchone()["ok"]:
                raise SystemExit("pgbg_messages is not installed on the sandbox server (scripts/sandbox.sh messages)")
            conns[which] = conn
        for r in range(args.rounds):
            order = ("kept", "not kept") if r % 2 == 0 else ("not kept", "kept")
            for which in order:
                print(f"  round {r + 1}/{args.rounds}: {which}", file=sys.stderr, flush=True)
                times[which].append(run(conns[which], args.n, args.chatty))
        said = conns["kept"].execute(
            "SELECT coalesce(sum(jsonb_array_length(messages)), 0) AS n FROM pgbg.job").fetchone()["n"]

    kept, base = sum(times["kept"]), sum(times["not kept"])
    jobs = args.n * args.rounds
    what = "a NOTICE and a WARNING each" if args.chatty else "SELECT 1"
    print(f"load average {os.getloadavg()[0]:.1f}; {jobs} jobs per side ({what})")
    print(f"messages kept:     {kept:6.2f} s  {jobs / kept:7.1f} jobs/s  (messages in the last round: {said})")
    print(f"not kept (base):   {base:6.2f} s  {jobs / base:7.1f} jobs/s")
    print(f"ratio kept/base:   {kept / base:6.2f}")


if __name__ == "__main__":
    main()
